"""Hot-plug (``dynamicNetworks``, issue 15) end to end: the real daemon, the real multus-shim,
real plugins in real network namespaces, and the fake API server whose pod annotation changes.

Each test ADDs a pod through the shim (as the runtime would), then edits the pod's networks
annotation on the API server and waits for the daemon to bring the netns in line.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakeapi import PODS, FakeApiServer
from tests.integration.test_shim_daemon import Node, make_node
from tests.support.daemon import PLUGIN_DIR, run_shim
from tests.support.netns import Netns, delete_host_link, netns, unique_name
from tests.support.waiting import wait_until

pytestmark = pytest.mark.netns

NETWORKS = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"


class HotplugNode:
    """A node whose daemon hot-plugs, three bridge NADs (nad1..nad3) and a slow one."""

    def __init__(self, root: Path, api: FakeApiServer, networks: int = 1, **daemon_keys: object) -> None:
        self.api = api
        kubeconfig = api.write_kubeconfig(root / "kubeconfig")
        keys: dict[str, object] = {"dynamicNetworks": True, **daemon_keys}
        # networks > 1: the daemon's defaultNetworks hold networks - 1 bridges (net1, ...).
        self.node: Node = make_node(root / "node", networks, kubeconfig=str(kubeconfig), **keys)
        self.node.daemon.env["MULTUS_NODE_NAME"] = "node1"
        self.ipam: dict[str, Path] = {}
        octet = random.randint(100, 250)
        for index in range(1, 4):
            self._bridge_nad(f"nad{index}", "bridge", f"10.{octet}.{index + 10}.0/24")
        # A plugin that takes seconds to ADD: a CNI DEL can come while a hot-plug runs.
        self.slow_bin = root / "slowbin"
        self.slow_bin.mkdir()
        self.slow_mark = root / "slow-started"
        script = self.slow_bin / "slowbridge"
        script.write_text(
            "#!/bin/sh\n"
            f'if [ "$CNI_COMMAND" = ADD ]; then echo $$ > {self.slow_mark}; sleep 30; fi\n'
            f"exec {PLUGIN_DIR}/bridge\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        self._bridge_nad("slow", "slowbridge", f"10.{octet}.20.0/24")

    def _bridge_nad(self, name: str, plugin: str, subnet: str) -> None:
        bridge = unique_name("pmh")
        self.node.bridges.append(bridge)
        ipam_dir = self.node.root / f"ipam-{name}"
        self.node.ipam_dirs.append(ipam_dir)
        self.ipam[name] = ipam_dir
        conf = {
            "cniVersion": "0.3.1",
            "name": f"{name}-{bridge}",
            "type": plugin,
            "bridge": bridge,
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(ipam_dir)},
        }
        self.api.create_nad("default", name, conf)

    # -- the pod -------------------------------------------------------------------------------

    def add_pod(self, ns: Netns, name: str, networks: str) -> tuple[str, dict[str, str]]:
        if self.api.get_pod("default", name) is None:
            self.api.create_pod("default", name, annotations={NETWORKS: networks} if networks else None)
        pod = self.api.get_pod("default", name)
        assert pod is not None
        cid = unique_name("cid")
        env = self.node.env(ns, cid, name)
        env["CNI_ARGS"] += f";K8S_POD_UID={pod['metadata']['uid']}"
        env["CNI_PATH"] = f"{self.slow_bin}:{PLUGIN_DIR}"
        code, result, err = run_shim(self.node.shim, "ADD", self.node.conf(), env=env)
        assert code == 0, (result, err, self.node.daemon.output()[-3000:])
        return cid, env

    def delete(self, env: dict[str, str]) -> None:
        code, result, err = run_shim(self.node.shim, "DEL", self.node.conf(), env=env)
        assert code == 0, (result, err, self.node.daemon.output()[-3000:])

    def set_networks(self, name: str, networks: str | list[dict[str, object]] | None) -> None:
        pod = copy.deepcopy(self.api.get_pod("default", name))
        assert pod is not None
        annotations = pod["metadata"].setdefault("annotations", {})  # type: ignore[union-attr]
        if networks is None:
            annotations.pop(NETWORKS, None)
        else:
            annotations[NETWORKS] = networks if isinstance(networks, str) else json.dumps(networks)
        self.api.store.replace(PODS, "default", name, pod)

    def status_interfaces(self, name: str) -> list[str]:
        pod = self.api.get_pod("default", name) or {}
        value = (pod.get("metadata") or {}).get("annotations", {}).get(NETWORK_STATUS)  # type: ignore[attr-defined]
        return [str(entry.get("interface")) for entry in json.loads(value)] if value else []

    def events(self, name: str, reason: str) -> list[str]:
        return [
            str(e.get("message")) for e in self.api.events_for("default", name) if e.get("reason") == reason
        ]

    def slow_started(self) -> bool:
        return self.slow_mark.exists() and self.slow_mark.read_text().strip().isdigit()

    def leases(self, nad: str) -> list[str]:
        directory = self.ipam[nad]
        return [str(p) for p in directory.rglob("*") if p.is_file() and p.name[0].isdigit()]

    def wait_links(self, ns: Netns, expected: set[str], what: str) -> None:
        wait_until(lambda: set(ns.links()) - {"lo"} == expected, timeout=20, what=what)


@pytest.fixture
def hp(tmp_path: Path) -> Iterator[HotplugNode]:
    with FakeApiServer(tmp_path / "api") as api:
        hot = HotplugNode(tmp_path, api)
        try:
            hot.node.daemon.start(wait="readyz")
            yield hot
        finally:
            hot.node.daemon.stop()
            for bridge in hot.node.bridges:
                delete_host_link(bridge)


def _eth0(ns: Netns) -> tuple[object, object, list[str]]:
    link = ns.links()["eth0"]
    return link.get("ifindex"), link.get("address"), ns.addresses("eth0")


def test_added_network_appears_and_removed_one_goes_with_its_lease(hp: HotplugNode) -> None:
    with netns() as ns:
        cid, env = hp.add_pod(ns, "web", "nad1")
        assert set(ns.links()) - {"lo"} == {"eth0", "net1"}
        eth0 = _eth0(ns)

        hp.set_networks("web", "nad1,nad2")
        hp.wait_links(ns, {"eth0", "net1", "net2"}, "net2 hot-plugged")
        wait_until(lambda: hp.status_interfaces("web") == ["eth0", "net1", "net2"], what="network-status")
        wait_until(lambda: any("net2" in m for m in hp.events("web", "AddedInterface")), what="event")
        assert hp.leases("nad2") and ns.addresses("net2")

        # An explicit name, and removing the first network: net2 keeps its name.
        hp.set_networks("web", [{"name": "nad2"}, {"name": "nad3", "interface": "hp0"}])
        hp.wait_links(ns, {"eth0", "net2", "hp0"}, "nad1 detached, nad3 attached as hp0")
        wait_until(lambda: hp.leases("nad1") == [], what="the lease of nad1 released")
        wait_until(lambda: hp.status_interfaces("web") == ["eth0", "net2", "hp0"], what="network-status")
        wait_until(lambda: any("net1" in m for m in hp.events("web", "RemovedInterface")), what="event")

        # nad1 comes back under the smallest free netN.
        hp.set_networks("web", "nad2,nad1,nad3@hp0")
        hp.wait_links(ns, {"eth0", "net1", "net2", "hp0"}, "nad1 back as net1")
        assert _eth0(ns) == eth0  # the cluster network was never touched

        # Everything goes: the annotation removed.
        hp.set_networks("web", None)
        hp.wait_links(ns, {"eth0"}, "all secondary networks detached")
        wait_until(lambda: hp.status_interfaces("web") == ["eth0"], what="network-status of eth0 only")
        for nad in ("nad1", "nad2", "nad3"):
            assert hp.leases(nad) == []
        assert _eth0(ns) == eth0

        hp.set_networks("web", "nad3")
        hp.wait_links(ns, {"eth0", "net1"}, "nad3 attached")
        hp.delete(env)  # the pod's DEL removes the hot-plugged network too
        assert set(ns.links()) - {"lo"} == set()
        assert hp.node.leases() == []
        assert hp.node.cache_files(cid) == []


@pytest.mark.parametrize(
    ("networks", "why"),
    [
        ("nad1,missing", "missing"),
        ("nad1,other/nad2", "namespace isolation"),
        ([{"name": "nad1"}, {"name": "nad2", "interface": "eth0"}], "eth0"),
        ("nad1,nad2@net1", "net1"),
        # Changed parameters of a running attachment are refused, not re-created (docs/hotplug.md).
        ([{"name": "nad1", "mac": "02:00:00:00:00:42"}], "is attached with other"),
        ([{"name": "nad1", "cni-args": {"foo": "bar"}}], "other cni-args"),
    ],
)
def test_invalid_or_forbidden_addition_leaves_the_pod_as_it_was(
    tmp_path: Path, networks: str | list[dict[str, object]], why: str
) -> None:
    with FakeApiServer(tmp_path / "api") as api:
        hot = HotplugNode(tmp_path, api, namespaceIsolation=True)
        api.create_nad("other", "nad2", {"cniVersion": "0.3.1", "name": "x", "type": "bridge"})
        try:
            hot.node.daemon.start(wait="readyz")
            with netns() as ns:
                cid, env = hot.add_pod(ns, "web", "nad1")
                before = hot.status_interfaces("web")
                hot.set_networks("web", networks)
                wait_until(lambda: hot.events("web", "HotplugFailed"), what="a Warning event")
                warning = hot.events("web", "HotplugFailed")[0]
                assert why in warning, warning
                assert set(ns.links()) - {"lo"} == {"eth0", "net1"}
                assert hot.status_interfaces("web") == before
                assert hot.leases("nad2") == []
                hot.delete(env)
                assert hot.node.leases() == [] and hot.node.cache_files(cid) == []
        finally:
            hot.node.daemon.stop()
            for bridge in hot.node.bridges:
                delete_host_link(bridge)


def test_change_made_while_the_daemon_was_down_is_applied_after_restart(hp: HotplugNode) -> None:
    with netns() as ns:
        cid, env = hp.add_pod(ns, "web", "nad1")
        assert hp.node.daemon.stop() == 0  # SIGTERM: the hot-plug workers stop cleanly too
        hp.set_networks("web", "nad2")
        hp.node.daemon.start(wait="readyz")
        hp.wait_links(ns, {"eth0", "net2"}, "nad1 replaced by nad2 after the restart")
        wait_until(lambda: hp.leases("nad1") == [], what="the lease of nad1 released")
        wait_until(lambda: hp.status_interfaces("web") == ["eth0", "net2"], what="network-status")
        hp.delete(env)
        assert hp.node.leases() == [] and hp.node.cache_files(cid) == []


def test_daemon_killed_during_a_hotplug_leaves_what_the_next_one_finishes(hp: HotplugNode) -> None:
    with netns() as ns:
        cid, env = hp.add_pod(ns, "web", "nad1")
        hp.set_networks("web", "nad1,slow")
        wait_until(hp.slow_started, what="the slow delegate started")
        # SIGKILL, with its delegate (a DaemonSet pod's container dies with its processes): the
        # delegate list still names the half-added network.
        hp.node.daemon.kill()
        os.killpg(int(hp.slow_mark.read_text()), signal.SIGKILL)
        hp.set_networks("web", "nad1")  # and the network is no longer wanted
        hp.node.daemon.start(wait="readyz")
        wait_until(lambda: hp.leases("slow") == [], what="the interrupted attachment deleted")
        hp.wait_links(ns, {"eth0", "net1"}, "only nad1")
        wait_until(
            lambda: "finishing an interrupted hot-plug" in hp.node.daemon.output(), what="the pending item"
        )
        hp.delete(env)
        assert hp.node.leases() == [] and hp.node.cache_files(cid) == []


def test_pod_deleted_during_a_hotplug_leaves_nothing(hp: HotplugNode) -> None:
    with netns() as ns:
        cid, env = hp.add_pod(ns, "web", "nad1")
        hp.set_networks("web", "nad1,slow")
        wait_until(hp.slow_started, what="the slow delegate started")
        hp.delete(env)  # the CNI DEL wins: it stops the hot-plug and deletes everything
        hp.api.delete_pod("default", "web")
        assert "busy; waiting (stopping its ADD)" in hp.node.daemon.output()
        assert set(ns.links()) - {"lo"} == set()
        assert hp.node.leases() == []
        assert hp.node.cache_files(cid) == []
        locks = hp.node.cache_dir / "locks"
        assert not locks.exists() or list(locks.iterdir()) == []


def test_delegate_api_shares_the_code_path_and_the_pods_del_removes_it(tmp_path: Path) -> None:
    """``/delegate`` ADD into a pod pymultus attached is recorded in its delegate list: the pod's
    own DEL then removes it and releases its lease (before, the lease leaked). Without
    dynamicNetworks: with it, the annotation decides and a reconcile would remove the network."""
    with FakeApiServer(tmp_path / "api") as api:
        hot = HotplugNode(tmp_path, api, dynamicNetworks=False)
        try:
            hot.node.daemon.start(wait="readyz")
            _delegate_add_then_pod_del(hot)
        finally:
            hot.node.daemon.stop()
            for bridge in hot.node.bridges:
                delete_host_link(bridge)


def _delegate_add_then_pod_del(hp: HotplugNode) -> None:
    from pymultus.daemon import wire

    bridge = unique_name("pmh")
    hp.node.bridges.append(bridge)
    ipam = hp.node.root / "delegate-ipam"
    conf = {
        "cniVersion": "0.3.1",
        "name": "by-delegate",
        "type": "bridge",
        "bridge": bridge,
        "ipam": {"type": "host-local", "subnet": "10.233.9.0/24", "dataDir": str(ipam)},
    }
    hp.node.ipam_dirs.append(ipam)
    with netns() as ns:
        cid, env = hp.add_pod(ns, "web", "")
        request = dict(env, CNI_COMMAND="ADD", CNI_IFNAME="net7")
        status, answer = hp.node.daemon.request(
            "POST", "/delegate", wire.encode_request(request, json.dumps(conf).encode(), {})
        )
        assert status == 200, answer
        assert "net7" in ns.links()
        saved = json.loads((hp.node.cache_dir / cid).read_text())
        assert [item["ifname"] for item in saved["delegates"]] == ["eth0", "net7"]
        hp.delete(env)
        assert set(ns.links()) - {"lo"} == set()
        assert hp.node.leases() == [] and hp.node.cache_files(cid) == []


def test_default_networks_are_never_touched(tmp_path: Path) -> None:
    with FakeApiServer(tmp_path / "api") as api:
        hot = HotplugNode(tmp_path, api, networks=2)  # defaultNetworks: one bridge, as net1
        try:
            hot.node.daemon.start(wait="readyz")
            with netns() as ns:
                cid, env = hot.add_pod(ns, "web", "")
                assert set(ns.links()) - {"lo"} == {"eth0", "net1"}
                default_net = ns.links()["net1"].get("ifindex")
                hot.set_networks("web", "nad1")
                hot.wait_links(ns, {"eth0", "net1", "net2"}, "nad1 as net2 (net1 is the default network)")
                hot.set_networks("web", None)
                hot.wait_links(ns, {"eth0", "net1"}, "nad1 detached")
                assert ns.links()["net1"].get("ifindex") == default_net
                hot.delete(env)
                assert hot.node.leases() == [] and hot.node.cache_files(cid) == []
        finally:
            hot.node.daemon.stop()
            for bridge in hot.node.bridges:
                delete_host_link(bridge)


def test_the_sandbox_of_an_earlier_pod_of_that_name_is_left_alone(hp: HotplugNode) -> None:
    """A pod deleted and re-created under the same name before its old sandbox was torn down:
    the new pod's change goes to the new sandbox only."""
    with netns() as old_ns, netns() as new_ns:
        old_cid, old_env = hp.add_pod(old_ns, "web", "nad1")
        hp.api.delete_pod("default", "web")
        new_cid, new_env = hp.add_pod(new_ns, "web", "nad1")  # another UID, another container
        hp.set_networks("web", "nad1,nad2")
        hp.wait_links(new_ns, {"eth0", "net1", "net2"}, "net2 in the new sandbox")
        wait_until(lambda: hp.status_interfaces("web") == ["eth0", "net1", "net2"], what="network-status")
        assert set(old_ns.links()) - {"lo"} == {"eth0", "net1"}
        saved = json.loads((hp.node.cache_dir / old_cid).read_text())
        assert [item["ifname"] for item in saved["delegates"]] == ["eth0", "net1"]
        hp.delete(old_env)
        hp.delete(new_env)
        assert hp.node.leases() == []
        assert hp.node.cache_files(old_cid) == [] and hp.node.cache_files(new_cid) == []


