"""The thick DaemonSet's pod, from the built image, run by a private containerd through CRI as the
manifest describes it (tests/image/runtime.py): the install-shim init container, then the daemon
container with its config from the ConfigMap, its probes by ExecSync, a pod sandbox that gets
eth0 + net1 through the installed `multus-shim`, and a StopContainer that keeps the conf.

Host mounts with HostToContainer propagation (the host root and /run/netns) need a shared or
slave source, and this host's "/" is private. It stays private: the stand-ins are shared mounts
of their own, made here and unmounted at the end:

- the host root: a recursive bind copy of "/" made rshared (its own peer group);
- /run/netns: containerd's netns dir (``netns_mounts_under_state_dir``: <CRI state>/netns), made a
  shared bind mount on itself before containerd starts and before "/" is copied, so the copy of
  it under the host root is its peer: the sandboxes' netns mounts appear in the daemon's /run/netns
  and, at the same path, in the chroot (/hostroot) where the delegates resolve CNI_NETNS.

The ConfigMap's paths are host paths (the manifest mounts each host dir at the same path); on
this node the host dirs are stand-ins, so the test maps those values to the stand-ins' paths and
mounts each stand-in at its own path as well, which keeps 00-multus.conf valid for the shim that
containerd runs on the host. The daemon itself also gets containerd's netns dir at its own path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cri_api.v1 import api_pb2 as cri_api  # type: ignore[import-untyped]

from tests.deploy import manifests as m
from tests.fakeapi import FakeApiServer
from tests.image.archive import BUILD_TIMEOUT, ImageArchive
from tests.image.runtime import SA_MOUNT, Runtime, host_mounts
from tests.image.test_thin_containers import NODE_NAME, ThinNode
from tests.support.containerd import ContainerdUnavailable, missing_tools, mounts_under
from tests.support.netns import unique_name
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.timeout(BUILD_TIMEOUT + 600)]

CONFIG_MAP = "pymultus-daemon-config"


def propagation(path: str) -> str:
    proc = subprocess.run(
        ["findmnt", "-n", "-o", "PROPAGATION", "--mountpoint", path],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"mount {' '.join(args)}: {proc.stderr.strip()}"


class ThickNode(ThinNode):
    """The thin test's node plus the thick pod's stand-ins and the shared-mount stand-ins."""

    def __init__(self, root: Path, api: FakeApiServer, image: ImageArchive) -> None:
        super().__init__(root, api, image)
        # The daemon looks delegates up in binDir from inside its container: real files, not
        # symlinks into the host's /usr/lib/cni (a node's /opt/cni/bin holds copies).
        for link in [p for p in self.bin.iterdir() if p.is_symlink()]:
            target = link.resolve()
            link.unlink()
            try:
                os.link(target, link)
            except OSError:
                shutil.copy2(target, link)
        # The ConfigMap's cniVersion must equal the primary's (no forceCNIVersion there).
        config = self.daemon_config_map()
        self.cluster = self.node.bridge_conf(
            "cluster", "10.233.1.0/24", gateway=True, cniVersion=config["cniVersion"]
        )
        (self.conf / "10-cluster.conf").write_text(json.dumps(self.cluster))
        self.netns_dir = self.containerd.state_dir / "io.containerd.grpc.v1.cri" / "netns"
        self.hostroot = root / "hostroot"
        self.stand_ins: dict[str, Path] = {
            "/opt/cni/bin": self.bin,
            "/etc/cni/net.d": self.conf,
            "/run/netns": self.netns_dir,
            "/": self.hostroot,
        }
        for host_path in m.host_mounts("thick", "daemon"):
            if host_path not in self.stand_ins:
                self.stand_ins[host_path] = root / host_path.strip("/").replace("/", "-")
        for directory in self.stand_ins.values():
            directory.mkdir(parents=True, exist_ok=True)
        self.mounted: list[Path] = []

    @staticmethod
    def daemon_config_map() -> dict[str, Any]:
        (config_map,) = m.find(m.render("thick"), "ConfigMap", CONFIG_MAP)
        config: dict[str, Any] = json.loads(config_map["data"]["daemon-config.json"])
        return config

    def start(self, archive: Path) -> Runtime:
        # containerd's netns dir first, so that the copy of "/" holds a peer of it.
        mount("--bind", str(self.netns_dir), str(self.netns_dir))
        self.mounted.append(self.netns_dir)
        mount("--make-shared", str(self.netns_dir))
        mount("--rbind", "/", str(self.hostroot))
        self.mounted.append(self.hostroot)
        # The copy of a shared host mount (iproute2 makes /run/netns shared) is a peer of it:
        # unmounting the copy would unmount the host's network namespaces too. As slaves, the
        # copies still receive new mounts (containerd's netns) and send nothing back.
        mount("--make-rslave", str(self.hostroot))
        # The top only: the runtime wants a shared or slave source for HostToContainer.
        mount("--make-shared", str(self.hostroot))
        return super().start(archive)

    def host_config(self) -> dict[str, Any]:
        """The ConfigMap's daemon config with each host path replaced by its stand-in."""
        config = self.daemon_config_map()
        for key, value in config.items():
            if isinstance(value, str) and value != "/" and value in self.stand_ins:
                config[key] = str(self.stand_ins[value])
        return config

    def run_pod_containers(self) -> tuple[str, str]:
        """(sandbox id, daemon container id): install-shim run to completion, then the daemon."""
        assert self.cri is not None
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        pod_spec = m.pod_spec("thick")
        privileged = any(
            c.get("securityContext", {}).get("privileged")
            for c in [*pod_spec["initContainers"], *pod_spec["containers"]]
        )
        sandbox_id, sandbox_config = self.cri.run_host_sandbox(
            unique_name("thick"),
            log_directory=str(logs),
            privileged=privileged,
            host_pid=bool(pod_spec.get("hostPID")),
        )
        self.containerd.sandbox_ids.add(sandbox_id)
        env = {
            "MULTUS_NODE_NAME": NODE_NAME,
            "KUBERNETES_SERVICE_HOST": self.api.host,
            "KUBERNETES_SERVICE_PORT": str(self.api.port),
        }
        scratch = self.root / "scratch" / sandbox_id[:12]
        stand_ins = {host: str(path) for host, path in self.stand_ins.items()}

        mounts = host_mounts("thick", "install-shim", self.stand_ins, scratch)
        shim_spec = m.container("thick", "install-shim")
        host_view = ("--cni-bin-dir-host", str(self.bin))
        installer = self.cri.start_container(
            sandbox_id, sandbox_config, self.image, shim_spec, mounts=mounts, env=env, extra_args=host_view
        )
        assert self.cri.wait_exited(installer) == 0, (logs / "install-shim.log").read_text(errors="replace")

        mounts = host_mounts("thick", "daemon", self.stand_ins, scratch)
        mounts[SA_MOUNT] = str(self.sa)
        (Path(mounts["/etc/pymultus"]) / "daemon-config.json").write_text(json.dumps(self.host_config()))
        # Each stand-in at its own path too (the manifest's "same path" rule for these hosts
        # paths), and containerd's netns dir where CNI_NETNS names it.
        same_path = {
            path: path
            for host, path in stand_ins.items()
            if host != "/" and m.host_mounts("thick", "daemon")[host]["mountPath"] == host
        }
        mounts.update(same_path)
        daemon = self.cri.start_container(
            sandbox_id,
            sandbox_config,
            self.image,
            m.container("thick", "daemon"),
            mounts=mounts,
            env=env,
            propagation={str(self.netns_dir): "HostToContainer"},
        )
        return sandbox_id, daemon

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            for path in reversed(self.mounted):
                # Private first, so that no unmount below propagates to a peer outside the test.
                subprocess.run(["mount", "--make-rprivate", str(path)], capture_output=True, check=False)
                subprocess.run(["umount", "-R", "-l", str(path)], capture_output=True, check=False)
            left = mounts_under(self.root)
            assert not left, f"still mounted: {left[:5]}"
            # Empty once unmounted (rmdir fails otherwise): only then may the tree be deleted,
            # as nothing under it reaches the host's files any more.
            self.hostroot.rmdir()
            shutil.rmtree(self.root)


