"""The ``multus-shim`` executable: forwards one CNI request to the pymultus daemon.

Started by the container runtime twice per pod as ``python -I -S``, so it is a byte pipe: it reads
the conf only for ``cniVersion`` and ``daemonSocketDir`` (reference §2.4), sends the environment
and stdin to the daemon (Go ``api.Request`` body), and copies the daemon's answer — already the
final result in the conf's version, or a CNI error with its real code — to stdout.

* ADD/CHECK/GC/STATUS first wait for ``/readyz`` (100 ms poll, 60 s like Go Multus; the
  ``PYMULTUS_SHIM_READY_TIMEOUT`` environment variable changes it), then fail with code 11.
* DEL never waits. When the daemon cannot be reached (no socket, refused, shutting down, the
  connection broke), the shim performs the DEL itself from the on-disk caches (DESIGN item 2), so
  a daemon outage neither leaks interfaces and IP leases nor leaves the pod stuck in Terminating.
  Only that path imports the engine.
* VERSION is answered locally.

Imports: ``os``, ``sys``, ``_socket``, ``binascii`` and ``pymultus.jsonio`` (the ``_json``
accelerator) — nothing else on the forwarding path.
"""

from __future__ import annotations

import os
import sys

from pymultus import jsonio
from pymultus.daemon import wire
from pymultus.errors import (
    INTERNAL,
    INVALID_ENVIRONMENT,
    TRY_AGAIN_LATER,
    MultusError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_SOCKET_DIR = "/run/multus/"
READY_TIMEOUT = 60.0
READY_POLL = 0.1
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
WAITING_COMMANDS = ("ADD", "CHECK", "GC", "STATUS")


def main() -> int:
    env = os.environ
    stdin = sys.stdin.buffer.read()
    out = sys.stdout.buffer
    code, data = run(env, stdin)
    out.write(data)
    out.flush()
    # Skip interpreter finalisation (module teardown, GC): nothing is left to clean up and it
    # costs a millisecond or two on every one of the two shim starts per pod.
    sys.stderr.flush()
    os._exit(code)


def run(env: Mapping[str, str], stdin: bytes) -> tuple[int, bytes]:
    """(exit code, stdout bytes) of one shim invocation."""
    command = env.get("CNI_COMMAND", "")
    try:
        conf = jsonio.loads_object(stdin, what="the multus-shim network configuration")
    except MultusError as exc:
        if command == "VERSION":
            return 0, _version_reply()
        return 1, _error("1.0.0", exc.code, exc.msg)
    version = conf.get("cniVersion")
    if not isinstance(version, str) or not version:
        version = "0.1.0"  # libcni's default when a conf has no cniVersion
    if command == "VERSION":
        return 0, _version_reply()
    if command not in ("ADD", "DEL", "CHECK", "GC", "STATUS"):
        return 1, _error(version, INVALID_ENVIRONMENT, f"CNI_COMMAND {command!r} is not a CNI command")
    socket_dir = conf.get("daemonSocketDir")
    if not isinstance(socket_dir, str) or not socket_dir:
        socket_dir = DEFAULT_SOCKET_DIR
    socket_path = socket_dir.rstrip("/") + "/multus.sock"
    body = wire.encode_request(env, stdin)

    if command in WAITING_COMMANDS:
        why = _wait_ready(socket_path, _ready_timeout(env))
        if why:
            return 1, _error(
                version,
                TRY_AGAIN_LATER,
                f"the pymultus daemon at {socket_path} is not ready: {why}",
            )
    try:
        status, answer = wire.http_request(
            socket_path, "POST", wire.PATH_CNI, body, headers={wire.SHIM_HEADER: "1"}
        )
    except (OSError, ConnectionError) as exc:
        if command == "DEL":
            return _local_del(env, stdin, version, f"cannot reach the daemon at {socket_path}: {exc}")
        return 1, _error(
            version, TRY_AGAIN_LATER, f"cannot reach the pymultus daemon at {socket_path}: {exc}"
        )
    if status == 200:
        return 0, answer
    if status == 503 and command == "DEL":
        return _local_del(env, stdin, version, "the daemon is busy or shutting down")
    if status == 400 and answer.startswith(b"{"):
        return 1, answer  # the daemon's CNI error, code unchanged
    return 1, _daemon_failure(version, status, answer)


def _ready_timeout(env: Mapping[str, str]) -> float:
    raw = env.get("PYMULTUS_SHIM_READY_TIMEOUT", "")
    try:
        return float(raw) if raw else READY_TIMEOUT
    except ValueError:
        return READY_TIMEOUT


def _wait_ready(socket_path: str, timeout: float) -> str:
    """ "" once ``/readyz`` answers 200, else the last reason after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    why = "no answer"
    while True:
        try:
            status, answer = wire.http_request(socket_path, "GET", wire.PATH_READYZ, timeout=5.0)
            if status == 200:
                return ""
            why = answer.decode("utf-8", "replace").strip() or f"HTTP {status}"
        except (OSError, ConnectionError) as exc:
            why = str(exc) or type(exc).__name__
        if time.monotonic() + READY_POLL > deadline:
            return f"{why} (waited {timeout:g} s)"
        time.sleep(READY_POLL)


def _daemon_failure(version: str, status: int, answer: bytes) -> bytes:
    """A non-CNI answer (e.g. 503 from a busy daemon) as a CNI error."""
    text = answer.decode("utf-8", "replace").strip()
    if answer.startswith(b"{"):
        try:
            doc = jsonio.loads_object(answer)
        except MultusError:
            doc = {}
        code = doc.get("code")
        msg = doc.get("msg")
        if isinstance(code, int) and isinstance(msg, str):
            return _error(version, code, msg)
    code = TRY_AGAIN_LATER if status == 503 else INTERNAL
    return _error(version, code, f"the pymultus daemon answered HTTP {status}: {text[:200]}")


def _local_del(env: Mapping[str, str], stdin: bytes, version: str, why: str) -> tuple[int, bytes]:
    """DEL without the daemon, from the on-disk caches (no Kubernetes needed for DEL)."""
    sys.stderr.write(f"multus-shim: {why}; performing DEL locally from the on-disk cache\n")
    try:
        from pymultus.attach.service import handle
        from pymultus.cli.wiring import build_deps
        from pymultus.cni.request import CniRequest
        from pymultus.config.multus import parse_multus_conf

        request = CniRequest.from_env(env, stdin)
        conf = parse_multus_conf(stdin)
        # No Kubernetes: DEL works from the scratch cache and the libcni result caches.
        deps = build_deps(conf, env, component="multus-shim", with_pods=False)
        deps.wait_readiness = False
        handle(request, conf, deps)
    except MultusError as exc:
        return 1, jsonio.dumpb(exc.to_cni_error(version))
    except Exception as exc:
        return 1, _error(version, INTERNAL, f"local DEL failed: {exc}")
    return 0, b""


def _version_reply() -> bytes:
    return jsonio.dumpb({"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED_VERSIONS)})


def _error(version: str, code: int, msg: str) -> bytes:
    return jsonio.dumpb({"cniVersion": version, "code": code, "msg": msg})


if __name__ == "__main__":
    sys.exit(main())
