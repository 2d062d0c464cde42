"""DRA devices through the real ``multus`` executable, the API (fake server or a real cluster) and
real plugins in real network namespaces.

A pod with a ResourceClaim gets the allocated devices' ``k8s.cni.cncf.io/deviceID`` (picked by the
NAD's ``resourceName`` = the device's ``k8s.cni.cncf.io/resourceName``) in the delegate conf, in
``runtimeConfig.deviceID``, in the device-info file and in network-status; an unallocated claim and
a device without the attributes give a Warning event and an attachment without a device.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymultus.errors import KubeNotFound
from tests.integration.test_thin_kube import Cluster
from tests.support.kube import NO_SCHEDULER, KubeEnv
from tests.support.netns import Netns, unique_name
from tests.support.node import Node

pytestmark = pytest.mark.netns

GROUP = "/apis/resource.k8s.io/v1"
DRIVER = "net.dra-test.example"
RESOURCE = "example.com/dra_net"
RESOURCE_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"


class Dra:
    """ResourceSlices and ResourceClaims over HTTP (so a real cluster works too), removed after."""

    def __init__(self, kube: KubeEnv) -> None:
        self.kube = kube
        self.node = unique_name("dra-node")
        self.slices: list[str] = []

    def slice(self, devices: list[dict[str, object]]) -> None:
        name = unique_name("dra-slice")
        body = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": name},
            "spec": {
                "nodeName": self.node,
                "driver": DRIVER,
                "pool": {"name": self.node, "generation": 1, "resourceSliceCount": 1},
                "devices": devices,
            },
        }
        self.kube.client.request("POST", f"{GROUP}/resourceslices", body=json.dumps(body).encode())
        self.slices.append(name)

    def claim(self, name: str, allocated: list[str] | None) -> None:
        ns = self.kube.namespace
        body = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"devices": {"requests": [{"name": "net", "exactly": {"deviceClassName": "dra-test"}}]}},
        }
        path = f"{GROUP}/namespaces/{ns}/resourceclaims"
        self.kube.client.request("POST", path, body=json.dumps(body).encode())
        if allocated:
            results = [
                {"request": "net", "driver": DRIVER, "pool": self.node, "device": d} for d in allocated
            ]
            patch = {"status": {"allocation": {"devices": {"results": results}}}}
            self.kube.client.request(
                "PATCH",
                f"{path}/{name}/status",
                body=json.dumps(patch).encode(),
                content_type="application/merge-patch+json",
            )

    def pod(self, name: str, claims: list[str], networks: str) -> str:
        """Create the pod; returns its UID."""
        ns = self.kube.namespace
        spec: dict[str, object] = {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.invalid/pause:3.10",
                    "resources": {"claims": [{"name": c} for c in claims]},
                }
            ],
            "automountServiceAccountToken": False,
            "schedulerName": NO_SCHEDULER,
            "nodeName": self.node,
            "resourceClaims": [{"name": c, "resourceClaimName": c} for c in claims],
        }
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "annotations": {"k8s.v1.cni.cncf.io/networks": networks},
            },
            "spec": spec,
        }
        pod = self.kube.client.request(
            "POST", f"/api/v1/namespaces/{ns}/pods", body=json.dumps(body).encode()
        )
        return str(pod["metadata"]["uid"])  # type: ignore[index]

    def cleanup(self) -> None:
        for name in self.slices:
            try:
                self.kube.client.request("DELETE", f"{GROUP}/resourceslices/{name}")
            except KubeNotFound:
                pass


@pytest.fixture
def dra(kube_env: KubeEnv) -> Iterator[Dra]:
    objects = Dra(kube_env)
    try:
        yield objects
    finally:
        objects.cleanup()


def device(name: str, device_id: str | None = None, resource: str | None = RESOURCE) -> dict[str, object]:
    out: dict[str, object] = {"name": name}
    if device_id is not None:
        attributes: dict[str, object] = {"k8s.cni.cncf.io/deviceID": {"string": device_id}}
        if resource is not None:
            attributes["k8s.cni.cncf.io/resourceName"] = {"string": resource}
        out["attributes"] = attributes
    return out


def device_nads(sim: Node, kube: KubeEnv, *names: str) -> None:
    for index, name in enumerate(names):
        conf = sim.bridge_conf(
            name, f"10.10.{index + 1}.0/24", capabilities={"deviceID": True, "CNIDeviceInfoFile": True}
        )
        kube.create_nad(name, conf, annotations={RESOURCE_ANNOTATION: RESOURCE})


def delegate_caches(sim: Node) -> dict[str, dict[str, object]]:
    """The libcni result cache entries by interface: capabilityArgs and the delegate conf sent."""
    entries = (json.loads(Path(p).read_text()) for p in sim.cache_files() if "/results/" in p)
    return {str(e["ifName"]): e for e in entries}


def test_claimed_devices_reach_the_delegate_conf_runtime_config_device_info_and_status(
    sim: Node, kube_env: KubeEnv, dra: Dra, pod_ns: Netns, tmp_path: Path
) -> None:
    from pymultus.store import deviceinfo

    devinfo_dir = tmp_path / "devinfo"
    # No kubelet at all (kubeletRootDir is empty): the devices come from DRA only.
    cl = Cluster(sim, kube_env, kubeletRootDir=str(tmp_path / "no-kubelet"), deviceInfoDir=str(devinfo_dir))
    device_nads(sim, kube_env, "vf-a", "vf-b")
    dra.slice([device("vf-1", "0000:03:00.2"), device("vf-0", "0000:03:00.1"), device("veth-0")])
    dra.claim("nets", ["vf-1", "vf-0"])
    dra.pod("dra", ["nets"], "vf-a,vf-b")
    for device_id in ("0000:03:00.1", "0000:03:00.2"):  # what a DRA driver may publish (DIS)
        path = Path(deviceinfo.dp_file_path(str(devinfo_dir), RESOURCE, device_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"type": "pci", "version": "1.1.0", "pci": {"pci-address": device_id}}))
    cid = unique_name("c")

    added = cl.run("ADD", "dra", cid, pod_ns.path)
    assert added.ok, added

    caches = delegate_caches(sim)
    for ifname, device_id in (("net1", "0000:03:00.1"), ("net2", "0000:03:00.2")):  # sorted IDs, in order
        entry = caches[ifname]
        conf = json.loads(base64.b64decode(str(entry["config"])))
        assert (conf["deviceID"], conf["pciBusID"]) == (device_id, device_id)
        args = entry["capabilityArgs"]
        assert isinstance(args, dict) and args["deviceID"] == device_id
        info_file = Path(str(args["CNIDeviceInfoFile"]))
        assert json.loads(info_file.read_text())["pci"]["pci-address"] == device_id
    status = kube_env.network_status("dra")
    assert status is not None
    assert [e.get("device-info") for e in status[1:]] == [
        {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:03:00.1"}},
        {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:03:00.2"}},
    ]
    assert not [e for e in kube_env.events_for("dra") if e.get("type") == "Warning"]

    assert cl.run("DEL", "dra", cid, pod_ns.path).ok
    assert list((devinfo_dir / "devinfo" / "cni").iterdir()) == []
    assert cl.leftovers() == ([], [], [])


def test_unallocated_claim_and_attributeless_device_warn_and_attach_without_a_device(
    sim: Node, kube_env: KubeEnv, dra: Dra, pod_ns: Netns, tmp_path: Path
) -> None:
    cl = Cluster(
        sim, kube_env, kubeletRootDir=str(tmp_path / "no-kubelet"), deviceInfoDir=str(tmp_path / "di")
    )
    # The kubelet is asked too (the resource is not in the claims) and has no device-plugin devices.
    checkpoint = tmp_path / "no-kubelet" / "device-plugins" / "kubelet_internal_checkpoint"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text(json.dumps({"Data": {"PodDeviceEntries": []}, "Checksum": 0}))
    device_nads(sim, kube_env, "vf-a")
    dra.slice([device("veth-0"), device("vf-9", "0000:09:00.1", resource=None)])
    dra.claim("pending", None)
    dra.claim("plain", ["veth-0", "vf-9"])
    uid = dra.pod("warned", ["pending", "plain"], "vf-a")
    cid = unique_name("c")

    added = sim.run(
        "ADD",
        cl.conf,
        container_id=cid,
        netns=pod_ns.path,
        pod=(cl.ns, "warned"),
        extra_args=f"K8S_POD_UID={uid}",
    )
    assert added.ok, added

    entry = delegate_caches(sim)["net1"]
    assert "deviceID" not in json.loads(base64.b64decode(str(entry["config"])))
    assert "deviceID" not in (entry.get("capabilityArgs") or {})  # type: ignore[operator]
    warnings = [
        (e["reason"], e["message"]) for e in kube_env.events_for("warned") if e.get("type") == "Warning"
    ]
    reasons = sorted(r for r, _m in warnings)
    assert reasons == [
        "DeviceAttributesMissing",
        "DeviceAttributesMissing",
        "NoDeviceAllocated",
        "ResourceClaimNotAllocated",
    ]
    messages = " | ".join(str(m) for _r, m in warnings)
    assert f"resource claim pending of pod {kube_env.namespace}/warned is not allocated" in messages
    assert f"device {DRIVER}/{dra.node}/veth-0 of resource claim plain" in messages
    assert f"device {DRIVER}/{dra.node}/vf-9 of resource claim plain" in messages

    assert cl.run("DEL", "warned", cid, pod_ns.path).ok
    assert cl.leftovers() == ([], [], [])


def test_pod_without_claims_makes_no_dra_request(
    sim: Node, kube_env: KubeEnv, pod_ns: Netns, tmp_path: Path
) -> None:
    fake = kube_env.require_fake()
    cl = Cluster(sim, kube_env, kubeletRootDir=str(tmp_path / "no-kubelet"))
    kube_env.create_nad("plain", sim.bridge_conf("plain", "10.10.1.0/24"))
    kube_env.create_pod("noclaim", networks="plain")
    cid = unique_name("c")
    fake.reset_requests()

    assert cl.run("ADD", "noclaim", cid, pod_ns.path).ok
    assert cl.run("DEL", "noclaim", cid, pod_ns.path).ok
    assert fake.requests, "the ADD went through the API"
    assert not [r for r in fake.requests if r.path.startswith("/apis/resource.k8s.io/")]
