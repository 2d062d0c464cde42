"""A minimal HTTP/1.1 client over ``_socket`` (+ ``_ssl``), for the Kubernetes API only.

Why not ``http.client``: it imports ``email.parser`` and friends and costs ~13 ms of start-up per
process on these machines, and the thin ``multus`` executable starts twice per pod. The API
server speaks plain HTTP/1.1 to us; we need exactly: one request line + headers out, a status line
+ headers in, a ``Content-Length`` or ``chunked`` body, keep-alive reuse, and a line reader for
watch streams. That fits here.

Why the C modules ``_socket`` and ``_ssl`` instead of ``socket`` and ``ssl``: the Python wrappers
cost start-up that buys us nothing. Medians of 25 fresh ``python3.11 -IS`` processes: bare 8.2 ms;
``import _socket`` 8.2, ``import socket`` 16.3 (it imports ``enum``, ``selectors``,
``collections``...); ``import _ssl`` 11.1, ``import ssl`` 26.8 (it imports ``re``, ``base64``);
and a *str* host name makes ``getaddrinfo`` (and ``ssl``) load the ``idna`` codec: +7 ms. With
the C modules, the Kubernetes path's start (imports + TLS context + name resolution) went from
32.7 to 19.3 ms and a thin ADD against the fake API server got 13-16 ms faster (paired medians).
The wrappers' ``SSLSocket`` is itself a thin layer over ``_ssl._SSLContext._wrap_socket``; we call
the same C functions with the same arguments, so OpenSSL does the same work:
``PROTOCOL_TLS_CLIENT`` defaults (certificate *and* host name/IP verification on, checked by
OpenSSL during the handshake; ``OP_IGNORE_UNEXPECTED_EOF``), TLS >= 1.2, and an ``SSLEOFError``
read as the end of the stream like ``suppress_ragged_eofs``. One thing the wrapper does that we
must do ourselves: refuse to handshake without a server name when ``check_hostname`` is on
(``_ssl`` would silently skip the name check). If a future Python lacks these private names,
:data:`NATIVE` is False (decided once, at import) and the public ``socket``/``ssl`` modules are
used instead — slower, same behaviour (``tests/kube/test_client_tls.py`` runs both).

Transport failures surface as ``OSError`` (``ConnectionError``, ``TimeoutError``, ``SSLError``,
``SSLCertVerificationError``) or :class:`ProtocolError`; the Kubernetes client translates them
into ``pymultus.errors``. This module is on the hot path: standard library only, no
``re``/``typing`` at run time.
"""

from __future__ import annotations

import _socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _ssl
    from collections.abc import Iterator, Sequence
    from typing import Protocol

    TlsContext = _ssl._SSLContext  # ssl.SSLContext is a subclass

    class Stream(Protocol):
        """What :class:`Connection` needs of a connected socket (plain or TLS)."""

        def recv(self, size: int, /) -> bytes: ...
        def sendall(self, data: bytes, /) -> None: ...
        def settimeout(self, timeout: float | None, /) -> None: ...
        def shutdown(self, how: int, /) -> None: ...
        def close(self) -> None: ...

    class _TlsObject(Protocol):
        """``_ssl._SSLSocket`` (not in typeshed)."""

        def do_handshake(self) -> None: ...
        def read(self, size: int, /) -> bytes: ...
        def write(self, data: memoryview, /) -> int: ...


def _native_tls() -> bool:
    """Are the C-level names we use there? (They are in CPython 3.7 to 3.14.)"""
    try:
        import _ssl
    except ImportError:  # a Python without OpenSSL: https fails in tls_client_context, clearly
        return False
    tls_socket = getattr(_ssl, "_SSLSocket", None)
    return (
        hasattr(_ssl, "_SSLContext")
        and hasattr(_ssl._SSLContext, "_wrap_socket")
        and hasattr(_ssl, "SSLEOFError")
        and tls_socket is not None
        and all(hasattr(tls_socket, name) for name in ("do_handshake", "read", "write"))
        and all(hasattr(_socket, name) for name in ("socket", "getaddrinfo", "SOCK_STREAM"))
    )


NATIVE = _native_tls()
if NATIVE:
    from _ssl import PROTOCOL_TLS_CLIENT, SSLEOFError, _SSLContext

# The values of ``ssl.TLSVersion.TLSv1_2`` and ``ssl.CERT_NONE`` (OpenSSL's own numbers), so that
# callers need not import ``ssl`` to configure a context.
TLS_1_2 = 0x0303
CERT_NONE = 0

_MAX_HEAD = 64 * 1024  # status line + headers; the API server sends < 1 KiB
_MAX_LINE = 64 * 1024 * 1024  # one watch event (a huge object) or one chunk-size line
_RECV = 65536


class ProtocolError(ConnectionError):
    """The peer broke HTTP/1.1 framing (or closed the connection in the middle of a message)."""


