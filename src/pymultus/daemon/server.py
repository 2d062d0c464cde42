"""A small HTTP/1.1 server on a unix socket with bounded concurrency (DESIGN item 8).

Three kinds of threads, all fixed in number:

* one acceptor: ``accept()`` and hand the connection to the I/O queue (bounded; when full the
  connection gets an immediate 503 and is closed);
* a few I/O threads: read and validate one request (headers ≤ 64 KiB, body ≤ 1 MiB, 10 s read
  timeout), answer cheap endpoints (probes, stats) at once, and put CNI work on the work queue;
* ``connectionLimit`` workers: run the CNI work and write the response.

So probes never wait behind slow CNI requests, at most ``connectionLimit`` requests run at once,
at most ``queue_limit`` more wait, and a burst beyond that gets HTTP 503 with CNI code 11 instead
of exhausting memory (Go Multus spawns a goroutine per connection: multus#1346). No keep-alive:
one request per connection, like Go Multus's server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable

from pymultus import jsonio
from pymultus.daemon import wire
from pymultus.errors import TRY_AGAIN_LATER

log = logging.getLogger("pymultus.daemon.server")

READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
IO_THREADS = 4
IO_QUEUE_LIMIT = 512

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class Request:
    __slots__ = ("body", "headers", "method", "path")

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
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


# A route answers a request either at once (Response) or with work to queue (a callable that
# returns the Response, run by a worker).
Work = Callable[[], Response]
Router = Callable[[Request], "Response | Work"]


class _BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class ServerStats:
    """Counters the metrics and the /debug/stats endpoint read; updated under ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.in_flight_max = 0
        self.rejected = 0
        self.served = 0

    def snapshot(self, queued: int) -> dict[str, int]:
        with self.lock:
            return {
                "in_flight": self.in_flight,
                "in_flight_max": self.in_flight_max,
                "queued": queued,
                "rejected": self.rejected,
                "served": self.served,
            }


