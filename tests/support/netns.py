"""Throw-away network namespaces for integration tests, cleaned up even when a test fails.

Tests only use private addresses inside namespaces and bridges they create themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PLUGIN_DIR = Path("/usr/lib/cni")
NETNS_DIR = Path("/var/run/netns")


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run ip(8), in ``netns`` when given; returns stdout."""
    cmd = ["ip"] + (["-n", netns] if netns else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def ip_json(*args: str, netns: str | None = None) -> list[dict[str, object]]:
    out = ip("-j", *args, netns=netns)
    return json.loads(out) if out.strip() else []


def unique_name(prefix: str) -> str:
    """A short unique name (interface names must stay within 15 bytes)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Netns:
    """A named network namespace under /var/run/netns."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = str(NETNS_DIR / name)

    def links(self) -> dict[str, dict[str, object]]:
        return {str(link["ifname"]): link for link in ip_json("link", "show", netns=self.name)}

    def addresses(self, ifname: str, family: str = "inet") -> list[str]:
        """Addresses of ``ifname`` (IPv4 by default; "inet6" for IPv6, link-local included)."""
        out: list[str] = []
        for link in ip_json("addr", "show", "dev", ifname, netns=self.name):
            for info in link.get("addr_info", []):  # type: ignore[union-attr]
                if info.get("family") == family:  # type: ignore[union-attr]
                    out.append(f"{info['local']}/{info['prefixlen']}")  # type: ignore[index]
        return out

    def routes(self, family: str = "-4") -> list[dict[str, object]]:
        return ip_json(family, "route", "show", netns=self.name)

    def exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *cmd], capture_output=True, text=True, check=check
        )


@contextmanager
def netns(prefix: str = "pmt") -> Iterator[Netns]:
    """Create a network namespace with loopback up; delete it afterwards whatever happens."""
    ns = Netns(unique_name(prefix))
    ip("netns", "add", ns.name)
    try:
        ip("link", "set", "lo", "up", netns=ns.name)
        yield ns
    finally:
        ip("netns", "delete", ns.name, check=False)


@contextmanager
def veth_parent(prefix: str = "pmv") -> Iterator[str]:
    """A host veth pair whose first end can be a macvlan parent; removed afterwards."""
    name = unique_name(prefix)
    peer = name[:-1] + "p"
    ip("link", "add", name, "type", "veth", "peer", "name", peer)
    try:
        ip("link", "set", name, "up")
        ip("link", "set", peer, "up")
        yield name
    finally:
        ip("link", "delete", name, check=False)


def host_link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def delete_host_link(name: str) -> None:
    ip("link", "delete", name, check=False)


def is_root() -> bool:
    return os.geteuid() == 0


def kernel_has(kind: str) -> bool:
    """Whether the kernel can create a link of ``kind`` (ipvlan, vlan, dummy, vrf are absent here)."""
    name = unique_name("pmk")
    if kind in ("ipvlan", "vlan", "macvlan"):
        with veth_parent() as parent:
            extra = ["id", "10"] if kind == "vlan" else []
            ok = (
                subprocess.run(
                    ["ip", "link", "add", "link", parent, name, "type", kind, *extra],
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            )
    else:
        ok = (
            subprocess.run(
                ["ip", "link", "add", name, "type", kind], capture_output=True, check=False
            ).returncode
            == 0
        )
    if ok:
        delete_host_link(name)
    return ok
