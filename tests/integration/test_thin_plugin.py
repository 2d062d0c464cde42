"""The real ``multus`` executable with real plugins in real network namespaces, no Kubernetes.

Pods and NADs come from the embedded manifests directory. Every test checks that DEL (or a
failed ADD) leaves no link, host-local lease or cache file behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.netns import Netns, netns, unique_name, veth_parent
from tests.support.node import Node

pytestmark = pytest.mark.netns


def _cluster(sim: Node, subnet: str = "10.88.0.0/24") -> Path:
    return sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", subnet, gateway=True))


def _assert_nothing_left(sim: Node) -> None:
    assert sim.leases() == []
    assert sim.cache_files() == []
    assert sim.host_veths() == []


@pytest.mark.parametrize("count", [1, 2, 4])
def test_add_attaches_cluster_network_and_each_annotated_network_then_del_removes_all(
    sim: Node, pod_ns: Netns, count: int
) -> None:
    cluster = _cluster(sim)
    names = [f"net-{index}" for index in range(1, count + 1)]
    for index, name in enumerate(names, start=1):
        sim.add_nad(name, sim.bridge_conf(name, f"10.10.{index}.0/24"))
    sim.add_pod("web", networks=",".join(names))
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"))
    assert added.ok, added
    # The runtime sees the cluster network's result, in the multus conf's version.
    assert added.json["cniVersion"] == "1.1.0"
    assert [ip["address"] for ip in added.json["ips"]] == [pod_ns.addresses("eth0")[0]]  # type: ignore[index,union-attr]

    links = pod_ns.links()
    assert "eth0" in links
    for index in range(1, count + 1):
        assert f"net{index}" in links
        assert pod_ns.addresses(f"net{index}")[0].startswith(f"10.10.{index}.")

    status = sim.network_status("web")
    assert [entry["interface"] for entry in status] == ["eth0"] + [f"net{i}" for i in range(1, count + 1)]
    assert status[0]["name"] == "cluster" and status[0]["default"] is True
    assert [entry["name"] for entry in status[1:]] == [f"default/{name}" for name in names]
    assert all(entry.get("default") is not True for entry in status[1:])
    assert status[1]["ips"] == [pod_ns.addresses("net1")[0].split("/")[0]]
    assert status[1]["mac"] == pod_ns.links()["net1"]["address"]
    assert len(sim.leases()) == count + 1

    check = sim.run("CHECK", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"))
    assert check.ok, check

    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"))
    assert deleted.ok, deleted
    assert set(pod_ns.links()) == {"lo"}
    _assert_nothing_left(sim)
    again = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "web"))
    assert again.ok, again


def test_explicit_interface_names_in_both_annotation_forms(sim: Node, pod_ns: Netns) -> None:
    cluster = _cluster(sim)
    sim.add_nad("data", sim.bridge_conf("data", "10.10.1.0/24"))
    sim.add_nad("storage", sim.bridge_conf("storage", "10.10.2.0/24"))
    sim.add_pod("db", networks='[{"name": "data", "interface": "data0"}]')
    sim.add_pod("app", networks="default/storage@stor0,data")
    conf = sim.multus_conf(clusterNetwork=str(cluster))

    first = sim.run("ADD", conf, container_id=unique_name("c"), netns=pod_ns.path, pod=("default", "db"))
    assert first.ok, first
    assert {"eth0", "data0"} <= set(pod_ns.links())
    with netns("pmt") as other:
        cid = unique_name("c")
        second = sim.run("ADD", conf, container_id=cid, netns=other.path, pod=("default", "app"))
        assert second.ok, second
        assert {"eth0", "stor0", "net2"} <= set(other.links())
        assert sim.run("DEL", conf, container_id=cid, netns=other.path, pod=("default", "app")).ok


def test_static_ip_and_mac_requests_from_the_annotation(sim: Node, pod_ns: Netns) -> None:
    cluster = _cluster(sim)
    static_net = {
        "cniVersion": "1.0.0",
        "name": "static-net",
        "plugins": [
            {
                "type": "bridge",
                "bridge": sim.bridge_name(),
                "capabilities": {"ips": True},
                "ipam": {"type": "static"},
            },
            {"type": "tuning", "capabilities": {"mac": True}},
        ],
    }
    sim.add_nad("static-net", static_net)
    sim.add_pod(
        "fixed",
        networks=json.dumps([{"name": "static-net", "ips": ["10.20.0.7/24"], "mac": "02:00:00:aa:bb:cc"}]),
    )
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "fixed"))
    assert added.ok, added
    assert pod_ns.addresses("net1") == ["10.20.0.7/24"]
    assert pod_ns.links()["net1"]["address"] == "02:00:00:aa:bb:cc"
    status = sim.network_status("fixed")
    assert status[1]["ips"] == ["10.20.0.7"] and status[1]["mac"] == "02:00:00:aa:bb:cc"
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "fixed")).ok
    _assert_nothing_left(sim)


def test_default_route_request_moves_the_default_route_to_net1(sim: Node, pod_ns: Netns) -> None:
    cluster = _cluster(sim)
    sim.add_nad("uplink", sim.bridge_conf("uplink", "10.10.1.0/24", isGateway=True))
    sim.add_pod("router", networks='[{"name": "uplink", "default-route": ["10.10.1.1"]}]')
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "router"))
    assert added.ok, added
    defaults = [route for route in pod_ns.routes() if route["dst"] == "default"]
    assert defaults == [route for route in defaults if route["dev"] == "net1"]
    assert [(r["gateway"], r["dev"]) for r in defaults] == [("10.10.1.1", "net1")]
    # The cached results agree with the netns, so CHECK still passes.
    cache = json.loads(
        next(Path(p) for p in sim.cache_files() if p.endswith("-eth0") and "/results/" in p).read_text()
    )
    assert all(route.get("dst") != "0.0.0.0/0" for route in cache["result"].get("routes", []))
    assert sim.run("CHECK", conf, container_id=cid, netns=pod_ns.path, pod=("default", "router")).ok
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "router")).ok
    _assert_nothing_left(sim)


def test_failure_of_the_third_delegate_rolls_back_everything(sim: Node, pod_ns: Netns) -> None:
    cluster = _cluster(sim)
    sim.add_nad("one", sim.bridge_conf("one", "10.10.1.0/24"))
    sim.add_nad("two", sim.bridge_conf("two", "10.10.2.0/24"))
    broken = {
        "cniVersion": "1.0.0",
        "name": "broken",
        "type": "macvlan",
        "master": "pm-missing0",
        "ipam": {"type": "host-local", "subnet": "10.10.3.0/24", "dataDir": str(sim.ipam_dir)},
    }
    sim.add_nad("broken", broken)
    sim.add_pod("unlucky", networks="one,broken,two")
    log = sim.root / "multus.log"
    conf = sim.multus_conf(
        clusterNetwork=str(cluster), logLevel="verbose", logFile=str(log), logToStderr=False
    )
    cid = unique_name("c")

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "unlucky"))
    assert not added.ok
    assert "default/broken" in str(added.json["msg"])
    assert set(pod_ns.links()) == {"lo"}
    _assert_nothing_left(sim)
    logged = len(log.read_text().splitlines())
    for _ in range(2):  # the runtime's DELs after a failed ADD
        deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "unlucky"))
        assert deleted.ok, deleted
    # The rollback left a record of a completed teardown: no delegate is called again, nothing
    # is re-resolved.
    del_lines = log.read_text().splitlines()[logged:]
    assert del_lines and not [line for line in del_lines if "best effort" in line or "attachment" in line]


def test_del_after_the_netns_is_gone_still_releases_the_leases(sim: Node) -> None:
    cluster = _cluster(sim)
    sim.add_nad("one", sim.bridge_conf("one", "10.10.1.0/24"))
    sim.add_pod("gone", networks="one")
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")
    with netns("pmt") as ns:
        assert sim.run("ADD", conf, container_id=cid, netns=ns.path, pod=("default", "gone")).ok
        path = ns.path
    assert len(sim.leases()) == 2
    deleted = sim.run("DEL", conf, container_id=cid, netns=path, pod=("default", "gone"))
    assert deleted.ok, deleted
    _assert_nothing_left(sim)


def test_del_after_a_crash_truncated_the_delegate_cache(sim: Node, pod_ns: Netns) -> None:
    cluster = _cluster(sim)
    sim.add_nad("one", sim.bridge_conf("one", "10.10.1.0/24"))
    sim.add_pod("crashed", networks="one")
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "crashed")).ok
    scratch = sim.cni_dir / cid
    scratch.write_bytes(scratch.read_bytes()[:25])

    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "crashed"))
    assert deleted.ok, deleted
    assert set(pod_ns.links()) == {"lo"}
    _assert_nothing_left(sim)


def test_check_reports_an_interface_removed_behind_our_back(sim: Node, pod_ns: Netns) -> None:
    cluster = _cluster(sim)
    sim.add_nad("one", sim.bridge_conf("one", "10.10.1.0/24"))
    sim.add_pod("checked", networks="one")
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "checked")).ok
    pod_ns.exec("ip", "link", "delete", "net1")

    check = sim.run("CHECK", conf, container_id=cid, netns=pod_ns.path, pod=("default", "checked"))
    assert not check.ok
    assert "net1" in str(check.json["msg"])
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "checked")).ok
    _assert_nothing_left(sim)


def test_gc_removes_attachments_missing_from_the_valid_list(sim: Node) -> None:
    cluster = _cluster(sim)
    sim.add_nad("one", sim.bridge_conf("one", "10.10.1.0/24"))
    sim.add_pod("keep", networks="one")
    sim.add_pod("stale", networks="one")
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    keep_id, stale_id = unique_name("c"), unique_name("c")
    with netns("pmt") as keep_ns, netns("pmt") as stale_ns:
        assert sim.run("ADD", conf, container_id=keep_id, netns=keep_ns.path, pod=("default", "keep")).ok
        assert sim.run("ADD", conf, container_id=stale_id, netns=stale_ns.path, pod=("default", "stale")).ok
        assert len(sim.leases()) == 4

        gc_conf = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": keep_id, "ifname": "eth0"}]})
        collected = sim.run("GC", gc_conf, container_id="", ifname="")
        assert collected.ok, collected
        assert len(sim.leases()) == 2
        assert not (sim.cni_dir / stale_id).exists()
        assert (sim.cni_dir / keep_id).exists()
        assert {"eth0", "net1"} <= set(keep_ns.links())
        assert sim.run("DEL", conf, container_id=keep_id, netns=keep_ns.path, pod=("default", "keep")).ok
    _assert_nothing_left(sim)


def test_no_pod_source_runs_only_the_configured_delegates(sim: Node, pod_ns: Netns) -> None:
    conf = sim.multus_conf(delegates=[sim.bridge_conf("only", "10.30.0.0/24")])
    del conf["manifestsDir"]
    cid = unique_name("c")
    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "anything"))
    assert added.ok, added
    assert set(pod_ns.links()) == {"lo", "eth0"}
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "anything")).ok
    _assert_nothing_left(sim)


def test_macvlan_network_on_a_veth_parent(sim: Node, pod_ns: Netns) -> None:
    cluster = _cluster(sim)
    with veth_parent() as parent:
        sim.add_nad(
            "mv",
            {
                "cniVersion": "1.0.0",
                "type": "macvlan",
                "master": parent,
                "mode": "bridge",
                "ipam": {"type": "host-local", "subnet": "10.40.0.0/24", "dataDir": str(sim.ipam_dir)},
            },
        )
        sim.add_pod("mac", networks="mv")
        conf = sim.multus_conf(clusterNetwork=str(cluster))
        cid = unique_name("c")
        assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "mac")).ok
        assert pod_ns.addresses("net1")[0].startswith("10.40.0.")
        assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "mac")).ok
    _assert_nothing_left(sim)


BAD_ANNOTATIONS = [
    ("malformed annotation", "one@a@b", {}, "@"),
    ("unknown network", "nope", {}, "nope"),
    ("forbidden namespace", "other/one", {"namespaceIsolation": True}, "namespace isolation"),
    ("clashing interface names", "one@same,two@same", {}, "same"),
    ("bad IP", '[{"name": "one", "ips": ["10.10.1.300/24"]}]', {}, "10.10.1.300"),
    ("bad MAC", '[{"name": "one", "mac": "02:zz:00:00:00:01"}]', {}, "02:zz"),
    (
        "missing capability under strictCapabilities",
        '[{"name": "one", "ips": ["10.10.1.9/24"]}]',
        {"strictCapabilities": True},
        "ips",
    ),
]


@pytest.mark.parametrize(
    ("case", "annotation", "extra", "named"), BAD_ANNOTATIONS, ids=[c[0] for c in BAD_ANNOTATIONS]
)
def test_bad_inputs_give_code_7_and_leave_nothing_behind(
    sim: Node, pod_ns: Netns, case: str, annotation: str, extra: dict[str, object], named: str
) -> None:
    cluster = _cluster(sim)
    sim.add_nad("one", sim.bridge_conf("one", "10.10.1.0/24"))
    sim.add_nad("two", sim.bridge_conf("two", "10.10.2.0/24"))
    sim.add_nad("one", sim.bridge_conf("one", "10.10.9.0/24"), namespace="other")
    sim.add_pod("bad", networks=annotation)
    conf = sim.multus_conf(clusterNetwork=str(cluster), **extra)
    cid = unique_name("c")

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=("default", "bad"))
    assert added.code == 1, added
    assert added.error_code == 7, added
    message = str(added.json["msg"])
    assert named in message, message
    assert message.count(". ") == 0, f"one sentence expected: {message}"
    assert set(pod_ns.links()) == {"lo"}
    _assert_nothing_left(sim)
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=("default", "bad")).ok


@pytest.mark.parametrize("kind", ["ipvlan", "vlan"])
def test_kernel_dependent_delegates_when_the_kernel_has_them(sim: Node, pod_ns: Netns, kind: str) -> None:
    from tests.support.netns import kernel_has

    if not kernel_has(kind):
        pytest.skip(f"the {kind} kernel module is absent on this machine; the delegate cannot create links")
    cluster = _cluster(sim)
    with veth_parent() as parent:
        conf: dict[str, object] = {
            "cniVersion": "1.0.0",
            "type": kind,
            "master": parent,
            "ipam": {"type": "host-local", "subnet": "10.41.0.0/24", "dataDir": str(sim.ipam_dir)},
        }
        if kind == "vlan":
            conf["vlanId"] = 42
        sim.add_nad("kd", conf)
        sim.add_pod("kernel", networks="kd")
        multus = sim.multus_conf(clusterNetwork=str(cluster))
        cid = unique_name("c")
        assert sim.run("ADD", multus, container_id=cid, netns=pod_ns.path, pod=("default", "kernel")).ok
        assert pod_ns.addresses("net1")[0].startswith("10.41.0.")
        assert sim.run("DEL", multus, container_id=cid, netns=pod_ns.path, pod=("default", "kernel")).ok
    _assert_nothing_left(sim)


def test_readiness_indicator_missing_is_try_again_later_and_present_is_fine(sim: Node, pod_ns: Netns) -> None:
    cluster = _cluster(sim)
    indicator = sim.root / "ready"
    conf = sim.multus_conf(
        clusterNetwork=str(cluster), readinessindicatorfile=str(indicator), readinessTimeout=0.5
    )
    cid = unique_name("c")
    waited = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path)
    assert waited.error_code == 11, waited
    assert str(indicator) in str(waited.json["msg"])
    assert set(pod_ns.links()) == {"lo"}
    status = sim.run("STATUS", conf, container_id="", ifname="")
    assert status.error_code == 11, status
    indicator.write_text("ok")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path).ok
    assert sim.run("STATUS", conf, container_id="", ifname="").ok
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path).ok
    _assert_nothing_left(sim)


def test_version_answers_every_supported_version(sim: Node) -> None:
    answer = sim.run("VERSION", {"cniVersion": "0.4.0"}, container_id="")
    assert answer.ok, answer
    assert answer.json["supportedVersions"] == ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def test_add_with_a_missing_netns_is_refused_before_anything_is_written(sim: Node) -> None:
    cluster = _cluster(sim)
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    added = sim.run("ADD", conf, container_id=unique_name("c"), netns="/var/run/netns/pm-no-such-ns")
    assert added.error_code == 4, added
    assert "CNI_NETNS" in str(added.json["msg"])
    _assert_nothing_left(sim)
