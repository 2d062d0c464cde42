"""The daemon's socket API and lifecycle: bad requests, probes, metrics, auto configuration."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from pymultus.daemon import wire
from tests.integration.test_shim_daemon import make_node
from tests.support.daemon import REPO_SRC, DaemonProcess
from tests.support.netns import delete_host_link, netns
from tests.support.waiting import wait_until

pytestmark = pytest.mark.netns


@pytest.fixture
def node(tmp_path: Path):
    node = make_node(tmp_path, 1, metricsPort=_free_port(), metricsAddress="127.0.0.1")
    node.daemon.start(wait="readyz")
    try:
        yield node
    finally:
        node.daemon.stop()
        for bridge in node.bridges:
            delete_host_link(bridge)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _raw(path: str, data: bytes) -> bytes:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(path)
    try:
        sock.sendall(data)
    except OSError:
        pass  # the daemon may answer 413 and close before reading everything
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def _cni_env() -> dict[str, str]:
    return {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/var/run/netns/none",
        "CNI_IFNAME": "eth0",
    }


def test_socket_permissions(node) -> None:
    sock = node.daemon.socket_path
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/cni", b"{not json", 400, 6),
        ("POST", "/cni", b"[1,2]", 400, 6),
        ("POST", "/cni", b'{"config":""}', 400, 4),
        ("POST", "/cni", b'{"env":{"CNI_COMMAND":"ADD"},"config":"%%%"}', 400, 6),
        ("POST", "/cni", json.dumps({"env": {"CNI_COMMAND": "ADD"}, "config": ""}).encode(), 400, 4),
        ("POST", "/cni", json.dumps({"env": {"CNI_COMMAND": 5}, "config": ""}).encode(), 400, 4),
        ("GET", "/cni", b"", 405, 4),
        ("PUT", "/healthz", b"", 405, 4),
        ("GET", "/nope", b"", 404, 4),
        ("POST", "/delegate", b"{}", 400, 4),
    ],
)
def test_bad_requests_get_a_clear_error_and_the_daemon_keeps_serving(
    node, method, path, body, status, code
) -> None:
    got, answer = node.daemon.request(method, path, body)
    assert got == status, answer
    error = json.loads(answer)
    assert error["code"] == code and error["msg"], error
    assert node.daemon.request("GET", "/healthz")[0] == 200


def test_oversized_and_malformed_http(node) -> None:
    sock = node.daemon.socket_path
    big = b"x" * (2 << 20)
    answer = _raw(sock, b"POST /cni HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert b"larger than 1 MiB" in answer
    assert _raw(sock, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert _raw(sock, b"POST /cni HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 411")
    # A client that connects and says nothing only costs a read timeout, never a worker.
    idle = socket.socket(socket.AF_UNIX)
    idle.connect(sock)
    try:
        assert node.daemon.request("GET", "/healthz")[0] == 200
    finally:
        idle.close()
    # A Go client's absolute-form URL and chunked body are understood.
    body = json.dumps({"env": {"CNI_COMMAND": "STATUS"}, "config": ""}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    answer = _raw(sock, b"POST http://dummy/cni HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]  # STATUS with an empty conf: decoding error
    assert b'"code":6' in answer
    assert node.daemon.stats()["in_flight"] == 0


def test_go_shim_wire_format(node) -> None:
    """Without the pymultus header the answer is Go Multus's ``{"Result": ...}``."""
    from tests.support.netns import netns

    with netns() as ns:
        env = node.env(ns, "gocid1")
        env.update(CNI_COMMAND="ADD", CNI_PATH="/usr/lib/cni")
        status, answer = node.daemon.request("POST", "/cni", wire.encode_request(env, node.conf()))
        assert status == 200, answer
        result = json.loads(answer)["Result"]
        assert result["cniVersion"] == "1.0.0" and result["ips"]
        env["CNI_COMMAND"] = "DEL"
        status, answer = node.daemon.request("POST", "/cni", wire.encode_request(env, node.conf()))
        assert status == 200 and answer == b""


def test_metrics(node) -> None:
    port = node.daemon.config["metricsPort"]
    node.daemon.request("POST", "/cni", b"{bad")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for name in (
        "pymultus_requests_total",
        "pymultus_request_duration_seconds_bucket",
        "pymultus_requests_in_flight",
        "pymultus_requests_queued",
    ):
        assert name in text, name
    assert 'pymultus_requests_total{code="6",command="unknown"} 1.0' in text


def test_healthcheck_command_and_readyz_during_shutdown(node) -> None:
    env = {**os.environ, "PYTHONPATH": REPO_SRC}
    probe = [sys.executable, "-m", "pymultus", "healthcheck", "--socket-dir", node.daemon.socket_dir]
    assert subprocess.run([*probe, "--ready"], env=env, check=False).returncode == 0
    assert subprocess.run(probe, env=env, check=False).returncode == 0
    node.daemon.stop()
    assert subprocess.run(probe, env=env, check=False, capture_output=True).returncode == 1
    assert node.conf_path.exists()


