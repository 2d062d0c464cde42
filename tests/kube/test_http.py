"""The minimal HTTP/1.1 reader: framing cases fed byte-exactly through a socket pair."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from pymultus.kube.http import Connection, ProtocolError

EVENT_A = b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}'
EVENT_B = b'{"type":"MODIFIED","object":{"metadata":{"name":"b","x":"' + b"y" * 5000 + b'"}}}'


def _chunked(data: bytes, sizes: list[int]) -> bytes:
    out, pos = b"", 0
    for size in sizes:
        out += b"%x\r\n%s\r\n" % (size, data[pos : pos + size])
        pos += size
    assert pos == len(data)
    return out + b"0\r\n\r\n"


@pytest.fixture
def pair() -> Iterator[tuple[Connection, socket.socket]]:
    ours, theirs = socket.socketpair()
    conn = Connection("localhost", 0)
    conn._sock = ours
    yield conn, theirs
    # A test may finish as soon as the client raises, before the writer thread is done with
    # ``theirs``: let it finish first, or its shutdown() meets a closed descriptor.
    while _writers:
        _writers.pop().join(timeout=5)
    conn.close()
    theirs.close()


def _serve(sock: socket.socket, pieces: list[bytes], close: bool = True) -> threading.Thread:
    """Write ``pieces`` one by one (separate sends: arbitrary TCP segmentation), then close."""

    def run() -> None:
        for piece in pieces:
            sock.sendall(piece)
        if close:
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    _writers.append(thread)
    return thread


_writers: list[threading.Thread] = []  # joined by the ``pair`` fixture before it closes the sockets


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "sizes",
    [
        "one-chunk-per-event",
        "cut-inside-events",
        "one-byte-chunks",
    ],
)
def test_watch_lines_split_on_newlines_never_on_chunks(
    pair: tuple[Connection, socket.socket], sizes: str
) -> None:
    conn, server = pair
    data = EVENT_A + b"\n" + EVENT_B + b"\n" + EVENT_A + b"\n"
    if sizes == "one-chunk-per-event":
        plan = [len(EVENT_A) + 1, len(EVENT_B) + 1, len(EVENT_A) + 1]
    elif sizes == "cut-inside-events":
        plan = [0x800, 0x800, len(data) - 0x1000]
    else:
        plan = [1] * len(data)
    raw = HEAD + _chunked(data, plan)
    _serve(server, [raw[i : i + 700] for i in range(0, len(raw), 700)])
    _status, _reason, headers = conn.read_head()
    assert list(conn.iter_lines(headers)) == [EVENT_A, EVENT_B, EVENT_A]


def test_cut_stream_raises(pair: tuple[Connection, socket.socket]) -> None:
    conn, server = pair
    _serve(server, [HEAD + b"40\r\n" + EVENT_A[:20]])
    _status, _reason, headers = conn.read_head()
    with pytest.raises(ProtocolError):
        list(conn.iter_lines(headers))


def test_content_length_body_then_keep_alive(pair: tuple[Connection, socket.socket]) -> None:
    conn, server = pair
    one = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"
    two = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n[1]"
    _serve(server, [one, two])
    status, _reason, headers = conn.read_head()
    assert (status, conn.read_body("GET", status, headers)) == (404, b"{}")
    assert conn.is_open
    status, _reason, headers = conn.read_head()
    assert (status, conn.read_body("GET", status, headers)) == (200, b"[1]")
    assert not conn.is_open  # the server said close


def test_chunk_extensions_and_trailers(pair: tuple[Connection, socket.socket]) -> None:
    conn, server = pair
    raw = HEAD + b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
    _serve(server, [raw], close=False)
    status, _reason, headers = conn.read_head()
    assert conn.read_body("GET", status, headers) == b"abcde"


@pytest.mark.parametrize(
    "raw",
    [
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        HEAD + b"zz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    ],
)
def test_broken_framing_is_a_protocol_error(pair: tuple[Connection, socket.socket], raw: bytes) -> None:
    conn, server = pair
    _serve(server, [raw])
    with pytest.raises(ProtocolError):
        status, _reason, headers = conn.read_head()
        conn.read_body("GET", status, headers)


def test_request_is_one_write_with_content_length(pair: tuple[Connection, socket.socket]) -> None:
    conn, server = pair
    conn.send_request("PATCH", "/x?a=b", [("Host", "h"), ("Content-Type", "application/json")], b'{"a":1}')
    server.settimeout(2)
    got = server.recv(65536)
    assert got == (
        b"PATCH /x?a=b HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n"
        b'{"a":1}'
    )
