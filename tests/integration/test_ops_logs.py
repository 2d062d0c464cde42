"""Logs through the real ``multus`` executable: what each level writes for ADD, DEL and a failure,
in the one logfmt format; secrets redacted at debug; nothing imported or written for a successful
ADD+DEL at ``error``; no warning on a normal repeated DEL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.importtime import imported, importtime_wrapper
from tests.support.netns import Netns, unique_name
from tests.support.node import Node

pytestmark = pytest.mark.netns

POD = ("default", "web")
LINE = re.compile(
    r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
    r"level=(?P<level>\w+) component=multus pid=\d+ (?P<rest>msg=.*)"
)
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse(path: Path) -> list[dict[str, str]]:
    """Every line of the log as a dict of its fields (quotes removed); a line that is not in the
    format fails the test."""
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        match = LINE.fullmatch(text)
        assert match is not None, text
        fields = {"level": match["level"]}
        for key, value in FIELD.findall(match["rest"]):
            fields[key] = value[1:-1].replace('\\"', '"') if value.startswith('"') else value
        lines.append(fields)
    return lines


def setup(sim: Node, level: str, *, nad: dict[str, object] | None = None) -> tuple[dict[str, object], Path]:
    cluster = sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.91.0.0/24", gateway=True))
    sim.add_nad("net-a", nad or sim.bridge_conf("net-a", "10.91.1.0/24"))
    sim.add_pod("web", networks="net-a")
    log = sim.root / "multus.log"
    conf = sim.multus_conf(clusterNetwork=str(cluster), logLevel=level, logFile=str(log), logToStderr=False)
    return conf, log


def test_verbose_one_line_per_command_and_attachment_and_the_resolution(sim: Node, pod_ns: Netns) -> None:
    conf, log = setup(sim, "verbose")
    cid = unique_name("c") + "0123456789abcdef"
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    address = pod_ns.addresses("net1")[0]
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    lines = parse(log)
    assert [(line["level"], line["msg"]) for line in lines] == [
        ("verbose", "networks resolved"),
        ("verbose", "attachment added"),
        ("verbose", "attachment added"),
        ("verbose", "ADD done"),
        ("verbose", "attachment deleted"),
        ("verbose", "attachment deleted"),
        ("verbose", "DEL done"),
    ]
    for line in lines:
        assert line["pod"] == "default/web" and line["containerID"] == cid[:12]
    assert lines[0]["networks"] == "eth0=cluster(clusterNetwork) net1=default/net-a(annotation)"
    net1 = lines[2]
    assert (net1["network"], net1["ifname"], net1["plugin"], net1["result"]) == (
        "default/net-a",
        "net1",
        "bridge",
        "ok",
    )
    assert net1["ips"] == address
    assert float(net1["ms"]) > 0 and float(lines[3]["ms"]) >= float(net1["ms"])
    assert [line["network"] for line in lines[4:6]] == ["default/net-a", "cluster"]  # reverse order


def test_debug_shows_delegate_confs_and_results_with_secrets_redacted(sim: Node, pod_ns: Netns) -> None:
    nad = sim.bridge_conf("net-a", "10.91.1.0/24", token="s3cr3t-token", password="hunter2")
    conf, log = setup(sim, "debug", nad=nad)
    cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    text = log.read_text()
    assert "s3cr3t-token" not in text and "hunter2" not in text
    lines = parse(log)
    sent = [line for line in lines if line["msg"] == "delegate conf sent"]
    received = [line for line in lines if line["msg"] == "delegate result received"]
    assert [line["network"] for line in sent] == ["cluster", "default/net-a", "default/net-a", "cluster"]
    assert '"token":"[redacted]"' in sent[1]["conf"] and '"password":"[redacted]"' in sent[1]["conf"]
    assert "K8S_POD_NAME=web" in sent[1]["cniArgs"]
    assert [line["network"] for line in received] == ["cluster", "default/net-a"]
    assert '"interfaces"' in received[1]["result"]


def test_error_level_writes_nothing_on_success_and_one_line_per_failure(sim: Node, pod_ns: Netns) -> None:
    conf, log = setup(sim, "error")
    cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok  # repeated
    assert parse(log) == []

    sim.add_nad("net-a", {"cniVersion": "1.0.0", "name": "net-a", "type": "no-such-plugin"})
    failed = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD)
    assert not failed.ok
    (line,) = parse(log)
    assert line["level"] == "error" and line["msg"] == "ADD failed"
    assert (line["pod"], line["containerID"], line["network"], line["ifname"]) == (
        "default/web",
        cid[:12],
        "default/net-a",
        "net1",
    )
    assert line["code"] == str(failed.error_code)
    assert "no-such-plugin" in line["error"]
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    assert len(parse(log)) == 1


def test_no_warning_on_a_normal_repeated_del(sim: Node, pod_ns: Netns) -> None:
    conf, log = setup(sim, "verbose")
    cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    for _ in range(2):
        assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    assert [line for line in parse(log) if line["level"] in ("warning", "error")] == []


def test_error_level_imports_nothing_more_than_logging_off(sim: Node, pod_ns: Netns) -> None:
    wrapper = importtime_wrapper(sim)
    modules: dict[str, set[str]] = {}
    for level in ("panic", "error", "verbose"):
        conf, _ = setup(sim, level)
        cid = unique_name("c")
        added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD, executable=wrapper)
        assert added.ok, added
        deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD, executable=wrapper)
        assert deleted.ok, deleted
        modules[level] = imported(added.stderr) | imported(deleted.stderr)
    assert modules["error"] == modules["panic"]
    assert "pymultus.attach.trace" not in modules["error"]
    assert "pymultus.attach.add" in modules["error"]  # the listing covers the package
    assert "pymultus.attach.trace" in modules["verbose"]


@pytest.mark.parametrize("level", ["panic", "verbose"])
def test_a_plain_add_and_del_import_no_os_and_no_ctypes(sim: Node, pod_ns: Netns, level: str) -> None:
    """What each of the two processes per pod must not pay for (BENCHMARKS.md, "thin mode"):
    ``os`` (~1.4 ms: :mod:`pymultus.paths` instead), ``_ctypes`` (~1 ms: the interface check
    enters no namespace), ``stat`` and ``atexit`` (~0.05-0.1 ms each, for a few constants and a
    hook only the Kubernetes client registers), and the heavy standard modules the hot path
    avoids. Plain: the
    networks are the conf's ``delegates``, no manifests and no Kubernetes."""
    wrapper = importtime_wrapper(sim)
    delegates = [sim.bridge_conf("net-a", "10.91.3.0/24"), sim.bridge_conf("net-b", "10.91.4.0/24")]
    conf = sim.multus_conf(delegates=delegates, logLevel=level, logFile=str(sim.root / "multus.log"))
    del conf["manifestsDir"]
    cid = unique_name("c")
    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, executable=wrapper)
    assert added.ok, added
    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, executable=wrapper)
    assert deleted.ok, deleted
    modules = imported(added.stderr) | imported(deleted.stderr)
    assert "pymultus.attach.add" in modules and "pymultus.attach.delete" in modules
    avoided = {"os", "_ctypes", "threading", "subprocess", "json", "re", "typing", "stat", "atexit"}
    assert not modules & avoided
    assert "pymultus.errors.kinds" not in modules  # no error class is built on success


