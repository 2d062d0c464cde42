"""The unix-socket server in-process (no root): wire format, limits, queueing, draining."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pymultus.daemon import server as server_module
from pymultus.daemon import wire
from pymultus.daemon.http1 import HttpError, Request, Response, chunk_size, parse_head
from pymultus.daemon.server import UnixHttpServer
from pymultus.errors import DecodingError, InvalidEnvironment


@pytest.fixture
def sock_dir() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="pmu", dir="/tmp")
    try:
        yield directory
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


def test_request_round_trip() -> None:
    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "K8S_POD_NAME=p"}
    body = wire.encode_request(env, b'{"cniVersion":"1.0.0"}', {"mac": "aa:bb"})
    got_env, stdin, attrs = wire.decode_request(body)
    assert got_env == env and stdin == b'{"cniVersion":"1.0.0"}' and attrs == {"mac": "aa:bb"}
    # Go's encoding of []byte is standard base64: a Go shim's body decodes the same way.
    assert json.loads(body)["config"] == "eyJjbmlWZXJzaW9uIjoiMS4wLjAifQ=="


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{", DecodingError),
        (b'"x"', DecodingError),
        (b"{}", InvalidEnvironment),
        (b'{"env":{"CNI_COMMAND":1}}', InvalidEnvironment),
        (b'{"env":{}}', InvalidEnvironment),
        (b'{"env":{"CNI_COMMAND":"ADD"},"config":"@@"}', DecodingError),
        (b'{"env":{"CNI_COMMAND":"ADD"},"config":"","interfaceAttributes":[]}', DecodingError),
        (b'{"env":{"CNI_COMMAND":"ADD"},"config":"\\u00e9"}', DecodingError),  # non-ASCII base64
        (b'{"env":{"CNI_COMMAND":"ADD","X":"a\\u0000b"}}', InvalidEnvironment),
        (b'{"env":{"CNI_COMMAND":"ADD","A=B":"c"}}', InvalidEnvironment),
        (b'{"env":{"CNI_COMMAND":"ADD","":"c"}}', InvalidEnvironment),
        (b"[" * 100_000 + b"]" * 100_000, DecodingError),
    ],
)
def test_bad_bodies(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        wire.decode_request(body)


def test_parse_response() -> None:
    assert wire.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA") == (200, b"ok")
    with pytest.raises(ConnectionError):
        wire.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort")
    with pytest.raises(ConnectionError):
        wire.parse_response(b"garbage")


def test_bounded_workers_and_queue(sock_dir: str) -> None:
    """connectionLimit 2, queue 3: 2 run, 3 wait, the rest get 503 with code 11 at once."""
    release = threading.Event()
    running = []

    def router(request: Request) -> Response | object:
        if request.path == "/slow":

            def work() -> Response:
                running.append(1)
                release.wait(10)
                return Response(200, b"done")

            return work
        return Response(200, b"ok")

    server = UnixHttpServer(os.path.join(sock_dir, "s.sock"), router, workers=2, queue_limit=3)  # type: ignore[arg-type]
    server.start()
    try:
        answers: list[tuple[int, bytes]] = []
        lock = threading.Lock()

        def call() -> None:
            got = wire.http_request(server.socket_path, "POST", "/slow", b"{}")
            with lock:
                answers.append(got)

        threads = [threading.Thread(target=call) for _ in range(8)]
        # The first two are running before the rest arrive: a request counts as queued until a
        # worker takes it, so on a loaded machine a burst of eight could see four 503s.
        for thread in threads[:2]:
            thread.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(running) < 2:
            time.sleep(0.01)
        for thread in threads[2:]:
            thread.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(answers) < 3:
            time.sleep(0.01)
        assert sorted(status for status, _ in answers) == [503, 503, 503]
        assert all(json.loads(body)["code"] == 11 for _, body in answers)
        # Probes are answered by the event loop while all workers are busy.
        assert wire.http_request(server.socket_path, "GET", "/healthz") == (200, b"ok")
        assert server.stats.in_flight == 2 and server.queued() == 3
        release.set()
        for thread in threads:
            thread.join(10)
        assert sorted(status for status, _ in answers) == [200] * 5 + [503] * 3
        assert server.stats.in_flight_max == 2
    finally:
        release.set()
        server.drain(5)
        server.close()
    assert not os.path.exists(server.socket_path)


def test_drain_refuses_new_work_and_waits(sock_dir: str) -> None:
    release = threading.Event()

    def router(request: Request) -> object:
        if request.path == "/slow":
            return lambda: (release.wait(10), Response(200, b"done"))[1]
        return Response(200)

    server = UnixHttpServer(os.path.join(sock_dir, "s.sock"), router, workers=1, queue_limit=1)  # type: ignore[arg-type]
    server.start()
    answers: list[tuple[int, bytes]] = []
    thread = threading.Thread(
        target=lambda: answers.append(wire.http_request(server.socket_path, "POST", "/slow", b""))
    )
    thread.start()
    time.sleep(0.2)
    done = threading.Event()
    threading.Thread(target=lambda: (server.drain(5), done.set())).start()
    time.sleep(0.1)
    status, _ = wire.http_request(server.socket_path, "POST", "/slow", b"")
    assert status == 503
    assert not done.is_set()
    release.set()
    thread.join(5)
    assert done.wait(5)
    assert answers == [(200, b"done")]
    server.close()


# -- strict framing (pymultus.daemon.http1) ---------------------------------------------------


@pytest.mark.parametrize(
    ("head", "method", "path", "length", "chunked"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x", "GET", "/healthz", 0, False),
        (b"POST /cni?x=1 HTTP/1.0\r\nContent-Length: 007", "POST", "/cni", 7, False),
        (b"POST http://dummy/cni HTTP/1.1\r\nTransfer-Encoding: Chunked", "POST", "/cni", 0, True),
        (b"POST /cni HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5, 5", "POST", "/cni", 5, False),
        (b"POST /cni HTTP/1.1\r\nContent-Length:\t1048576 ", "POST", "/cni", 1 << 20, False),
    ],
)
def test_parse_head_accepts(head: bytes, method: str, path: str, length: int, chunked: bool) -> None:
    parsed = parse_head(head)
    assert (parsed.method, parsed.path, parsed.length, parsed.chunked) == (method, path, length, chunked)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST /cni HTTP/1.1\r\nContent-Length: " + b"9" * 5000, 413),
        (b"POST /cni HTTP/1.1\r\nContent-Length: 1048577", 413),
        (b"POST /cni HTTP/1.1\r\nContent-Length: -1", 400),
        (b"POST /cni HTTP/1.1\r\nContent-Length: \xb2", 400),  # a latin-1 digit
        (b"POST /cni HTTP/1.1\r\nContent-Length: ", 400),
        (b"POST /cni HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", 400),
        (b"POST /cni HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2", 400),
        (b"POST /cni HTTP/1.1\r\nTransfer-Encoding: chunked, chunked", 400),
        (b"POST /cni HTTP/1.1\r\nTransfer-Encoding: identity", 400),
        (b"POST /cni HTTP/1.1", 411),
        (b"POST /cni HTTP/1.1\r\nHost : x\r\nContent-Length: 0", 400),
        (b"POST /cni HTTP/1.1\r\n folded", 400),
        (b"POST /cni HTTP/1.1\r\nX: a\nb\r\nContent-Length: 0", 400),
        (b"POST cni HTTP/1.1\r\nContent-Length: 0", 400),
        (b"PO ST /cni HTTP/1.1", 400),
        (b"GET /cni HTTP/1.2", 400),
        (b"GET /c\x7fni HTTP/1.1", 400),
        (b"GET / HTTP/1.1" + b"\r\nX: y" * 101, 431),
        (b"GET / HTTP/1.1\r\nX: " + b"y" * (wire.MAX_HEADER + 1), 431),
    ],
)
def test_parse_head_refuses_with_a_cni_error(head: bytes, status: int) -> None:
    with pytest.raises(HttpError) as caught:
        parse_head(head)
    response = caught.value.response
    assert response.status == status
    error = json.loads(response.body)
    assert error["code"] == 6 and error["msg"], error
    assert len(error["msg"]) < 200  # one sentence, never the whole input


def test_chunk_sizes() -> None:
    assert chunk_size(b"1a;ext=1", 0) == 26
    assert chunk_size(b"0", 0) == 0
    for bad, status in ((b"", 400), (b"-2", 400), (b"0x10", 400), (b"f" * 5000, 413), (b"100001", 413)):
        with pytest.raises(HttpError) as caught:
            chunk_size(bad, 0)
        assert caught.value.response.status == status, bad


# -- the server's limits ----------------------------------------------------------------------


def _slow_router(release: threading.Event, ran: list[str]) -> object:
    def router(request: Request) -> Response | object:
        if request.path.startswith("/slow"):

            def work() -> Response:
                ran.append(request.path)
                release.wait(10)
                return Response(200, b"done")

            return work
        return Response(200, b"ok")

    return router


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def _serving(sock_dir: str, **kw: object) -> Iterator[UnixHttpServer]:
    release = threading.Event()
    server = UnixHttpServer(os.path.join(sock_dir, "s.sock"), _slow_router(release, []), **kw)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        release.set()
        server.close()


@contextmanager
def _partial_requests(path: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that send the start of a request and never the rest."""
    socks = [socket.socket(socket.AF_UNIX) for _ in range(count)]
    try:
        for sock in socks:
            sock.settimeout(30)
            sock.connect(path)
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_connections_beyond_the_cap_get_503(sock_dir: str) -> None:
    with _serving(sock_dir, workers=1, queue_limit=1, max_connections=3) as server:
        with _partial_requests(server.socket_path, 3):
            status, body = wire.http_request(server.socket_path, "GET", "/healthz", timeout=10)
            assert status == 503 and json.loads(body)["code"] == 11
        assert server.stats.rejected == 1


