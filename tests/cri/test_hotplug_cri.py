"""Hot-plug (``dynamicNetworks``) on real CRI sandboxes: containerd runs the pod sandbox through
the thick daemon, the pod's networks annotation changes on the fake API server, and the
sandbox's netns follows; containerd's own teardown then leaves nothing behind."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cri.rig import CriRig
from tests.fakeapi import PODS, FakeApiServer
from tests.fakeapi.certs import Pki
from tests.support.waiting import wait_until

pytestmark = pytest.mark.netns

NETWORKS = "k8s.v1.cni.cncf.io/networks"


@pytest.fixture(scope="module")
def hot(tmp_path_factory: pytest.TempPathFactory, pause_archive: Path, fake_api_pki: Pki) -> Iterator[CriRig]:
    root = tmp_path_factory.mktemp("cri-hotplug")
    api = FakeApiServer(root / "api", pki=fake_api_pki).start()
    rig = CriRig(root, "thick", pause_archive=pause_archive, api=api, record=False)
    assert rig.daemon is not None
    rig.daemon.config["dynamicNetworks"] = True
    try:
        rig.start()
        yield rig
    finally:
        rig.cleanup()
        api.stop()


def _set_networks(rig: CriRig, name: str, networks: list[str]) -> None:
    assert rig.api is not None
    pod = copy.deepcopy(rig.api.get_pod(rig.namespace, name))
    assert pod is not None
    pod["metadata"]["annotations"][NETWORKS] = ",".join(networks)  # type: ignore[index]
    rig.api.store.replace(PODS, rig.namespace, name, pod)


def _status_interfaces(rig: CriRig, name: str) -> list[str]:
    assert rig.api is not None
    pod = rig.api.get_pod(rig.namespace, name) or {}
    value = pod["metadata"]["annotations"].get("k8s.v1.cni.cncf.io/network-status")  # type: ignore[index]
    return [entry.get("interface") for entry in json.loads(value)] if value else []


def test_annotation_change_reaches_a_running_cri_sandbox(hot: CriRig) -> None:
    first, second = hot.network(), hot.network()
    pod = hot.pod([first])
    sandbox = hot.run(pod)
    assert set(sandbox.links()) == {"lo", "eth0", "net1"}
    eth0 = sandbox.links()["eth0"]

    _set_networks(hot, pod.name, [first, second])
    wait_until(lambda: set(sandbox.links()) == {"lo", "eth0", "net1", "net2"}, "net2 in the sandbox")
    wait_until(lambda: _status_interfaces(hot, pod.name) == ["eth0", "net1", "net2"], "network-status")
    assert sandbox.ipv4("net2")

    _set_networks(hot, pod.name, [second])
    wait_until(lambda: set(sandbox.links()) == {"lo", "eth0", "net2"}, "net1 detached, net2 kept")
    wait_until(lambda: len(hot.node.leases()) == 2, "the lease of the first network released")
    after = sandbox.links()["eth0"]
    assert (after["ifindex"], after["address"], after["addr_info"]) == (
        eth0["ifindex"],
        eth0["address"],
        eth0["addr_info"],
    )

    hot.stop_remove(sandbox.id)  # containerd's DEL removes the hot-plugged network too
    assert hot.nothing_left() == {}