class UnixHttpServer:
    def __init__(
        self,
        socket_path: str,
        router: Router,
        *,
        workers: int,
        queue_limit: int,
        io_threads: int = IO_THREADS,
        on_in_flight: Callable[[int, int], None] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.router = router
        self.workers = workers
        self.io_threads = io_threads
        self.stats = ServerStats()
        self._on_in_flight = on_in_flight  # (in_flight, queued) → metrics
        self._io_queue: queue.Queue[socket.socket | None] = queue.Queue(IO_QUEUE_LIMIT)
        self._work_queue: queue.Queue[tuple[socket.socket, Work] | None] = queue.Queue(queue_limit)
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._draining = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        directory = os.path.dirname(self.socket_path)
        # Go Multus removes the whole socketDir; we only remove our stale socket, so a mistyped
        # socketDir (e.g. "/run/") can never wipe a host directory.
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
                os.unlink(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        listener.listen(256)
        self._listener = listener
        self._spawn("pymultus-accept", self._accept_loop)
        for index in range(self.io_threads):
            self._spawn(f"pymultus-io-{index}", self._io_loop)
        for index in range(self.workers):
            self._spawn(f"pymultus-worker-{index}", self._work_loop)
        log.info(
            "serving on %s with %d workers, queue of %d",
            self.socket_path,
            self.workers,
            self._work_queue.maxsize,
        )

    def queued(self) -> int:
        return self._work_queue.qsize()

    def drain(self, timeout: float) -> bool:
        """Stop taking new CNI work (503, code 11) and wait until queued and running work is
        done, at most ``timeout`` seconds; True when everything finished."""
        self._draining.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.stats.lock:
                busy = self.stats.in_flight
            if busy == 0 and self._work_queue.empty() and self._io_queue.empty():
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Stop accepting, remove the socket, stop the threads (after ``drain``)."""
        self._closing.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        for _ in range(self.io_threads):
            with contextlib.suppress(queue.Full):
                self._io_queue.put_nowait(None)
        for _ in range(self.workers):
            with contextlib.suppress(queue.Full):
                self._work_queue.put_nowait(None)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- threads ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                conn, _ = listener.accept()
            except OSError:
                if self._closing.is_set():
                    return
                time.sleep(0.05)  # EMFILE and friends: back off instead of spinning
                continue
            try:
                self._io_queue.put_nowait(conn)
            except queue.Full:
                self._reject(conn, "too many connections waiting to be read")

    def _io_loop(self) -> None:
        while True:
            conn = self._io_queue.get()
            if conn is None:
                return
            try:
                self._read_and_route(conn)
            except Exception:
                log.exception("unexpected error while reading a request")
                _close(conn)

    def _read_and_route(self, conn: socket.socket) -> None:
        conn.settimeout(READ_TIMEOUT)
        try:
            request = _read_request(conn)
        except _BadRequest as bad:
            _send(conn, bad.response)
            return
        except OSError:
            _close(conn)  # the client went away or was too slow
            return
        outcome = self.router(request)
        if isinstance(outcome, Response):
            _send(conn, outcome)
            return
        if self._draining.is_set():
            self._reject(conn, "the daemon is shutting down")
            return
        try:
            self._work_queue.put_nowait((conn, outcome))
        except queue.Full:
            self._reject(conn, "too many requests in flight and queued")
            return
        self._report()

    def _work_loop(self) -> None:
        while True:
            item = self._work_queue.get()
            if item is None:
                return
            conn, work = item
            with self.stats.lock:
                self.stats.in_flight += 1
                self.stats.in_flight_max = max(self.stats.in_flight_max, self.stats.in_flight)
            self._report()
            try:
                try:
                    response = work()
                except Exception:
                    log.exception("unexpected error while handling a request")
                    response = Response.cni_error(500, 999, "internal error in the pymultus daemon")
                _send(conn, response)
            finally:
                with self.stats.lock:
                    self.stats.in_flight -= 1
                    self.stats.served += 1
                self._report()

    def _reject(self, conn: socket.socket, why: str) -> None:
        with self.stats.lock:
            self.stats.rejected += 1
        log.warning("rejecting a request: %s", why)
        _send(conn, Response.cni_error(503, TRY_AGAIN_LATER, f"pymultus daemon is busy: {why}; try again"))

    def _report(self) -> None:
        if self._on_in_flight is not None:
            with self.stats.lock:
                in_flight = self.stats.in_flight
            self._on_in_flight(in_flight, self._work_queue.qsize())


def _read_request(conn: socket.socket) -> Request:
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(data) > wire.MAX_HEADER:
            raise _BadRequest(Response.cni_error(431, 6, "the request headers are larger than 64 KiB"))
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("connection closed before the end of the request headers")
        data += chunk
    head, rest = data[:end], data[end + 4 :]
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(Response.cni_error(400, 6, f"malformed HTTP request line {lines[0][:80]!r}"))
    method, target, _ = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest(Response.cni_error(400, 6, f"malformed HTTP header line {line[:80]!r}"))
        headers[name.strip().lower()] = value.strip()
    path = target.split("?", 1)[0]
    if path.startswith("http://"):  # absolute-form target, e.g. http://dummy/cni from Go clients
        path = "/" + path[len("http://") :].partition("/")[2]
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _read_chunked(conn, rest)
    elif "content-length" in headers:
        raw_length = headers["content-length"]
        if not raw_length.isdigit():
            raise _BadRequest(Response.cni_error(400, 6, f"invalid Content-Length {raw_length[:20]!r}"))
        length = int(raw_length)
        if length > wire.MAX_BODY:
            raise _BadRequest(
                Response.cni_error(413, 6, f"the request body of {length} bytes is larger than 1 MiB")
            )
        body = rest
        while len(body) < length:
            chunk = conn.recv(min(65536, length - len(body)))
            if not chunk:
                raise OSError("connection closed in the middle of the request body")
            body += chunk
        body = body[:length]
    elif method == "POST":
        raise _BadRequest(Response.cni_error(411, 6, "a POST request needs a Content-Length"))
    return Request(method, path, headers, body)


def _read_chunked(conn: socket.socket, data: bytes) -> bytes:
    body = b""
    while True:
        while b"\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise OSError("connection closed in the middle of a chunked body")
            data += chunk
        size_line, _, data = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise _BadRequest(
                Response.cni_error(400, 6, "malformed chunk size in the request body")
            ) from None
        if len(body) + size > wire.MAX_BODY:
            raise _BadRequest(Response.cni_error(413, 6, "the request body is larger than 1 MiB"))
        while len(data) < size + 2:
            chunk = conn.recv(65536)
            if not chunk:
                raise OSError("connection closed in the middle of a chunked body")
            data += chunk
        if size == 0:
            return body
        body += data[:size]
        data = data[size + 2 :]


def _send(conn: socket.socket, response: Response) -> None:
    try:
        conn.settimeout(WRITE_TIMEOUT)
        conn.sendall(response.to_bytes())
        # Half-close and let the client read everything before the socket goes away.
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        _close(conn)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.close()
