"""The daemon against the fake API server: informer caches, annotations, watch cuts and 410s."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakeapi import FakeApiServer
from tests.integration.test_shim_daemon import make_node
from tests.support.daemon import run_shim
from tests.support.netns import delete_host_link, netns, unique_name
from tests.support.waiting import wait_until

pytestmark = pytest.mark.netns


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApiServer]:
    with FakeApiServer(tmp_path / "api") as server:
        yield server


def _nad_conf(name: str, bridge: str, subnet: str, ipam_dir: Path) -> dict[str, object]:
    return {
        "cniVersion": "0.3.1",
        "name": name,
        "type": "bridge",
        "bridge": bridge,
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(ipam_dir)},
    }


@pytest.fixture
def kube_node(tmp_path: Path, api: FakeApiServer) -> Iterator[tuple[object, FakeApiServer, list[str]]]:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    node = make_node(tmp_path / "node", 1, kubeconfig=str(kubeconfig))
    node.daemon.env["MULTUS_NODE_NAME"] = "node1"
    octet = random.randint(100, 250)
    nads = []
    for index in range(1, 4):
        bridge = unique_name("pmk")
        node.bridges.append(bridge)
        ipam_dir = node.root / f"nadipam{index}"
        node.ipam_dirs.append(ipam_dir)
        name = f"nad{index}"
        api.create_nad(
            "default", name, _nad_conf(f"kn{index}-{bridge}", bridge, f"10.{octet}.{index}.0/24", ipam_dir)
        )
        nads.append(name)
    try:
        yield node, api, nads
    finally:
        node.daemon.stop()
        for bridge in node.bridges:
            delete_host_link(bridge)


@pytest.mark.parametrize("extra", [0, 1, 3])
def test_add_del_with_annotations_from_the_caches(kube_node, extra: int) -> None:
    node, api, nads = kube_node
    existing = api.create_pod(
        "default",
        "before",
        annotations={"k8s.v1.cni.cncf.io/networks": ",".join(nads[:extra])} if extra else None,
    )
    node.daemon.start(wait="readyz")
    stats = node.daemon.stats()
    assert stats["caches"]["pods"]["objects"] >= 1 and stats["caches"]["nads"]["objects"] == 3, stats
    # A pod scheduled after the daemon started reaches the cache through the watch.
    late = api.create_pod(
        "default",
        "late",
        annotations={"k8s.v1.cni.cncf.io/networks": ",".join(nads[:extra])} if extra else None,
    )
    wait_until(
        lambda: node.daemon.stats()["caches"]["pods"]["objects"] >= 2, what="the late pod in the cache"
    )
    for pod in (existing, late):
        meta = pod["metadata"]
        cid = unique_name("cid")
        with netns() as ns:
            env = node.env(ns, cid, meta["name"])
            env["CNI_ARGS"] += f";K8S_POD_UID={meta['uid']}"
            code, result, err = run_shim(node.shim, "ADD", node.conf(), env=env)
            assert code == 0, (result, err, node.daemon.output()[-3000:])
            assert set(ns.links()) - {"lo"} == {"eth0"} | {f"net{i}" for i in range(1, extra + 1)}
            status = api.get_pod("default", meta["name"])["metadata"]["annotations"][
                "k8s.v1.cni.cncf.io/network-status"
            ]
            assert len(json.loads(status)) == extra + 1
            code, result, err = run_shim(node.shim, "DEL", node.conf(), env=env)
            assert code == 0, (result, err)
            assert set(ns.links()) - {"lo"} == set()
            assert node.leases() == []
            assert node.cache_files(cid) == []


def test_watch_cut_and_410_converge(kube_node) -> None:
    node, api, _ = kube_node
    node.daemon.start(wait="readyz")
    lists_before = node.daemon.stats()["caches"]["pods"]["lists"]

    # 1. The server cuts every watch mid-stream: the informer reconnects from its resourceVersion.
    # The informer opens its watch right after the first sync; cut it as soon as it exists.
    wait_until(lambda: api.cut_watches() >= 1, what="an open watch to cut")
    api.create_pod("default", "after-cut")
    wait_until(lambda: node.daemon.stats()["caches"]["pods"]["objects"] == 1, what="pod after a cut")
    assert node.daemon.stats()["caches"]["pods"]["lists"] == lists_before  # no re-list needed

    # 2. The history is compacted past the informer's resourceVersion (a change on another node
    # moved the RV on) and the watch is cut: re-watching gets 410 Gone, so the informer re-lists.
    api.create_pod("default", "second")
    wait_until(lambda: _pods(node) == 2, what="second pod")
    api.create_pod("default", "elsewhere", node_name="node2")  # never enters this node's cache
    api.compact()
    api.cut_watches()
    api.delete_pod("default", "after-cut")
    api.create_pod("default", "third")
    wait_until(lambda: node.daemon.stats()["caches"]["pods"]["lists"] > lists_before, what="a re-list")
    wait_until(lambda: _pods(node) == 2, what="caches converge after 410")
    time.sleep(0.3)
    assert _pods(node) == 2
    restarts = node.daemon.output()
    assert "410" in restarts, restarts[-2000:]


def _pods(node: object) -> int:
    return int(node.daemon.stats()["caches"]["pods"]["objects"])  # type: ignore[attr-defined]
