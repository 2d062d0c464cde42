"""containerd's CRI runs pod sandboxes with pymultus as its CNI plugin (thin without Kubernetes,
thin with the fake API server, thick): addresses, pings, what containerd sends, and a clean node
after every scenario."""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.cri.rig import CriRig
from tests.support.cri import CriError, Sandbox
from tests.support.waiting import wait_until

pytestmark = pytest.mark.netns


def in_subnet(address: str, subnet: str) -> bool:
    return ipaddress.ip_interface(address).ip in ipaddress.ip_network(subnet)


def test_sandboxes_get_every_network_and_reach_each_other_over_each(rig: CriRig) -> None:
    nads = [rig.network(), rig.network()]
    sandboxes = [rig.run(rig.pod(nads)) for _ in range(2)]
    for sandbox in sandboxes:
        links = sandbox.links()
        assert set(links) == {"lo", "eth0", "net1", "net2"}, links
        # What CRI reports is the cluster network's address, on eth0.
        assert sandbox.ipv4("eth0") == [f"{sandbox.ip}/24"]
        assert in_subnet(sandbox.ip, rig.cluster_subnet)
        for index, nad in enumerate(nads, start=1):
            (address,) = sandbox.ipv4(f"net{index}")
            assert in_subnet(address, rig.subnets[nad]), (nad, address)
        # The pod's network-status (API or manifest) says the same.
        status = rig.network_status(sandbox.pod)
        assert [entry["interface"] for entry in status] == ["eth0", "net1", "net2"]
        assert status[0]["ips"] == [sandbox.ip] and status[0]["default"] is True
        assert [entry["name"] for entry in status[1:]] == [f"{rig.namespace}/{nad}" for nad in nads]
    first, second = sandboxes
    assert first.ping(second.ip)
    for index in (1, 2):
        (peer,) = second.ipv4(f"net{index}")
        assert first.ping(peer.split("/")[0]), f"no ping over net{index}"
    for sandbox in sandboxes:
        rig.stop_remove(sandbox.id)
    assert rig.nothing_left() == {}


def host_veth_of(sandbox: Sandbox, ifname: str = "eth0") -> str:
    """The host end of the sandbox's veth ``ifname`` (its peer's ifindex, found on the host)."""
    peer_index = sandbox.links()[ifname]["link_index"]
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    (name,) = [str(link["ifname"]) for link in json.loads(out) if link["ifindex"] == peer_index]
    return name


def test_what_containerd_sends_reaches_the_cluster_network_delegates(rig: CriRig) -> None:
    recorded_nad = rig.network(
        plugins=[
            {
                "type": "pmtest",
                "capabilities": {"portMappings": True},
                "pmtest": {"record": str(rig.record_log)},
            }
        ]
    )
    host_port = random.randint(20000, 29999)
    pod = rig.pod(
        [recorded_nad],
        annotations={
            "kubernetes.io/ingress-bandwidth": "10M",
            "kubernetes.io/egress-bandwidth": "20M",
            "example.com/note": "cri",
        },
        port_mappings=[(8080, host_port)],
        dns_servers=["10.0.0.10"],
    )
    sandbox = rig.run(pod)
    adds = rig.records(sandbox.id, "ADD")
    assert len(adds) == 2, adds  # the cluster network's recorder, then net1's
    cluster, secondary = adds
    env = cluster["env"]
    assert env["CNI_NETNS"] == sandbox.netns and env["CNI_IFNAME"] == "eth0"
    args = dict(item.split("=", 1) for item in env["CNI_ARGS"].split(";"))
    assert args["K8S_POD_UID"] == pod.uid
    assert args["K8S_POD_INFRA_CONTAINER_ID"] == sandbox.id
    assert (args["K8S_POD_NAMESPACE"], args["K8S_POD_NAME"]) == (pod.namespace, pod.name)
    runtime = cluster["conf"]["runtimeConfig"]
    # containerd 1.6 (go-cni) spells the keys of its Go structs ("HostPort", "IngressRate");
    # pymultus passes them unchanged, and the Go plugins decode them case-insensitively.
    assert runtime["portMappings"] == [
        {"HostPort": host_port, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""}
    ]
    assert runtime["bandwidth"]["IngressRate"] == 10_000_000
    assert runtime["bandwidth"]["EgressRate"] == 20_000_000
    assert runtime["dns"]["Servers"] == ["10.0.0.10"]
    assert runtime["io.kubernetes.cri.pod-annotations"]["example.com/note"] == "cri"
    # The runtime's requests are the cluster network's only (NPWG 7.5), even where declared.
    assert secondary["env"]["CNI_IFNAME"] == "net1"
    assert "portMappings" not in (secondary["conf"].get("runtimeConfig") or {})

    # portmap made the DNAT rule, bandwidth shaped the host end of eth0.
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    dnat = [line for line in nat.splitlines() if f"--to-destination {sandbox.ip}:8080" in line]
    assert dnat and all(f"--dport {host_port}" in line for line in dnat), nat
    qdiscs = subprocess.run(
        ["tc", "qdisc", "show", "dev", host_veth_of(sandbox)], capture_output=True, text=True, check=True
    ).stdout
    assert "tbf" in qdiscs, qdiscs

    rig.stop_remove(sandbox.id)
    assert rig.nothing_left() == {}


