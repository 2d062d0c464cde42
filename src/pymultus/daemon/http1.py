"""HTTP/1.1 messages on the daemon's socket: Request, Response and a strict request-head parser.

Pure functions over bytes (no sockets), so the parser can be tested and fuzzed on its own. The
parser is strict where a lax one would be ambiguous (RFC 9112 §6.3, request smuggling): it
refuses a Content-Length that is not plain digits, conflicting or repeated lengths,
Transfer-Encoding together with Content-Length, a transfer coding other than ``chunked``,
obsolete line folding, whitespace before a header colon and control characters in a header.
Every refusal is an :class:`HttpError` carrying the 4xx answer: a CNI error body with code 6
(decoding) and one sentence naming the offending part; never a traceback.
"""

from __future__ import annotations

from pymultus import jsonio
from pymultus.daemon import wire
from pymultus.errors import DECODING_FAILURE

MAX_HEADERS = 100
# More digits than this is more than wire.MAX_BODY whatever they are; counting them first keeps
# int() away from a 5,000-digit number (it raises ValueError beyond 4,300 digits).
_MAX_LENGTH_DIGITS = len(str(wire.MAX_BODY))
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX = frozenset("0123456789abcdefABCDEF")
# Control characters other than horizontal tab: invalid in a header value and the target.
_CONTROLS = frozenset(chr(code) for code in (*range(0x09), *range(0x0A, 0x20), 0x7F))

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Request:
    __slots__ = ("body", "headers", "method", "path")

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers  # names lower-cased
        self.body = body


class Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers  # extra (name, value) pairs

    @classmethod
    def cni_error(cls, status: int, code: int, msg: str, cni_version: str = "1.0.0") -> Response:
        return cls(status, jsonio.dumpb({"cniVersion": cni_version, "code": code, "msg": msg}))

    def to_bytes(self) -> bytes:
        reason = _REASONS.get(self.status, "Unknown")
        head = (
            f"HTTP/1.1 {self.status} {reason}\r\n"
            f"Content-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            "Connection: close\r\n" + "".join(f"{name}: {value}\r\n" for name, value in self.headers) + "\r\n"
        )
        return head.encode("latin-1") + self.body


class HttpError(Exception):
    """A request the daemon refuses before routing it; ``response`` is the answer to send."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.response = Response.cni_error(status, DECODING_FAILURE, msg)


class Head:
    """A parsed request head. ``length`` is the body size; ``chunked`` means read chunks."""

    __slots__ = ("chunked", "headers", "length", "method", "path")

    def __init__(self, method: str, path: str, headers: dict[str, str], length: int, chunked: bool) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.length = length
        self.chunked = chunked


def parse_head(raw: bytes) -> Head:
    """Parse the request line and headers (``raw`` ends before the blank line); HttpError when
    they are malformed or ambiguous."""
    if len(raw) > wire.MAX_HEADER:
        raise HttpError(431, f"the request headers are larger than {wire.MAX_HEADER // 1024} KiB")
    lines = raw.decode("latin-1").split("\r\n")
    method, path = _request_line(lines[0])
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, f"the request has more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    lengths: list[str] = []
    codings: list[str] = []
    for line in lines[1:]:
        name, value = _header_line(line)
        if name == "content-length":
            lengths.extend(part.strip() for part in value.split(","))
        elif name == "transfer-encoding":
            codings.extend(part.strip().lower() for part in value.split(","))
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if codings:
        if lengths:
            raise HttpError(400, "the request has both Transfer-Encoding and Content-Length")
        if codings != ["chunked"]:
            raise HttpError(400, f"unsupported Transfer-Encoding {headers['transfer-encoding'][:40]!r}")
        return Head(method, path, headers, 0, chunked=True)
    if lengths:
        return Head(method, path, headers, _content_length(lengths), chunked=False)
    if method == "POST":
        raise HttpError(411, "a POST request needs a Content-Length")
    return Head(method, path, headers, 0, chunked=False)


def _request_line(line: str) -> tuple[str, str]:
    parts = line.split(" ")
    if (
        len(parts) != 3
        or not parts[0]
        or not set(parts[0]) <= _TOKEN
        or parts[2] not in ("HTTP/1.1", "HTTP/1.0")
    ):
        raise HttpError(400, f"malformed HTTP/1.1 request line {line[:80]!r}")
    method, target = parts[0], parts[1]
    if not _CONTROLS.isdisjoint(target):
        raise HttpError(400, f"control characters in the request target {target[:80]!r}")
    path = target.split("?", 1)[0]
    if path.startswith("http://"):  # absolute-form target, e.g. http://dummy/cni from Go clients
        path = "/" + path[len("http://") :].partition("/")[2]
    elif not path.startswith("/"):
        raise HttpError(400, f"the request target {target[:80]!r} is not a path")
    return method, path


def _header_line(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    if not sep or not name or not set(name) <= _TOKEN:
        # Also obsolete line folding (a line starting with white space) and "Name :" (RFC 9112
        # §5.1: a server must reject white space between the name and the colon).
        raise HttpError(400, f"malformed HTTP header line {line[:80]!r}")
    value = value.strip(" \t")
    if not _CONTROLS.isdisjoint(value):
        raise HttpError(400, f"control characters in the {name[:40]} header")
    return name.lower(), value


def _content_length(values: list[str]) -> int:
    first = values[0]
    if any(value != first for value in values):
        raise HttpError(400, "the request has conflicting Content-Length values")
    if not first or not first.isascii() or not first.isdigit():
        raise HttpError(400, f"invalid Content-Length {first[:20]!r}: not a decimal number")
    digits = first.lstrip("0")
    if len(digits) > _MAX_LENGTH_DIGITS or int(digits or "0") > wire.MAX_BODY:
        raise HttpError(413, f"the request body of {_abridged(digits)} bytes is larger than 1 MiB")
    return int(digits or "0")


def chunk_size(line: bytes, received: int) -> int:
    """The size in a chunk-size line (without CRLF; extensions ignored); ``received`` is the body
    size so far, to refuse a body growing beyond 1 MiB before reading it."""
    text = line.split(b";", 1)[0].strip(b" \t").decode("latin-1")
    if not text or not set(text) <= _HEX:
        raise HttpError(400, f"malformed chunk size {text[:20]!r} in the request body")
    digits = text.lstrip("0")
    if len(digits) > 8 or received + int(digits or "0", 16) > wire.MAX_BODY:
        raise HttpError(413, "the request body is larger than 1 MiB")
    return int(digits or "0", 16)


def _abridged(digits: str) -> str:
    return digits if len(digits) <= 20 else f"{digits[:10]}...({len(digits)} digits)"
