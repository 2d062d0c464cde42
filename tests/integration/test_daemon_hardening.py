"""The thick daemon against misbehaving clients (issue 9, defect 4), with a real daemon process,
the real ``multus-shim`` and real plugins: slow clients, clients that leave while their ADD is
queued, absurd HTTP framing, deeply nested JSON and a thousand bad connections.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pymultus.daemon import wire
from tests.integration import test_shim_daemon
from tests.integration.test_daemon_api import _free_port
from tests.integration.test_shim_daemon import Node
from tests.support.daemon import run_shim
from tests.support.netns import netns, unique_name
from tests.support.waiting import wait_until

pytestmark = pytest.mark.netns
node_factory = test_shim_daemon.node_factory

# What the daemon's whole-request deadline is (pymultus.daemon.server.REQUEST_DEADLINE).
DEADLINE = 10.0


def _connect(path: str, timeout: float = 30.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:  # the listen backlog is full for a moment: the daemon accepts soon
            if time.monotonic() > deadline:
                sock.close()
                raise
            time.sleep(0.01)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            break  # e.g. ECONNRESET after the daemon answered and closed with our bytes unread
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _exchange(path: str, data: bytes) -> bytes:
    """Send raw bytes, then read until the daemon closes (or 30 s pass: a hang guard)."""
    sock = _connect(path)
    try:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the daemon may answer and close before reading everything
        return _read_all(sock)
    finally:
        sock.close()


def _status_and_error(answer: bytes) -> tuple[int, dict[str, object]]:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    status, body = wire.parse_response(answer)
    return status, json.loads(body)


class SlowClients:
    """``count`` connections that each send ``data`` one byte per ``interval`` (one thread)."""

    def __init__(self, path: str, count: int, data: bytes, interval: float = 1.0) -> None:
        self.socks = [_connect(path) for _ in range(count)]
        self.data = data
        self.interval = interval
        self.sent = [0] * count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.is_set():
            for index, sock in enumerate(self.socks):
                position = self.sent[index]
                if position >= len(self.data):
                    continue
                try:
                    sock.send(self.data[position : position + 1])
                    self.sent[index] += 1
                except OSError:
                    self.sent[index] = len(self.data)  # cut by the daemon
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def close(self) -> None:
        self.stop()
        for sock in self.socks:
            sock.close()


@pytest.fixture
def slow_clients() -> Iterator[Callable[..., SlowClients]]:
    made: list[SlowClients] = []

    def factory(path: str, count: int, data: bytes, interval: float = 1.0) -> SlowClients:
        clients = SlowClients(path, count, data, interval)
        made.append(clients)
        return clients

    try:
        yield factory
    finally:
        for clients in made:
            clients.close()


def _slow_request() -> bytes:
    """A request a slow-loris client would trickle: longer than the test runs at 1 byte/s."""
    return (
        b"POST /cni HTTP/1.1\r\nHost: multus\r\nX-Padding: " + b"p" * 400 + b"\r\nContent-Length: 2\r\n\r\n{}"
    )


def test_two_hundred_slow_clients_delay_neither_probes_nor_a_real_shim_add(
    node_factory, slow_clients
) -> None:
    node: Node = node_factory(1)
    clients = slow_clients(node.daemon.socket_path, 200, _slow_request())
    cid = unique_name("cid")
    with netns() as ns:
        # The hang guards (20 s, 60 s) are far beyond what these take; the old server, whose four
        # reader threads each waited on one slow client, answered neither while the clients trickled.
        assert node.daemon.request("GET", wire.PATH_HEALTHZ, timeout=20) == (200, b"ok\n")
        code, result, err = run_shim(node.shim, "ADD", node.conf(), env=node.env(ns, cid), timeout=60)
        assert code == 0, (result, err, node.daemon.output()[-3000:])
        code, result, err = run_shim(node.shim, "DEL", node.conf(), env=node.env(ns, cid), timeout=60)
        assert code == 0, (result, err)
        assert set(ns.links()) == {"lo"} and node.leases() == []
    # Every slow client is then cut at the whole-request deadline with a 408.
    clients.stop()
    for sock in clients.socks:
        status, error = _status_and_error(_read_all(sock))
        assert status == 408 and error["code"] == 11, error
    assert node.daemon.stats()["timed_out"] == 200
    assert "Traceback" not in node.daemon.output()


def test_a_slow_client_is_cut_at_the_whole_request_deadline(node_factory) -> None:
    node: Node = node_factory(1)
    request = _slow_request()
    sock = _connect(node.daemon.socket_path)
    sock.setblocking(False)
    sent = 0
    answer = b""
    try:
        # Two bytes a second: each single read is quick, only the whole request is too slow. Give
        # up (and fail) after 4x the deadline: the old per-read timeout never fired.
        for sent in range(int(DEADLINE * 8)):
            sock.send(request[sent : sent + 1])
            time.sleep(0.5)
            try:
                answer = sock.recv(65536)
            except BlockingIOError:
                continue
            break
        sock.setblocking(True)
        sock.settimeout(10)
        answer += _read_all(sock)
    finally:
        sock.close()
    assert sent < len(request)
    status, error = _status_and_error(answer)
    assert status == 408 and error["code"] == 11
    assert "not complete" in str(error["msg"])
    assert node.daemon.request("GET", wire.PATH_HEALTHZ) == (200, b"ok\n")


def test_connections_beyond_the_cap_get_503_and_the_daemon_recovers(node_factory) -> None:
    """connectionLimit 1 + requestQueueLimit 1 + 256 = 258 connections at most."""
    node: Node = node_factory(1, connectionLimit=1, requestQueueLimit=1)
    idle: list[socket.socket] = []
    try:
        for _ in range(258):
            idle.append(_connect(node.daemon.socket_path))
            idle[-1].sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the rest
        # The daemon accepts connections in order: this one is the 259th.
        status, error = _status_and_error(
            _exchange(node.daemon.socket_path, b"GET /healthz HTTP/1.1\r\n\r\n")
        )
        assert status == 503 and error["code"] == 11, error
    finally:
        for sock in idle:
            sock.close()
    wait_until(
        lambda: node.daemon.request("GET", wire.PATH_HEALTHZ) == (200, b"ok\n"), "the daemon to recover"
    )


def _gated_node(node_factory) -> tuple[Node, Path]:
    """connectionLimit 1; the cluster network's plugin logs each call and holds every ADD until
    the file ``gate`` exists, then runs the real bridge plugin."""
    node: Node = node_factory(1, connectionLimit=1, metricsPort=_free_port(), metricsAddress="127.0.0.1")
    plugins = node.root / "plugins"
    plugins.mkdir()
    gated = plugins / "pmgate"
    gated.write_text(
        "#!/bin/sh\n"
        f'echo "$CNI_COMMAND $CNI_CONTAINERID" >>{plugins}/calls\n'
        f'if [ "$CNI_COMMAND" = ADD ]; then while [ ! -e {plugins}/gate ]; do sleep 0.05; done; fi\n'
        "exec /usr/lib/cni/bridge\n"
    )
    gated.chmod(0o755)
    primary = node.root / "net.d" / "10-primary.conf"
    conf = json.loads(primary.read_text())
    conf["type"] = "pmgate"
    primary.write_text(json.dumps(conf))
    return node, plugins


def test_a_queued_add_whose_client_went_away_is_not_run(node_factory) -> None:
    node, plugins = _gated_node(node_factory)
    calls = plugins / "calls"
    first, second = unique_name("cid"), unique_name("cid")
    path_env = {"CNI_PATH": f"{plugins}:/usr/lib/cni"}
    with netns() as ns1, netns() as ns2:
        outcome: list[tuple[int, object, str]] = []
        runner = threading.Thread(
            target=lambda: outcome.append(
                run_shim(node.shim, "ADD", node.conf(), env={**node.env(ns1, first), **path_env})
            )
        )
        runner.start()
        try:
            wait_until(lambda: calls.exists() and f"ADD {first}" in calls.read_text(), "the first ADD to run")
            # The only worker is busy: this ADD waits in the queue; then its client goes away, as
            # a runtime's does when its CNI timeout expires (it will retry the ADD).
            env = {**node.env(ns2, second), **path_env, "CNI_COMMAND": "ADD"}
            body = wire.encode_request(env, node.conf())
            sock = _connect(node.daemon.socket_path)
            sock.sendall(b"POST /cni HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            wait_until(lambda: node.daemon.stats()["queued"] == 1, "the second ADD to be queued")
            sock.close()
        finally:
            (plugins / "gate").touch()
            runner.join(60)
        assert outcome and outcome[0][0] == 0, outcome
        stats: dict[str, object] = {}

        def both_handled() -> bool:
            stats.update(node.daemon.stats())
            return int(stats["served"]) + int(stats.get("abandoned", 0)) >= 2  # type: ignore[call-overload]

        wait_until(both_handled, "the second ADD to be handled")
        assert f"ADD {second}" not in calls.read_text()  # its delegate never ran
        assert set(ns2.links()) == {"lo"}
        assert node.cache_files(second) == []
        assert len(node.leases()) == 1  # the first pod's only
        assert stats["abandoned"] == 1 and stats["served"] == 1
        assert "client closed the connection" in node.daemon.output()
        port = node.daemon.config["metricsPort"]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "pymultus_requests_abandoned_total 1.0" in text
        code, result, err = run_shim(node.shim, "DEL", node.conf(), env={**node.env(ns1, first), **path_env})
        assert code == 0, (result, err)
        assert node.leases() == []


def test_other_http_clients_still_work(node_factory, tmp_path: Path) -> None:
    """The strict parser still takes what real clients send: the bytes Go's net/http writes for
    a Go multus-shim (absolute-form target), and curl with a chunked body."""
    node: Node = node_factory(1)
    cid = unique_name("cid")
    with netns() as ns:
        env = {**node.env(ns, cid), "CNI_COMMAND": "ADD", "CNI_PATH": "/usr/lib/cni"}
        body = wire.encode_request(env, node.conf())
        go_request = (
            b"POST http://dummy/cni HTTP/1.1\r\nHost: dummy\r\nUser-Agent: Go-http-client/1.1\r\n"
            b"Content-Length: %d\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n"
            % len(body)
        )
        status, answer = wire.parse_response(_exchange(node.daemon.socket_path, go_request + body))
        assert status == 200, answer
        assert json.loads(answer)["Result"]["ips"]
        assert "eth0" in ns.links()
        env["CNI_COMMAND"] = "DEL"
        (tmp_path / "del.json").write_bytes(wire.encode_request(env, node.conf()))
        curl = subprocess.run(
            ["curl", "-sS", "--max-time", "60", "--unix-socket", node.daemon.socket_path,
             "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: application/json",
             "--data-binary", f"@{tmp_path / 'del.json'}", "-w", "%{http_code}", "http://dummy/cni"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert curl.stdout == "200", (curl.stdout, curl.stderr)
        assert set(ns.links()) == {"lo"} and node.leases() == []


_CNI = b"POST /cni HTTP/1.1\r\nHost: multus\r\n"
_ABSURD = [
    pytest.param(_CNI + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n{}", 413, id="5000-digit-length"),
    pytest.param(_CNI + b"Content-Length: -1\r\n\r\n{}", 400, id="negative-length"),
    pytest.param(_CNI + b"Content-Length: 2x\r\n\r\n{}", 400, id="non-numeric-length"),
    pytest.param(_CNI + b"Content-Length: +2\r\n\r\n{}", 400, id="signed-length"),
    pytest.param(_CNI + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, id="conflicting-lengths"),
    pytest.param(_CNI + b"Content-Length: 2, 3\r\n\r\n{}", 400, id="length-list"),
    pytest.param(
        _CNI + b"Transfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        400,
        id="chunked-and-length",
    ),
    pytest.param(_CNI + b"Transfer-Encoding: gzip\r\n\r\n{}", 400, id="unknown-transfer-coding"),
    pytest.param(_CNI + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 5000 + b"\r\n", 413, id="huge-chunk"),
    pytest.param(_CNI + b"Transfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n", 400, id="negative-chunk"),
    pytest.param(_CNI + b"Content-Length : 2\r\n\r\n{}", 400, id="space-before-colon"),
    pytest.param(_CNI + b" folded\r\nContent-Length: 2\r\n\r\n{}", 400, id="obsolete-line-folding"),
    pytest.param(b"POST /cni HTTP/1.1\r\nX: a\x00b\r\nContent-Length: 2\r\n\r\n{}", 400, id="nul-in-header"),
    pytest.param(b"POST /cni HTTP/2.0\r\nContent-Length: 2\r\n\r\n{}", 400, id="http-2-0"),
    pytest.param(b"POST  /cni HTTP/1.1\r\n\r\n", 400, id="double-space"),
    pytest.param(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", 431, id="huge-head"),
]


@pytest.mark.parametrize(("data", "status"), _ABSURD)
def test_absurd_http_framing_gets_a_cni_error_and_no_traceback(
    node_factory, data: bytes, status: int
) -> None:
    node: Node = node_factory(1)
    got, error = _status_and_error(_exchange(node.daemon.socket_path, data))
    assert got == status, error
    assert isinstance(error["code"], int) and error["code"] != 999 and error["msg"], error
    assert node.daemon.request("GET", wire.PATH_HEALTHZ) == (200, b"ok\n")
    assert "Traceback" not in node.daemon.output()


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(_nested(100_000), 6, id="nested-array"),
        pytest.param(b'{"env":' + _nested(100_000) + b"}", 6, id="nested-env"),
        pytest.param(
            b'{"env":{"CNI_COMMAND":"ADD"},"interfaceAttributes":' + _nested(50_000) + b"}", 6, id="attrs"
        ),
        pytest.param(b'{"env":{"CNI_COMMAND":"ADD"},"config":"\\u00e9"}', 6, id="non-ascii-config"),
    ],
)
def test_malformed_bodies_get_400_with_their_cni_code(node_factory, body: bytes, code: int) -> None:
    node: Node = node_factory(1)
    for path in (wire.PATH_CNI, wire.PATH_DELEGATE):
        status, answer = node.daemon.request("POST", path, body)
        assert status == 400, answer[:300]
        assert json.loads(answer)["code"] == code, answer[:300]
    assert "Traceback" not in node.daemon.output()


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_thousand_bad_connections_leave_no_fds_or_memory_behind(node_factory) -> None:
    node: Node = node_factory(1)
    assert node.daemon.proc is not None
    pid = node.daemon.proc.pid
    path = node.daemon.socket_path
    answered = [
        (_CNI + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n", 413),
        (_CNI + b"Content-Length: -1\r\n\r\n", 400),
        (_CNI + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
        (_CNI + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}", 400),
        (b"garbage\r\n\r\n", 400),
        (_CNI + b"Content-Length: 20\r\n\r\n" + _nested(10), 400),
        (b"POST /cni HTTP/1.1\r\nContent-Length: 2000\r\n\r\n" + _nested(1000), 400),
    ]
    unanswered = [b"", b"POST /cni HTTP/1.1\r\nContent-Len", _CNI + b"Content-Length: 100\r\n\r\n{"]

    def round_of(count: int) -> None:
        for index in range(count):
            kind = index % (len(answered) + len(unanswered))
            if kind < len(answered):
                data, status = answered[kind]
                got, error = _status_and_error(_exchange(path, data))
                assert got == status and error["code"] in (6, 11), (data[:60], got, error)
            else:
                sock = _connect(path)
                sock.sendall(unanswered[kind - len(answered)])
                sock.close()

    round_of(200)  # warm-up: the allocator's and the interpreter's caches fill once
    wait_until(lambda: node.daemon.request("GET", wire.PATH_HEALTHZ)[0] == 200, "the daemon")
    fds, rss = _fds(pid), _rss_kib(pid)
    round_of(1000)
    # Connections that closed without a request are closed by the daemon when it sees EOF.
    wait_until(lambda: _fds(pid) <= fds, f"the daemon's fds to go back to {fds}")
    grown = _rss_kib(pid) - rss
    print(f"daemon: {fds} fds before and after, RSS {rss} KiB +{grown} KiB after 1000 bad connections")
    assert grown < 4096, grown
    assert "Traceback" not in node.daemon.output()
    assert node.daemon.stats()["in_flight"] == 0
