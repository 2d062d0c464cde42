"""The daemon's HTTP/1.1 server on a unix socket: bounded I/O and bounded CNI work (DESIGN item 8).

Two kinds of threads, both fixed in number:

* one I/O thread running an asyncio event loop: it accepts connections, reads each request under
  one whole-request deadline (head and body), answers cheap endpoints (probes, stats) and
  refusals at once, and closes every connection;
* ``connectionLimit`` workers (:mod:`pymultus.daemon.workers`) running the CNI work from a queue
  of at most ``queue_limit`` requests; a queued request whose client has gone is not run. A
  worker sends its answer itself as far as the socket takes it at once (all of a CNI answer, in
  practice); the event loop sends any rest under its write deadline.

Limits, so that no client can take the daemon offline or grow it without bound:

* a request must be complete ``REQUEST_DEADLINE`` (10 s) after its connection was accepted, else
  it gets 408 (CNI code 11) and the connection is closed. A slow client costs a few KiB on the
  event loop, never a thread, so slow clients delay neither probes nor other requests;
* at most ``max_connections`` connections are open (default ``connectionLimit`` +
  ``queue_limit`` + ``READ_ROOM``); one more is answered 503 (CNI code 11) and closed;
* request heads up to ``wire.MAX_HEADER``, bodies up to ``wire.MAX_BODY``, and at most
  ``BODY_BUDGET`` bytes of bodies held at once (beyond: 503); malformed or ambiguous framing gets
  400/411/413/431 with a CNI error (:mod:`pymultus.daemon.http1`), never a traceback.

Probes never wait behind CNI work: the event loop answers them while every worker is busy. No
keep-alive: one request per connection, like Go Multus's server, whose request and response
format is unchanged (a Go ``multus-shim`` works against this daemon).

Why asyncio streams, rather than hardening the hand-written threaded server or taking a PyPI
server: the threaded server read each request on one of four I/O threads with a per-``recv``
timeout, so four clients sending a byte a second held all of them. Fixing that in a threaded
design means a thread per connection (hundreds for hundreds of slow clients) or a hand-written
selector loop; the standard library's asyncio is that loop, well kept, with ``asyncio.timeout``
for the whole-request deadline and bounded stream buffers. Its import cost does not matter in a
long-running daemon, and it is never imported on the CNI hot path. A PyPI server (uvicorn or
hypercorn, on h11) would add a dependency and an ASGI layer in exchange for ~100 lines of strict
framing (``http1``), and would still need the bounded worker pool, the queue and the check for
departed clients, which are ours either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable
from typing import Any

from pymultus.daemon import wire
from pymultus.daemon.http1 import HttpError, Request, Response, chunk_size, parse_head
from pymultus.daemon.metrics import NullMetrics
from pymultus.daemon.workers import ServerStats, Work, WorkerPool
from pymultus.errors import INTERNAL, TRY_AGAIN_LATER

__all__ = ["Request", "Response", "Router", "ServerStats", "UnixHttpServer", "Work"]

log = logging.getLogger("pymultus.daemon.server")

REQUEST_DEADLINE = 10.0  # seconds from accept to a complete request
WRITE_TIMEOUT = 10.0
LINGER = 1.0  # seconds to drop the rest of a refused request before closing (see _write)
READ_ROOM = 256  # connections allowed beyond the CNI work: probes, requests being read
BODY_BUDGET = 32 << 20  # bytes of request bodies held at once (a real body is a few KiB)
BACKLOG = 256

# A route answers a request either at once (Response) or with work for a worker to run.
Router = Callable[[Request], "Response | Work"]


class _Busy(Exception):
    """Refused for lack of room: 503 with CNI code 11."""

    def __init__(self, reason: str, why: str) -> None:
        super().__init__(why)
        self.reason = reason  # the metrics label


class _Connection:
    __slots__ = ("complete", "held", "queued")

    def __init__(self) -> None:
        self.held = 0  # bytes of BODY_BUDGET this connection's body holds
        self.complete = False  # the whole request was read
        self.queued = False  # it has CNI work (queued, running or being answered)


class UnixHttpServer:
    def __init__(
        self,
        socket_path: str,
        router: Router,
        *,
        workers: int,
        queue_limit: int,
        max_connections: int | None = None,
        request_deadline: float = REQUEST_DEADLINE,
        metrics: NullMetrics | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.router = router
        self.workers = workers
        self.max_connections = max_connections or workers + queue_limit + READ_ROOM
        self.request_deadline = request_deadline
        self.metrics = metrics or NullMetrics()
        self.stats = ServerStats()
        self._pool = WorkerPool(workers, queue_limit, self.stats, self.metrics)
        self._open_work = 0  # CNI requests queued, running or being answered; under stats.lock
        self._body_bytes = 0  # event-loop thread only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._io_thread: threading.Thread | None = None
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
        os.chmod(self.socket_path, 0o600)  # before listen(): nobody else can ever connect
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_loop_error)
        self._loop = loop
        self._io_thread = threading.Thread(
            target=_run_until_stopped, args=(loop,), name="pymultus-io", daemon=True
        )
        self._io_thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(listener), loop).result(30)
        self._pool.start()
        log.info(
            "serving on %s with %d workers, queue of %d, at most %d connections",
            self.socket_path,
            self.workers,
            self._pool.queue_limit,
            self.max_connections,
        )

    async def _listen(self, listener: socket.socket) -> None:
        self._server = await asyncio.start_unix_server(
            self._serve, sock=listener, limit=wire.MAX_HEADER + 4, backlog=BACKLOG
        )

    def queued(self) -> int:
        return self._pool.queued()

    def drain(self, timeout: float) -> bool:
        """Stop taking new CNI work (503, code 11) and wait until queued and running work is
        answered, at most ``timeout`` seconds; True when everything finished."""
        self._draining.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.stats.lock:
                if self._open_work == 0:
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Stop accepting, cut open connections, remove the socket, stop the threads (after
        ``drain``)."""
        loop, self._loop = self._loop, None
        if loop is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            if self._io_thread is not None:
                self._io_thread.join(10)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._pool.stop()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the event loop: one coroutine per connection ---------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        connection = _Connection()
        with self.stats.lock:
            self.stats.connections += 1
            over = self.stats.connections > self.max_connections
        try:
            if over:
                response: Response | bytes | None = self._reject(
                    _Busy("connection_limit", f"more than {self.max_connections} connections are open")
                )
            else:
                response = await self._respond(reader, writer, connection)
            if isinstance(response, Response):
                response = response.to_bytes()
            if response:  # b"": a worker sent the whole answer and half-closed
                await _write(writer, response, None if connection.complete else reader)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error while serving a connection")
        finally:
            writer.transport.abort()  # no-op after a clean close; frees the fd at once otherwise
            self._body_bytes -= connection.held
            with self.stats.lock:
                self.stats.connections -= 1
                if connection.queued:
                    self._open_work -= 1
            if task is not None:
                self._tasks.discard(task)

    async def _respond(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: _Connection
    ) -> Response | bytes | None:
        """The answer to this connection's request, or the bytes of it a worker left to send;
        None when there is nobody to answer."""
        try:
            async with asyncio.timeout(self.request_deadline):
                request = await self._read_request(reader, connection)
            connection.complete = True
        except TimeoutError:
            with self.stats.lock:
                self.stats.timed_out += 1
            self.metrics.rejected("timeout")
            log.warning(
                "closing a connection whose request was not complete after %g s", self.request_deadline
            )
            return Response.cni_error(
                408, TRY_AGAIN_LATER, f"the request was not complete after {self.request_deadline:g} s"
            )
        except HttpError as bad:
            with self.stats.lock:
                self.stats.malformed += 1
            self.metrics.rejected("malformed")
            log.warning("refusing a malformed request (HTTP %d): %s", bad.response.status, bad)
            return bad.response
        except _Busy as busy:
            return self._reject(busy)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None  # the client went away before its request was complete
        try:
            outcome = self.router(request)
        except Exception:
            log.exception("unexpected error while routing %s %s", request.method, request.path[:100])
            return Response.cni_error(500, INTERNAL, "internal error in the pymultus daemon")
        if isinstance(outcome, Response):
            return outcome
        return await self._queue(outcome, request, writer, connection)

    async def _read_request(self, reader: asyncio.StreamReader, connection: _Connection) -> Request:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError(
                431, f"the request headers are larger than {wire.MAX_HEADER // 1024} KiB"
            ) from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise HttpError(
                    400, "the connection was closed before the end of the request headers"
                ) from None
            raise
        head = parse_head(raw[:-4])
        if head.chunked:
            body = await self._read_chunked(reader, connection)
        else:
            self._hold(connection, head.length)
            body = await reader.readexactly(head.length)
        return Request(head.method, head.path, head.headers, body)

    async def _read_chunked(self, reader: asyncio.StreamReader, connection: _Connection) -> bytes:
        body = bytearray()
        try:
            while True:
                size = chunk_size((await reader.readuntil(b"\r\n"))[:-2], len(body))
                if size == 0:
                    break
                self._hold(connection, size)
                chunk = await reader.readexactly(size + 2)
                if chunk[-2:] != b"\r\n":
                    raise HttpError(400, "a chunk of the request body does not end with CRLF")
                body += chunk[:-2]
            trailers = 0
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                trailers += len(line)
                if trailers > wire.MAX_HEADER:
                    raise HttpError(431, "the request trailers are too large")
        except asyncio.LimitOverrunError:
            raise HttpError(400, "a chunk-size or trailer line of the request body is too long") from None
        return bytes(body)

    def _hold(self, connection: _Connection, size: int) -> None:
        if self._body_bytes + size > BODY_BUDGET:
            raise _Busy("body_budget", "too many request bodies are being read at once")
        self._body_bytes += size
        connection.held += size

    async def _queue(
        self, work: Work, request: Request, writer: asyncio.StreamWriter, connection: _Connection
    ) -> Response | bytes | None:
        if self._draining.is_set():
            return self._reject(_Busy("shutting_down", "the daemon is shutting down"))
        sock = writer.get_extra_info("socket").dup()  # the worker's, closed by the pool
        try:
            future = self._pool.submit(work, request, sock)
        except queue.Full:
            sock.close()
            return self._reject(_Busy("queue_full", "too many requests in flight and queued"))
        with self.stats.lock:
            self._open_work += 1
        connection.queued = True
        # The loop leaves the socket alone from now on; the worker checks it, runs the work and
        # sends the answer (pymultus.daemon.workers), the loop only what the worker could not.
        transport: asyncio.Transport = writer.transport  # type: ignore[assignment]  # a socket's
        transport.pause_reading()
        return await asyncio.wrap_future(future)

    def _reject(self, busy: _Busy) -> Response:
        with self.stats.lock:
            self.stats.rejected += 1
        self.metrics.rejected(busy.reason)
        log.warning("rejecting a request: %s", busy)
        return Response.cni_error(503, TRY_AGAIN_LATER, f"pymultus daemon is busy: {busy}; try again")


def _run_until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_forever()
    finally:
        loop.close()


async def _write(writer: asyncio.StreamWriter, data: bytes, unread: asyncio.StreamReader | None) -> None:
    """Send the answer, half-close and close, within WRITE_TIMEOUT (a client that does not read
    its answer cannot keep the connection).

    ``unread``: the request was not read to its end (refused early). Closing a unix socket with
    unread bytes makes the client's next read fail with ECONNRESET, which can lose the answer,
    so the rest is read and dropped first, for at most LINGER seconds."""
    try:
        async with asyncio.timeout(WRITE_TIMEOUT):
            writer.write(data)
            if writer.can_write_eof():
                writer.write_eof()
            await writer.drain()
        if unread is not None:
            async with asyncio.timeout(LINGER):
                while await unread.read(65536):
                    pass
        writer.close()
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        pass  # the caller aborts the connection


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's own errors (e.g. accept() failing with EMFILE, after which asyncio
    retries a second later): one line for OS errors, a traceback only for the unexpected."""
    exc = context.get("exception")
    if isinstance(exc, OSError):
        log.warning("%s: %s", context.get("message", "event loop error"), exc)
    else:
        loop.default_exception_handler(context)