def test_readyz_fails_while_draining(tmp_path: Path) -> None:
    """A slow delegate keeps the daemon draining; meanwhile /readyz is 500 and new work 503."""
    node = make_node(tmp_path, 1)
    slow_dir = tmp_path / "slowbin"
    slow_dir.mkdir()
    slow = slow_dir / "pmslow"
    slow.write_text('#!/bin/sh\ncat >/dev/null\nsleep 2\necho \'{"cniVersion":"0.3.1"}\'\n')
    slow.chmod(0o755)
    (node.root / "net.d" / "10-primary.conf").write_text(
        json.dumps({"cniVersion": "0.3.1", "name": "slow", "type": "pmslow"})
    )
    pod = netns("pmt")  # a pod's own netns: the daemon refuses its own (issue 9 defect 7)
    pod_path = pod.__enter__().path
    node.daemon.start(wait="readyz")
    try:
        env = {"CNI_COMMAND": "STATUS", "CNI_PATH": str(slow_dir)}
        sock = node.daemon.socket_path
        body = wire.encode_request(
            {
                **env,
                "CNI_COMMAND": "ADD",
                "CNI_CONTAINERID": "slow1",
                "CNI_NETNS": pod_path,
                "CNI_IFNAME": "eth0",
            },
            node.conf(),
        )
        import threading

        answers: list[tuple[int, bytes]] = []
        thread = threading.Thread(
            target=lambda: answers.append(wire.http_request(sock, "POST", "/cni", body))
        )
        thread.start()
        time.sleep(0.5)
        assert node.daemon.proc is not None
        node.daemon.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        status, text = wire.http_request(sock, "GET", "/readyz")
        assert status == 500 and b"shutting down" in text
        status, text = wire.http_request(sock, "POST", "/cni", body)
        assert status == 503 and json.loads(text)["code"] == 11
        thread.join(30)
        assert answers and answers[0][0] in (200, 400)  # the in-flight request finished
        assert node.daemon.stop() == 0
    finally:
        node.daemon.stop()
        for bridge in node.bridges:
            delete_host_link(bridge)
        pod.__exit__(None, None, None)


