"""The ``multus-shim`` executable: forwards one CNI request to the pymultus daemon.

Started by the container runtime twice per pod as ``python -I -S``, so it is a byte pipe: it reads
the conf only for ``cniVersion`` and ``daemonSocketDir`` (reference §2.4), sends the environment
and stdin to the daemon (Go ``api.Request`` body), and copies the daemon's answer — already the
final result in the conf's version, or a CNI error with its real code — to stdout.

* ADD/CHECK/GC/STATUS are sent at once. A daemon that is not ready yet answers with the
  ``Pymultus-Not-Ready`` header (it did nothing); the shim then waits for ``/readyz`` (100 ms
  poll, 60 s like Go Multus; the ``PYMULTUS_SHIM_READY_TIMEOUT`` environment variable changes it)
  and sends the request again, or fails with code 11. No daemon listening is handled the same way.
* DEL never waits. When the daemon cannot be reached (no socket, refused, shutting down, the
  connection broke), the shim performs the DEL itself from the on-disk caches (DESIGN item 2), so
  a daemon outage neither leaks interfaces and IP leases nor leaves the pod stuck in Terminating.
  Only that path imports the engine.
* VERSION is answered locally.

Start-up cost (measured, see BENCHMARKS.md): the common case — a forwarded request that the
daemon answers with 200 — imports nothing but the built-in ``posix``, ``_socket`` and
``binascii``. Not ``os`` (~1.1 ms: ``_collections_abc``, ``posixpath``), not ``_json`` (~0.4 ms:
a shared library found by scanning ``sys.path``), not ``pymultus.jsonio``/``errors``/``wire``, not
even ``__future__``: this module therefore has no ``from __future__ import annotations`` and
quotes its annotations. It never parses the conf as JSON on that path either: ``daemonSocketDir``
is found by a small scan that is exact for any conf without backslashes (the key cannot be
escaped then) and defers to the full parser otherwise. Every other path (errors, an unusual conf
or environment, a daemon that is down or not ready) goes through :func:`run`, which imports what
it needs.
"""

import posix
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_SOCKET_DIR = "/run/multus/"
READY_TIMEOUT = 60.0
READY_POLL = 0.1
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
WAITING_COMMANDS = ("ADD", "CHECK", "GC", "STATUS")
# Same values as pymultus.errors (not imported on the fast path).
_INTERNAL = 999
_INVALID_ENVIRONMENT = 4
_TRY_AGAIN_LATER = 11
# Same names as pymultus.daemon.wire (not imported on the fast path); tests/unit check they match.
_SHIM_HEADER = "Pymultus-Shim"
_NOT_READY_HEADER = b"pymultus-not-ready"

_FAST_COMMANDS = (b"ADD", b"DEL", b"CHECK", b"GC", b"STATUS")
# The VERSION answer, byte for byte what jsonio.dumpb would produce.
_VERSION_REPLY = (
    b'{"cniVersion":"1.1.0","supportedVersions":['
    + b",".join(b'"' + v.encode() + b'"' for v in SUPPORTED_VERSIONS)
    + b"]}"
)
# Bytes that need escaping in a JSON string (or are not ASCII): an environment holding any of
# them is encoded by the full JSON encoder instead (run()).
_UNSAFE = bytes(range(0x20)) + b'"\\' + bytes(range(0x7F, 0x100))


class _Unreachable(Exception):
    """The connection to the daemon broke after the request may have been sent."""


def main() -> int:
    stdin = sys.stdin.buffer.read()
    outcome = _forward(stdin)
    if outcome is None:
        import os

        outcome = run(os.environ, stdin)
    code, data = outcome
    out = sys.stdout.buffer
    out.write(data)
    out.flush()
    # Skip interpreter finalisation (module teardown, GC): nothing is left to clean up and it
    # costs a millisecond or two on every one of the two shim starts per pod.
    sys.stderr.flush()
    posix._exit(code)


# -- the fast path ----------------------------------------------------------------------------


def _forward(stdin: bytes) -> "tuple[int, bytes] | None":
    """Answer the common case with built-in modules only; None hands the request to run()."""
    environ = posix.environ  # bytes → bytes; os.environ is built from it (importing os costs)
    command = environ.get(b"CNI_COMMAND", b"")
    if command == b"VERSION":
        return 0, _VERSION_REPLY
    if command not in _FAST_COMMANDS:
        return None
    socket_dir = _socket_dir(stdin)
    body = _request_body(environ, stdin)
    if socket_dir is None or body is None:
        return None
    socket_path = (socket_dir or DEFAULT_SOCKET_DIR).rstrip("/") + "/multus.sock"
    try:
        answer = _exchange(socket_path, body)
    except _Unreachable as exc:
        import os

        return _unreachable(os.environ, stdin, command.decode(), socket_path, exc.args[0])
    if answer is None:
        return None  # nobody listening, or not ready: nothing was done; run() waits and retries
    status, data = answer
    if status == 200:
        return 0, data
    import os

    return _answer(os.environ, stdin, command.decode(), socket_path, status=status, answer=data)


