"""The demo: two throw-away "pods" get eth0, net1 and net2 through the real ``multus`` executable.

No Kubernetes: the pods and NetworkAttachmentDefinitions are YAML manifests in a directory
(pymultus's embedded mode). Everything lives in a temporary directory, in network namespaces
and links named ``pmdemo-*``, on private addresses, and is removed at the end.

Run as root: ``bash scripts/demo.sh`` (or ``python -m pymultus.cli.demo``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

from pymultus.store.deleted import DELETED_DIR

PLUGIN_DIR = "/usr/lib/cni"
PREFIX = "pmdemo"
CLUSTER_BRIDGE = f"{PREFIX}-br0"
SECONDARY_BRIDGE = f"{PREFIX}-br1"
MACVLAN_PARENT = f"{PREFIX}-mv0"
MACVLAN_PEER = f"{PREFIX}-mv1"
PODS = (
    ("pod-a", f"{PREFIX}-pod-a", "bridge-net,macvlan-net"),
    (
        "pod-b",
        f"{PREFIX}-pod-b",
        '[{"name": "bridge-net"}, {"name": "macvlan-net", "ips": ["10.10.2.20/24"]}]',
    ),
)


def main() -> int:
    if os.geteuid() != 0:
        print("The demo creates network namespaces and links: run it as root.", file=sys.stderr)
        return 1
    for plugin in ("bridge", "macvlan", "host-local", "static", "loopback"):
        if not os.path.exists(os.path.join(PLUGIN_DIR, plugin)):
            print(f"{PLUGIN_DIR}/{plugin} is missing: run scripts/setup.sh first.", file=sys.stderr)
            return 1
    _cleanup_leftovers()
    workdir = tempfile.mkdtemp(prefix="pymultus-demo-")
    try:
        with _host_links():
            return _run(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        _cleanup_leftovers()


def _run(workdir: str) -> int:
    layout = _write_files(workdir)
    _title("1. The node")
    print(f"work directory      {workdir}")
    print(f"multus executable   {layout['multus']}  (a python -IS launcher)")
    print(f"cluster network     {CLUSTER_BRIDGE}: bridge + host-local 10.88.0.0/24 (eth0)")
    print(f"secondary networks  NetworkAttachmentDefinitions in {layout['manifests']}:")
    print(f"                      bridge-net   bridge {SECONDARY_BRIDGE}, host-local 10.10.1.0/24")
    print(f"                      macvlan-net  macvlan on veth {MACVLAN_PARENT}, host-local 10.10.2.0/24")

    _title("2. ADD: two pods, three interfaces each")
    for pod, netns, annotation in PODS:
        _ip("netns", "add", netns)
        print(f"\n$ CNI_COMMAND=ADD multus   # pod demo/{pod}, annotation {annotation}")
        answer = _multus("ADD", layout, pod, netns)
        result = json.loads(answer)
        for ip in result.get("ips", []):
            print(f"  result: {ip['address']} (gateway {ip.get('gateway', '-')})")
        print(textwrap.indent(_status_of(layout, pod), "  "))
        print(f"$ ip -n {netns} -br addr")
        print(textwrap.indent(_ip("-n", netns, "-br", "addr").rstrip(), "  "))

    _title("3. Traffic between the pods over each secondary network")
    ok = True
    for ifname in ("net1", "net2"):
        target = _address_of(PODS[1][1], ifname)
        reply = subprocess.run(
            ["ip", "netns", "exec", PODS[0][1], "ping", "-c", "2", "-W", "1", "-I", ifname, target],
            capture_output=True,
            text=True,
            check=False,
        )
        summary = next((line for line in reply.stdout.splitlines() if "packets transmitted" in line), "")
        summary = summary or reply.stderr.strip()
        print(f"pod-a {ifname} -> pod-b {target}: {'OK' if reply.returncode == 0 else 'FAILED'}  ({summary})")
        ok = ok and reply.returncode == 0

    _title("4. DEL: everything is released")
    for pod, netns, _ in PODS:
        _multus("DEL", layout, pod, netns)
        _ip("netns", "delete", netns)
        print(f"$ CNI_COMMAND=DEL multus   # pod demo/{pod}: done, netns {netns} deleted")
    leftovers = _leftovers(layout)
    _title("5. What is left")
    if leftovers:
        print("\n".join(leftovers))
        return 1
    print("no pod interface, no IP lease, no cache file: nothing left behind")
    return 0 if ok else 1


def _write_files(workdir: str) -> dict[str, str]:
    layout = {
        "bin": os.path.join(workdir, "bin"),
        "net.d": os.path.join(workdir, "net.d"),
        "cni": os.path.join(workdir, "cache"),
        "ipam": os.path.join(workdir, "ipam"),
        "manifests": os.path.join(workdir, "manifests"),
    }
    for directory in layout.values():
        os.makedirs(directory, mode=0o700, exist_ok=True)
    from pymultus.install.launcher import default_python, default_sys_path, write_launcher

    layout["multus"] = os.path.join(layout["bin"], "multus")
    write_launcher(
        layout["multus"],
        entry_module="pymultus.cli.thin",
        python=default_python(),
        sys_path=default_sys_path(),
    )
    cluster = {
        "cniVersion": "1.0.0",
        "name": "cluster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": CLUSTER_BRIDGE,
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.88.0.0/24",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": layout["ipam"],
                },
            }
        ],
    }
    layout["cluster"] = os.path.join(layout["net.d"], "10-cluster.conflist")
    _write_json(layout["cluster"], cluster)
    layout["conf"] = os.path.join(workdir, "00-multus.conf")
    _write_json(
        layout["conf"],
        {
            "cniVersion": "1.0.0",
            "name": "multus-cni-network",
            "type": "multus",
            "clusterNetwork": layout["cluster"],
            "manifestsDir": layout["manifests"],
            "cniDir": layout["cni"],
            "confDir": layout["net.d"],
            "binDir": PLUGIN_DIR,
        },
    )
    bridge_net = {
        "cniVersion": "1.0.0",
        "type": "bridge",
        "bridge": SECONDARY_BRIDGE,
        "ipam": {"type": "host-local", "subnet": "10.10.1.0/24", "dataDir": layout["ipam"]},
    }
    macvlan_net = {
        "cniVersion": "1.0.0",
        "plugins": [
            {
                "type": "macvlan",
                "master": MACVLAN_PARENT,
                "mode": "bridge",
                "capabilities": {"ips": True},
                "ipam": {"type": "host-local", "subnet": "10.10.2.0/24", "dataDir": layout["ipam"]},
            }
        ],
    }
    documents = [
        _nad("bridge-net", bridge_net),
        _nad("macvlan-net", macvlan_net),
        *(_pod(pod, annotation) for pod, _, annotation in PODS),
    ]
    with open(os.path.join(layout["manifests"], "demo.yaml"), "w", encoding="utf-8") as handle:
        handle.write("\n---\n".join(json.dumps(doc, indent=2) for doc in documents) + "\n")
    return layout


def _nad(name: str, config: object) -> dict[str, object]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "demo"},
        "spec": {"config": json.dumps(config)},
    }


def _pod(name: str, annotation: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "demo",
            "annotations": {"k8s.v1.cni.cncf.io/networks": annotation},
        },
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }


def _multus(command: str, layout: dict[str, str], pod: str, netns: str) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": f"{PREFIX}-{pod}",
        "CNI_NETNS": f"/var/run/netns/{netns}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": PLUGIN_DIR,
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME={pod};K8S_POD_UID=uid-{pod}",
    }
    with open(layout["conf"], "rb") as conf:
        proc = subprocess.run([layout["multus"]], stdin=conf, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"multus {command} for {pod} failed: {proc.stdout.decode()} {proc.stderr.decode()}")
    return proc.stdout.decode()


def _status_of(layout: dict[str, str], pod: str) -> str:
    from pymultus.kube.manifests import ManifestPodSource

    status = ManifestPodSource(layout["manifests"]).read_network_status("demo", pod)
    lines = ["network-status:"]
    for entry in status or []:
        ips = ", ".join(str(ip) for ip in entry.get("ips", []))  # type: ignore[attr-defined]
        default = "  (default)" if entry.get("default") else ""
        interface, name, mac = entry.get("interface", "?"), entry.get("name", "?"), entry.get("mac", "-")
        lines.append(f"  {interface:5} {name:18} {ips:14} mac {mac}{default}")
    return "\n".join(lines)


def _address_of(netns: str, ifname: str) -> str:
    for link in json.loads(_ip("-j", "-n", netns, "addr", "show", "dev", ifname)):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                return str(info["local"])
    raise SystemExit(f"{ifname} of {netns} has no IPv4 address")


def _leftovers(layout: dict[str, str]) -> list[str]:
    found = []
    for link in json.loads(_ip("-j", "link", "show")):
        name = str(link.get("ifname", ""))
        if name.startswith("veth") and link.get("master") in (CLUSTER_BRIDGE, SECONDARY_BRIDGE):
            found.append(f"leftover host veth {name} on {link.get('master')}")
    for root, _, files in os.walk(layout["ipam"]):
        for name in files:
            if name[0].isdigit():
                found.append(f"leftover IP lease {os.path.join(root, name)}")
    deleted_records = os.path.join(layout["cni"], DELETED_DIR)
    for root, _, files in os.walk(layout["cni"]):
        if root == deleted_records:
            continue  # the record of completed DELs (store.deleted): no state of a pod
        for name in files:
            found.append(f"leftover cache file {os.path.join(root, name)}")
    netns = _ip("netns", "list")
    found.extend(
        f"leftover netns {line.split()[0]}" for line in netns.splitlines() if line.startswith(PREFIX)
    )
    return found


@contextmanager
def _host_links() -> Iterator[None]:
    _ip("link", "add", MACVLAN_PARENT, "type", "veth", "peer", "name", MACVLAN_PEER)
    try:
        _ip("link", "set", MACVLAN_PARENT, "up")
        _ip("link", "set", MACVLAN_PEER, "up")
        yield
    finally:
        _ip("link", "delete", MACVLAN_PARENT, check=False)


def _cleanup_leftovers() -> None:
    for line in _ip("netns", "list").splitlines():
        if line.startswith(PREFIX):
            _ip("netns", "delete", line.split()[0], check=False)
    for link in (CLUSTER_BRIDGE, SECONDARY_BRIDGE, MACVLAN_PARENT):
        if os.path.exists(f"/sys/class/net/{link}"):
            _ip("link", "delete", link, check=False)


def _ip(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _write_json(path: str, document: object) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)


def _title(text: str) -> None:
    print(f"\n=== {text}")


if __name__ == "__main__":
    sys.exit(main())