def test_refuses_to_start_unless_root(tmp_path: Path) -> None:
    # The unprivileged user must be able to read the interpreter and the package: the checkout
    # (and pytest's tmp_path) may sit in a 0700 directory, so use the system interpreter and a
    # world-readable copy of the package.
    readable = Path(tempfile.mkdtemp(prefix="pymultus-nonroot-"))
    try:
        readable.chmod(0o755)
        shutil.copytree(Path(REPO_SRC) / "pymultus", readable / "pymultus")
        for path in readable.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        config = readable / "daemon-config.json"
        config.write_text(json.dumps({"cniVersion": "0.3.1"}))
        config.chmod(0o644)
        code = (
            f"import sys; sys.path.insert(0, {str(readable)!r}); "
            "from pymultus.cli.main import main; sys.exit(main())"
        )
        proc = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                os.path.realpath("/usr/bin/python3"),
                "-I",
                "-c",
                code,
                "daemon",
                "--config",
                str(config),
            ],
            env={"PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
    finally:
        shutil.rmtree(readable, ignore_errors=True)
    assert proc.returncode == 1, proc.stderr
    assert "must run as root" in proc.stderr


def test_invalid_config_is_refused_with_the_key_named(tmp_path: Path) -> None:
    config = tmp_path / "daemon-config.json"
    config.write_text(json.dumps({"cniVersion": "0.3.1", "connectionLimit": 0}))
    proc = subprocess.run(
        [sys.executable, "-m", "pymultus", "daemon", "--config", str(config)],
        env={"PYTHONPATH": REPO_SRC, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and '"connectionLimit"' in proc.stderr


# -- auto configuration ----------------------------------------------------------------------


def _daemon_only(tmp_path: Path, **keys: object) -> DaemonProcess:
    import tempfile

    sock = tempfile.mkdtemp(prefix="pms", dir="/tmp") + "/sock/"
    config: dict[str, object] = {
        "socketDir": sock,
        "cniVersion": "0.3.1",
        "cniConfigDir": str(tmp_path / "net.d"),
        "multusAutoconfigDir": str(tmp_path / "net.d"),
        "logLevel": "verbose",
        "logToStderr": True,
    }
    config.update(keys)
    (tmp_path / "net.d").mkdir(exist_ok=True)
    return DaemonProcess(tmp_path, config)


def test_primary_late_changing_and_stale_own_conf(tmp_path: Path) -> None:
    daemon = _daemon_only(tmp_path)
    netd = tmp_path / "net.d"
    # A stale conf of ours, from an earlier run, under both names; it must never be wrapped.
    stale = {
        "cniVersion": "0.3.1",
        "name": "multus-cni-network",
        "type": "multus-shim",
        "clusterNetwork": "/gone.conf",
    }
    (netd / "00-multus.conf").write_text(json.dumps(stale))
    (netd / "00-multus.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "x", "plugins": [stale]})
    )
    daemon.start(wait="healthz")
    try:
        status, text = daemon.request("GET", "/readyz")
        assert status == 500 and b"waiting for the primary" in text
        # The primary appears late.
        (netd / "20-late.conf").write_text(
            json.dumps(
                {
                    "cniVersion": "0.3.1",
                    "name": "late",
                    "type": "bridge",
                    "capabilities": {"portMappings": True},
                }
            )
        )
        daemon.wait_for("readyz", timeout=10)
        conf = json.loads((netd / "00-multus.conf").read_text())
        assert conf["type"] == "multus-shim" and conf["clusterNetwork"] == str(netd / "20-late.conf")
        assert conf["capabilities"] == {"portMappings": True}
        assert not (netd / "00-multus.conflist").exists()  # the stale other-name conf is gone
        assert stat.S_IMODE(os.stat(netd / "00-multus.conf").st_mode) == 0o600
        # The primary changes: the capabilities follow.
        (netd / "20-late.conf").write_text(
            json.dumps(
                {"cniVersion": "0.3.1", "name": "late", "type": "bridge", "capabilities": {"bandwidth": True}}
            )
        )
        wait_until(
            lambda: (
                json.loads((netd / "00-multus.conf").read_text()).get("capabilities") == {"bandwidth": True}
            )
        )
        # Another file now sorts first: it becomes the primary (Go Multus keeps the old choice).
        (netd / "10-first.conf").write_text(
            json.dumps({"cniVersion": "0.3.1", "name": "first", "type": "ptp"})
        )
        wait_until(
            lambda: (
                json.loads((netd / "00-multus.conf").read_text())["clusterNetwork"]
                == str(netd / "10-first.conf")
            )
        )
    finally:
        assert daemon.stop() == 0
    assert (netd / "00-multus.conf").exists()  # kept on shutdown (DESIGN item 9)


def test_readiness_indicator_file_gates_readyz(tmp_path: Path) -> None:
    indicator = tmp_path / "ready"
    daemon = _daemon_only(tmp_path, readinessindicatorfile=str(indicator))
    (tmp_path / "net.d" / "10-p.conf").write_text(
        json.dumps({"cniVersion": "0.3.1", "name": "p", "type": "ptp"})
    )
    daemon.start(wait="healthz")
    try:
        time.sleep(0.3)
        status, text = daemon.request("GET", "/readyz")
        assert status == 500 and b"readiness indicator" in text
        indicator.write_text("ok")
        daemon.wait_for("readyz", timeout=10)
        indicator.unlink()
        wait_until(lambda: daemon.request("GET", "/readyz")[0] == 500)
        assert (tmp_path / "net.d" / "00-multus.conf").exists()  # kept: see daemon/autoconf.py
        assert "readinessindicatorfile" not in json.loads((tmp_path / "net.d" / "00-multus.conf").read_text())
    finally:
        daemon.stop()


def test_user_conf_file_is_copied(tmp_path: Path) -> None:
    user = tmp_path / "my-multus.conf"
    user.write_text(
        json.dumps({"cniVersion": "0.3.1", "name": "m", "type": "multus-shim", "clusterNetwork": "x"})
    )
    daemon = _daemon_only(tmp_path, multusConfigFile=str(user))
    daemon.start(wait="readyz")
    try:
        assert (tmp_path / "net.d" / "my-multus.conf").read_bytes() == user.read_bytes()
    finally:
        daemon.stop()


def test_delegate_hot_plug_add_and_del(node) -> None:
    """``/delegate``: one extra network for a running pod, and its DEL (errors not swallowed)."""
    from tests.support.netns import netns, unique_name

    bridge = unique_name("pmh")
    node.bridges.append(bridge)
    ipam = node.root / "hotplug-ipam"
    conf = json.dumps(
        {
            "cniVersion": "0.3.1",
            "name": "hotplug",
            "type": "bridge",
            "bridge": bridge,
            "ipam": {"type": "host-local", "subnet": "10.233.7.0/24", "dataDir": str(ipam)},
        }
    ).encode()
    with netns() as ns:
        env = node.env(ns, "hotcid1")
        env.update(CNI_COMMAND="ADD", CNI_IFNAME="net9", CNI_PATH="/usr/lib/cni")
        status, answer = node.daemon.request(
            "POST", "/delegate", wire.encode_request(env, conf, {"mac": "02:00:00:00:00:09"})
        )
        assert status == 200, answer
        assert json.loads(answer)["Result"]["ips"][0]["address"].startswith("10.233.7.")
        assert ns.links()["net9"]["address"] == "02:00:00:00:00:09"
        env["CNI_COMMAND"] = "DEL"
        status, answer = node.daemon.request("POST", "/delegate", wire.encode_request(env, conf))
        assert status == 200, answer
        assert "net9" not in ns.links()
        assert not [p for p in ipam.rglob("*") if p.name[0].isdigit()]
