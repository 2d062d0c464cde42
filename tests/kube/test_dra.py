"""pymultus.kube.dra against the fake API server: claims, slices, warnings, the slice cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pymultus import errors
from pymultus.kube.auth import load_kubeconfig
from pymultus.kube.client import KubeClient
from pymultus.kube.devices import DeviceAllocator
from pymultus.kube.dra import (
    ATTRIBUTES_MISSING,
    NOT_ALLOCATED,
    ClaimReader,
    SliceCache,
    claim_refs,
    find_device,
)
from pymultus.kube.podresources import PodDeviceMap
from tests.fakeapi import dra
from tests.fakeapi.server import FakeApiServer
from tests.support.isolated import run_isolated

DRIVER = "net.example"
RESOURCE = "example.com/net"
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def client(fake_api: FakeApiServer, tmp_path: Path) -> Iterator[KubeClient]:
    kc = fake_api.write_kubeconfig(tmp_path / "kc")
    c = KubeClient(load_kubeconfig(str(kc)))
    try:
        yield c
    finally:
        c.close()


def pod(
    *claims: tuple[str, str], node: str = "node1", status: dict[str, object] | None = None
) -> dict[str, object]:
    entries = [
        {"name": n, "resourceClaimName": c} if c else {"name": n, "resourceClaimTemplateName": "t"}
        for n, c in claims
    ]
    spec: dict[str, object] = {"nodeName": node, "resourceClaims": entries}
    return {"metadata": {"namespace": "ns1", "name": "p1"}, "spec": spec, "status": status or {}}


def claim(api: FakeApiServer, name: str, *devices: str, pool: str = "pool1", request: str = "net") -> None:
    dra.create_claim(api, "ns1", name, requests=(request,))
    if devices:
        results = [{"request": request, "driver": DRIVER, "pool": pool, "device": d} for d in devices]
        dra.allocate_claim(api, "ns1", name, results)


def test_claim_refs_follow_spec_status_and_the_extended_resource_claim() -> None:
    status = {
        "resourceClaimStatuses": [{"name": "from-template", "resourceClaimName": "p1-from-template-x7"}],
        "extendedResourceClaimStatus": {
            "resourceClaimName": "p1-extended-k2",
            "requestMappings": [{"containerName": "app", "resourceName": RESOURCE, "requestName": "req-0"}],
        },
    }
    refs = claim_refs(pod(("direct", "c1"), ("from-template", ""), ("pending", ""), status=status))
    assert [(r.pod_claim, r.claim_name, r.mappings) for r in refs] == [
        ("direct", "c1", None),
        ("from-template", "p1-from-template-x7", None),
        ("pending", "", None),
        ("", "p1-extended-k2", {"req-0": RESOURCE}),
    ]


def test_devices_of_node_all_nodes_and_per_device_slices_sorted_out_by_attributes(
    fake_api: FakeApiServer, client: KubeClient
) -> None:
    dra.create_slice(
        fake_api,
        "own",
        driver=DRIVER,
        pool="pool1",
        node_name="node1",
        devices=[dra.device("vf-0", RESOURCE, "0000:03:00.1"), dra.device("bare")],
    )
    dra.create_slice(
        fake_api,
        "shared",
        driver=DRIVER,
        pool="shared",
        all_nodes=True,
        devices=[dra.device("sh-0", RESOURCE, "0000:04:00.1")],
    )
    dra.create_slice(
        fake_api,
        "perdev",
        driver=DRIVER,
        pool="perdev",
        per_device=True,
        devices=[dra.device("pd-0", "example.com/other", "0000:05:00.1", nodeName="node1")],
    )
    dra.create_slice(
        fake_api,
        "elsewhere",
        driver=DRIVER,
        pool="pool1",
        node_name="node2",
        devices=[dra.device("vf-9", RESOURCE, "0000:09:00.1")],
    )
    claim(fake_api, "a", "vf-0", "bare")
    claim(fake_api, "b", "sh-0", pool="shared")
    claim(fake_api, "c", "pd-0", pool="perdev")
    claim(fake_api, "d", "vf-9")  # allocated on another node's slice: not on this node

    out = ClaimReader(lambda: client).pod_devices(pod(("a", "a"), ("b", "b"), ("c", "c"), ("d", "d")))

    assert out.by_resource == {
        RESOURCE: ["0000:03:00.1", "0000:04:00.1"],
        "example.com/other": ["0000:05:00.1"],
    }
    assert [(reason, message.split(" of ")[0]) for reason, message in out.warnings] == [
        (ATTRIBUTES_MISSING, f"device {DRIVER}/pool1/bare"),
        (ATTRIBUTES_MISSING, f"device {DRIVER}/pool1/vf-9"),
    ]
    assert "lacks the string attributes" in out.warnings[0][1]
    assert "is in no ResourceSlice of node node1" in out.warnings[1][1]


def test_missing_unallocated_and_ungenerated_claims_warn(fake_api: FakeApiServer, client: KubeClient) -> None:
    claim(fake_api, "unallocated")
    out = ClaimReader(lambda: client).pod_devices(pod(("x", "unallocated"), ("y", "gone"), ("z", "")))
    assert out.by_resource == {}
    assert [(r, m) for r, m in out.warnings] == [
        (NOT_ALLOCATED, "resource claim unallocated of pod ns1/p1 is not allocated; it gives no device"),
        (NOT_ALLOCATED, "resource claim gone of pod ns1/p1 does not exist; it gives no device"),
        (NOT_ALLOCATED, "resource claim z of pod ns1/p1 has not been created yet; it gives no device"),
    ]


def test_extended_resource_claim_counts_only_devices_of_the_mapped_resource(
    fake_api: FakeApiServer, client: KubeClient
) -> None:
    dra.create_slice(
        fake_api,
        "own",
        driver=DRIVER,
        pool="pool1",
        node_name="node1",
        devices=[
            dra.device("vf-0", RESOURCE, "0000:03:00.1"),
            dra.device("vf-1", "example.com/other", "0000:03:00.2"),
        ],
    )
    claim(fake_api, "ext", "vf-0", "vf-1", request="req-0")
    status = {
        "extendedResourceClaimStatus": {
            "resourceClaimName": "ext",
            "requestMappings": [{"containerName": "app", "resourceName": RESOURCE, "requestName": "req-0"}],
        }
    }
    target = pod(status=status)
    target["spec"] = {"nodeName": "node1", "resourceClaims": [{"name": "x", "resourceClaimName": "none"}]}
    out = ClaimReader(lambda: client).pod_devices(target)
    assert out.by_resource == {RESOURCE: ["0000:03:00.1"]}
    assert [r for r, _m in out.warnings] == [NOT_ALLOCATED, ATTRIBUTES_MISSING]
    assert "not the extended resource its request maps to" in out.warnings[1][1]


def test_only_the_newest_generation_of_a_pool_counts() -> None:
    def slice_(generation: int, device_id: str) -> dict[str, object]:
        return {
            "spec": {
                "pool": {"name": "p", "generation": generation},
                "devices": [dra.device("d", RESOURCE, device_id)],
            }
        }

    found = find_device([slice_(2, "new"), slice_(1, "old"), slice_(2, "new")], "p", "d")
    assert found is not None and found["attributes"] == dra.device("d", RESOURCE, "new")["attributes"]
    assert find_device([slice_(1, "old")], "q", "d") is None


def test_slice_cache_lists_once_refreshes_on_a_miss_and_is_bounded(
    fake_api: FakeApiServer, client: KubeClient
) -> None:
    now = [0.0]
    cache = SliceCache(entries=2, ttl=30, clock=lambda: now[0])
    reader = ClaimReader(lambda: client, cache)
    dra.create_slice(
        fake_api,
        "s0",
        driver=DRIVER,
        pool="pool1",
        node_name="node1",
        devices=[dra.device("vf-0", RESOURCE, "A")],
    )
    claim(fake_api, "a", "vf-0")
    assert reader.pod_devices(pod(("a", "a"))).by_resource == {RESOURCE: ["A"]}
    assert cache.lists == 1
    assert reader.pod_devices(pod(("a", "a"))).by_resource == {RESOURCE: ["A"]}
    assert cache.lists == 1, "served from the cache"
    # A device published after the cache was filled: the miss lists again, once.
    dra.create_slice(
        fake_api,
        "s1",
        driver=DRIVER,
        pool="pool2",
        node_name="node1",
        devices=[dra.device("vf-1", RESOURCE, "B")],
    )
    claim(fake_api, "b", "vf-1", pool="pool2")
    assert reader.pod_devices(pod(("b", "b"))).by_resource == {RESOURCE: ["B"]}
    assert cache.lists == 2
    now[0] = 31.0  # expired
    reader.pod_devices(pod(("a", "a")))
    assert cache.lists == 3
    for node in ("n2", "n3", "n4"):
        cache.get(client, node, DRIVER)
    assert len(cache._slices) == 2


def test_api_refusals_are_errors_not_warnings(fake_api: FakeApiServer, tmp_path: Path) -> None:
    fake_api.add_token("t", "system:serviceaccount:kube-system:pymultus", allowed=())
    c = KubeClient(load_kubeconfig(str(fake_api.write_kubeconfig(tmp_path / "kc", token="t"))))
    try:
        with pytest.raises(errors.KubeForbidden):
            ClaimReader(lambda: c).pod_devices(pod(("a", "a")))
    finally:
        c.close()


def test_allocator_serves_dra_resources_without_asking_the_kubelet(
    fake_api: FakeApiServer, client: KubeClient
) -> None:
    dra.create_slice(
        fake_api,
        "s0",
        driver=DRIVER,
        pool="pool1",
        node_name="node1",
        devices=[dra.device("vf-1", RESOURCE, "B"), dra.device("vf-0", RESOURCE, "A")],
    )
    claim(fake_api, "a", "vf-1", "vf-0")
    kubelet_calls = []

    def kubelet() -> PodDeviceMap:
        kubelet_calls.append(1)
        return PodDeviceMap({"example.com/plugin": ["P1"]}, "checkpoint")

    alloc = DeviceAllocator("ns1", "p1", "uid", loader=kubelet, claims=lambda: ClaimReader(lambda: client))
    assert alloc.use_claims(pod(("a", "a")))
    assert [alloc.next_device(RESOURCE), alloc.next_device(RESOURCE), alloc.next_device(RESOURCE)] == [
        "A",
        "B",
        None,
    ]
    assert kubelet_calls == []
    assert alloc.next_device("example.com/plugin") == "P1"
    assert kubelet_calls == [1]
    with pytest.raises(errors.InvalidConfig, match="all 2 allocated"):
        alloc.require_device(RESOURCE, "net-a")
    assert not alloc.use_claims({"spec": {"containers": []}})


def test_a_pod_without_claims_loads_nothing_of_dra(tmp_path: Path) -> None:
    code = f"""
import sys
sys.path.insert(0, {str(SRC)!r})
from pymultus.kube.devices import DeviceAllocator
from pymultus.kube.podresources import PodDeviceMap
def reader():
    raise AssertionError("no claim reader for a pod without claims")
kubelet = lambda: PodDeviceMap({{"r": ["1"]}}, "checkpoint")
alloc = DeviceAllocator("ns", "p", "u", loader=kubelet, claims=reader)
assert not alloc.use_claims({{"spec": {{"containers": []}}}})
assert alloc.next_device("r") == "1"
assert "pymultus.kube.dra" not in sys.modules and "threading" not in sys.modules, sorted(sys.modules)
print("ok")
"""
    assert run_isolated(code).strip() == "ok"