def _socket_dir(conf: bytes) -> "str | None":
    """``daemonSocketDir`` of the top-level conf object ("" when absent or not a non-empty
    string, as in :func:`run`); None when the quick scan cannot tell (run() parses the conf).

    Without a backslash in the conf no string can contain an escaped quote, so splitting at
    ``"`` alternates exactly between outside and inside of strings; the nesting depth before
    each string is counted on the outside parts. A malformed conf may give a wrong guess here,
    but then the daemon rejects it, and :func:`_answer` re-parses it to give the usual error.
    """
    if b"daemonSocketDir" not in conf:
        return "" if conf.lstrip()[:1] == b"{" and b"\\" not in conf else None
    if b"\\" in conf or conf.lstrip()[:1] != b"{":
        return None
    parts = conf.split(b'"')
    if len(parts) % 2 == 0:
        return None  # an unterminated string
    found = b""
    depth = 0
    for index in range(0, len(parts) - 2, 2):
        outside = parts[index]
        depth += outside.count(b"{") + outside.count(b"[") - outside.count(b"}") - outside.count(b"]")
        if depth != 1 or parts[index + 1] != b"daemonSocketDir":
            continue
        after = parts[index + 2].strip()
        if not after.startswith(b":"):
            continue  # a string value "daemonSocketDir", not the key
        # `"key": "value"` leaves only the colon between the two strings; anything else there
        # (null, a number, an object) is not a string value. Later duplicates win, as in JSON.
        found = parts[index + 3] if after == b":" and index + 3 < len(parts) else b""
    try:
        return found.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _request_body(environ: "Mapping[bytes, bytes]", stdin: bytes) -> "bytes | None":
    """The Go ``api.Request`` body, as ``wire.encode_request`` makes it; None when some
    environment entry needs JSON escaping (run() encodes it with the full encoder)."""
    import binascii

    pairs = []
    for key, value in environ.items():
        if len(key.translate(None, _UNSAFE)) != len(key) or len(value.translate(None, _UNSAFE)) != len(value):
            return None
        pairs.append(b'"' + key + b'":"' + value + b'"')
    return (
        b'{"env":{' + b",".join(pairs) + b'},"config":"' + binascii.b2a_base64(stdin, newline=False) + b'"}'
    )


