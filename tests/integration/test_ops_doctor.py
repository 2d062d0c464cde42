"""``pymultus doctor`` through the real CLI on a simulated node: a healthy one passes; a broken one
(missing plugin, stale cache, bad kubeconfig, daemon not running) FAILs with one line each; the
Kubernetes checks run against the fake API server (credentials, token expiry, reachability)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kube import KubeEnv
from tests.support.netns import PLUGIN_DIR, netns, unique_name, veth_parent
from tests.support.node import Node

pytestmark = pytest.mark.netns


def doctor(sim: Node, *args: str) -> tuple[int, dict[str, tuple[str, str]]]:
    proc = subprocess.run(
        [sys.executable, "-m", "pymultus", "doctor", "--conf-dir", str(sim.conf_dir), "-o", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert report["exitCode"] == proc.returncode
    return proc.returncode, {c["check"]: (c["status"], c["message"]) for c in report["checks"]}


def own_bin_dir(sim: Node) -> Path:
    """A bin dir of links to the real plugins, so that one can be taken away."""
    bin_dir = sim.root / "plugins"
    bin_dir.mkdir()
    for name in os.listdir(PLUGIN_DIR):
        (bin_dir / name).symlink_to(PLUGIN_DIR / name)
    return bin_dir


def write_node(sim: Node, **keys: object) -> dict[str, object]:
    cluster = sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.90.0.0/24", gateway=True))
    conf = sim.multus_conf(clusterNetwork=str(cluster), **keys)
    sim.write_conf("00-multus.conf", conf)
    return conf


def test_a_healthy_node_passes_every_check(sim: Node) -> None:
    conf = write_node(sim)
    with veth_parent() as parent, netns("pmd") as pod:
        ipam = {"type": "static", "addresses": [{"address": "10.90.5.2/24"}]}
        sim.add_nad("mv", {"cniVersion": "1.0.0", "type": "macvlan", "master": parent, "ipam": ipam})
        sim.add_pod("web", networks="mv")
        cid = unique_name("c")
        assert sim.run("ADD", conf, container_id=cid, netns=pod.path, pod=("default", "web")).ok
        code, checks = doctor(sim)
        assert sim.run("DEL", conf, container_id=cid, netns=pod.path, pod=("default", "web")).ok
    assert code == 0, checks
    assert {name: status for name, (status, _) in checks.items()} == {
        "conf-dir": "PASS",
        "multus-conf": "PASS",
        "plugins": "PASS",
        "kubeconfig": "PASS",
        "caches": "PASS",
        "kernel": "PASS",
    }
    assert checks["conf-dir"][1].endswith("primary CNI conf 10-cluster.conf")
    assert (
        checks["plugins"][1]
        == f"4 plugin(s) needed, all in {PLUGIN_DIR}: bridge, host-local, macvlan, static"
    )
    assert checks["caches"][1] == f"1 cached container(s) in {sim.cni_dir}, none orphaned"
    assert checks["kernel"][1] == "link types supported: bridge, macvlan"


def test_a_broken_node_fails_with_one_line_per_problem(sim: Node) -> None:
    bin_dir = own_bin_dir(sim)
    conf = write_node(sim, binDir=str(bin_dir))
    with netns("pmd") as pod:
        sim.add_pod("web")
        cid = unique_name("c")
        assert sim.run("ADD", conf, container_id=cid, netns=pod.path, pod=("default", "web")).ok
        stale = pod.path
    # The netns vanished without a DEL, host-local was removed, the kubeconfig is garbage.
    (bin_dir / "host-local").unlink()
    kubeconfig = sim.root / "kubeconfig"
    kubeconfig.write_text("{not a kubeconfig")
    broken = dict(conf, kubeconfig=str(kubeconfig))
    sim.write_conf("00-multus.conf", broken)

    code, checks = doctor(sim)
    assert code == 1
    assert checks["plugins"] == (
        "FAIL",
        f"host-local is not in {bin_dir} (used by the cluster network)",
    )
    assert checks["kubeconfig"][0] == "FAIL"
    assert str(kubeconfig) in checks["kubeconfig"][1]
    assert checks["caches"][0] == "WARN"
    assert (
        f"1 cached container(s) whose netns is gone: {cid[:12]} (default/web, {stale})" in checks["caches"][1]
    )

    text = subprocess.run(
        [sys.executable, "-m", "pymultus", "doctor", "--conf-dir", str(sim.conf_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert text.returncode == 1
    assert [line.split()[:2] for line in text.stdout.splitlines()][:3] == [
        ["PASS", "conf-dir"],
        ["PASS", "multus-conf"],
        ["FAIL", "plugins"],
    ]
    sim.write_conf("00-multus.conf", conf)
    assert sim.run("DEL", conf, container_id=cid, netns="", pod=("default", "web")).ok


def test_a_plugin_only_a_defined_nad_needs_is_a_warning(sim: Node) -> None:
    write_node(sim)
    sim.add_nad("fast", {"cniVersion": "1.0.0", "type": "sriov", "ipam": {"type": "whereabouts"}})
    code, checks = doctor(sim, "--no-kernel-probe")
    assert code == 0
    assert checks["plugins"] == (
        "WARN",
        f"sriov is not in {PLUGIN_DIR} (used by NAD default/fast); "
        f"whereabouts is not in {PLUGIN_DIR} (used by NAD default/fast)"
        ": pods attached to it fail on this node",
    )
    strict = doctor(sim, "--no-kernel-probe", "--strict")
    assert strict[0] == 1


def test_a_conf_that_sorts_before_ours_and_a_missing_daemon_fail(sim: Node) -> None:
    write_node(sim, type="multus-shim", daemonSocketDir=str(sim.root / "run"))
    sim.write_conf("00-aaa.conf", sim.bridge_conf("sneaky", "10.90.9.0/24"))
    code, checks = doctor(sim, "--no-kernel-probe")
    assert code == 1
    assert checks["multus-conf"] == (
        "FAIL",
        "00-aaa.conf sorts before 00-multus.conf: the runtime uses it and pymultus is bypassed",
    )
    assert checks["daemon"][0] == "FAIL"
    assert f"the daemon socket {sim.root / 'run' / 'multus.sock'} does not answer" in checks["daemon"][1]
    assert "kernel" not in checks


def jwt(claims: dict[str, object]) -> str:
    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def test_kubernetes_checks_against_the_api_server(sim: Node, kube_env: KubeEnv) -> None:
    fake = kube_env.require_fake()
    write_node(sim, kubeconfig=str(kube_env.kubeconfig_path))
    code, checks = doctor(sim, "--no-kernel-probe")
    assert code == 0, checks
    assert checks["kubeconfig"] == ("PASS", f"{kube_env.kubeconfig_path} is valid: server {fake.url}")
    assert checks["token"][0] == "PASS"
    assert checks["api"][0] == "PASS"
    assert checks["api"][1].startswith(f"API server {fake.url} answered ")
    assert checks["clock"][0] == "PASS"

    # An expired service-account token that the server still accepts: FAIL on the token only.
    expired = jwt({"sub": "system:serviceaccount:kube-system:multus", "exp": 1_000_000_000})
    fake.add_token(expired, "multus", allowed=None)
    kubeconfig = fake.write_kubeconfig(sim.root / "expired.kubeconfig", token=expired, token_file=False)
    write_node(sim, kubeconfig=str(kubeconfig))
    code, checks = doctor(sim, "--no-kernel-probe")
    assert code == 1
    assert checks["token"] == ("FAIL", "token from the kubeconfig expired at 2001-09-09T01:46:40Z")

    # A token the server does not know: the API server rejects us.
    kubeconfig = fake.write_kubeconfig(sim.root / "bad.kubeconfig", token="nope", token_file=False)
    write_node(sim, kubeconfig=str(kubeconfig))
    code, checks = doctor(sim, "--no-kernel-probe")
    assert code == 1
    assert checks["api"] == ("FAIL", f"API server {fake.url} rejects the credentials (401)")
    assert "clock" not in checks

    # Nobody listening (a port that was just free).
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    doc = json.loads(kube_env.kubeconfig_path.read_text())
    doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    unreachable = sim.root / "unreachable.kubeconfig"
    unreachable.write_text(json.dumps(doc))
    write_node(sim, kubeconfig=str(unreachable))
    code, checks = doctor(sim, "--no-kernel-probe")
    assert code == 1
    assert checks["api"][0] == "FAIL" and "is not reachable" in checks["api"][1]
