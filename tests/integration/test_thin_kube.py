"""The real ``multus`` executable against a Kubernetes API (the fake server, or a real cluster when
``PYMULTUS_TEST_KUBECONFIG`` is set), with real plugins in real network namespaces.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.importtime import imported, importtime_wrapper
from tests.support.kube import KubeEnv
from tests.support.netns import Netns, unique_name
from tests.support.node import Answer, Node

pytestmark = pytest.mark.netns


class Cluster:
    """One test's node + API: writes the cluster network and the Multus conf with a kubeconfig."""

    def __init__(self, sim: Node, kube: KubeEnv, **conf_keys: object) -> None:
        self.sim = sim
        self.kube = kube
        self.ns = kube.namespace
        cluster = sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.88.0.0/24", gateway=True))
        self.conf = sim.multus_conf(
            clusterNetwork=str(cluster), kubeconfig=str(kube.kubeconfig_path), **conf_keys
        )
        del self.conf["manifestsDir"]

    def nad(self, name: str, subnet: str, *, namespace: str | None = None) -> None:
        self.kube.create_nad(name, self.sim.bridge_conf(name, subnet), namespace=namespace)

    def run(self, command: str, pod: str, cid: str, netns_path: str) -> Answer:
        return self.sim.run(command, self.conf, container_id=cid, netns=netns_path, pod=(self.ns, pod))

    def leftovers(self) -> tuple[list[str], list[str], list[str]]:
        return self.sim.leases(), self.sim.cache_files(), self.sim.host_veths()


NETWORK_FORMS = [
    pytest.param(1, "comma", id="1-network-comma"),
    pytest.param(2, "json", id="2-networks-json"),
    pytest.param(4, "comma", id="4-networks-comma-cross-namespace-repeated"),
]


