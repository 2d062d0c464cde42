"""The node side of the manifests, run as the manifests say: the thin container's command, its
readiness probe and the uninstall DaemonSet's command, read from deploy/ (never retyped) and run
as real subprocesses with the host paths they mount mapped to temporary directories.

- the thin DaemonSet is Ready only when multus, its runtime, the kubeconfig and 00-multus.conf are
  in place (a pod created before would silently get only the cluster network);
- deploy/uninstall leaves a node whose conf dir holds only the primary conf, so new pods start
  with the cluster network, in thin and in thick mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.deploy import manifests as m
from tests.support.waiting import wait_until

PRIMARY = {"cniVersion": "0.3.1", "name": "cluster", "type": "bridge"}
HOST_BIN = "/opt/cni/bin"
HOST_CONF = "/etc/cni/net.d"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The self-contained runtime, as the image's bundle stage builds it."""
    if shutil.which("patchelf") is None:
        pytest.fail("patchelf is missing: run scripts/setup.sh")
    path = tmp_path_factory.mktemp("bundle") / "b"
    proc = subprocess.run(
        [sys.executable, "-m", "pymultus", "install", "--build-bundle", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return path


class FakeNode:
    """A node's CNI dirs in a temporary directory, and the container environment."""

    def __init__(self, root: Path, bundle: Path) -> None:
        self.bin = root / "opt-cni-bin"
        self.conf = root / "etc-cni-net.d"
        self.sa = root / "sa"
        for d in (self.bin, self.conf, self.sa):
            d.mkdir(parents=True)
        (self.bin / "bridge").write_bytes(b"#!/bin/sh\n")  # the host's own plugins stay
        (self.sa / "token").write_text("pod-token\n")
        (self.sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "KUBERNETES_SERVICE_PORT": "443",
            "PYMULTUS_BUNDLE_DIR": str(bundle),  # the image's ENV
        }

    def argv(self, command: list[str], *extra: str) -> list[str]:
        """A manifest command for this node: host paths mapped, `pymultus` from this checkout."""
        assert command[0] == "pymultus", command
        mapped = [{HOST_BIN: str(self.bin), HOST_CONF: str(self.conf)}.get(a, a) for a in command[1:]]
        if command[1] == "install":
            # Where the projected service account is mounted in the pod, and the host's view of
            # the mapped dirs (the manifests mount them at the same paths).
            mapped += ["--service-account-dir", str(self.sa), "--cni-bin-dir-host", str(self.bin)]
            mapped += ["--cni-conf-dir-host", str(self.conf)]
        return [sys.executable, "-m", "pymultus", *mapped, *extra]

    def run(self, command: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command, *extra), env=self.env, capture_output=True, text=True, timeout=120, check=False
        )

    def write_primary(self) -> None:
        (self.conf / "10-cluster.conf").write_text(json.dumps(PRIMARY))

    def first_conf(self) -> str:
        return sorted(p.name for p in self.conf.iterdir() if p.suffix in (".conf", ".conflist"))[0]


@pytest.fixture
def node(tmp_path: Path, bundle: Path) -> FakeNode:
    return FakeNode(tmp_path, bundle)


@pytest.fixture
def started(node: FakeNode) -> Iterator[Callable[[list[str]], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(command: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            node.argv(command, "--watch-interval", "0.1"),
            env=node.env,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(30)
        assert proc.stderr is not None
        proc.stderr.close()


def readiness_command(overlay: str, container: str) -> list[str]:
    command: list[str] = m.container(overlay, container)["readinessProbe"]["exec"]["command"]
    return command


def test_the_thin_probe_is_the_container_command_plus_check() -> None:
    install = m.container("thin", "install")
    assert readiness_command("thin", "install") == [*install["command"], "--check"]


def test_thin_is_ready_only_once_executables_kubeconfig_and_conf_are_in_place(
    node: FakeNode, started: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    probe = readiness_command("thin", "install")
    not_ready = node.run(probe)
    assert not_ready.returncode == 1
    assert ".pymultus-install.json" in not_ready.stderr
    # No primary conf yet: the installer puts the executables and the kubeconfig in place and waits.
    installer = started(m.container("thin", "install")["command"])
    wait_until(
        lambda: (node.bin / "multus").exists() and (node.conf / "multus.d").exists(),
        "the executables",
        timeout=120.0,
    )
    waiting = node.run(probe)
    assert waiting.returncode == 1, waiting.stderr
    assert "00-multus.conf" in waiting.stderr
    node.write_primary()
    wait_until(lambda: node.run(probe).returncode == 0, "the readiness probe to pass", timeout=120.0)
    assert node.first_conf() == "00-multus.conf"
    assert installer.poll() is None


def test_thin_uninstall_leaves_the_primary_conf_first(
    node: FakeNode, started: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    node.write_primary()
    installer = started(m.container("thin", "install")["command"])
    wait_until(
        lambda: node.run(readiness_command("thin", "install")).returncode == 0, "the install", timeout=120.0
    )
    installer.terminate()  # kubectl delete daemonset pymultus
    installer.wait(30)
    assert node.first_conf() == "00-multus.conf"  # kept while the DaemonSet is away: pods wait
    proc = node.run(m.container("uninstall", "uninstall")["command"])
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(node.bin)) == ["bridge"]
    assert sorted(os.listdir(node.conf)) == ["10-cluster.conf"]


def test_thick_uninstall_removes_the_shim_and_the_daemons_conf(node: FakeNode) -> None:
    node.write_primary()
    proc = node.run(m.container("thick", "install-shim")["command"])
    assert proc.returncode == 0, proc.stderr
    assert (node.bin / "multus-shim").exists()
    # What the thick daemon writes (not recorded by the installer).
    daemon_conf = {"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus-shim"}
    (node.conf / "00-multus.conf").write_text(json.dumps(daemon_conf))
    uninstall = m.container("uninstall", "uninstall")["command"]
    proc = node.run(uninstall)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(node.bin)) == ["bridge"]
    assert node.first_conf() == "10-cluster.conf"
    again = node.run(m.container("uninstall", "done")["command"][:-1])  # without --wait
    assert again.returncode == 0, again.stderr


def test_uninstall_containers_mount_the_dirs_their_arguments_name() -> None:
    spec = m.pod_spec("uninstall")
    assert spec["hostNetwork"] is True  # it must start on a node whose pod network is broken
    for name in ("uninstall", "done"):
        command = m.container("uninstall", name)["command"]
        mounts = m.host_mounts("uninstall", name)
        for flag, host in (("--cni-bin-dir", HOST_BIN), ("--cni-conf-dir", HOST_CONF)):
            assert command[command.index(flag) + 1] == host
            assert mounts[host]["mountPath"] == host
    # The defaults of `pymultus uninstall` are the same paths (run by hand on a node).
    from pymultus.cli.main import build_parser

    args = build_parser().parse_args(["uninstall"])
    assert (args.bin_dir, args.conf_dir) == (HOST_BIN, HOST_CONF)


def test_an_upgraded_pod_is_ready_only_once_its_own_runtime_is_installed(
    node: FakeNode, bundle: Path, tmp_path: Path
) -> None:
    # The next image's bundle: another digest, so another runtime directory.
    upgrade = tmp_path / "next-bundle"
    shutil.copytree(bundle, upgrade, symlinks=True)
    marker = json.loads((upgrade / "BUNDLE.json").read_text())
    marker["digest"] = "f" * 64
    (upgrade / "BUNDLE.json").write_text(json.dumps(marker))
    node.write_primary()
    install = [*m.container("thin", "install")["command"], "--no-watch"]
    probe = readiness_command("thin", "install")
    assert node.run(install).returncode == 0
    assert node.run(probe).returncode == 0
    node.env["PYMULTUS_BUNDLE_DIR"] = str(upgrade)  # the new pod's image
    stale = node.run(probe)
    assert stale.returncode == 1
    assert "the runtime pymultus-" in stale.stderr and "ffffffffffff" in stale.stderr
    proc = node.run(install)
    assert proc.returncode == 0, proc.stderr
    assert node.run(probe).returncode == 0
