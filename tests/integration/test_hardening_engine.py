"""Issue 9, defects 1-3, through the real executables: pod UID mismatch, repeated ADD, kill -9
in the middle of an ADD. Thin mode runs the real ``multus``; thick mode the real daemon and the
real ``multus-shim``. Real plugins, real namespaces, the fake API server for Kubernetes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_daemon_kube import api, kube_node  # noqa: F401 (fixtures)
from tests.integration.test_shim_daemon import Node as ThickNode
from tests.integration.test_shim_daemon import make_node
from tests.support.daemon import run_shim
from tests.support.kube import KubeEnv
from tests.support.netns import PLUGIN_DIR, Netns, delete_host_link, netns, unique_name
from tests.support.node import Answer, Node

pytestmark = pytest.mark.netns

SLOW_PLUGIN = "pmslow"


# -- helpers ------------------------------------------------------------------------------------


def slow_plugin(directory: Path, *, seconds: int = 4) -> Path:
    """A delegate that records its pid, sleeps on ADD, then execs the real bridge plugin."""
    directory.mkdir(parents=True, exist_ok=True)
    pids = directory / "pids"
    pids.mkdir(exist_ok=True)
    script = directory / SLOW_PLUGIN
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$CNI_COMMAND" = ADD ]; then\n'
        f'  echo $$ > "{pids}/$CNI_CONTAINERID-$CNI_IFNAME"\n'
        f"  sleep {seconds}\n"
        "fi\n"
        f"exec {PLUGIN_DIR}/bridge\n"
    )
    script.chmod(0o755)
    return pids


def wait_for_file(path: Path, timeout: float = 30.0) -> int:
    """The pid written to ``path`` once the slow delegate has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text:
            return int(text)
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear within {timeout} s")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_group(pid: int) -> None:
    """Clean-up for a failing test: the slow delegate must not outlive it."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_multus(
    sim: Node, command: str, conf: dict[str, object], *, cid: str, netns_path: str, pod: str, path: str
) -> subprocess.Popen[bytes]:
    """``Node.run`` without waiting: the runtime's exec that it may SIGKILL."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": path,
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}",
    }
    stdin = sim.root / f"{cid}-{command}.json"
    stdin.write_text(json.dumps(conf))
    return _popen([str(sim.bin_dir / "multus")], env, stdin)