class Response:
    """A complete response: status, lower-cased header names, the whole body."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


class Connection:
    """One TCP (+TLS) connection to one server, reused for consecutive requests (keep-alive).

    Not thread-safe: the Kubernetes client keeps a pool and hands each connection to one
    thread at a time.
    """

    __slots__ = (
        "_buf",
        "_sock",
        "deferred",
        "host",
        "port",
        "requests",
        "server_hostname",
        "ssl_context",
        "timeout",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: TlsContext | None = None,
        server_hostname: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname or host
        self.timeout = timeout
        self._sock: Stream | None = None
        self._buf = b""
        self.requests = 0  # requests sent on the current socket; > 0 means "reused"
        # A request whose answer is still to be read (the Kubernetes client's "send now, read
        # later"); whatever it holds, the owner reads that answer before the next request.
        self.deferred: object = None

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        if not NATIVE:
            self._sock = self._connect_public()
        else:
            raw = _open_tcp(self.host, self.port, self.timeout)
            try:
                # Requests go out in one write and responses are awaited: Nagle only adds latency.
                raw.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                ctx = self.ssl_context
                self._sock = raw if ctx is None else _TlsStream.handshake(ctx, raw, self.server_hostname)
            except BaseException:
                raw.close()
                raise
        self._buf = b""
        self.requests = 0

    def _connect_public(self) -> Stream:
        """The same connection through the public ``socket``/``ssl`` modules (see the docstring)."""
        import socket

        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                import ssl

                ctx = self.ssl_context
                if not isinstance(ctx, ssl.SSLContext):
                    raise TypeError("without the native TLS path the context must be an ssl.SSLContext")
                sock = ctx.wrap_socket(sock, server_hostname=self.server_hostname)
        except BaseException as exc:
            sock.close()
            _close_half_made_ssl_socket(exc)
            raise
        return sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._buf = b""
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def shutdown(self) -> None:
        """Shut the socket down so that a read blocked in another thread returns at once."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(_socket.SHUT_RDWR)
            except OSError:
                pass

    def send_request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """Send one request (connecting first when needed) as a single write."""
        if self._sock is None:
            self.connect()
        sock = self._sock
        assert sock is not None
        sock.settimeout(self.timeout if timeout is None else timeout)
        lines = [f"{method} {target} HTTP/1.1"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.requests += 1
        sock.sendall(head + body if body else head)

    def read_head(self) -> tuple[int, str, dict[str, str]]:
        """Read the status line and headers; skips ``100 Continue`` interim responses."""
        while True:
            end = self._buf.find(b"\r\n\r\n")
            while end < 0:
                if len(self._buf) > _MAX_HEAD:
                    raise ProtocolError("response headers are too long")
                self._fill()
                end = self._buf.find(b"\r\n\r\n")
            head, self._buf = self._buf[:end].decode("latin-1"), self._buf[end + 4 :]
            lines = head.split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise ProtocolError(f"bad status line {lines[0][:80]!r}")
            status = int(parts[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ProtocolError(f"bad header line {line[:80]!r}")
                key = name.strip().lower()
                value = value.strip()
                # Repeated headers are joined like RFC 9110 allows for list-valued fields.
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            if status == 100:
                continue
            if parts[0] == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
                headers.setdefault("connection", "close")
            return status, parts[2] if len(parts) > 2 else "", headers

    def read_body(self, method: str, status: int, headers: dict[str, str]) -> bytes:
        """The whole body; afterwards the connection is ready for the next request or closed."""
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = b"".join(self.iter_chunks())
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise ProtocolError(f"bad Content-Length {length!r}")
            body = self._read_exact(int(length))
        else:
            body = self._read_to_eof()
            self.close()
            return body
        if "close" in headers.get("connection", "").lower():
            self.close()
        return body

    def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        """Send a request and read the complete response."""
        self.send_request(method, target, headers, body, timeout=timeout)
        status, reason, response_headers = self.read_head()
        return Response(status, reason, response_headers, self.read_body(method, status, response_headers))

    def iter_chunks(self) -> Iterator[bytes]:
        """The data of a chunked body, chunk by chunk, as it arrives; ends at the ``0`` chunk.

        A connection cut before the terminating chunk raises :class:`ProtocolError`.
        """
        while True:
            line = self._read_line()
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                # Trailer section: header lines up to an empty line.
                while self._read_line():
                    pass
                return
            data = self._read_exact(size)
            if self._read_exact(2) != b"\r\n":
                raise ProtocolError("chunk data is not followed by CRLF")
            yield data

    def iter_lines(self, headers: dict[str, str]) -> Iterator[bytes]:
        """The body split on ``\\n`` (watch streams: one JSON event per line).

        Lines are cut on newlines, never on chunk boundaries: a chunk may end in the middle of an
        event (kube-apiserver flushes only when its queue is empty). Empty lines are skipped.
        """
        pending = b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            pieces: Iterator[bytes] = self.iter_chunks()
        else:
            pieces = self._iter_to_eof()
        for piece in pieces:
            pending += piece
            if b"\n" not in piece:
                if len(pending) > _MAX_LINE:
                    raise ProtocolError("a line of the stream is too long")
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield line
        if pending.strip():
            yield pending

    # -- buffered reading -------------------------------------------------------------------

    def _fill(self) -> None:
        sock = self._sock
        if sock is None:
            raise ProtocolError("connection is closed")
        data = sock.recv(_RECV)
        if not data:
            raise ProtocolError("connection closed by the server in the middle of a response")
        self._buf += data

    def _read_line(self) -> bytes:
        end = self._buf.find(b"\r\n")
        while end < 0:
            if len(self._buf) > _MAX_HEAD:
                raise ProtocolError("line is too long")
            self._fill()
            end = self._buf.find(b"\r\n")
        line, self._buf = self._buf[:end], self._buf[end + 2 :]
        return line

    def _read_exact(self, size: int) -> bytes:
        if len(self._buf) < size:
            parts = [self._buf]
            have = len(self._buf)
            self._buf = b""
            while have < size:
                self._fill()
                parts.append(self._buf)
                have += len(self._buf)
                self._buf = b""
            self._buf = b"".join(parts)
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def _iter_to_eof(self) -> Iterator[bytes]:
        if self._buf:
            data, self._buf = self._buf, b""
            yield data
        sock = self._sock
        while sock is not None:
            data = sock.recv(_RECV)
            if not data:
                break
            yield data
        self.close()

    def _read_to_eof(self) -> bytes:
        return b"".join(self._iter_to_eof())


class _TlsStream:
    """A TLS connection made with ``_ssl`` directly: the part of ``ssl.SSLSocket`` we use."""

    __slots__ = ("_raw", "_tls")

    def __init__(self, raw: _socket.socket, tls: _TlsObject) -> None:
        self._raw = raw  # the TLS object holds only a weak reference to it
        self._tls = tls

    @classmethod
    def handshake(cls, ctx: TlsContext, raw: _socket.socket, server_hostname: str) -> _TlsStream:
        if ctx.check_hostname and not server_hostname:
            # ssl.py refuses this; _ssl would handshake without checking any name.
            raise ValueError("check_hostname requires server_hostname")
        if not server_hostname.isascii():
            server_hostname = server_hostname.encode("idna").decode("ascii")  # what ssl.py sends
        wrap = getattr(ctx, "_wrap_socket")  # noqa: B009 - private, absent from typeshed
        tls: _TlsObject = wrap(raw, False, server_hostname, owner=None, session=None)
        tls.do_handshake()  # verifies the chain and the name/IP; timeout: the raw socket's
        return cls(raw, tls)

    def recv(self, size: int, /) -> bytes:
        try:
            return self._tls.read(size)
        except SSLEOFError:
            return b""  # EOF without close_notify: the end of the stream (ssl's suppress_ragged_eofs)

    def sendall(self, data: bytes, /) -> None:
        view = memoryview(data)
        while view:
            view = view[self._tls.write(view) :]

    def settimeout(self, timeout: float | None, /) -> None:
        self._raw.settimeout(timeout)

    def shutdown(self, how: int, /) -> None:
        self._raw.shutdown(how)

    def close(self) -> None:
        self._raw.close()


class _RawSocket(_socket.socket):
    """``_socket.socket`` that can be weakly referenced, as ``_ssl`` requires (``socket.socket``
    adds the same slot)."""

    __slots__ = ("__weakref__",)


def _open_tcp(host: str, port: int, timeout: float) -> _socket.socket:
    """``socket.create_connection``: each address of ``host`` in the resolver's order."""
    # Bytes: for a str host the C resolver runs the "idna" codec, whose import (stringprep,
    # unicodedata) costs ~7 ms per process; an ASCII name encodes to the same bytes.
    name = host.encode("ascii") if host.isascii() else host.encode("idna")
    error: OSError | None = None
    for family, kind, proto, _canon, address in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        sock = _RawSocket(family, kind, proto)  # close-on-exec: never leaks into delegates
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    if error is not None:
        raise error
    raise OSError(f"no address found for {host}")


def tls_client_context() -> TlsContext:
    """A TLS client context as ``ssl.SSLContext(PROTOCOL_TLS_CLIENT)`` makes it — certificate and
    host name verification on, system defaults for ciphers — with TLS 1.2 as the minimum."""
    if NATIVE:
        ctx = _SSLContext(PROTOCOL_TLS_CLIENT)
    else:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = TLS_1_2
    return ctx


def _close_half_made_ssl_socket(exc: BaseException) -> None:
    """CPython's ``SSLSocket._create`` raises without closing itself when the peer reset the
    connection before the handshake (``getpeername`` fails with an errno other than ENOTCONN); the
    half-made socket only lives on in the traceback. Close it instead of leaking the descriptor."""
    tb = exc.__traceback__
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if obj is not None and type(obj).__name__ == "SSLSocket":
            try:
                obj.close()
            except OSError:
                pass
        tb = tb.tb_next
