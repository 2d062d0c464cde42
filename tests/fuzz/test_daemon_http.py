"""Fuzz: the thick daemon's HTTP/1.1 server and its ``/cni`` and ``/delegate`` handlers, through
the socket of a real ``pymultus daemon`` process.

Every complete request gets an HTTP answer: 2xx, or 4xx with a CNI error object whose code is not
999; never a 5xx, and never a traceback in the daemon's log. (A request cut short may also be
dropped without an answer: the daemon cannot tell it from a client that went away.)

The daemon runs without Kubernetes; its ``binDir`` is an empty directory and the generated requests
never name a real plugin directory in ``CNI_PATH``, so no delegate ever runs and nothing on the host
changes: requests that get that far fail with "plugin not found" (7) or, for DEL, succeed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pymultus.daemon import wire
from tests.fuzz import strategies as fs
from tests.fuzz.invariants import check_cni_error
from tests.fuzz.test_configs import multus_confs
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.netns  # the daemon refuses to start unless root

ANSWER_TIMEOUT = 30.0  # generous: a queued ADD may wait for a worker


class Daemon:
    def __init__(self, process: DaemonProcess) -> None:
        self.process = process
        self.log_offset = 0

    def new_log(self) -> str:
        """What the daemon logged since the last call."""
        with open(self.process.log_path, "rb") as handle:
            handle.seek(self.log_offset)
            data = handle.read()
        self.log_offset += len(data)
        return data.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    root = Path(tempfile.mkdtemp(prefix="pmf", dir="/tmp"))  # short: unix socket paths are limited
    try:
        for sub in ("net.d", "bin", "cni"):
            (root / sub).mkdir()
        user_conf = root / "multus.conf"
        user_conf.write_text(
            json.dumps({"cniVersion": "1.0.0", "name": "m", "type": "multus-shim", "clusterNetwork": "x"})
        )
        config = {
            "socketDir": str(root / "sock"),
            "cniVersion": "1.0.0",
            "multusConfigFile": str(user_conf),
            "cniConfigDir": str(root / "net.d"),
            "multusAutoconfigDir": str(root / "net.d"),
            "binDir": str(root / "bin"),  # copied over every request conf: no plugin can be found
            "cniDir": str(root / "cni"),
            "confDir": str(root / "net.d"),
            "logLevel": "verbose",
            "logToStderr": True,
        }
        process = DaemonProcess(root, config)
        process.start(wait="readyz")
        try:
            yield Daemon(process)
        finally:
            process.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- the requests ------------------------------------------------------------------------------

# Each request has at most one odd part (chosen below), so that most requests are valid HTTP
# and reach the CNI handlers, and each odd part is tried on its own.
ODD_PARTS = ("none", "method", "target", "version", "headers", "framing", "body", "env", "stdin")


def usual_or_odd(
    odd: bool, usual: st.SearchStrategy[object], strange: st.SearchStrategy[object]
) -> st.SearchStrategy[object]:
    return strange if odd else usual


@st.composite
def cni_body(draw: st.DrawFn, odd: str) -> bytes:
    env: dict[str, str] = {
        "CNI_COMMAND": draw(st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS"])),
        "CNI_CONTAINERID": draw(st.text("0123456789abcdef", min_size=1, max_size=64)),
        "CNI_NETNS": "/var/run/netns/pymultus-fuzz-absent",
        "CNI_IFNAME": draw(st.sampled_from(["eth0", "net1"])),
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p",
    }
    if odd == "env":
        for name in draw(st.lists(st.sampled_from([*env, "CNI_PATH"]), min_size=1, max_size=2)):
            if draw(st.booleans()):
                env.pop(name, None)
            elif name != "CNI_PATH":  # never a real plugin directory
                env[name] = draw(st.one_of(st.just("/"), st.just("add"), fs.text_values))
    stdin = (
        draw(fs.documents(multus_confs, ["cniVersion", "name", "type", "clusterNetwork", "delegates"]))
        if odd == "stdin"
        else json.dumps(draw(multus_confs)).encode()
    )
    attributes = draw(
        st.one_of(st.none(), st.fixed_dictionaries({"ips": st.lists(fs.tricky_text, max_size=2)}))
    )
    body = wire.encode_request(env, stdin, attributes)
    if odd == "body":
        body = draw(
            st.one_of(fs.damaged(body), fs.json_bytes(st.just(json.loads(body))), st.binary(max_size=64))
        )
    return body


methods = st.one_of(st.sampled_from(["GET", "PUT", "DELETE", "HEAD", "get"]), fs.tricky_text)
targets = st.one_of(
    st.sampled_from(
        ["/healthz", "/readyz", "/debug/stats", "/nope", "/cni?x=1", "*", "", "//cni", "/cni/../cni"]
    ),
    fs.tricky_text,
)
http_versions = st.sampled_from(["HTTP/1.0", "HTTP/2", "HTTP/1.1 x", "", "http/1.1"])
header_names = st.one_of(
    st.sampled_from(["Host", "Content-Type", "Connection", "Pymultus-Shim", "Expect", "Content-Length"]),
    fs.tricky_text,
)
content_lengths = st.sampled_from(
    ["-1", "+5", " 5", "0x10", "1e3", "", "9" * 5000, "18446744073709551616", "5, 5"]
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(request bytes, complete): ``complete`` is False when the bytes may end mid-request."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=128)), False
    odd = draw(st.sampled_from(ODD_PARTS))
    body = draw(cni_body(odd))
    method = draw(usual_or_odd(odd == "method", st.just("POST"), methods))
    target = draw(
        usual_or_odd(odd == "target", st.sampled_from(["/cni", "/delegate", "http://dummy/cni"]), targets)
    )
    version = draw(usual_or_odd(odd == "version", st.just("HTTP/1.1"), http_versions))
    lines = [f"{method} {target} {version}"]
    if draw(st.booleans()):
        lines.append(f"{wire.SHIM_HEADER}: 1")
    if odd == "headers":
        lines += [f"{draw(header_names)}: {draw(fs.tricky_text)}" for _ in range(draw(st.integers(1, 3)))]
    framing = draw(
        st.sampled_from(["odd-length", "chunked", "none"]) if odd == "framing" else st.just("length")
    )
    # A line break inside a drawn header, or a drawn framing header, can make the request claim
    # more bytes than were sent.
    complete = not any(
        "\r" in line or "\n" in line or line.lower().startswith(("content-length", "transfer-encoding"))
        for line in lines[1:]
    ) and not any(char in lines[0] for char in "\r\n")
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
    elif framing == "odd-length":
        lines.append(f"Content-Length: {draw(content_lengths)}")
        complete = False  # a plausible length larger than the body leaves the server waiting for more
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        cut = draw(st.integers(0, len(body)))
        size = draw(st.sampled_from(["{:x}", "{:X}", "{:x};ext=1", "0{:x}"]))
        pieces = [piece for piece in (body[:cut], body[cut:]) if piece]
        body = (
            b"".join(size.format(len(piece)).encode() + b"\r\n" + piece + b"\r\n" for piece in pieces)
            + b"0\r\n\r\n"
        )
        if draw(st.booleans()):
            body = draw(fs.damaged(body))
            complete = False
    head = "\r\n".join(lines).encode("utf-8", "surrogatepass") + b"\r\n\r\n"
    return head + body, complete


def _exchange(path: str, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(ANSWER_TIMEOUT)
        sock.connect(path)
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)  # the request ends here, whatever it claims
        except OSError:
            pass  # the daemon may answer (413, 400) and close before reading everything
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _post(path: str, body: bytes) -> tuple[bytes, bool]:
    return b"POST %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body), True


_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x", "CNI_IFNAME": "net1"}


@given(requests())
# Found by this property: a delegate conf with a number that overflows to infinity made /delegate
# log a traceback and answer 999 (jsonio decodes 1e400 to inf, which it cannot encode again).
@example(_post("/delegate", wire.encode_request(_ENV, b'{"cniVersion":"1.0.0","type":"bridge","x":1e400}')))
def test_daemon_answers_any_request(daemon: Daemon, request: tuple[bytes, bool]) -> None:
    data, complete = request
    answer = _exchange(daemon.process.socket_path, data)
    logged = daemon.new_log()
    assert "Traceback" not in logged, logged[-3000:]
    assert daemon.process.proc is not None and daemon.process.proc.poll() is None, "the daemon died"
    if not answer:
        assert not complete, "a complete request got no answer"
        return
    status, body, headers = wire.parse_response_headers(answer)
    assert 200 <= status < 500, (status, body[:300])
    if status >= 400 and headers.get("content-type") == "application/json":
        check_cni_error(json.loads(body))
    elif status == 200 and body and headers.get("content-type") == "application/json":
        json.loads(body)


def test_daemon_still_healthy_after_fuzzing(daemon: Daemon) -> None:
    assert daemon.process.request("GET", wire.PATH_HEALTHZ)[0] == 200
    assert not os.listdir(Path(daemon.process.socket_dir).parent / "bin"), "no plugin was ever installed"
