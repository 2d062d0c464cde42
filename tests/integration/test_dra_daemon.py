"""DRA devices in thick mode: the real daemon (pod from its informer cache, claims read live, the
node's ResourceSlices listed once into its cache) serving the real multus-shim."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakeapi import FakeApiServer, dra
from tests.integration.test_shim_daemon import Node, make_node
from tests.support.daemon import run_shim
from tests.support.netns import delete_host_link, netns, unique_name

pytestmark = pytest.mark.netns

DRIVER = "net.dra-test.example"
RESOURCE = "example.com/dra_net"


@pytest.fixture
def dra_node(tmp_path: Path) -> Iterator[tuple[Node, FakeApiServer]]:
    with FakeApiServer(tmp_path / "api") as api:
        node = make_node(tmp_path / "node", 1, kubeconfig=str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        node.daemon.env["MULTUS_NODE_NAME"] = "node1"
        bridge = unique_name("pmd")
        node.bridges.append(bridge)
        ipam_dir = node.root / "nadipam"
        node.ipam_dirs.append(ipam_dir)
        conf = {
            "cniVersion": "0.3.1",
            "name": f"dra-{bridge}",
            "type": "bridge",
            "bridge": bridge,
            "capabilities": {"deviceID": True},
            "ipam": {
                "type": "host-local",
                "subnet": f"10.{random.randint(100, 250)}.7.0/24",
                "dataDir": str(ipam_dir),
            },
        }
        api.create_nad("default", "vf", conf, annotations={"k8s.v1.cni.cncf.io/resourceName": RESOURCE})
        try:
            yield node, api
        finally:
            node.daemon.stop()
            for name in node.bridges:
                delete_host_link(name)


def test_daemon_gives_claimed_devices_and_caches_the_node_slices(
    dra_node: tuple[Node, FakeApiServer],
) -> None:
    node, api = dra_node
    dra.create_slice(
        api,
        "node1-net",
        driver=DRIVER,
        pool="node1",
        node_name="node1",
        devices=[dra.device("vf-0", RESOURCE, "0000:03:00.1"), dra.device("vf-1", RESOURCE, "0000:03:00.2")],
    )
    node.daemon.start(wait="readyz")
    for index, device in enumerate(("vf-1", "vf-0")):
        claim = f"claim{index}"
        dra.create_claim(api, "default", claim)
        dra.allocate_claim(
            api, "default", claim, [{"request": "net", "driver": DRIVER, "pool": "node1", "device": device}]
        )
        annotations = {"k8s.v1.cni.cncf.io/networks": "vf"}
        pod = dra.create_pod(api, "default", f"dra{index}", {"net": claim}, annotations=annotations)
        cid = unique_name("cid")
        with netns() as ns:
            env = node.env(ns, cid, f"dra{index}")
            env["CNI_ARGS"] += f";K8S_POD_UID={pod['metadata']['uid']}"  # type: ignore[index]
            code, result, err = run_shim(node.shim, "ADD", node.conf(), env=env)
            assert code == 0, (result, err, node.daemon.output()[-3000:])
            entries = [json.loads(p.read_text()) for p in (node.root / "cache" / "results").iterdir()]
            (entry,) = [e for e in entries if e["containerId"] == cid and e["ifName"] == "net1"]
            expected = "0000:03:00.2" if device == "vf-1" else "0000:03:00.1"
            assert json.loads(base64.b64decode(entry["config"]))["deviceID"] == expected
            assert entry["capabilityArgs"]["deviceID"] == expected
            code, result, err = run_shim(node.shim, "DEL", node.conf(), env=env)
            assert code == 0, (result, err)
    slice_lists = [r for r in api.requests if r.path == "/apis/resource.k8s.io/v1/resourceslices"]
    assert len(slice_lists) == 2, "one LIST per field selector (own node, node-less), then the daemon's cache"
    assert api.count("GET", "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/claim1") == 1