def _popen(argv: list[str], env: dict[str, str], stdin: Path) -> subprocess.Popen[bytes]:
    with open(stdin, "rb") as handle:
        return subprocess.Popen(argv, stdin=handle, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL (what a runtime does when its CNI timeout expires) and reap."""
    proc.kill()
    proc.communicate()


def links(ns: Netns) -> set[str]:
    return set(ns.links()) - {"lo"}


def leftovers(sim: Node) -> tuple[list[str], list[str], list[str]]:
    return sim.leases(), sim.cache_files(), sim.host_veths()


# -- 1. pod UID mismatch ------------------------------------------------------------------------


class Cluster:
    """A node with a kubeconfig for the fake API server: cluster network + one NAD."""

    def __init__(self, sim: Node, kube: KubeEnv) -> None:
        self.sim = sim
        self.kube = kube
        cluster = sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.88.0.0/24", gateway=True))
        self.conf = sim.multus_conf(clusterNetwork=str(cluster), kubeconfig=str(kube.kubeconfig_path))
        del self.conf["manifestsDir"]
        kube.create_nad("alpha", sim.bridge_conf("alpha", "10.10.1.0/24"))

    def run(self, command: str, pod: str, cid: str, ns: Netns, uid: str) -> Answer:
        return self.sim.run(
            command,
            self.conf,
            container_id=cid,
            netns=ns.path,
            pod=(self.kube.namespace, pod),
            extra_args=f"K8S_POD_UID={uid}",
        )


def _uid(pod: dict[str, object]) -> str:
    return str(pod["metadata"]["uid"])  # type: ignore[index]


def test_thin_add_with_another_pods_uid_fails_with_both_uids_and_attaches_nothing(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    cl = Cluster(sim, kube_env)
    pod = kube_env.create_pod("web", networks="alpha")
    stale = str(uuid.uuid4())
    added = cl.run("ADD", "web", unique_name("c"), pod_ns, stale)
    assert added.error_code == 11, added
    msg = str(added.json["msg"])
    assert f'expected pod UID "{stale}" but got "{_uid(pod)}"' in msg, msg
    assert links(pod_ns) == set()
    assert leftovers(sim) == ([], [], [])


def test_thin_del_with_a_uid_mismatch_deletes_from_the_cache(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    cl = Cluster(sim, kube_env)
    old = kube_env.create_pod("web", networks="alpha")
    cid = unique_name("c")
    added = cl.run("ADD", "web", cid, pod_ns, _uid(old))
    assert added.ok, added
    assert links(pod_ns) == {"eth0", "net1"}
    # A StatefulSet pod re-created under the same name: the API now holds another UID.
    kube_env.delete_pod("web")
    kube_env.create_pod("web", networks="alpha")
    deleted = cl.run("DEL", "web", cid, pod_ns, _uid(old))
    assert deleted.ok, deleted
    assert links(pod_ns) == set()
    assert leftovers(sim) == ([], [], [])


def test_thin_static_pod_uid_differs_and_is_still_attached(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    cl = Cluster(sim, kube_env)
    kube_env.create_pod(
        "etcd",
        networks="alpha",
        annotations={"kubernetes.io/config.mirror": "abc", "kubernetes.io/config.source": "file"},
    )
    cid = unique_name("c")
    added = cl.run("ADD", "etcd", cid, pod_ns, str(uuid.uuid4()))  # kubelet's UID, not the mirror's
    assert added.ok, added
    assert links(pod_ns) == {"eth0", "net1"}
    assert cl.run("DEL", "etcd", cid, pod_ns, "x").ok
    assert leftovers(sim) == ([], [], [])


def test_manifest_pod_with_another_uid_is_an_error_not_only_eth0(sim: Node, pod_ns: Netns) -> None:
    cluster = sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.88.0.0/24", gateway=True))
    sim.add_nad("alpha", sim.bridge_conf("alpha", "10.10.1.0/24"))
    sim.add_pod("web", networks="alpha", uid="u-manifest")
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")
    added = sim.run(
        "ADD",
        conf,
        container_id=cid,
        netns=pod_ns.path,
        pod=("default", "web"),
        extra_args="K8S_POD_UID=u-other",
    )
    assert added.error_code == 7, added
    msg = str(added.json["msg"])
    assert 'expected pod UID "u-other" but got "u-manifest"' in msg and "manifest" in msg, msg
    assert links(pod_ns) == set()
    assert leftovers(sim) == ([], [], [])
    deleted = sim.run(
        "DEL",
        conf,
        container_id=cid,
        netns=pod_ns.path,
        pod=("default", "web"),
        extra_args="K8S_POD_UID=u-other",
    )
    assert deleted.ok, deleted


def _kube_env(node: ThickNode, ns: Netns, cid: str, pod: str, uid: str) -> dict[str, str]:
    env = node.env(ns, cid, pod)
    env["CNI_ARGS"] += f";K8S_POD_UID={uid}"
    return env


def test_thick_uid_mismatch_fails_and_a_stale_informer_is_checked_live(kube_node) -> None:  # noqa: F811
    node, fake, nads = kube_node
    node.daemon.start(wait="readyz")
    old = fake.create_pod("default", "sts-0", annotations={"k8s.v1.cni.cncf.io/networks": nads[0]})
    deadline = time.monotonic() + 15
    while node.daemon.stats()["caches"]["pods"]["objects"] < 1:
        assert time.monotonic() < deadline, "the pod never reached the informer"
        time.sleep(0.05)
    with netns() as ns:
        # The informer holds the pod; the runtime names another UID: refused, nothing attached.
        stale = str(uuid.uuid4())
        code, result, err = run_shim(
            node.shim, "ADD", node.conf(), env=_kube_env(node, ns, unique_name("c"), "sts-0", stale)
        )
        assert code == 1 and result is not None and result["code"] == 11, (result, err)
        assert f'expected pod UID "{stale}" but got "{_uid(old)}"' in str(result["msg"])
        assert links(ns) == set() and node.leases() == []

        # The informer is cut off and still holds the old pod; the API has the new one, whose
        # UID the runtime names: the live GET decides, and the ADD succeeds.
        fake.inject(500, count=100000, method="GET", path="/api/v1/pods")
        fake.cut_watches()
        fake.delete_pod("default", "sts-0")
        new = fake.create_pod("default", "sts-0", annotations={"k8s.v1.cni.cncf.io/networks": nads[0]})
        cid = unique_name("c")
        env = _kube_env(node, ns, cid, "sts-0", _uid(new))
        code, result, err = run_shim(node.shim, "ADD", node.conf(), env=env)
        assert code == 0, (result, err, node.daemon.output()[-3000:])
        assert links(ns) == {"eth0", "net1"}
        # DEL names the old pod's UID (the cache decides; no API needed).
        code, result, err = run_shim(
            node.shim, "DEL", node.conf(), env=_kube_env(node, ns, cid, "sts-0", _uid(old))
        )
        assert code == 0, (result, err)
        assert links(ns) == set() and node.leases() == [] and node.cache_files(cid) == []


# -- 2. repeated ADD ----------------------------------------------------------------------------


def _two_network_pod(sim: Node) -> dict[str, object]:
    cluster = sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.88.0.0/24", gateway=True))
    sim.add_nad("alpha", sim.bridge_conf("alpha", "10.10.1.0/24"))
    sim.add_nad("beta", sim.bridge_conf("beta", "10.10.2.0/24"))
    sim.add_pod("web", networks="alpha,beta")
    return sim.multus_conf(clusterNetwork=str(cluster))


def _snapshot(sim: Node, ns: Netns) -> tuple[dict[str, list[str]], list[str], dict[str, bytes]]:
    addresses = {name: ns.addresses(name) for name in sorted(links(ns))}
    return addresses, sim.leases(), {path: Path(path).read_bytes() for path in sim.cache_files()}


def test_thin_repeated_add_is_refused_and_keeps_the_first_adds_interfaces(sim: Node, pod_ns: Netns) -> None:
    conf = _two_network_pod(sim)
    cid = unique_name("c")
    first = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"))
    assert first.ok, first
    before = _snapshot(sim, pod_ns)
    assert set(before[0]) == {"eth0", "net1", "net2"} and len(before[1]) == 3

    again = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"))
    assert again.error_code == 7, again
    assert cid in str(again.json["msg"]) and "DEL" in str(again.json["msg"]), again
    assert _snapshot(sim, pod_ns) == before  # interfaces, addresses, leases and caches untouched

    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"))
    assert deleted.ok, deleted
    assert links(pod_ns) == set()
    assert leftovers(sim) == ([], [], [])


def test_thin_add_into_a_netns_whose_eth0_exists_rolls_back_only_its_own_work(
    sim: Node, pod_ns: Netns
) -> None:
    """Another container's ADD already made eth0 in that netns (its delegate list is not ours):
    the second ADD fails on eth0 before calling any delegate and must not DEL the cluster
    network for its own container ID either."""
    conf = _two_network_pod(sim)
    first_cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=first_cid, netns=pod_ns.path, pod=("default", "web")).ok
    before = _snapshot(sim, pod_ns)
    other = sim.run("ADD", conf, container_id=unique_name("c"), netns=pod_ns.path, pod=("default", "web"))
    assert other.error_code == 7 and "already exists" in str(other.json["msg"]), other
    assert _snapshot(sim, pod_ns) == before
    assert sim.run("DEL", conf, container_id=first_cid, netns=pod_ns.path, pod=("default", "web")).ok
    assert leftovers(sim) == ([], [], [])


# -- 3. kill -9 in the middle of an ADD ---------------------------------------------------------


@pytest.mark.parametrize("slow_index", [0, 1], ids=["cluster-network-slow", "second-network-slow"])
def test_thin_kill_9_mid_add_then_del_leaves_nothing(
    sim: Node, pod_ns: Netns, tmp_path: Path, slow_index: int
) -> None:
    plugin_dir = tmp_path / "plugins"
    pids = slow_plugin(plugin_dir)
    confs = [
        sim.bridge_conf("cluster", "10.88.0.0/24", gateway=True),
        sim.bridge_conf("slow", "10.10.5.0/24"),
    ]
    confs[slow_index]["type"] = SLOW_PLUGIN
    cluster = sim.write_conf("10-cluster.conf", confs[0])
    sim.add_nad("slow", confs[1])
    sim.add_pod("web", networks="slow")
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")
    path = f"{plugin_dir}:{PLUGIN_DIR}"

    proc = start_multus(sim, "ADD", conf, cid=cid, netns_path=pod_ns.path, pod="web", path=path)
    ifname = "eth0" if slow_index == 0 else "net1"
    delegate = wait_for_file(pids / f"{cid}-{ifname}")
    try:
        stop(proc)
        deleted = sim.run(
            "DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"), env={"CNI_PATH": path}
        )
        assert deleted.ok, deleted
        # The delegate that was still running is gone: nothing can appear after the DEL.
        assert not alive(delegate)
        assert links(pod_ns) == set()
        assert leftovers(sim) == ([], [], [])
    finally:
        kill_group(delegate)
        sim.run(
            "DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"), env={"CNI_PATH": path}
        )


def test_thin_del_during_a_running_add_waits_for_it_and_leaves_nothing(
    sim: Node, pod_ns: Netns, tmp_path: Path
) -> None:
    """The ADD is not killed (a DEL that overtakes a slow ADD): the DEL stops its delegate and
    the ADD's own rollback and the DEL together leave nothing."""
    plugin_dir = tmp_path / "plugins"
    pids = slow_plugin(plugin_dir)
    cluster = sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.88.0.0/24", gateway=True))
    slow = sim.bridge_conf("slow", "10.10.5.0/24")
    slow["type"] = SLOW_PLUGIN
    sim.add_nad("slow", slow)
    sim.add_pod("web", networks="slow")
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")
    path = f"{plugin_dir}:{PLUGIN_DIR}"
    proc = start_multus(sim, "ADD", conf, cid=cid, netns_path=pod_ns.path, pod="web", path=path)
    delegate = wait_for_file(pids / f"{cid}-net1")
    try:
        deleted = sim.run(
            "DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"), env={"CNI_PATH": path}
        )
        assert deleted.ok, deleted
        stdout, _ = proc.communicate(timeout=60)
        assert proc.returncode != 0 and json.loads(stdout)["code"] == 11, stdout
        assert not alive(delegate)
        assert links(pod_ns) == set()
        assert leftovers(sim) == ([], [], [])
        again = sim.run(
            "DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"), env={"CNI_PATH": path}
        )
        assert again.ok, again
    finally:
        kill_group(delegate)
        if proc.returncode is None:
            stop(proc)