def multus_dels(rig: CriRig, sandbox_id: str) -> list[tuple[str, list[str]]]:
    """Each DEL containerd sent to pymultus: (its CNI_NETNS, the delegates pymultus ran for it)."""
    runs: list[tuple[str, list[str]]] = []
    for command, plugin, netns in rig.execs(sandbox_id):
        if command != "DEL" or plugin == "loopback":
            continue
        if plugin in ("multus", "multus-shim"):
            runs.append((netns, []))
        elif runs:
            runs[-1][1].append(plugin)
    return runs


def test_del_pattern_stop_stop_remove(rig: CriRig) -> None:
    sandbox = rig.run(rig.pod([rig.network()]))
    assert rig.cri is not None
    rig.cri.stop(sandbox.id)
    assert rig.nothing_left({sandbox.id}).keys() <= {"sandboxes"}  # stopped, not yet removed
    rig.cri.stop(sandbox.id)
    rig.cri.remove(sandbox.id)
    # containerd sends three DELs: Stop with the netns, then Stop again and Remove without it.
    dels = multus_dels(rig, sandbox.id)
    assert [netns for netns, _ in dels] == [sandbox.netns, "", ""], rig.execs(sandbox.id)
    (first,) = rig.records(sandbox.id, "DEL")  # only the first DEL reaches the delegates
    assert first["env"]["CNI_NETNS"] == sandbox.netns
    assert first["conf"]["prevResult"]["interfaces"], first  # the cached ADD result
    # The first DEL undoes every delegate, the cluster network's chain in reverse order.
    assert dels[0][1] == ["bridge", "host-local", "pmtest", "bandwidth", "portmap", "bridge", "host-local"]
    # The later DELs are cheap and quiet: no delegate runs again, nothing is logged as a warning.
    assert [delegates for _, delegates in dels[1:]] == [[], []]
    assert [line for line in rig.log_lines(sandbox.id) if "warning" in line.lower()] == []
    assert rig.nothing_left() == {}


def test_remove_after_the_netns_was_unmounted(rig: CriRig) -> None:
    sandbox = rig.run(rig.pod([rig.network()]))
    # What a reboot or a stray clean-up does: the netns bind mount vanishes under containerd.
    subprocess.run(["umount", sandbox.netns], check=True)
    rig.stop_remove(sandbox.id)
    assert [r["env"]["CNI_NETNS"] for r in rig.records(sandbox.id, "DEL")][:1] == [""]
    # The kernel removes the veth pairs once the last process of the netns is gone.
    wait_until(lambda: not rig.node.host_veths(), "the sandbox's veths to disappear")
    assert rig.nothing_left() == {}


def test_containerd_restart_with_sandboxes_running(rig: CriRig) -> None:
    nad = rig.network()
    first, second = (rig.run(rig.pod([nad])) for _ in range(2))
    assert rig.cri is not None
    rig.containerd.restart()
    rig.cri.wait_ready()
    assert set(rig.cri.list_ids()) == {first.id, second.id}
    (peer,) = second.ipv4("net1")
    assert first.ping(peer.split("/")[0])
    for sandbox in (first, second):
        rig.stop_remove(sandbox.id)
    assert rig.nothing_left() == {}


def test_a_failing_second_network_fails_the_sandbox_and_leaves_nothing(rig: CriRig) -> None:
    good, bad = rig.network(), rig.failing_network()
    assert rig.cri is not None
    with pytest.raises(CriError) as failure:
        rig.run(rig.pod([good, bad]))
    assert bad in failure.value.details, failure.value.details
    assert f"{bad} refuses" in failure.value.details
    assert rig.nothing_left() == {}  # containerd removed the half-made sandbox; pymultus rolled back


def test_twenty_sandboxes_in_parallel(rig: CriRig) -> None:
    nad = rig.network()
    pods = [rig.pod([nad]) for _ in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        sandboxes = list(pool.map(rig.run, pods))
    addresses = set()
    for sandbox in sandboxes:
        assert set(sandbox.links()) == {"lo", "eth0", "net1"}
        addresses.add(sandbox.ip)
        addresses.update(sandbox.ipv4("net1"))
    assert len(addresses) == 40
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(rig.stop_remove, [sandbox.id for sandbox in sandboxes]))
    assert rig.nothing_left() == {}
