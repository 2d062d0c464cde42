"""Thick mode end to end: a real daemon process, the real multus-shim executable, real plugins.

No Kubernetes here (tests with the fake API server are in test_daemon_kube.py): the cluster
network is the primary conf the daemon wraps, and the extra networks are ``defaultNetworks``
set in the daemon config — which also proves the daemon's keys override each request's conf.
The daemon's ``binDir`` is an empty directory, so every delegate is found through the request's
own ``CNI_PATH`` (DESIGN item 7).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess, run_shim, write_shim
from tests.support.netns import Netns, delete_host_link, netns, unique_name

pytestmark = pytest.mark.netns


@dataclass
class Node:
    root: Path
    shim: Path
    daemon: DaemonProcess
    bridges: list[str]
    ipam_dirs: list[Path]
    cache_dir: Path
    conf_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.conf_path = self.root / "net.d" / "00-multus.conf"

    def conf(self) -> bytes:
        return self.conf_path.read_bytes()

    def env(self, ns: Netns, container_id: str, pod: str = "pod") -> dict[str, str]:
        return {
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": ns.path,
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}",
        }

    def leases(self) -> list[str]:
        found = []
        for directory in self.ipam_dirs:
            for path in directory.rglob("*"):
                if path.is_file() and path.name[0].isdigit():  # lease files are named by IP
                    found.append(str(path))
        return found

    def cache_files(self, container_id: str) -> list[str]:
        # The record of completed DELs (<cniDir>/deleted, pymultus.store.deleted) is meant to stay.
        return [
            str(p)
            for p in self.cache_dir.rglob("*")
            if p.is_file() and container_id in p.name and p.parent.name != "deleted"
        ]


def _bridge_conf(name: str, bridge: str, subnet: str, ipam_dir: Path) -> dict[str, object]:
    return {
        "cniVersion": "0.3.1",
        "name": name,
        "type": "bridge",
        "bridge": bridge,
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(ipam_dir)},
    }


def make_node(tmp_path: Path, networks: int, **daemon_keys: object) -> Node:
    root = tmp_path
    (root / "net.d").mkdir(parents=True)
    (root / "multus.d").mkdir()
    (root / "emptybin").mkdir()
    octet = random.randint(100, 250)
    bridges, ipam_dirs, extra = [], [], []
    for index in range(networks):
        bridge = unique_name("pmb")
        ipam_dir = root / f"ipam{index}"
        bridges.append(bridge)
        ipam_dirs.append(ipam_dir)
        name = f"net{index}-{bridge}"
        conf = _bridge_conf(name, bridge, f"10.{octet}.{index}.0/24", ipam_dir)
        if index == 0:
            (root / "net.d" / "10-primary.conf").write_text(json.dumps(conf))
        else:
            (root / "multus.d" / f"{name}.conf").write_text(json.dumps(conf))
            extra.append(name)
    # Unix socket paths are limited to 107 bytes: keep the socket dir short.
    sock = tempfile.mkdtemp(prefix="pms", dir="/tmp") + "/sock/"
    config: dict[str, object] = {
        "socketDir": sock,
        "daemonSocketDir": sock,
        "cniVersion": "0.3.1",
        "cniConfigDir": str(root / "net.d"),
        "multusAutoconfigDir": str(root / "net.d"),
        "cniDir": str(root / "cache"),
        "confDir": str(root / "multus.d"),
        "binDir": str(root / "emptybin"),
        "logLevel": "verbose",
        "logToStderr": True,
    }
    if extra:
        config["defaultNetworks"] = extra
    config.update(daemon_keys)
    daemon = DaemonProcess(root, config)
    return Node(root, write_shim(root / "bin"), daemon, bridges, ipam_dirs, root / "cache")


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[object]:
    nodes: list[Node] = []

    def factory(networks: int = 1, **keys: object) -> Node:
        node = make_node(tmp_path / f"n{len(nodes)}", networks, **keys)
        nodes.append(node)
        node.daemon.start(wait="readyz")
        return node

    try:
        yield factory
    finally:
        for node in nodes:
            node.daemon.stop()
            for bridge in node.bridges:
                delete_host_link(bridge)
            shutil.rmtree(os.path.dirname(node.daemon.socket_dir.rstrip("/")), ignore_errors=True)


def _ifnames(ns: Netns) -> set[str]:
    return set(ns.links()) - {"lo"}


@pytest.mark.parametrize("networks", [1, 2, 3, 4])
def test_add_check_del_status_gc(node_factory, networks: int) -> None:
    node: Node = node_factory(networks)
    cid = unique_name("cid")
    with netns() as ns:
        env = node.env(ns, cid)
        code, result, err = run_shim(node.shim, "ADD", node.conf(), env=env)
        assert code == 0, (result, err, node.daemon.output())
        assert result is not None and result["cniVersion"] == "0.3.1"
        expected = {"eth0"} | {f"net{i}" for i in range(1, networks)}
        assert _ifnames(ns) == expected
        assert ns.addresses("eth0")[0].startswith("10.")
        assert len(node.leases()) == networks

        code, result, err = run_shim(node.shim, "CHECK", node.conf(), env=env)
        assert code == 0 and result is None, (result, err)
        code, result, err = run_shim(node.shim, "STATUS", node.conf(), env={})
        assert code == 0, (result, err)

        code, result, err = run_shim(node.shim, "DEL", node.conf(), env=env)
        assert code == 0, (result, err, node.daemon.output())
        assert _ifnames(ns) == set()
        assert node.leases() == []
        assert node.cache_files(cid) == []
        # A repeated DEL succeeds (DESIGN item 2).
        assert run_shim(node.shim, "DEL", node.conf(), env=env)[0] == 0

    # GC with no valid attachments after everything is gone: succeeds and leaves nothing.
    conf = json.loads(node.conf())
    conf["cni.dev/valid-attachments"] = []
    code, result, err = run_shim(node.shim, "GC", conf, env={})
    assert code == 0, (result, err)
    # One line per command, from the engine, naming the pod and the (short) container ID.
    done = [line for line in node.daemon.output().splitlines() if 'msg="ADD done"' in line]
    assert done and all(f"pod=default/pod containerID={cid[:12]}" in line for line in done), done


def test_errors_keep_their_cni_code(node_factory) -> None:
    node: Node = node_factory(1)
    with netns() as ns:
        # Missing CNI_NETNS on ADD: the daemon's request parser says code 4, unchanged.
        env = node.env(ns, unique_name("cid"))
        del env["CNI_NETNS"]
        code, result, _ = run_shim(node.shim, "ADD", node.conf(), env=env)
        assert code == 1 and result is not None
        assert result["code"] == 4 and "CNI_NETNS" in str(result["msg"])
        # A delegate's own error code passes through unchanged (Go Multus reports 999).
        plugin_dir = node.root / "plugins"
        plugin_dir.mkdir()
        failing = plugin_dir / "pmfail"
        failing.write_text(
            "#!/bin/sh\ncat >/dev/null\n"
            'echo \'{"cniVersion":"0.3.1","code":117,"msg":"pmfail refuses","details":"on purpose"}\'\n'
            "exit 1\n"
        )
        failing.chmod(0o755)
        primary = node.root / "net.d" / "10-primary.conf"
        primary.write_text(json.dumps({"cniVersion": "0.3.1", "name": "failing", "type": "pmfail"}))
        env = {**node.env(ns, unique_name("cid")), "CNI_PATH": f"{plugin_dir}:/usr/lib/cni"}
        code, result, _ = run_shim(node.shim, "ADD", node.conf(), env=env)
        assert code == 1 and result is not None
        assert result["code"] == 117 and "pmfail refuses" in str(result["msg"]), result
        assert _ifnames(ns) == set()


def test_version_is_answered_by_the_shim(tmp_path: Path) -> None:
    shim = write_shim(tmp_path / "bin")
    code, result, _ = run_shim(shim, "VERSION", {"cniVersion": "1.0.0", "name": "x", "type": "multus-shim"})
    assert code == 0 and result is not None and "1.0.0" in result["supportedVersions"]  # type: ignore[operator]


def test_daemon_down_add_fails_with_code_11_and_del_is_done_locally(node_factory) -> None:
    node: Node = node_factory(2)
    cid = unique_name("cid")
    with netns() as ns:
        env = node.env(ns, cid)
        code, result, err = run_shim(node.shim, "ADD", node.conf(), env=env)
        assert code == 0, (result, err)
        assert len(node.leases()) == 2
        assert node.daemon.stop() == 0
        assert not os.path.exists(node.daemon.socket_path)  # socket removed on SIGTERM
        assert node.conf_path.exists()  # conf kept (DESIGN item 9)

        code, result, err = run_shim(
            node.shim,
            "ADD",
            node.conf(),
            env={**node.env(ns, unique_name("cid")), "PYMULTUS_SHIM_READY_TIMEOUT": "0.3"},
        )
        assert code == 1 and result is not None and result["code"] == 11, (result, err)

        code, result, err = run_shim(node.shim, "DEL", node.conf(), env=env)
        assert code == 0, (result, err)
        assert "performing DEL locally" in err
        assert _ifnames(ns) == set()
        assert node.leases() == []
        assert node.cache_files(cid) == []


def test_sigkill_and_restart_between_add_and_del(node_factory) -> None:
    node: Node = node_factory(3)
    cid = unique_name("cid")
    with netns() as ns:
        env = node.env(ns, cid)
        assert run_shim(node.shim, "ADD", node.conf(), env=env)[0] == 0
        node.daemon.kill()
        # The stale socket file of the killed daemon is replaced on restart.
        node.daemon.start(wait="readyz")
        code, result, err = run_shim(node.shim, "DEL", node.conf(), env=env)
        assert code == 0, (result, err)
        assert "performing DEL locally" not in err  # the restarted daemon did it
        assert _ifnames(ns) == set()
        assert node.leases() == []
        assert node.cache_files(cid) == []


def test_sigterm_drains_in_flight_requests(node_factory) -> None:
    node: Node = node_factory(1)
    cid = unique_name("cid")
    with netns() as ns:
        outcome: dict[str, object] = {}

        # A signal that wins the race against the shim's connect leaves nothing to drain: the
        # shim then waits for /readyz, which never comes; 5 s instead of 60 keeps that case short.
        env = {**node.env(ns, cid), "PYMULTUS_SHIM_READY_TIMEOUT": "5"}

        def add() -> None:
            outcome["add"] = run_shim(node.shim, "ADD", node.conf(), env=env)

        thread = threading.Thread(target=add)
        thread.start()
        time.sleep(0.02)
        assert node.daemon.proc is not None
        node.daemon.proc.send_signal(signal.SIGTERM)
        thread.join(60)
        assert not thread.is_alive(), "the shim's ADD did not return"
        code = node.daemon.stop()
        assert code == 0
        add_code = outcome["add"][0]  # type: ignore[index]
        # Either the ADD finished before the signal, or it was drained; never cut in the middle.
        if add_code == 0:
            assert _ifnames(ns) == {"eth0"}
        else:
            assert outcome["add"][1]["code"] == 11  # type: ignore[index]
        assert run_shim(node.shim, "DEL", node.conf(), env=node.env(ns, cid))[0] == 0
        assert _ifnames(ns) == set()


def test_fifty_concurrent_pods_with_connection_limit_4(node_factory) -> None:
    node: Node = node_factory(1, connectionLimit=4)
    pods = 50
    names = [unique_name("pmc") for _ in range(pods)]
    from tests.support.netns import ip

    for name in names:
        ip("netns", "add", name)
    try:
        results: list[tuple[int, object, str]] = [None] * pods  # type: ignore[list-item]

        def add(index: int) -> None:
            ns = Netns(names[index])
            results[index] = run_shim(
                node.shim, "ADD", node.conf(), env=node.env(ns, f"c{names[index]}", f"p{index}")
            )

        threads = [threading.Thread(target=add, args=(i,)) for i in range(pods)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        elapsed = time.monotonic() - started
        failures = [r for r in results if r is None or r[0] != 0]
        assert failures == [], failures[:3]
        stats = node.daemon.stats()
        assert stats["in_flight_max"] <= 4, stats
        assert stats["in_flight_max"] >= 2, stats  # the burst really ran concurrently
        assert len(node.leases()) == pods
        for index, name in enumerate(names):
            code, result, err = run_shim(
                node.shim, "DEL", node.conf(), env=node.env(Netns(name), f"c{name}", f"p{index}")
            )
            assert code == 0, (result, err)
        assert node.leases() == []
        print(f"50 concurrent ADDs in {elapsed:.2f} s")
    finally:
        for name in names:
            ip("netns", "delete", name, check=False)
