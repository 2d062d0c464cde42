"""The thin DaemonSet's container (and the thick one's install-shim), from the built image, run
by a private containerd through CRI as the manifest describes it (tests/image/runtime.py), on a
node whose /opt/cni/bin and /etc/cni/net.d are temporary stand-ins, against the fake API server:

install -> Ready (the manifest's readiness probe, by ExecSync) -> a pod sandbox run by the same
containerd gets eth0 + net1 through the installed, self-contained `multus` -> the installer pod is
replaced (its token dies with it) and new pods still get their networks -> the uninstall
DaemonSet's container leaves a node where new pods start with the cluster network alone.

The thick daemon container is not run here: its manifest mounts the host root (and /run/netns)
with HostToContainer propagation, which the runtime refuses unless the host's / is a shared
mount, and on the CI machines it is private (docs/deployment.md, "Host mounts"); making it shared
would change the host for every other process."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymultus.kube.api_calls import API_CALLS
from tests.deploy import manifests as m
from tests.deploy.test_thin_credentials import SA_USER, pod_token
from tests.fakeapi import FakeApiServer
from tests.image.archive import BUILD_TIMEOUT, ImageArchive
from tests.image.runtime import SA_MOUNT, Runtime, host_mounts
from tests.support.containerd import Containerd, ContainerdUnavailable, build_pause_archive, missing_tools
from tests.support.cri import PodSpec, Sandbox
from tests.support.netns import unique_name
from tests.support.node import Node
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.timeout(BUILD_TIMEOUT + 600)]

NODE_NAME = "node1"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
HOST_BIN, HOST_CONF = "/opt/cni/bin", "/etc/cni/net.d"


class ThinNode:
    """A private containerd with the image imported and stand-in CNI dirs."""

    def __init__(self, root: Path, api: FakeApiServer, image: ImageArchive) -> None:
        self.root = root
        self.api = api
        self.image = image.tags[0]
        self.node = Node(root / "node")  # bridges and IPAM state, removed at the end
        self.bin = root / "opt-cni-bin"
        self.conf = root / "etc-cni-net.d"
        self.sa = root / "sa"
        for d in (self.bin, self.conf, self.sa):
            d.mkdir()
        self.cluster = self.node.bridge_conf("cluster", "10.233.1.0/24", gateway=True)
        (self.conf / "10-cluster.conf").write_text(json.dumps(self.cluster))
        self.new_pod_token()
        (self.sa / "ca.crt").write_bytes(api.ca_file.read_bytes())
        (self.sa / "namespace").write_text("kube-system")
        self.containerd = Containerd(
            root / "ctd",
            bin_dir=self.bin,
            conf_dir=self.conf,
            pause_archive=build_pause_archive(root / "pause"),
        )
        self.cri: Runtime | None = None
        self.subnets = 1

    def new_pod_token(self) -> None:
        """The kubelet's projected token for a new installer pod."""
        self.pod_token = pod_token(unique_name("inst"))
        self.api.add_token(self.pod_token, SA_USER, allowed=frozenset(API_CALLS))
        (self.sa / "token").write_text(self.pod_token)

    def start(self, archive: Path) -> Runtime:
        self.containerd.start()
        self.containerd.import_pause()
        proc = self.containerd.ctr("images", "import", "--no-unpack=false", str(archive))
        assert proc.returncode == 0, proc.stderr
        self.cri = Runtime(str(self.containerd.socket))
        self.cri.wait_ready()
        return self.cri

    def run_daemonset_container(
        self, overlay: str, name: str, *, extra_args: tuple[str, ...] = ()
    ) -> tuple[str, str]:
        """(sandbox id, container id) of a manifest container in a new host-network sandbox."""
        assert self.cri is not None
        sandbox_id, sandbox_config = self.cri.run_host_sandbox(unique_name(name))
        self.containerd.sandbox_ids.add(sandbox_id)
        stand_ins = {HOST_BIN: self.bin, HOST_CONF: self.conf}
        mounts = host_mounts(overlay, name, stand_ins, self.root / "scratch" / sandbox_id[:12])
        mounts[SA_MOUNT] = str(self.sa)
        env = {
            "MULTUS_NODE_NAME": NODE_NAME,
            "KUBERNETES_SERVICE_HOST": self.api.host,
            "KUBERNETES_SERVICE_PORT": str(self.api.port),
        }
        spec = m.container(overlay, name)
        container_id = self.cri.start_container(
            sandbox_id, sandbox_config, self.image, spec, mounts=mounts, env=env, extra_args=extra_args
        )
        return sandbox_id, container_id

    def loaded_network(self) -> str:
        """The name of the CNI network containerd loaded from the conf dir."""
        assert self.cri is not None
        config = json.loads(self.cri.status_info().get("cniconfig", "{}"))
        names = [n["Config"]["Name"] for n in config.get("Networks") or [] if n.get("Config")]
        return str(names[-1]) if names else ""  # the last one: the first is always loopback

    def pod(self, networks: list[str]) -> PodSpec:
        pod = PodSpec(name=unique_name("pod"))
        annotations = {NETWORKS: ",".join(networks)} if networks else {}
        self.api.create_pod(
            pod.namespace, pod.name, annotations=annotations, node_name=NODE_NAME, uid=pod.uid
        )
        return pod

    def run_pod(self, pod: PodSpec) -> Sandbox:
        assert self.cri is not None
        sandbox_id = self.cri.run_sandbox(pod)
        self.containerd.sandbox_ids.add(sandbox_id)
        return self.cri.sandbox(sandbox_id, pod)

    def nad(self) -> str:
        name = unique_name("nad")
        self.subnets += 1
        self.api.create_nad("default", name, self.node.bridge_conf(name, f"10.233.{self.subnets}.0/24"))
        return name

    def cleanup(self) -> None:
        if self.cri is not None:
            if self.containerd.proc is not None:
                self.cri.remove_all()
            self.cri.close()
        self.containerd.cleanup()
        self.node.cleanup()