@pytest.fixture
def thick(tmp_path: Path) -> Iterator[tuple[ThickNode, Path]]:
    """A daemon node with two networks; the second one's delegate is the slow wrapper."""
    node = make_node(tmp_path / "node", 2)
    plugin_dir = tmp_path / "plugins"
    pids = slow_plugin(plugin_dir)
    for conf_path in (node.root / "multus.d").iterdir():
        conf = json.loads(conf_path.read_text())
        conf["type"] = SLOW_PLUGIN
        conf_path.write_text(json.dumps(conf))
    node.daemon.start(wait="readyz")
    try:
        yield node, pids
    finally:
        node.daemon.stop()
        for bridge in node.bridges:
            delete_host_link(bridge)


def _start_shim(node: ThickNode, env: dict[str, str]) -> subprocess.Popen[bytes]:
    full = {"CNI_COMMAND": "ADD", "PATH": os.environ.get("PATH", ""), **env}
    stdin = node.root / f"{env['CNI_CONTAINERID']}-ADD.json"
    stdin.write_bytes(node.conf())
    return _popen([str(node.shim)], full, stdin)


@pytest.mark.parametrize("daemon_fate", ["daemon-keeps-running", "daemon-killed"])
def test_thick_kill_9_of_the_shim_mid_add_then_del_leaves_nothing(
    thick, tmp_path: Path, daemon_fate: str
) -> None:
    node, pids = thick
    path = f"{tmp_path / 'plugins'}:{PLUGIN_DIR}"
    cid = unique_name("c")
    with netns() as ns:
        env = {**node.env(ns, cid), "CNI_PATH": path}
        proc = _start_shim(node, env)
        delegate = wait_for_file(pids / f"{cid}-net1")
        try:
            stop(proc)
            if daemon_fate == "daemon-killed":
                node.daemon.kill()  # the delegate outlives the daemon; the shim deletes locally
            code, result, err = run_shim(node.shim, "DEL", node.conf(), env=env)
            assert code == 0, (result, err, node.daemon.output()[-3000:])
            assert not alive(delegate)
            assert links(ns) == set()
            assert node.leases() == [] and node.cache_files(cid) == []
        finally:
            kill_group(delegate)
            if daemon_fate == "daemon-killed":
                node.daemon.start(wait="readyz")
            run_shim(node.shim, "DEL", node.conf(), env=env)


