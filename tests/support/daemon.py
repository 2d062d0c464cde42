"""A real ``pymultus daemon`` process and the real ``multus-shim`` executable, for tests and benches.

The daemon runs as a subprocess on a temporary socket dir; the shim is a generated launcher
(``#!<python> -IS``) run with real env and stdin, exactly as a container runtime would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pymultus.daemon import wire
from pymultus.install.codearchive import ARCHIVE_NAME
from pymultus.install.launcher import default_python, default_sys_path, write_launcher

PLUGIN_DIR = "/usr/lib/cni"
REPO_SRC = str(Path(__file__).resolve().parents[2] / "src")


def write_shim(directory: Path) -> Path:
    """The ``multus-shim`` launcher in ``directory`` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "multus-shim"
    write_launcher(
        str(path),
        entry_module="pymultus.cli.shim",
        python=default_python(),
        sys_path=default_sys_path(),
        archive=str(directory / ARCHIVE_NAME),  # as pymultus install-plugin writes it
    )
    return path


class DaemonProcess:
    def __init__(self, workdir: Path, config: Mapping[str, object], env: Mapping[str, str] | None = None):
        self.workdir = workdir
        self.config = dict(config)
        self.config_path = workdir / "daemon-config.json"
        self.log_path = workdir / f"daemon-{int(time.time() * 1000)}.stderr"
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_dir(self) -> str:
        return str(self.config["socketDir"])

    @property
    def socket_path(self) -> str:
        return os.path.join(self.socket_dir, "multus.sock")

    def command(self) -> list[str]:
        """The daemon's command line (bench/thick_breakdown.py runs it under a timing wrapper)."""
        return [sys.executable, "-m", "pymultus", "daemon", "--config", str(self.config_path)]

    def start(self, *, wait: str = "healthz", timeout: float = 20.0) -> None:
        self.config_path.write_text(json.dumps(self.config))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": REPO_SRC, **self.env}
        self.log_path = self.workdir / f"daemon-{int(time.time() * 1000)}.stderr"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        if wait:
            self.wait_for(wait, timeout)

    def wait_for(self, what: str = "healthz", timeout: float = 20.0) -> None:
        path = wire.PATH_READYZ if what == "readyz" else wire.PATH_HEALTHZ
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            try:
                status, body = wire.http_request(self.socket_path, "GET", path, timeout=2)
                if status == 200:
                    return
                last = body.decode()
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise AssertionError(f"daemon not {what} after {timeout} s: {last}\n{self.output()}")

    def request(self, method: str, path: str, body: bytes = b"", **kw: object) -> tuple[int, bytes]:
        return wire.http_request(self.socket_path, method, path, body, **kw)  # type: ignore[arg-type]

    def stats(self) -> dict[str, object]:
        status, body = self.request("GET", wire.PATH_STATS)
        assert status == 200, body
        return json.loads(body)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@contextmanager
def running_daemon(
    workdir: Path, config: Mapping[str, object], env: Mapping[str, str] | None = None, wait: str = "healthz"
) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(workdir, config, env)
    daemon.start(wait=wait)
    try:
        yield daemon
    finally:
        daemon.stop()


def run_shim(
    shim: Path,
    command: str,
    conf: Mapping[str, object] | bytes,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> tuple[int, dict[str, object] | None, str]:
    """Run the shim like a runtime does; (exit code, decoded stdout or None, stderr)."""
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    full_env = {"CNI_COMMAND": command, "CNI_PATH": PLUGIN_DIR, "PATH": os.environ.get("PATH", "")}
    full_env.update(env or {})
    proc = subprocess.run(
        [str(shim)], input=stdin, capture_output=True, env=full_env, timeout=timeout, check=False
    )
    out = proc.stdout.strip()
    return proc.returncode, (json.loads(out) if out else None), proc.stderr.decode(errors="replace")
