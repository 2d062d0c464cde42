"""Run the fake API server in its own process (benchmarks: no GIL shared with the code measured).

    python -m tests.fakeapi --dir DIR [--port N] [--host 127.0.0.1]

Writes ``DIR/kubeconfig`` (JSON, CA data, admin token in ``DIR/kubeconfig.token``), prints one
JSON line ``{"url", "kubeconfig", "token", "ca", "pid"}`` on stdout and serves until SIGTERM/SIGINT.
Objects are created through the API itself with the admin token.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from tests.fakeapi.server import FakeApiServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakeapi", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, type=Path, help="work directory (PKI, kubeconfig)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: an ephemeral port")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = FakeApiServer(args.dir, host=args.host, port=args.port).start()
    try:
        kubeconfig = server.write_kubeconfig(args.dir / "kubeconfig")
        info = {
            "url": server.url,
            "kubeconfig": str(kubeconfig),
            "token": server.token,
            "ca": str(server.ca_file),
            "pid": os.getpid(),
        }
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
