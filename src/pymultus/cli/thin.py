"""The ``multus`` executable (thin plugin): one process per CNI request.

Started by the runtime as ``python -IS``; it reads env + stdin, runs the attach use cases in
this process and prints the result like any CNI plugin. Only what the request needs is imported.
"""

from __future__ import annotations

import posix
import sys

from pymultus import paths
from pymultus.cni import skel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymultus.cni.request import CniRequest


def _handler(env: Mapping[str, str]) -> object:
    def run(request: CniRequest) -> dict[str, object] | None:
        from pymultus.attach.service import handle
        from pymultus.cli.wiring import build_deps
        from pymultus.config.multus import parse_multus_conf

        conf = parse_multus_conf(request.config)
        return handle(request, conf, build_deps(conf, env, command=request.command))

    return run


def main() -> int:
    env = paths.environ()
    if "OPENSSL_CONF" not in env:
        # OpenSSL parses its system configuration file (openssl.cnf: CA-tool defaults, optional
        # providers) when the first TLS context is made: ~0.9 M instructions, ~0.3 ms of a
        # Kubernetes ADD, for settings that do not apply to the one connection made here (to the
        # server the kubeconfig names, with the CA it names; Go Multus reads no OpenSSL
        # configuration either). /dev/null is an empty configuration. An OPENSSL_CONF given by
        # the runtime is honoured. Only this process's C environment: the delegates get ``env``.
        posix.putenv("OPENSSL_CONF", "/dev/null")
    stdin = sys.stdin.buffer.read()
    run = _handler(env)
    handlers = {command: run for command in ("ADD", "DEL", "CHECK", "GC", "STATUS")}
    code = skel.serve(
        handlers,  # type: ignore[arg-type]
        env=env,
        stdin=stdin,
        stdout=sys.stdout.buffer,
        about="pymultus thin plugin (multus)",
    )
    _exit_now(code)
    return code  # not reached


def _exit_now(code: int) -> None:
    """Leave without interpreter finalisation (module teardown, GC): ~2 ms of each of the two
    starts per pod. The exit hooks still run: the Kubernetes client reads the answers of the
    requests it sent without waiting (events) there, so the server never sees a reset. Only a
    process that registered a hook has ``atexit`` loaded (importing it costs a plain ADD ~50 µs)."""
    atexit = sys.modules.get("atexit")
    if atexit is not None:
        atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    posix._exit(code)


if __name__ == "__main__":
    sys.exit(main())