def test_metrics_count_reconciles_and_interfaces_and_unattached_pods_are_ignored(tmp_path: Path) -> None:
    from tests.integration.test_daemon_api import _free_port

    with FakeApiServer(tmp_path / "api") as api:
        port = _free_port()
        hot = HotplugNode(tmp_path, api, metricsPort=port, metricsAddress="127.0.0.1")
        try:
            hot.node.daemon.start(wait="readyz")
            with netns() as ns:
                cid, env = hot.add_pod(ns, "web", "nad1")
                # A pod of this node that pymultus did not attach: never reconciled, so its
                # unknown network is no refusal and no event.
                api.create_pod("default", "elsewhere", annotations={NETWORKS: "nad1"})
                hot.set_networks("elsewhere", "missing")
                hot.set_networks("web", "nad1,nad2")
                hot.wait_links(ns, {"eth0", "net1", "net2"}, "net2 hot-plugged")
                hot.set_networks("web", "nad2")
                hot.wait_links(ns, {"eth0", "net2"}, "net1 detached")

                def metrics() -> str:
                    url = f"http://127.0.0.1:{port}/metrics"
                    return urllib.request.urlopen(url, timeout=5).read().decode()

                wait_until(
                    lambda: 'pymultus_hotplug_interfaces_total{change="removed"} 1.0' in metrics(),
                    what="the removal counted",
                )
                text = metrics()
                assert 'pymultus_hotplug_interfaces_total{change="added"} 1.0' in text
                assert 'pymultus_hotplug_reconciles_total{result="changed"} 2.0' in text
                assert 'pymultus_hotplug_duration_seconds_count{result="changed"} 2.0' in text
                assert 'result="refused"' not in text
                assert api.events_for("default", "elsewhere") == []
                hot.delete(env)
                assert hot.node.leases() == [] and hot.node.cache_files(cid) == []
        finally:
            hot.node.daemon.stop()
            for bridge in hot.node.bridges:
                delete_host_link(bridge)