def test_thick_repeated_add_is_refused_and_one_del_removes_everything(thick, tmp_path: Path) -> None:
    node, _ = thick
    path = f"{tmp_path / 'plugins'}:{PLUGIN_DIR}"
    for conf_path in (node.root / "multus.d").iterdir():  # no sleeping here
        conf = json.loads(conf_path.read_text())
        conf["type"] = "bridge"
        conf_path.write_text(json.dumps(conf))
    cid = unique_name("c")
    with netns() as ns:
        env = {**node.env(ns, cid), "CNI_PATH": path}
        code, result, err = run_shim(node.shim, "ADD", node.conf(), env=env)
        assert code == 0, (result, err)
        before = ({name: ns.addresses(name) for name in links(ns)}, sorted(node.leases()))
        assert set(before[0]) == {"eth0", "net1"} and len(before[1]) == 2
        code, result, err = run_shim(node.shim, "ADD", node.conf(), env=env)
        assert code == 1 and result is not None and result["code"] == 7, (result, err)
        assert ({name: ns.addresses(name) for name in links(ns)}, sorted(node.leases())) == before
        code, result, err = run_shim(node.shim, "DEL", node.conf(), env=env)
        assert code == 0, (result, err)
        assert links(ns) == set() and node.leases() == [] and node.cache_files(cid) == []


