"""`pymultus cni` with the real Debian CNI plugins in throw-away network namespaces (root).

Every test drives the real command as a subprocess (real env, real plugins) and checks the
namespace with ip(8): ADD creates what the plugins promise, CHECK passes, DEL removes every link,
host-local lease and cache file, and a second DEL succeeds. Addresses are private (10.x) and live
only on bridges/namespaces the tests create and delete.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.netns import (
    PLUGIN_DIR,
    Netns,
    delete_host_link,
    host_link_exists,
    ip_json,
    netns,
    unique_name,
    veth_parent,
)

pytestmark = pytest.mark.netns

TEST_PLUGINS = str(Path(__file__).resolve().parents[1] / "support" / "plugins")


class Tool:
    """Runs `python -m pymultus cni ...` with a private conf dir and cache dir."""

    def __init__(self, tmp_path: Path) -> None:
        self.conf_dir = tmp_path / "net.d"
        self.conf_dir.mkdir()
        self.cache_dir = tmp_path / "cache"
        self.ipam_dir = tmp_path / "ipam"

    def write(self, name: str, doc: dict[str, object], suffix: str = ".conflist") -> None:
        (self.conf_dir / f"{name}{suffix}").write_text(json.dumps(doc))

    def run(
        self, verb: str, network: str, ns: str | None, *extra: str, timeout: float = 120
    ) -> tuple[int, dict[str, object] | None]:
        argv = [sys.executable, "-m", "pymultus", "cni", verb, network]
        if ns is not None:
            argv.append(ns)
        argv += ["--conf-dir", str(self.conf_dir), "--cache-dir", str(self.cache_dir), *extra]
        env = {**os.environ, "CNI_PATH": f"{PLUGIN_DIR}:{TEST_PLUGINS}"}
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        out = proc.stdout.strip()
        return proc.returncode, (json.loads(out) if out else None)

    def ok(self, verb: str, network: str, ns: str | None, *extra: str) -> dict[str, object] | None:
        code, out = self.run(verb, network, ns, *extra)
        assert code == 0, f"{verb} failed: {out}"
        return out

    def cache_files(self) -> list[str]:
        results = self.cache_dir / "results"
        return sorted(p.name for p in results.iterdir()) if results.exists() else []

    def leases(self, network: str) -> list[str]:
        directory = self.ipam_dir / network
        if not directory.exists():
            return []
        return sorted(
            p.name
            for p in directory.iterdir()
            if p.name not in ("lock",) and not p.name.startswith("last_reserved_ip")
        )

    def ipam(self, subnet: str, **extra: object) -> dict[str, object]:
        return {"type": "host-local", "subnet": subnet, "dataDir": str(self.ipam_dir), **extra}


@pytest.fixture
def tool(tmp_path: Path) -> Tool:
    return Tool(tmp_path)


@contextmanager
def host_bridge(name: str) -> Iterator[str]:
    """The bridge plugin creates host bridges; delete ours whatever happens."""
    try:
        yield name
    finally:
        delete_host_link(name)


def _subnet() -> tuple[str, str]:
    base = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
    return f"{base}.0/24", base


def _v4(ns: Netns, ifname: str) -> list[str]:
    return [address for address in ns.addresses(ifname) if ":" not in address]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def host_links() -> set[str]:
    return {str(link["ifname"]) for link in ip_json("link", "show")}


def _assert_del_cleans_up(tool: Tool, name: str, ns: Netns, *, ifname: str = "eth0") -> None:
    tool.ok("del", name, ns.name, "--ifname", ifname)
    assert ifname not in ns.links()
    assert tool.leases(name) == [] and tool.cache_files() == []
    tool.ok("del", name, ns.name, "--ifname", ifname)  # a repeated DEL succeeds


def test_loopback(tool: Tool) -> None:
    name = unique_name("lo")
    tool.write(name, {"cniVersion": "1.0.0", "name": name, "type": "loopback"}, ".conf")
    with netns() as ns:
        from tests.support.netns import ip

        ip("link", "set", "lo", "down", netns=ns.name)
        result = tool.ok("add", name, ns.name, "--ifname", "lo")
        assert result is not None and result["cniVersion"] == "1.0.0"
        assert {"address": "127.0.0.1/8"}.items() <= {k: v for k, v in result["ips"][0].items()}.items()  # type: ignore[index]
        assert "UP" in ns.links()["lo"]["flags"]  # type: ignore[operator]
        assert "127.0.0.1/8" in ns.addresses("lo")
        tool.ok("check", name, ns.name, "--ifname", "lo")
        assert len(tool.cache_files()) == 1
        tool.ok("del", name, ns.name, "--ifname", "lo")
        assert "UP" not in ns.links()["lo"]["flags"]  # type: ignore[operator]
        assert tool.cache_files() == []
        tool.ok("del", name, ns.name, "--ifname", "lo")


def test_bridge_with_host_local(tool: Tool) -> None:
    name = unique_name("br")
    subnet, base = _subnet()
    with host_bridge(unique_name("pmb")) as bridge, netns() as ns:
        tool.write(
            name,
            {
                "cniVersion": "1.0.0",
                "name": name,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge,
                        "isGateway": True,
                        "isDefaultGateway": True,
                        "ipam": tool.ipam(subnet),
                    }
                ],
            },
        )
        result = tool.ok("add", name, ns.name)
        assert result is not None
        names = [i["name"] for i in result["interfaces"]]  # type: ignore[attr-defined]
        assert names[0] == bridge and names[2] == "eth0" and names[1].startswith("veth")
        assert result["ips"] == [{"interface": 2, "address": f"{base}.2/24", "gateway": f"{base}.1"}]
        assert _v4(ns, "eth0") == [f"{base}.2/24"]
        assert {"dst": "default", "gateway": f"{base}.1"}.items() <= ns.routes()[0].items()
        assert host_link_exists(bridge)
        assert tool.leases(name) == [f"{base}.2"]
        assert len(tool.cache_files()) == 1
        tool.ok("check", name, ns.name)
        _assert_del_cleans_up(tool, name, ns)


def test_ptp_with_host_local(tool: Tool) -> None:
    name = unique_name("ptp")
    subnet, base = _subnet()
    before = host_links()
    with netns() as ns:
        tool.write(
            name,
            {
                "cniVersion": "1.0.0",
                "name": name,
                "plugins": [
                    {
                        "type": "ptp",
                        "ipMasq": False,
                        "ipam": tool.ipam(subnet, routes=[{"dst": "10.99.0.0/16", "gw": f"{base}.1"}]),
                    }
                ],
            },
        )
        result = tool.ok("add", name, ns.name)
        assert result is not None and result["ips"][0]["address"] == f"{base}.2/24"  # type: ignore[index]
        assert _v4(ns, "eth0") == [f"{base}.2/24"]
        routes = {str(r["dst"]): r for r in ns.routes()}
        assert routes["10.99.0.0/16"]["gateway"] == f"{base}.1"
        host_veth = str(result["interfaces"][0]["name"])  # type: ignore[index]
        assert host_veth.startswith("veth") and host_link_exists(host_veth) and host_veth not in before
        tool.ok("check", name, ns.name)
        _assert_del_cleans_up(tool, name, ns)
        assert not host_link_exists(host_veth)


def test_macvlan_on_a_veth_parent(tool: Tool) -> None:
    name = unique_name("mv")
    subnet, base = _subnet()
    with veth_parent() as parent, netns() as ns:
        tool.write(
            name,
            {
                "cniVersion": "1.0.0",
                "name": name,
                "plugins": [
                    {"type": "macvlan", "master": parent, "mode": "bridge", "ipam": tool.ipam(subnet)}
                ],
            },
        )
        tool.ok("add", name, ns.name, "--ifname", "net1")
        details = ip_json("-d", "link", "show", "net1", netns=ns.name)[0]
        assert details["linkinfo"]["info_kind"] == "macvlan"  # type: ignore[index]
        assert _v4(ns, "net1") == [f"{base}.2/24"]
        tool.ok("check", name, ns.name, "--ifname", "net1")
        _assert_del_cleans_up(tool, name, ns, ifname="net1")


def test_conflist_bridge_tuning_bandwidth(tool: Tool) -> None:
    name = unique_name("cl")
    subnet, base = _subnet()
    before = host_links()
    caps = json.dumps(
        {
            "bandwidth": {
                "ingressRate": 8_000_000,
                "ingressBurst": 80_000,
                "egressRate": 8_000_000,
                "egressBurst": 80_000,
            }
        }
    )
    with host_bridge(unique_name("pmb")) as bridge, netns() as ns:
        tool.write(
            name,
            {
                "cniVersion": "1.0.0",
                "name": name,
                "plugins": [
                    {"type": "bridge", "bridge": bridge, "isGateway": True, "ipam": tool.ipam(subnet)},
                    {"type": "tuning", "mtu": 1400, "sysctl": {"net.ipv4.conf.eth0.accept_redirects": "0"}},
                    {"type": "bandwidth", "capabilities": {"bandwidth": True}},
                ],
            },
        )
        result = tool.ok("add", name, ns.name, "--capability-args", caps)
        assert result is not None and result["ips"][0]["address"] == f"{base}.2/24"  # type: ignore[index]
        assert ns.links()["eth0"]["mtu"] == 1400
        assert ns.exec("cat", "/proc/sys/net/ipv4/conf/eth0/accept_redirects").stdout.strip() == "0"
        # Other engineers' tests create host links concurrently: only look at ours.
        ours = {link for link in host_links() - before if link.startswith("bwp")}
        ours.add(str(result["interfaces"][1]["name"]))  # type: ignore[index]  # the host veth
        assert len(ours) == 2 and all(host_link_exists(link) for link in ours), ours  # ifb for egress shaping
        tool.ok("check", name, ns.name, "--capability-args", caps)
        _assert_del_cleans_up(tool, name, ns)
        assert not any(host_link_exists(link) for link in ours)


def test_conflist_bridge_tuning_portmap(tool: Tool) -> None:
    name = unique_name("pm")
    subnet, base = _subnet()
    caps = json.dumps(
        {"portMappings": [{"hostPort": random.randint(20000, 30000), "containerPort": 80, "protocol": "tcp"}]}
    )
    with host_bridge(unique_name("pmb")) as bridge, netns() as ns:
        tool.write(
            name,
            {
                "cniVersion": "1.0.0",
                "name": name,
                "plugins": [
                    {"type": "bridge", "bridge": bridge, "isGateway": True, "ipam": tool.ipam(subnet)},
                    {"type": "tuning", "mtu": 1450},
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
        )
        tool.ok("add", name, ns.name, "--capability-args", caps)
        assert ns.links()["eth0"]["mtu"] == 1450
        nat = subprocess.run(
            ["iptables", "-t", "nat", "-S"], capture_output=True, text=True, check=True
        ).stdout
        assert f"{base}.2:80" in nat
        # No CHECK here: portmap <= 1.1 checks ip6tables even for an IPv4-only container and fails
        # with "could not check ipv6 dnat" on hosts with ip6tables (a plugin bug, not the chain's).
        _assert_del_cleans_up(tool, name, ns)
        nat = subprocess.run(
            ["iptables", "-t", "nat", "-S"], capture_output=True, text=True, check=True
        ).stdout
        assert f"{base}.2:80" not in nat


# ------------------------------------------------------------------ failures


def test_a_failing_plugin_code_reaches_the_caller_unchanged(tool: Tool) -> None:
    name = unique_name("fail")
    tool.write(
        name,
        {
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                {
                    "type": "pmtest",
                    "pmtest": {"ADD": {"error": {"code": 142, "msg": "vlan id 5000 is out of range"}}},
                }
            ],
        },
    )
    with netns() as ns:
        code, out = tool.run("add", name, ns.name)
    assert code == 1 and out is not None
    assert (out["code"], out["msg"]) == (142, "vlan id 5000 is out of range")
    assert tool.cache_files() == []


def test_a_hanging_plugin_is_killed_at_the_timeout(tool: Tool, tmp_path: Path) -> None:
    name = unique_name("hang")
    pidfile = tmp_path / "child.pid"
    tool.write(
        name,
        {
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [{"type": "pmtest", "pmtest": {"ADD": {"sleep": 120, "child_pidfile": str(pidfile)}}}],
        },
    )
    with netns() as ns:
        code, out = tool.run("add", name, ns.name, "--timeout", "1", timeout=30)
    assert code == 1 and out is not None and out["code"] == 11 and "killed" in str(out["msg"])
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while (
        Path(f"/proc/{child}").exists()
        and "Z" not in Path(f"/proc/{child}/stat").read_text().split(") ")[1][:1]
    ):
        assert time.monotonic() < deadline, "the plugin's process group survived the timeout"
        time.sleep(0.05)


BAD_INPUTS = [
    # (description, conf doc or raw text, extra args, expected code, words the message must contain)
    ("invalid ifname", "bridge", ["--ifname", "bad/name"], 4, "CNI_IFNAME"),
    ("path-like container id", "bridge", ["--container-id", "../x"], 4, "CNI_CONTAINERID"),
    ("malformed CNI_ARGS", "bridge", ["--args", "K8S_POD_NAME"], 4, "CNI_ARGS"),
    ("malformed JSON", "{not json", [], 6, "not valid JSON"),
    ("unknown version", "version", [], 1, "9.9.9"),
    ("missing plugin binary", "missing", [], 7, "no-such-plugin"),
    ("missing netns", "bridge", ["--netns-missing"], 4, "does not exist"),
    ("malformed capability args", "bridge", ["--capability-args", "[1"], 6, "--capability-args"),
]


@pytest.mark.parametrize(
    ("what", "conf", "extra", "code", "words"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_is_a_cni_error_and_changes_nothing(
    tool: Tool, tmp_path: Path, what: str, conf: str, extra: list[str], code: int, words: str
) -> None:
    name = unique_name("bad")
    bridge = unique_name("pmb")
    plugins: list[dict[str, object]] = [
        {"type": "bridge", "bridge": bridge, "ipam": tool.ipam("10.254.254.0/24")}
    ]
    if conf == "missing":
        plugins.append({"type": "no-such-plugin"})
    version = "9.9.9" if conf == "version" else "1.0.0"
    path = tool.conf_dir / f"{name}.conflist"
    if conf.startswith("{"):
        path.write_text(conf)
        network = str(path)
    else:
        tool.write(name, {"cniVersion": version, "name": name, "plugins": plugins})
        network = name
    with host_bridge(bridge), netns() as ns:
        target = ns.name
        if "--netns-missing" in extra:
            extra = []
            target = unique_name("pmnone")
        returncode, out = tool.run("add", network, target, *extra)
        links_in_ns = set(ns.links())
    assert returncode == 1 and out is not None, what
    assert out["code"] == code, out
    msg = str(out["msg"])
    assert words in msg and "\n" not in msg, msg
    # The bridge plugin would have created the bridge and moved a veth end into the namespace.
    assert not host_link_exists(bridge)
    assert links_in_ns == {"lo"}
    assert not tool.cache_dir.exists() and not tool.ipam_dir.exists()