@pytest.fixture
def thin(
    tmp_path_factory: pytest.TempPathFactory, fake_api: FakeApiServer, image: ImageArchive
) -> Iterator[ThinNode]:
    missing = missing_tools()
    if missing:
        pytest.fail(f"containerd cannot run here: not installed: {', '.join(missing)}", pytrace=False)
    node = ThinNode(tmp_path_factory.mktemp("img"), fake_api, image)
    try:
        try:
            node.start(image.path)
        except (ContainerdUnavailable, TimeoutError) as error:
            pytest.fail(f"containerd cannot run here: {error}", pytrace=False)
        yield node
    finally:
        node.cleanup()


def test_thin_installer_container_install_rollout_and_uninstall(thin: ThinNode) -> None:
    cri = thin.cri
    assert cri is not None
    probe = m.container("thin", "install")["readinessProbe"]["exec"]["command"]
    # The stand-in dirs are not at the host's standard paths: tell the installer the host's view
    # (on a node the manifests mount them at the same paths, so these flags are not needed).
    host_view = (
        "--cni-bin-dir-host", str(thin.bin), "--cni-conf-dir-host", str(thin.conf),
        "--multus-kubeconfig-file-host", str(thin.conf / "multus.d" / "multus.kubeconfig"),
    )  # fmt: skip
    _, installer = thin.run_daemonset_container("thin", "install", extra_args=host_view)
    wait_until(lambda: cri.exec_sync(installer, probe)[0] == 0, "the installer to be Ready", timeout=120.0)

    # The self-contained multus: its interpreter is the bundle's, in the bin dir.
    shebang = (thin.bin / "multus").read_text().splitlines()[0]
    assert shebang.startswith(f"#!{thin.bin}/pymultus-") and shebang.endswith("/bin/python3.11 -IS"), shebang
    kubeconfig = json.loads((thin.conf / "multus.d" / "multus.kubeconfig").read_text())
    assert kubeconfig["users"][0]["user"]["token"] != thin.pod_token  # Node-bound, not the pod's
    wait_until(
        lambda: thin.loaded_network() == "multus-cni-network",
        "containerd to load 00-multus.conf",
        timeout=120.0,
    )

    nad = thin.nad()
    first = thin.run_pod(thin.pod([nad]))
    assert {"eth0", "net1"} <= set(first.links()), first.links()

    # Rolling update: the installer pod goes, and its own token with it.
    for sandbox_id in [s for s in thin.containerd.sandbox_ids if s != first.id]:
        cri.stop(sandbox_id)
        cri.remove(sandbox_id)
        thin.containerd.sandbox_ids.discard(sandbox_id)
    del thin.api.tokens[thin.pod_token]
    during = thin.run_pod(thin.pod([nad]))
    assert {"eth0", "net1"} <= set(during.links()), "a pod created while no installer runs"
    # The new installer pod (its own token), Ready again; pods keep getting their networks.
    thin.new_pod_token()
    old_kubeconfig = (thin.conf / "multus.d" / "multus.kubeconfig").read_text()
    _, installer = thin.run_daemonset_container("thin", "install", extra_args=host_view)
    updating = thin.run_pod(thin.pod([nad]))
    assert {"eth0", "net1"} <= set(updating.links()), "a pod created while the new installer starts"
    wait_until(
        lambda: cri.exec_sync(installer, probe)[0] == 0, "the new installer to be Ready", timeout=120.0
    )
    # It asks for a Node-bound token of its own at start.
    wait_until(
        lambda: (thin.conf / "multus.d" / "multus.kubeconfig").read_text() != old_kubeconfig,
        "the new installer's token",
        timeout=120.0,
    )
    updated = thin.run_pod(thin.pod([nad]))
    assert {"eth0", "net1"} <= set(updated.links())
    for sandbox_id in set(thin.containerd.sandbox_ids) - {s.id for s in (first, during, updating, updated)}:
        cri.stop(sandbox_id)  # kubectl delete daemonset pymultus
        cri.remove(sandbox_id)
        thin.containerd.sandbox_ids.discard(sandbox_id)

    # Uninstall (after removing the pods with secondary networks: see docs/deployment.md).
    for sandbox in (first, during, updating, updated):
        cri.stop(sandbox.id)
        cri.remove(sandbox.id)
    _, uninstall = thin.run_daemonset_container("uninstall", "uninstall")
    assert cri.wait_exited(uninstall) == 0
    assert not [p.name for p in thin.bin.iterdir() if p.name.startswith(("multus", "pymultus-", ".pymultus"))]
    assert sorted(p.name for p in thin.conf.iterdir()) == ["10-cluster.conf"]
    wait_until(
        lambda: thin.loaded_network() == "cluster", "containerd to load the cluster conf again", timeout=120.0
    )
    after = thin.run_pod(thin.pod([nad]))
    assert "net1" not in after.links() and "eth0" in after.links()


def test_thick_install_shim_container_installs_a_self_contained_shim(thin: ThinNode) -> None:
    cri = thin.cri
    assert cri is not None
    host_view = ("--cni-bin-dir-host", str(thin.bin))
    _, container = thin.run_daemonset_container("thick", "install-shim", extra_args=host_view)
    assert cri.wait_exited(container) == 0
    shim = thin.bin / "multus-shim"
    shebang = shim.read_text().splitlines()[0]
    assert shebang.startswith(f"#!{thin.bin}/pymultus-"), shebang
    # The runtime execs it on the host with an empty environment: it answers VERSION on its own.
    proc = subprocess.run(
        [str(shim)], input="{}", env={"CNI_COMMAND": "VERSION"}, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "1.0.0" in json.loads(proc.stdout)["supportedVersions"]
