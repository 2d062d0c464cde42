"""The shim ↔ daemon protocol: HTTP/1.1 over the unix socket ``<socketDir>/multus.sock``.

The request body is Go Multus's ``api.Request`` (reference §12), so a Go ``multus-shim`` can talk
to the pymultus daemon unchanged::

    {"env": {"CNI_COMMAND": "ADD", ...}, "config": "<base64 of the CNI stdin>", "interfaceAttributes": {...}}

Responses: 200 with ``{"Result": <1.0.0 result>}`` (ADD) or an empty body, and 400 with a CNI
error ``{"cniVersion","code","msg","details"}`` on failure — the code is the real one, never
flattened to 999. When the request carries the header ``Pymultus-Shim: 1`` (our shim), the
200 body is instead *exactly the bytes the shim must print*: the result already converted to the
conf's ``cniVersion``. The shim then never parses JSON on the success path; it copies bytes.

This module is imported by the ``multus-shim`` executable (``python -I -S``): standard library
only, nothing heavy at module level (see DESIGN "Start-up cost rules"): ``_socket`` rather than
``socket`` (which pulls in ``enum`` and ``selectors``).
"""

from __future__ import annotations

import _socket
import binascii

from pymultus import jsonio
from pymultus.errors import DecodingError, InvalidEnvironment

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

PATH_CNI = "/cni"
PATH_DELEGATE = "/delegate"
PATH_HEALTHZ = "/healthz"
PATH_READYZ = "/readyz"
PATH_STATS = "/debug/stats"
SHIM_HEADER = "Pymultus-Shim"
# On a /cni answer: the daemon is not ready (caches not synced, conf not written, ...) and did
# nothing; our shim then waits for /readyz and sends the request again (a Go shim just sees the
# code-11 error in the body, as from Go Multus).
NOT_READY_HEADER = "Pymultus-Not-Ready"
MAX_BODY = 1 << 20  # 1 MiB: a CNI conf plus env is a few KiB; anything bigger is a mistake or abuse
# Request line and headers; ours are ~150 bytes, a Go shim's about the same. Small, because the
# daemon may hold the head of every open connection at once.
MAX_HEADER = 16 << 10


def encode_request(
    env: Mapping[str, str], stdin: bytes, interface_attributes: Mapping[str, object] | None = None
) -> bytes:
    """The JSON body of a ``/cni`` or ``/delegate`` request (Go ``api.Request`` shape)."""
    body: dict[str, object] = {
        "env": dict(env),
        "config": binascii.b2a_base64(stdin, newline=False).decode("ascii"),
    }
    if interface_attributes:
        body["interfaceAttributes"] = dict(interface_attributes)
    return jsonio.dumpb(body)


def decode_request(body: bytes) -> tuple[dict[str, str], bytes, dict[str, object]]:
    """(env, CNI stdin bytes, interfaceAttributes) of a request body, validated.

    Malformed JSON or a bad ``config`` is a DecodingError (6); a missing or non-string ``env``
    an InvalidEnvironment (4).
    """
    doc = jsonio.loads_object(body, what="the request body")  # nesting is bounded: code 6
    env = doc.get("env")
    if not isinstance(env, dict):
        raise InvalidEnvironment('the request body has no "env" object with the CNI environment')
    for key, value in env.items():
        if not isinstance(value, str):
            raise InvalidEnvironment(f'"env.{key[:100]}" of the request body must be a string')
        if not key or "=" in key or "\0" in key or "\0" in value:
            # An environment entry the delegates could not be started with.
            raise InvalidEnvironment(
                f'"env.{key[:100]}" of the request body is not a valid environment variable'
            )
    if "CNI_COMMAND" not in env:
        raise InvalidEnvironment('"env" of the request body has no CNI_COMMAND')
    config = doc.get("config", "")
    if not isinstance(config, str):
        raise DecodingError('"config" of the request body must be a base64 string')
    try:
        stdin = binascii.a2b_base64(config, strict_mode=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII characters
        raise DecodingError(f'"config" of the request body is not valid base64: {exc}') from exc
    attributes = doc.get("interfaceAttributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise DecodingError('"interfaceAttributes" of the request body must be an object')
    return env, stdin, attributes


def pod_of(env: Mapping[str, str]) -> str:
    """ "namespace/name" of the pod in ``CNI_ARGS``, or "" (for logs)."""
    namespace = name = ""
    for pair in env.get("CNI_ARGS", "").split(";"):
        key, _, value = pair.partition("=")
        if key == "K8S_POD_NAMESPACE":
            namespace = value
        elif key == "K8S_POD_NAME":
            name = value
    return f"{namespace}/{name}" if name else ""


def http_request(
    socket_path: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> tuple[int, bytes]:
    """One HTTP/1.1 exchange over a unix socket; returns (status, body).

    Raises OSError when the daemon cannot be reached or the connection breaks, and
    ConnectionError when the reply is not HTTP.
    """
    status, answer, _ = http_exchange(socket_path, method, path, body, headers=headers, timeout=timeout)
    return status, answer


def http_exchange(
    socket_path: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> tuple[int, bytes, dict[str, str]]:
    """Like :func:`http_request`, also returning the response headers (names lower-cased)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        head = f"{method} {path} HTTP/1.1\r\nHost: multus\r\nConnection: close\r\n"
        if body or method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        if headers:
            for name, value in headers.items():
                head += f"{name}: {value}\r\n"
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    return parse_response_headers(b"".join(chunks))


def parse_response(data: bytes) -> tuple[int, bytes]:
    """(status, body) of a complete HTTP/1.1 response read until EOF."""
    status, body, _ = parse_response_headers(data)
    return status, body


def parse_response_headers(data: bytes) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers with lower-cased names) of a complete HTTP/1.1 response."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or not data.startswith(b"HTTP/1."):
        raise ConnectionError("the daemon closed the connection without a complete HTTP response")
    lines = data[:end].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"the daemon answered a malformed status line {lines[0][:80]!r}")
    body = data[end + 4 :]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower().decode("latin-1")
        headers[key] = value.strip().decode("latin-1")
        if key == "content-length":
            length = value.strip()
            if length.isdigit():
                expected = int(length)
                if len(body) < expected:
                    raise ConnectionError("the daemon closed the connection in the middle of its response")
                body = body[:expected]
    return int(parts[1]), body, headers
