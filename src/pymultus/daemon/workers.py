"""The daemon's CNI workers: ``connectionLimit`` threads running queued CNI work.

Delegates are subprocesses, so the GIL is free while a worker waits for them. A queued request
whose client has closed its connection is not run: the worker checks the socket just before it
starts the work, because a runtime whose CNI timeout expired retries the ADD and the stale one
would collide with the retry (issue 9, defect 2 in thick mode). It is logged and counted
(``abandoned``, ``pymultus_requests_abandoned_total``).

The worker sends the answer itself and half-closes the connection, so the shim has its answer
(and exits) without waiting for the event loop to take the answer over from this thread
(~0.2 ms per request on 2 busy CPUs, issue 12). It sends only what the socket takes at once
(a CNI answer is a few KiB, the socket buffer far larger); anything left, or an error, goes back
to the event loop, which writes it under its write deadline. A worker never blocks on a client.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import select
import socket
import threading
from collections.abc import Callable

from pymultus.daemon import wire
from pymultus.daemon.http1 import Request, Response
from pymultus.daemon.metrics import NullMetrics
from pymultus.errors import INTERNAL, MultusError

log = logging.getLogger("pymultus.daemon.workers")

# What a route returns for CNI work: a callable that a worker runs for the Response.
Work = Callable[[], Response]


class ServerStats:
    """Counters the metrics and the /debug/stats endpoint read; updated under ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.in_flight_max = 0
        self.rejected = 0
        self.served = 0
        self.abandoned = 0
        self.timed_out = 0
        self.malformed = 0
        self.connections = 0

    def snapshot(self, queued: int) -> dict[str, int]:
        with self.lock:
            return {
                "in_flight": self.in_flight,
                "in_flight_max": self.in_flight_max,
                "queued": queued,
                "rejected": self.rejected,
                "served": self.served,
                "abandoned": self.abandoned,
                "timed_out": self.timed_out,
                "malformed": self.malformed,
                "connections": self.connections,
            }


class _Job:
    """Queued CNI work on its own duplicate of the connection's socket (the event loop may close
    its descriptor meanwhile, and the number be reused: this one stays the client's).

    ``future`` gets the bytes of the answer that are still to be sent (b"" once the worker sent
    everything and half-closed), or None when the client had gone."""

    __slots__ = ("future", "request", "sock", "work")

    def __init__(self, work: Work, request: Request, sock: socket.socket) -> None:
        self.work = work
        self.request = request
        self.sock = sock
        self.future: concurrent.futures.Future[bytes | None] = concurrent.futures.Future()


class WorkerPool:
    def __init__(self, workers: int, queue_limit: int, stats: ServerStats, metrics: NullMetrics) -> None:
        self.workers = workers
        self.stats = stats
        self.metrics = metrics
        self._queue: queue.Queue[_Job | None] = queue.Queue(queue_limit)
        self._threads: list[threading.Thread] = []

    @property
    def queue_limit(self) -> int:
        return self._queue.maxsize

    def start(self) -> None:
        for index in range(self.workers):
            thread = threading.Thread(target=self._work_loop, name=f"pymultus-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break  # the workers are daemon threads: they end with the process

    def queued(self) -> int:
        return self._queue.qsize()

    def submit(
        self, work: Work, request: Request, sock: socket.socket
    ) -> concurrent.futures.Future[bytes | None]:
        """Queue ``work`` for ``request`` on ``sock`` (a duplicate the pool closes once the job
        is done); queue.Full when there is no room (the caller closes it then). The future gets
        the bytes of the answer left for the caller to send (b"": all sent), or None when the
        client went away first."""
        job = _Job(work, request, sock)
        self._queue.put_nowait(job)
        self.report()
        return job.future

    def _work_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run(job)
            finally:
                job.sock.close()

    def _run(self, job: _Job) -> None:
        if _peer_gone(job.sock.fileno()):
            self._abandon(job)
            return
        if not job.future.set_running_or_notify_cancel():
            return  # the server is closing
        with self.stats.lock:
            self.stats.in_flight += 1
            self.stats.in_flight_max = max(self.stats.in_flight_max, self.stats.in_flight)
        self.report()
        try:
            data = job.work().to_bytes()
        except Exception:
            log.exception("unexpected error while handling a request")
            data = Response.cni_error(500, INTERNAL, "internal error in the pymultus daemon").to_bytes()
        finally:
            with self.stats.lock:
                self.stats.in_flight -= 1
                self.stats.served += 1
            self.report()
        job.future.set_result(_send(job.sock, data))

    def _abandon(self, job: _Job) -> None:
        with self.stats.lock:
            self.stats.abandoned += 1
        self.metrics.abandoned()
        log.warning(
            "not running the queued %s: its client closed the connection while it waited for a worker",
            _describe(job.request),
        )
        if job.future.set_running_or_notify_cancel():
            job.future.set_result(None)
        self.report()

    def report(self) -> None:
        with self.stats.lock:
            in_flight = self.stats.in_flight
        self.metrics.in_flight(in_flight, self._queue.qsize())


def _send(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` as far as the socket takes it now, half-closing once all is sent; what is
    left for the event loop (all of it when the socket would block or failed: the loop's write
    then meets the same error and closes the connection)."""
    try:
        sent = sock.send(data)  # the descriptor is non-blocking (asyncio's): never waits
    except OSError:
        return data
    if sent < len(data):
        return data[sent:]
    try:
        sock.shutdown(socket.SHUT_WR)  # the client's read ends here: it need not wait for close
    except OSError:
        pass  # the client has gone; the loop closes the connection either way
    return b""


def _peer_gone(fd: int) -> bool:
    """Whether the client closed its end: POLLHUP on a unix stream socket means both directions
    are shut, as when the client process closed the socket or died (a client that only shut
    down its sending side still waits for the answer, so POLLRDHUP alone does not count)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)  # POLLHUP, POLLERR and POLLNVAL are always reported
    gone = select.POLLHUP | select.POLLERR | select.POLLNVAL
    return any(events & gone for _, events in poller.poll(0))


def _describe(request: Request) -> str:
    """ "ADD request for container X (pod ns/name)" for the log, best effort."""
    try:
        env = wire.decode_request(request.body)[0]
    except MultusError:
        return f"{request.method} {request.path[:100]} request"
    pod = wire.pod_of(env)
    return f"{env.get('CNI_COMMAND', '?')} request for container {env.get('CNI_CONTAINERID', '?')[:80]}" + (
        f" (pod {pod[:200]})" if pod else ""
    )