def test_thin_del_after_multus_was_killed_mid_write_removes_the_temp_files(sim: Node, pod_ns: Netns) -> None:
    """kill -9 can hit ``multus`` between a cache's temp file and its rename; the lock file it
    leaves tells the next DEL to remove temp files whose writer is gone."""
    conf = _two_network_pod(sim)
    cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web")).ok
    lock = sim.cni_dir / "locks" / cid
    lock.write_text("999999 0".ljust(32))  # what a killed holder leaves
    orphans = [
        sim.cni_dir / f".{cid}.999999.1.tmp",
        sim.cni_dir / "results" / f".beta-{cid}-net2.999999.1.tmp",
    ]
    for orphan in orphans:
        orphan.write_text("{")
    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"))
    assert deleted.ok, deleted
    assert links(pod_ns) == set()
    assert leftovers(sim) == ([], [], [])


def test_thick_add_repeated_while_the_first_still_runs_gets_11_and_touches_nothing(
    thick, tmp_path: Path
) -> None:
    """A runtime's retry collides with a queued ADD that runs after its client went away."""
    node, pids = thick
    path = f"{tmp_path / 'plugins'}:{PLUGIN_DIR}"
    cid = unique_name("c")
    with netns() as ns:
        env = {**node.env(ns, cid), "CNI_PATH": path}
        first = _start_shim(node, env)
        delegate = wait_for_file(pids / f"{cid}-net1")
        try:
            code, result, err = run_shim(node.shim, "ADD", node.conf(), env=env)
            assert code == 1 and result is not None and result["code"] == 11, (result, err)
            out, _ = first.communicate(timeout=60)
            assert first.returncode == 0, out  # the first ADD was not disturbed
            assert links(ns) == {"eth0", "net1"} and len(node.leases()) == 2
            code, result, err = run_shim(node.shim, "ADD", node.conf(), env=env)
            assert code == 1 and result is not None and result["code"] == 7, (result, err)
            assert links(ns) == {"eth0", "net1"} and len(node.leases()) == 2
            code, result, err = run_shim(node.shim, "DEL", node.conf(), env=env)
            assert code == 0, (result, err)
            assert links(ns) == set() and node.leases() == [] and node.cache_files(cid) == []
        finally:
            kill_group(delegate)
            if first.returncode is None:
                stop(first)
            run_shim(node.shim, "DEL", node.conf(), env=env)
