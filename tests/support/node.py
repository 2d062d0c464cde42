"""A simulated node for integration tests: a CNI bin dir with the real ``multus`` launcher,
conf/cache/IPAM directories under ``tmp_path``, and bridges with unique names that are removed
afterwards. Requests run the real executable as a subprocess with real env and stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pymultus.install.codearchive import ARCHIVE_NAME
from pymultus.install.launcher import ENTRY_POINTS, default_python, default_sys_path, write_launcher
from pymultus.store.deleted import DELETED_DIR
from tests.support.netns import PLUGIN_DIR, delete_host_link, unique_name


class Answer:
    def __init__(self, proc: subprocess.CompletedProcess[bytes]) -> None:
        self.code = proc.returncode
        self.stdout = proc.stdout.decode()
        self.stderr = proc.stderr.decode()
        self.json: dict[str, object] = json.loads(self.stdout) if self.stdout.strip() else {}

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def error_code(self) -> object:
        return self.json.get("code")

    def __repr__(self) -> str:
        return f"Answer(code={self.code}, stdout={self.stdout!r}, stderr={self.stderr[-2000:]!r})"


class Node:
    """Directories and helpers of one simulated node (all under ``root``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin_dir = root / "bin"
        self.conf_dir = root / "net.d"
        self.cni_dir = root / "cache"
        self.ipam_dir = root / "ipam"
        self.manifests = root / "manifests"
        for directory in (self.bin_dir, self.conf_dir, self.cni_dir, self.ipam_dir, self.manifests):
            directory.mkdir(parents=True, exist_ok=True)
        for name, module in ENTRY_POINTS.items():
            write_launcher(
                str(self.bin_dir / name),
                entry_module=module,
                python=default_python(),
                sys_path=default_sys_path(),
                # as `pymultus install-plugin` writes it: the thin plugin from its code archive
                archive=str(self.bin_dir / ARCHIVE_NAME) if name == "multus" else None,
            )
        self.bridges: list[str] = []

    # -- networks -----------------------------------------------------------------------------

    def bridge_name(self) -> str:
        name = unique_name("pmb")
        self.bridges.append(name)
        return name

    def bridge_conf(
        self, name: str, subnet: str, *, gateway: bool = False, **extra: object
    ) -> dict[str, object]:
        """A bridge + host-local network (1.0.0) on a fresh bridge with a unique name."""
        ipam: dict[str, object] = {"type": "host-local", "subnet": subnet, "dataDir": str(self.ipam_dir)}
        if gateway:
            ipam["routes"] = [{"dst": "0.0.0.0/0"}]
        conf: dict[str, object] = {
            "cniVersion": "1.0.0",
            "name": name,
            "type": "bridge",
            "bridge": self.bridge_name(),
            "isGateway": gateway,
            "ipam": ipam,
        }
        conf.update(extra)
        return conf

    def write_conf(self, filename: str, conf: dict[str, object]) -> Path:
        path = self.conf_dir / filename
        path.write_text(json.dumps(conf))
        return path

    def multus_conf(self, **keys: object) -> dict[str, object]:
        conf: dict[str, object] = {
            "cniVersion": "1.1.0",
            "name": "multus-cni-network",
            "type": "multus",
            "confDir": str(self.conf_dir),
            "cniDir": str(self.cni_dir),
            "binDir": str(PLUGIN_DIR),
            "manifestsDir": str(self.manifests),
        }
        conf.update(keys)
        return conf

    # -- manifests (embedded, no Kubernetes) ---------------------------------------------------

    def add_nad(
        self,
        name: str,
        config: dict[str, object] | None,
        *,
        namespace: str = "default",
        annotations: dict[str, str] | None = None,
    ) -> None:
        doc: dict[str, object] = {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
            "spec": {"config": json.dumps(config)} if config is not None else {},
        }
        (self.manifests / f"nad-{namespace}-{name}.yaml").write_text(json.dumps(doc))

    def add_pod(
        self,
        name: str,
        *,
        namespace: str = "default",
        networks: str = "",
        annotations: dict[str, str] | None = None,
        uid: str = "",
    ) -> None:
        meta_annotations = dict(annotations or {})
        if networks:
            meta_annotations["k8s.v1.cni.cncf.io/networks"] = networks
        metadata: dict[str, object] = {"name": name, "namespace": namespace, "annotations": meta_annotations}
        if uid:
            metadata["uid"] = uid
        doc = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": []}}
        (self.manifests / f"pod-{namespace}-{name}.yaml").write_text(json.dumps(doc))

    def network_status(self, name: str, *, namespace: str = "default") -> list[dict[str, object]]:
        from pymultus.kube.manifests import ManifestPodSource

        status = ManifestPodSource(str(self.manifests)).read_network_status(namespace, name)
        assert status is not None, f"no network-status written for {namespace}/{name}"
        return status

    # -- running the executable -----------------------------------------------------------------

    def run(
        self,
        command: str,
        conf: dict[str, object],
        *,
        container_id: str,
        netns: str = "",
        ifname: str = "eth0",
        pod: tuple[str, str] | None = None,
        extra_args: str = "",
        executable: str = "multus",
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> Answer:
        cni_args = "IgnoreUnknown=1"
        if pod is not None:
            cni_args += (
                f";K8S_POD_NAMESPACE={pod[0]};K8S_POD_NAME={pod[1]};K8S_POD_INFRA_CONTAINER_ID={container_id}"
            )
        if extra_args:
            cni_args += ";" + extra_args
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(PLUGIN_DIR),
            "CNI_ARGS": cni_args,
        }
        if env:
            full_env.update(env)
        proc = subprocess.run(
            [str(self.bin_dir / executable)],
            input=json.dumps(conf).encode(),
            capture_output=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
        return Answer(proc)

    # -- what is left ----------------------------------------------------------------------------

    def leases(self) -> list[str]:
        found = []
        for root, _, files in os.walk(self.ipam_dir):
            for name in files:
                if name[0].isdigit() or ":" in name:
                    found.append(os.path.join(root, name))
        return sorted(found)

    def cache_files(self) -> list[str]:
        """Files under cniDir, except the record of completed DELs (pymultus.store.deleted),
        which is meant to stay (bounded)."""
        found = []
        for root, dirs, files in os.walk(self.cni_dir):
            if root == str(self.cni_dir):
                dirs[:] = [name for name in dirs if name != DELETED_DIR]
            found.extend(os.path.join(root, name) for name in files)
        return sorted(found)

    def host_veths(self) -> list[str]:
        """Host-side veth ends attached to this node's bridges."""
        out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
        return [str(link["ifname"]) for link in json.loads(out) if link.get("master") in self.bridges]

    def cleanup(self) -> None:
        for bridge in self.bridges:
            delete_host_link(bridge)


@contextmanager
def node(root: Path) -> Iterator[Node]:
    simulated = Node(root)
    try:
        yield simulated
    finally:
        simulated.cleanup()