def test_a_request_not_complete_at_the_deadline_gets_408(sock_dir: str) -> None:
    with _serving(sock_dir, workers=1, queue_limit=1, request_deadline=0.5) as server:
        with _partial_requests(server.socket_path, 3) as socks:
            for sock in socks:
                status, body = wire.parse_response(_read_until_closed(sock))
                assert status == 408 and json.loads(body)["code"] == 11
        assert wire.http_request(server.socket_path, "GET", "/healthz") == (200, b"ok")
        assert server.stats.timed_out == 3


def test_queued_work_of_a_departed_client_is_not_run(sock_dir: str) -> None:
    release = threading.Event()
    ran: list[str] = []
    server = UnixHttpServer(
        os.path.join(sock_dir, "s.sock"),
        _slow_router(release, ran),  # type: ignore[arg-type]
        workers=1,
        queue_limit=2,
    )
    server.start()
    answers: list[tuple[int, bytes]] = []
    first = threading.Thread(
        target=lambda: answers.append(wire.http_request(server.socket_path, "POST", "/slow1", b"{}"))
    )
    first.start()
    try:
        deadline = time.monotonic() + 10
        while not ran and time.monotonic() < deadline:
            time.sleep(0.01)
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(server.socket_path)
        sock.sendall(b"POST /slow2 HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        while server.queued() != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        sock.close()
        release.set()
        first.join(10)
        while server.stats.abandoned != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        release.set()
        server.drain(5)
        server.close()
    assert answers == [(200, b"done")]
    assert ran == ["/slow1"]
    assert server.stats.abandoned == 1 and server.stats.served == 1


def test_an_answer_larger_than_the_socket_takes_is_finished_by_the_event_loop(sock_dir: str) -> None:
    """The worker sends what the socket takes at once; the event loop sends the rest."""
    body = os.urandom(1024) * 4096  # 4 MiB: far more than a unix socket buffers

    def router(request: Request) -> Response | object:
        return lambda: Response(200, body, "application/octet-stream")

    server = UnixHttpServer(os.path.join(sock_dir, "s.sock"), router, workers=1, queue_limit=1)  # type: ignore[arg-type]
    server.start()
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(server.socket_path)
            sock.sendall(b"POST /big HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            deadline = time.monotonic() + 10
            while server.stats.served != 1 and time.monotonic() < deadline:
                time.sleep(0.01)  # nothing read yet: the worker's send could not take it all
            assert server.stats.served == 1
            status, answer = wire.parse_response(_read_until_closed(sock))
        assert status == 200 and answer == body
    finally:
        server.drain(5)
        server.close()


def test_bodies_held_at_once_are_bounded(sock_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "BODY_BUDGET", 100)
    with _serving(sock_dir, workers=1, queue_limit=1) as server:
        status, body = wire.http_request(server.socket_path, "POST", "/cni", b"x" * 101)
        assert status == 503 and json.loads(body)["code"] == 11
        assert wire.http_request(server.socket_path, "POST", "/x", b"x" * 100) == (200, b"ok")
