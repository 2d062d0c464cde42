"""ADD writes each network's libcni result cache before the next network's delegates run; a
write that fails fails the ADD and rolls back every network (real plugins, thin plugin)."""

from __future__ import annotations

import pytest

from tests.support.netns import Netns, unique_name
from tests.support.node import Node

pytestmark = pytest.mark.netns


def test_a_failed_result_cache_write_rolls_back_everything(sim: Node, pod_ns: Netns) -> None:
    cluster = sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.88.0.0/24", gateway=True))
    sim.add_nad("one", sim.bridge_conf("one", "10.10.1.0/24"))
    sim.add_nad("two", sim.bridge_conf("two", "10.10.2.0/24"))
    sim.add_pod("web", networks="one,two")
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")
    # A directory where network "one" wants its result cache: the rename onto it fails.
    blocker = sim.cni_dir / "results" / f"one-{cid}-net1"
    blocker.mkdir(parents=True)

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"))
    assert not added.ok, added
    assert added.json["code"] == 5, added.json  # IOFailure, of the network whose write failed
    assert 'network "default/one"' in str(added.json["msg"]), added.json
    assert "cannot write the CNI result cache" in str(added.json["msg"]) and blocker.name in str(
        added.json["msg"]
    )
    assert set(pod_ns.links()) == {"lo"}
    assert sim.leases() == []
    assert sim.cache_files() == []
    assert sim.host_veths() == []
    blocker.rmdir()
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web")).ok


def test_every_result_cache_is_on_disk_when_add_returns(sim: Node, pod_ns: Netns) -> None:
    cluster = sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.88.0.0/24", gateway=True))
    names = [f"net-{index}" for index in range(1, 4)]
    for index, name in enumerate(names, start=1):
        sim.add_nad(name, sim.bridge_conf(name, f"10.10.{index}.0/24"))
    sim.add_pod("web", networks=",".join(names))
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"))
    assert added.ok, added
    results = sorted(path.rsplit("/", 1)[1] for path in sim.cache_files() if "/results/" in path)
    assert results == sorted(
        [f"cluster-{cid}-eth0"] + [f"{name}-{cid}-net{i}" for i, name in enumerate(names, start=1)]
    )
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web")).ok
    assert sim.cache_files() == []
    assert sim.leases() == []