def test_a_successful_kubernetes_add_and_del_build_no_error_class(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    """The condition classes (the API's errors included) are built on first use only
    (``pymultus.errors``): ~0.5 ms of each start that a request which raises none must not pay."""
    cl = Cluster(sim, kube_env)
    cl.nad("alpha", "10.10.3.0/24")
    kube_env.create_pod("quiet", networks="alpha")
    cid = unique_name("c")
    wrapper = importtime_wrapper(sim)
    pod = (cl.ns, "quiet")
    added = sim.run("ADD", cl.conf, container_id=cid, netns=pod_ns.path, pod=pod, executable=wrapper)
    assert added.ok, added
    deleted = sim.run("DEL", cl.conf, container_id=cid, netns=pod_ns.path, pod=pod, executable=wrapper)
    assert deleted.ok, deleted
    modules = imported(added.stderr)
    assert "pymultus.kube.client" in modules  # the listing covers the API path
    assert "pymultus.errors.kinds" not in modules | imported(deleted.stderr)
    assert cl.leftovers() == ([], [], [])


@pytest.mark.parametrize(("count", "form"), NETWORK_FORMS)
def test_annotated_networks_are_attached_and_published_on_the_pod(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns, count: int, form: str
) -> None:
    cl = Cluster(sim, kube_env)
    other = kube_env.create_namespace(f"{kube_env.namespace}-o")
    cl.nad("alpha", "10.10.1.0/24")
    cl.nad("beta", "10.10.2.0/24", namespace=other)
    if count == 1:
        wanted = [("alpha", cl.ns)]
    elif count == 2:
        wanted = [("alpha", cl.ns), ("beta", other)]
    else:
        wanted = [("alpha", cl.ns), ("beta", other), ("alpha", cl.ns), ("beta", other)]
    if form == "comma":
        annotation: object = ",".join(f"{ns}/{name}" for name, ns in wanted)
    else:
        annotation = [{"name": name, "namespace": ns} for name, ns in wanted]
    kube_env.create_pod("web", networks=annotation)  # type: ignore[arg-type]
    cid = unique_name("c")

    added = cl.run("ADD", "web", cid, pod_ns.path)
    assert added.ok, added
    links = pod_ns.links()
    for index in range(1, count + 1):
        assert f"net{index}" in links
    status = kube_env.network_status("web")
    assert status is not None
    assert [entry["interface"] for entry in status] == ["eth0"] + [f"net{i}" for i in range(1, count + 1)]
    assert [entry["name"] for entry in status[1:]] == [f"{ns}/{name}" for name, ns in wanted]
    assert status[0]["default"] is True
    for index, entry in enumerate(status[1:], start=1):
        assert entry["ips"] == [pod_ns.addresses(f"net{index}")[0].split("/")[0]]
    reasons = [e["reason"] for e in kube_env.events_for("web")]
    assert reasons.count("AddedInterface") == count + 1

    assert cl.run("DEL", "web", cid, pod_ns.path).ok
    assert cl.leftovers() == ([], [], [])


def test_nad_with_empty_spec_is_resolved_from_conf_dir(sim: Node, kube_env: KubeEnv, pod_ns: Netns) -> None:
    cl = Cluster(sim, kube_env)
    sim.write_conf("20-ondisk.conf", sim.bridge_conf("ondisk", "10.10.7.0/24"))
    kube_env.create_nad("ondisk", None)
    kube_env.create_pod("disk", networks="ondisk")
    cid = unique_name("c")
    added = cl.run("ADD", "disk", cid, pod_ns.path)
    assert added.ok, added
    assert pod_ns.addresses("net1")[0].startswith("10.10.7.")
    assert cl.run("DEL", "disk", cid, pod_ns.path).ok
    assert cl.leftovers() == ([], [], [])


def test_default_network_annotation_replaces_the_cluster_network(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    cl = Cluster(sim, kube_env, multusNamespace=kube_env.namespace)
    cl.nad("migration", "10.10.8.0/24")
    kube_env.create_pod("moved", annotations={"v1.multus-cni.io/default-network": "migration"})
    cid = unique_name("c")
    added = cl.run("ADD", "moved", cid, pod_ns.path)
    assert added.ok, added
    assert pod_ns.addresses("eth0")[0].startswith("10.10.8.")
    status = kube_env.network_status("moved")
    assert status is not None and status[0]["name"] == f"{kube_env.namespace}/migration"
    assert status[0]["default"] is True
    assert cl.run("DEL", "moved", cid, pod_ns.path).ok
    assert cl.leftovers() == ([], [], [])


def test_namespace_isolation_refuses_a_foreign_nad_with_an_event(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    cl = Cluster(sim, kube_env, namespaceIsolation=True)
    foreign = kube_env.create_namespace(f"{kube_env.namespace}-f")
    cl.nad("secret", "10.10.9.0/24", namespace=foreign)
    kube_env.create_pod("nosy", networks=f"{foreign}/secret")
    cid = unique_name("c")
    added = cl.run("ADD", "nosy", cid, pod_ns.path)
    assert added.error_code == 7, added
    assert "namespace isolation" in str(added.json["msg"])
    events = kube_env.events_for("nosy")
    assert any(e["type"] == "Warning" and "isolation" in str(e["message"]) for e in events)
    assert set(pod_ns.links()) == {"lo"}
    assert cl.leftovers() == ([], [], [])


def test_missing_nad_fails_with_code_7_and_a_no_network_found_event(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    cl = Cluster(sim, kube_env)
    kube_env.create_pod("lost", networks="does-not-exist")
    cid = unique_name("c")
    added = cl.run("ADD", "lost", cid, pod_ns.path)
    assert added.error_code == 7, added
    assert "does-not-exist" in str(added.json["msg"])
    assert [e["reason"] for e in kube_env.events_for("lost")] == ["NoNetworkFound"]
    assert set(pod_ns.links()) == {"lo"}
    assert cl.leftovers() == ([], [], [])
    assert cl.run("DEL", "lost", cid, pod_ns.path).ok


def test_pod_deleted_between_add_and_del_is_deleted_from_the_cache(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    cl = Cluster(sim, kube_env)
    cl.nad("alpha", "10.10.1.0/24")
    kube_env.create_pod("brief", networks="alpha")
    cid = unique_name("c")
    assert cl.run("ADD", "brief", cid, pod_ns.path).ok
    kube_env.delete_pod("brief")
    kube_env.client.request(
        "DELETE",
        f"/apis/k8s.cni.cncf.io/v1/namespaces/{kube_env.namespace}/network-attachment-definitions/alpha",
    )
    deleted = cl.run("DEL", "brief", cid, pod_ns.path)
    assert deleted.ok, deleted
    assert set(pod_ns.links()) == {"lo"}
    assert cl.leftovers() == ([], [], [])


def test_api_server_down_during_del_deletes_from_the_cache(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    fake = kube_env.require_fake()
    cl = Cluster(sim, kube_env)
    cl.nad("alpha", "10.10.1.0/24")
    kube_env.create_pod("orphan", networks="alpha")
    cid = unique_name("c")
    assert cl.run("ADD", "orphan", cid, pod_ns.path).ok
    fake.set_down()
    try:
        deleted = cl.run("DEL", "orphan", cid, pod_ns.path)
    finally:
        fake.set_down(False)
    assert deleted.ok, deleted
    assert set(pod_ns.links()) == {"lo"}
    assert cl.leftovers() == ([], [], [])


def test_api_server_down_during_add_is_a_clear_error_and_leaves_nothing(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    fake = kube_env.require_fake()
    cl = Cluster(sim, kube_env)
    cl.nad("alpha", "10.10.1.0/24")
    kube_env.create_pod("unlucky", networks="alpha")
    fake.set_down()
    try:
        added = cl.run("ADD", "unlucky", unique_name("c"), pod_ns.path)
    finally:
        fake.set_down(False)
    assert added.error_code == 11, added  # try again later
    assert "Kubernetes API" in str(added.json["msg"])
    assert set(pod_ns.links()) == {"lo"}
    assert cl.leftovers() == ([], [], [])


def test_conflict_on_the_status_write_is_retried(sim: Node, kube_env: KubeEnv, pod_ns: Netns) -> None:
    fake = kube_env.require_fake()
    cl = Cluster(sim, kube_env)
    cl.nad("alpha", "10.10.1.0/24")
    kube_env.create_pod("racy", networks="alpha")
    fake.fail_status_writes(2, 409)
    cid = unique_name("c")
    added = cl.run("ADD", "racy", cid, pod_ns.path)
    assert added.ok, added
    status = kube_env.network_status("racy")
    assert status is not None and [e["interface"] for e in status] == ["eth0", "net1"]
    assert cl.run("DEL", "racy", cid, pod_ns.path).ok


def test_a_status_write_that_keeps_failing_rolls_the_add_back(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    fake = kube_env.require_fake()
    cl = Cluster(sim, kube_env)
    cl.nad("alpha", "10.10.1.0/24")
    kube_env.create_pod("unwritable", networks="alpha")
    fake.fail_status_writes(50, 500)  # more than the client's retries
    cid = unique_name("c")
    try:
        added = cl.run("ADD", "unwritable", cid, pod_ns.path)
    finally:
        fake.clear_injections()
    assert added.error_code == 11, added
    assert "rolled back" in str(added.json["msg"]), added
    # Every delegate ran, and every one was undone: the runtime's retry starts clean.
    assert set(pod_ns.links()) == {"lo"}
    assert cl.leftovers() == ([], [], [])
    assert cl.run("DEL", "unwritable", cid, pod_ns.path).ok


def test_expired_token_replaced_in_the_token_file_is_picked_up(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    fake = kube_env.require_fake()
    cl = Cluster(sim, kube_env)
    cl.nad("alpha", "10.10.1.0/24")
    kube_env.create_pod("rotated", networks="alpha")
    fake.rotate_token(write_token_files=False)  # the old token in the file now answers 401
    cid = unique_name("c")
    refused = cl.run("ADD", "rotated", cid, pod_ns.path)
    assert not refused.ok and "nauthorized" in str(refused.json["msg"]), refused
    assert set(pod_ns.links()) == {"lo"}
    fake.write_token_files()  # the kubelet-style rotation: the token file gets the new token
    added = cl.run("ADD", "rotated", cid, pod_ns.path)
    assert added.ok, added
    assert cl.run("DEL", "rotated", cid, pod_ns.path).ok
    assert cl.leftovers() == ([], [], [])


def test_status_written_matches_go_multus_format(sim: Node, kube_env: KubeEnv, pod_ns: Netns) -> None:
    cl = Cluster(sim, kube_env)
    cl.nad("alpha", "10.10.1.0/24")
    kube_env.create_pod("fmt", networks="alpha")
    cid = unique_name("c")
    assert cl.run("ADD", "fmt", cid, pod_ns.path).ok
    pod = kube_env.get_pod("fmt")
    assert pod is not None
    raw = pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]  # type: ignore[index]
    assert raw.startswith('[{\n    "name": "cluster",\n    "interface": "eth0",')
    assert json.loads(raw)[1]["name"] == f"{kube_env.namespace}/alpha"
    assert cl.run("DEL", "fmt", cid, pod_ns.path).ok


def test_device_plugin_ids_reach_the_delegates_and_the_status(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns, tmp_path: Path
) -> None:
    from pymultus.store import deviceinfo

    kubelet = tmp_path / "kubelet"
    devinfo_dir = tmp_path / "devinfo"
    cl = Cluster(sim, kube_env, kubeletRootDir=str(kubelet), deviceInfoDir=str(devinfo_dir))
    resource = "example.com/nic"
    for name, subnet in (("vf-a", "10.10.1.0/24"), ("vf-b", "10.10.2.0/24")):
        conf = sim.bridge_conf(name, subnet, capabilities={"deviceID": True, "CNIDeviceInfoFile": True})
        kube_env.create_nad(name, conf, annotations={"k8s.v1.cni.cncf.io/resourceName": resource})
    pod = kube_env.create_pod("sriov", networks="vf-a,vf-b")
    uid = str(pod["metadata"]["uid"])  # type: ignore[index]
    devices = ["0000:00:02.0", "0000:00:01.0"]
    checkpoint = kubelet / "device-plugins" / "kubelet_internal_checkpoint"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text(
        json.dumps(
            {
                "Data": {
                    "PodDeviceEntries": [
                        {
                            "PodUID": uid,
                            "ContainerName": "app",
                            "ResourceName": resource,
                            "DeviceIDs": {"-1": devices},
                        }
                    ]
                },
                "Checksum": 0,
            }
        )
    )
    for device in devices:
        path = Path(deviceinfo.dp_file_path(str(devinfo_dir), resource, device))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"type": "pci", "version": "1.1.0", "pci": {"pci-address": device}}))
    cid = unique_name("c")

    added = sim.run(
        "ADD",
        cl.conf,
        container_id=cid,
        netns=pod_ns.path,
        pod=(cl.ns, "sriov"),
        extra_args=f"K8S_POD_UID={uid}",
    )
    assert added.ok, added
    status = kube_env.network_status("sriov")
    assert status is not None
    # Sorted IDs, one per attachment, in order; the device plugin's info is published.
    assert [e.get("device-info") for e in status[1:]] == [
        {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:00:01.0"}},
        {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:00:02.0"}},
    ]
    cached = {
        entry["ifName"]: entry
        for entry in (json.loads(Path(p).read_text()) for p in sim.cache_files() if "/results/" in p)
    }
    assert cached["net1"]["capabilityArgs"]["deviceID"] == "0000:00:01.0"
    assert cached["net2"]["capabilityArgs"]["deviceID"] == "0000:00:02.0"
    cni_files = sorted((devinfo_dir / "devinfo" / "cni").iterdir())
    assert len(cni_files) == 2

    assert sim.run("DEL", cl.conf, container_id=cid, netns=pod_ns.path, pod=(cl.ns, "sriov")).ok
    assert list((devinfo_dir / "devinfo" / "cni").iterdir()) == []
    assert cl.leftovers() == ([], [], [])


def test_del_from_the_cache_needs_no_working_kubeconfig(sim: Node, kube_env: KubeEnv, pod_ns: Netns) -> None:
    cl = Cluster(sim, kube_env)
    cl.nad("alpha", "10.10.1.0/24")
    kube_env.create_pod("keyless", networks="alpha")
    cid = unique_name("c")
    assert cl.run("ADD", "keyless", cid, pod_ns.path).ok
    broken = dict(cl.conf, kubeconfig=str(sim.root / "no-such-kubeconfig"))
    deleted = sim.run("DEL", broken, container_id=cid, netns=pod_ns.path, pod=(cl.ns, "keyless"))
    assert deleted.ok, deleted
    assert set(pod_ns.links()) == {"lo"}
    assert cl.leftovers() == ([], [], [])


def test_a_broken_kubeconfig_on_add_is_a_clear_error_and_leaves_nothing(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    cl = Cluster(sim, kube_env)
    kube_env.create_pod("keyless", networks="")
    missing = str(sim.root / "no-such-kubeconfig")
    added = sim.run(
        "ADD", dict(cl.conf, kubeconfig=missing), container_id=unique_name("c"), netns=pod_ns.path,
        pod=(cl.ns, "keyless"),
    )  # fmt: skip
    assert not added.ok and added.error_code in (5, 7), added
    assert missing in str(added.json["msg"]) + str(added.json.get("details", ""))
    assert set(pod_ns.links()) == {"lo"}
    assert cl.leftovers() == ([], [], [])


def test_pod_missing_on_add_gets_multus_empty_result_without_delegates(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns
) -> None:
    cl = Cluster(sim, kube_env)
    cid = unique_name("c")
    added = cl.run("ADD", "never-created", cid, pod_ns.path)
    assert added.ok, added
    assert added.json["ips"] == [{"address": "0.0.0.0/0", "gateway": "0.0.0.0"}]
    assert set(pod_ns.links()) == {"lo"}
    assert cl.run("DEL", "never-created", cid, pod_ns.path).ok
    assert cl.leftovers() == ([], [], [])