def test_the_daemon_writes_the_same_lines(tmp_path: Path) -> None:
    from tests.integration.test_shim_daemon import make_node
    from tests.support.daemon import run_shim
    from tests.support.netns import delete_host_link, netns

    node = make_node(tmp_path, 2, logLevel="verbose")
    node.daemon.start(wait="readyz")
    try:
        with netns("pml") as pod:
            cid = unique_name("c")
            env = node.env(pod, cid, pod="web")
            assert run_shim(node.shim, "ADD", node.conf(), env=env)[0] == 0
            assert run_shim(node.shim, "DEL", node.conf(), env=env)[0] == 0
        failing = dict(env, CNI_NETNS="/nonexistent/netns", CNI_CONTAINERID=unique_name("c"))
        code, answer, _ = run_shim(node.shim, "ADD", node.conf(), env=failing)
        assert code != 0 and answer is not None
    finally:
        node.daemon.stop()
        for bridge in node.bridges:
            delete_host_link(bridge)
    engine = [
        line
        for line in node.daemon.output().splitlines()
        if " component=daemon " in line and " pod=default/web " in line
    ]
    messages = [re.search(r'msg="([^"]*)"', line)[1] for line in engine]  # type: ignore[index]
    assert messages.count("attachment added") == 2 and messages.count("attachment deleted") == 2
    assert "networks resolved" in messages and "ADD done" in messages and "DEL done" in messages
    errors = [line for line in node.daemon.output().splitlines() if " level=error " in line]
    assert len(errors) == 1, errors
    assert 'msg="ADD failed"' in errors[0] and f"code={answer['code']}" in errors[0]
