"""``pymultus status`` through the real CLI: a pod added by the real ``multus`` executable into a
real netns, read back from its network-status (manifests or the fake API server) and this node's
caches; what differs is flagged and the exit code says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kube import KubeEnv
from tests.support.netns import Netns, ip, unique_name
from tests.support.node import Node

pytestmark = pytest.mark.netns


def pymultus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pymultus", *args], capture_output=True, text=True, timeout=60, check=False
    )


def status_json(sim: Node, pod: str) -> tuple[int, dict[str, object]]:
    proc = pymultus("status", pod, "--conf-dir", str(sim.conf_dir), "-o", "json")
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def attach_web(sim: Node, pod_ns: Netns, **conf_keys: object) -> tuple[dict[str, object], str]:
    cluster = sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.89.0.0/24", gateway=True))
    conf = sim.multus_conf(clusterNetwork=str(cluster), **conf_keys)
    sim.write_conf("00-multus.conf", conf)
    cid = unique_name("c")
    return conf, cid


def test_status_shows_both_views_and_flags_an_interface_gone_from_the_netns(sim: Node, pod_ns: Netns) -> None:
    conf, cid = attach_web(sim, pod_ns)
    sim.add_nad("alpha", sim.bridge_conf("alpha", "10.89.1.0/24"))
    sim.add_pod("web", networks="alpha")
    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"))
    assert added.ok, added

    code, report = status_json(sim, "default/web")
    assert code == 0, report
    rows = {row["interface"]: row for row in report["interfaces"]}  # type: ignore[union-attr,index]
    assert sorted(rows) == ["eth0", "net1"]
    net1 = rows["net1"]
    assert net1["network"] == "default/alpha"
    assert net1["plugin"] == "bridge"
    assert net1["inNetworkStatus"] and net1["inCache"]
    assert net1["ips"] == [a.split("/")[0] for a in pod_ns.addresses("net1")]
    assert net1["mac"] == pod_ns.links()["net1"]["address"]
    assert rows["eth0"]["default"] is True and rows["eth0"]["defaultRoute"] == ["10.89.0.1"]
    assert net1["since"] and net1["differences"] == []

    table = pymultus("status", "web", "--conf-dir", str(sim.conf_dir))
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[1].split() == list(
        ("INTERFACE", "NETWORK", "PLUGIN", "IPS", "MAC", "DEFAULT-ROUTE", "SINCE")
    )
    assert "default/alpha" in table.stdout

    # A stale annotation (say, from an earlier sandbox of the pod): the IPs differ.
    status_file = sim.manifests / "status" / "default_web.network-status.json"
    original = status_file.read_text()
    actual = net1["ips"][0]  # type: ignore[index]
    status_file.write_text(original.replace(f'"{actual}"', '"10.89.1.250"'))
    code, report = status_json(sim, "default/web")
    assert code == 1
    rows = {row["interface"]: row for row in report["interfaces"]}  # type: ignore[union-attr,index]
    assert rows["net1"]["differences"] == [f"IPs differ: network-status 10.89.1.250, cache {actual}"]
    status_file.write_text(original)

    ip("link", "del", "net1", netns=pod_ns.name)
    code, report = status_json(sim, "default/web")
    assert code == 1
    rows = {row["interface"]: row for row in report["interfaces"]}  # type: ignore[union-attr,index]
    assert rows["net1"]["differences"] == [f"not in the pod's network namespace {pod_ns.path}"]
    assert rows["eth0"]["differences"] == []

    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web")).ok


def test_status_flags_annotation_without_cache_and_stale_cache(sim: Node, tmp_path: Path) -> None:
    from tests.support.netns import netns

    with netns("pms") as gone:
        conf, cid = attach_web(sim, gone)
        sim.add_pod("db")
        added = sim.run("ADD", conf, container_id=cid, netns=gone.path, pod=("default", "db"))
        assert added.ok, added
        path = gone.path
    # The netns is gone without a DEL: the cache is stale.
    code, report = status_json(sim, "default/db")
    assert code == 1
    (row,) = report["interfaces"]  # type: ignore[misc]
    assert row["differences"] == [f"the pod's network namespace {path} is gone (stale cache)"]

    # The cache is gone but network-status still names the interface.
    assert sim.run("DEL", conf, container_id=cid, netns="", pod=("default", "db")).ok
    code, report = status_json(sim, "default/db")
    assert code == 1
    (row,) = report["interfaces"]  # type: ignore[misc]
    assert row["inNetworkStatus"] and not row["inCache"]
    assert row["differences"] == ["in network-status but not in this node's cache"]


def test_status_reads_network_status_from_the_api_server(sim: Node, kube_env: KubeEnv, pod_ns: Netns) -> None:
    cluster = sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.89.2.0/24", gateway=True))
    conf = sim.multus_conf(clusterNetwork=str(cluster), kubeconfig=str(kube_env.kubeconfig_path))
    del conf["manifestsDir"]
    sim.write_conf("00-multus.conf", conf)
    kube_env.create_nad("beta", sim.bridge_conf("beta", "10.89.3.0/24"))
    kube_env.create_pod("api-web", networks="beta")
    cid = unique_name("c")
    pod = (kube_env.namespace, "api-web")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=pod).ok

    code, report = status_json(sim, f"{kube_env.namespace}/api-web")
    assert code == 0, report
    assert [row["interface"] for row in report["interfaces"]] == ["eth0", "net1"]  # type: ignore[union-attr,index]
    assert report["networkStatus"] is True

    kube_env.create_pod("idle")
    code, report = status_json(sim, f"{kube_env.namespace}/idle")
    assert code == 1
    assert report["problems"] == [
        "the pod has no network-status: no ADD of it succeeded (yet); its events say why"
    ]

    code, report = status_json(sim, f"{kube_env.namespace}/no-such-pod")
    assert code == 1
    assert report["problems"] == [f"pod {kube_env.namespace}/no-such-pod does not exist"]
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=pod).ok