def _exchange(socket_path: str, body: bytes) -> "tuple[int, bytes] | None":
    """POST ``body`` to ``/cni``: (status, body); None when nothing was done (no daemon
    listening, or it answered that it is not ready); _Unreachable when the exchange broke."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(600.0)
        try:
            sock.connect(socket_path)
        except OSError:
            return None
        head = (
            "POST /cni HTTP/1.1\r\nHost: multus\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{_SHIM_HEADER}: 1\r\n\r\n"
        )
        chunks = []
        try:
            sock.sendall(head.encode("latin-1") + body)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as exc:
            raise _Unreachable(str(exc) or type(exc).__name__) from None
    finally:
        sock.close()
    data = b"".join(chunks)
    end = data.find(b"\r\n\r\n")
    if end < 0 or not data.startswith(b"HTTP/1.") or not data[9:12].isdigit():
        raise _Unreachable("the daemon closed the connection without a complete HTTP response")
    answer = data[end + 4 :]
    for line in data[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == _NOT_READY_HEADER:
            return None
        if name == b"content-length" and value.strip().isdigit():
            expected = int(value.strip())
            if len(answer) < expected:
                raise _Unreachable("the daemon closed the connection in the middle of its response")
            answer = answer[:expected]
    return int(data[9:12]), answer


# -- the general path -------------------------------------------------------------------------


def run(env: "Mapping[str, str]", stdin: bytes) -> "tuple[int, bytes]":
    """(exit code, stdout bytes) of one shim invocation."""
    import time

    from pymultus import jsonio
    from pymultus.daemon import wire
    from pymultus.errors import MultusError

    command = env.get("CNI_COMMAND", "")
    try:
        conf = jsonio.loads_object(stdin, what="the multus-shim network configuration")
    except MultusError as exc:
        if command == "VERSION":
            return 0, _VERSION_REPLY
        return 1, _error("1.0.0", exc.code, exc.msg)
    version = _version_of(conf)
    if command == "VERSION":
        return 0, _VERSION_REPLY
    if command not in ("ADD", "DEL", "CHECK", "GC", "STATUS"):
        return 1, _error(version, _INVALID_ENVIRONMENT, f"CNI_COMMAND {command!r} is not a CNI command")
    socket_dir = conf.get("daemonSocketDir")
    if not isinstance(socket_dir, str) or not socket_dir:
        socket_dir = DEFAULT_SOCKET_DIR
    socket_path = socket_dir.rstrip("/") + "/multus.sock"
    body = wire.encode_request(env, stdin)

    timeout = _ready_timeout(env)
    deadline = time.monotonic() + timeout
    while True:
        if command in WAITING_COMMANDS:
            why = _wait_ready(socket_path, timeout, deadline)
            if why:
                return 1, _error(
                    version,
                    _TRY_AGAIN_LATER,
                    f"the pymultus daemon at {socket_path} is not ready: {why}",
                )
        try:
            status, answer, headers = wire.http_exchange(
                socket_path, "POST", wire.PATH_CNI, body, headers={wire.SHIM_HEADER: "1"}
            )
        except (OSError, ConnectionError) as exc:
            return _unreachable(env, stdin, command, socket_path, str(exc))
        if wire.NOT_READY_HEADER.lower() in headers and time.monotonic() < deadline:
            continue  # it turned not ready between /readyz and the request: wait again
        return _answer(env, stdin, command, socket_path, status=status, answer=answer)


def _version_of(conf: "Mapping[str, object]") -> str:
    version = conf.get("cniVersion")
    return version if isinstance(version, str) and version else "0.1.0"  # libcni's default


def _conf_version(stdin: bytes) -> "tuple[str, bytes]":
    """(cniVersion, b"") of a valid conf, or ("", the shim's error for an invalid one)."""
    from pymultus import jsonio
    from pymultus.errors import MultusError

    try:
        conf = jsonio.loads_object(stdin, what="the multus-shim network configuration")
    except MultusError as exc:
        return "", _error("1.0.0", exc.code, exc.msg)
    return _version_of(conf), b""


def _unreachable(
    env: "Mapping[str, str]", stdin: bytes, command: str, socket_path: str, why: str
) -> "tuple[int, bytes]":
    """The request may have been sent but no complete answer came back."""
    version, invalid = _conf_version(stdin)
    if invalid:
        return 1, invalid
    if command == "DEL":
        return _local_del(env, stdin, version, f"cannot reach the daemon at {socket_path}: {why}")
    return 1, _error(version, _TRY_AGAIN_LATER, f"cannot reach the pymultus daemon at {socket_path}: {why}")


def _answer(
    env: "Mapping[str, str]", stdin: bytes, command: str, socket_path: str, *, status: int, answer: bytes
) -> "tuple[int, bytes]":
    """(exit code, stdout) for the daemon's answer."""
    if status == 200:
        return 0, answer
    version, invalid = _conf_version(stdin)
    if invalid:
        return 1, invalid  # the shim's own error for a conf it cannot read, as before forwarding
    if status == 503 and command == "DEL":
        return _local_del(env, stdin, version, "the daemon is busy or shutting down")
    if status == 400 and answer.startswith(b"{"):
        return 1, answer  # the daemon's CNI error, code unchanged
    return 1, _daemon_failure(version, status, answer)


def _ready_timeout(env: "Mapping[str, str]") -> float:
    raw = env.get("PYMULTUS_SHIM_READY_TIMEOUT", "")
    try:
        return float(raw) if raw else READY_TIMEOUT
    except ValueError:
        return READY_TIMEOUT


def _wait_ready(socket_path: str, timeout: float, deadline: float) -> str:
    """ "" once ``/readyz`` answers 200, else the last reason at ``deadline`` (``timeout`` seconds
    after the shim started waiting)."""
    import time

    from pymultus.daemon import wire

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
    from pymultus import jsonio
    from pymultus.errors import MultusError

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
    code = _TRY_AGAIN_LATER if status == 503 else _INTERNAL
    return _error(version, code, f"the pymultus daemon answered HTTP {status}: {text[:200]}")


def _local_del(env: "Mapping[str, str]", stdin: bytes, version: str, why: str) -> "tuple[int, bytes]":
    """DEL without the daemon, from the on-disk caches (no Kubernetes needed for DEL)."""
    from pymultus import jsonio
    from pymultus.errors import MultusError

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
        return 1, _error(version, _INTERNAL, f"local DEL failed: {exc}")
    return 0, b""


def _error(version: str, code: int, msg: str) -> bytes:
    from pymultus import jsonio

    return jsonio.dumpb({"cniVersion": version, "code": code, "msg": msg})


if __name__ == "__main__":
    sys.exit(main())