@pytest.fixture
def thick(
    tmp_path_factory: pytest.TempPathFactory, fake_api: FakeApiServer, image: ImageArchive
) -> Iterator[ThickNode]:
    missing = missing_tools()
    if missing:
        pytest.fail(f"containerd cannot run here: not installed: {', '.join(missing)}", pytrace=False)
    before = propagation("/")
    node = ThickNode(tmp_path_factory.mktemp("thick"), fake_api, image)
    try:
        try:
            node.start(image.path)
        except (ContainerdUnavailable, TimeoutError) as error:
            pytest.fail(f"containerd cannot run here: {error}", pytrace=False)
        assert propagation(str(node.hostroot)) == "shared"
        assert propagation("/") == before, "the host's / must keep its propagation"
        yield node
    finally:
        node.cleanup()
        assert propagation("/") == before


def test_thick_daemon_container_serves_pods_through_the_installed_shim(thick: ThickNode) -> None:
    cri = thick.cri
    assert cri is not None
    spec = m.container("thick", "daemon")
    socket = thick.stand_ins["/run/multus"] / "multus.sock"
    _, daemon = thick.run_pod_containers()
    logs = thick.root / "logs" / "daemon.log"

    def probe(name: str) -> bool:
        code, _ = cri.exec_sync(daemon, spec[name]["exec"]["command"])
        return code == 0

    wait_until(lambda: probe("startupProbe"), "the startup probe", timeout=120.0)
    assert socket.is_socket()
    wait_until(lambda: probe("readinessProbe"), "the daemon to be Ready", timeout=120.0)
    assert probe("livenessProbe")

    generated = thick.conf / "00-multus.conf"
    conf = json.loads(generated.read_text())
    assert conf["type"] == "multus-shim", conf
    assert conf["daemonSocketDir"] == str(socket.parent)
    wait_until(
        lambda: thick.loaded_network() == "multus-cni-network",
        "containerd to load 00-multus.conf",
        timeout=120.0,
    )

    nad = thick.nad()
    pod = thick.run_pod(thick.pod([nad]))
    assert {"eth0", "net1"} <= set(pod.links()), (pod.links(), logs.read_text(errors="replace")[-3000:])
    stored = thick.api.get_pod(pod.pod.namespace, pod.pod.name)
    assert stored is not None
    status = json.loads(stored["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"])
    assert [s["interface"] for s in status if "interface" in s][-1] == "net1", status

    content = generated.read_bytes()
    grace = int(m.pod_spec("thick")["terminationGracePeriodSeconds"])
    cri.stop_container(daemon, grace=grace)
    # It stopped on SIGTERM (drained, exit 0), not on the SIGKILL after the grace period.
    assert cri.container_state(daemon) == (cri_api.CONTAINER_EXITED, 0), logs.read_text(errors="replace")[
        -3000:
    ]
    assert generated.read_bytes() == content, "the generated conf is kept when the daemon stops"
    cri.stop(pod.id)
    cri.remove(pod.id)
