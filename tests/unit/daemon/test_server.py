"""The unix-socket server in-process (no root): wire format, limits, queueing, draining."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

from pymultus.daemon import wire
from pymultus.daemon.server import Request, Response, UnixHttpServer
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
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(answers) < 3:
            time.sleep(0.01)
        assert sorted(status for status, _ in answers) == [503, 503, 503]
        assert all(json.loads(body)["code"] == 11 for _, body in answers)
        # Probes are answered by the I/O threads while all workers are busy.
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
