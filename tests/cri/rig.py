"""A node driven by a private containerd through CRI, with pymultus as its CNI plugin.

Modes (one containerd each: its CNI conf must not change while it runs):

- ``thin``: the ``multus`` executable, no Kubernetes (pods and NADs in ``manifestsDir``);
- ``kube``: the ``multus`` executable against the fake API server;
- ``thick``: a real ``pymultus daemon`` (informer on the fake API server) and ``multus-shim``,
  with the daemon's generated ``00-multus.conflist`` as containerd's conf;
- ``cluster``: no pymultus: containerd runs the cluster network's conflist itself (the bench's
  baseline).

The cluster network is bridge + host-local, ``portmap`` and ``bandwidth``, and (with
``record``) the ``pmtest`` recorder declaring every capability containerd can fill, so the tests
see what reached the cluster network's delegates. With ``record`` every plugin in containerd's
CNI bin dir is a small wrapper that logs each exec (command, plugin, container ID).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pymultus.install.launcher import ENTRY_POINTS, default_python, default_sys_path, write_launcher
from pymultus.store.deleted import DELETED_DIR
from tests.fakeapi import FakeApiServer
from tests.support.containerd import Containerd
from tests.support.cri import CriClient, PodSpec, Sandbox
from tests.support.daemon import DaemonProcess
from tests.support.netns import PLUGIN_DIR, ip_json, unique_name
from tests.support.node import Node

PMTEST = Path(__file__).resolve().parents[1] / "support" / "plugins" / "pmtest"
NODE_NAME = "node1"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
# Everything containerd 1.6 can put in runtimeConfig when the conf declares it.
CRI_CAPABILITIES = {
    "portMappings": True,
    "bandwidth": True,
    "dns": True,
    "io.kubernetes.cri.pod-annotations": True,
}
MODES = ("thin", "kube", "thick")


class CriRig:
    def __init__(
        self, root: Path, mode: str, *, pause_archive: Path, api: FakeApiServer | None, record: bool
    ) -> None:
        self.root = root
        self.mode = mode
        self.api = api
        self.namespace = "default"
        self.node = Node(root / "node")
        self.cri_bin = root / "cri-bin"
        self.cri_conf = root / "cri-net.d"
        self.cri_bin.mkdir()
        self.cri_conf.mkdir()
        self.exec_log = root / "execs.log" if record else None
        self.record_log = root / "record.jsonl"
        self.multus_log = root / "multus.log"
        self._octet = random.randint(100, 250)
        self._subnets = 0
        self.subnets: dict[str, str] = {}  # NAD name -> its subnet
        self._populate_bin_dir()
        self.cluster_bridge = self.node.bridge_name()
        self.cluster_subnet = self.subnet()
        cluster = self.cluster_conflist(record=record)
        cluster_dir = self.cri_conf if mode == "cluster" else self.node.conf_dir
        self.cluster_path = cluster_dir / "10-cluster.conflist"
        self.cluster_path.write_text(json.dumps(cluster))
        self.daemon: DaemonProcess | None = None
        if mode in ("thin", "kube"):
            (self.cri_conf / "00-multus.conf").write_text(json.dumps(self.multus_conf()))
        elif mode == "thick":
            self.daemon = self._make_daemon()
        self.containerd = Containerd(
            root / "containerd", bin_dir=self.cri_bin, conf_dir=self.cri_conf, pause_archive=pause_archive
        )
        self.cri: CriClient | None = None

    # -- set-up -----------------------------------------------------------------------------

    def _populate_bin_dir(self) -> None:
        """containerd's CNI bin dir (also pymultus's delegate ``binDir``): every real plugin,
        ``pmtest``, ``multus`` and ``multus-shim``; exec-logging wrappers when recording."""
        for name, module in ENTRY_POINTS.items():
            write_launcher(
                str(self.node.bin_dir / name),
                entry_module=module,
                python=default_python(),
                sys_path=default_sys_path(),
            )
        targets = {path.name: path for path in PLUGIN_DIR.iterdir()}
        targets["pmtest"] = PMTEST
        targets.update({name: self.node.bin_dir / name for name in ENTRY_POINTS})
        for name, target in targets.items():
            path = self.cri_bin / name
            if self.exec_log is None:
                path.symlink_to(target)
                continue
            path.write_text(
                "#!/bin/sh\n"
                f'echo "$CNI_COMMAND {name} $CNI_CONTAINERID $CNI_NETNS" >> {self.exec_log}\n'
                f'exec {target} "$@"\n'
            )
            path.chmod(0o755)

    def subnet(self) -> str:
        self._subnets += 1
        return f"10.{self._octet}.{self._subnets}.0/24"

    def cluster_conflist(self, *, record: bool) -> dict[str, object]:
        bridge = self.node.bridge_conf("cluster", self.cluster_subnet, gateway=True)
        bridge["bridge"] = self.cluster_bridge
        del bridge["cniVersion"], bridge["name"]
        plugins: list[dict[str, object]] = [
            bridge,
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "bandwidth", "capabilities": {"bandwidth": True}},
        ]
        if record:
            plugins.append(
                {
                    "type": "pmtest",
                    "capabilities": CRI_CAPABILITIES,
                    "pmtest": {"record": str(self.record_log)},
                }
            )
        return {"cniVersion": "1.0.0", "name": "cluster", "plugins": plugins}

    def multus_conf(self) -> dict[str, object]:
        conf = self.node.multus_conf(
            cniVersion="1.0.0",
            binDir=str(self.cri_bin),
            clusterNetwork=str(self.cluster_path),
            capabilities=CRI_CAPABILITIES,
            logLevel="error",
            logFile=str(self.multus_log),
            logToStderr=True,
        )
        if self.mode == "kube":
            assert self.api is not None
            del conf["manifestsDir"]
            conf["kubeconfig"] = str(self.api.write_kubeconfig(self.root / "kubeconfig"))
        return conf

    def _make_daemon(self) -> DaemonProcess:
        assert self.api is not None
        # Unix socket paths are limited to 107 bytes: keep the socket dir short.
        sock = tempfile.mkdtemp(prefix="pmc", dir="/tmp") + "/"
        config: dict[str, object] = {
            "socketDir": sock,
            "daemonSocketDir": sock,
            "cniVersion": "1.0.0",
            "cniConfigDir": str(self.cri_conf),
            "multusAutoconfigDir": str(self.node.conf_dir),
            "cniDir": str(self.node.cni_dir),
            "confDir": str(self.node.conf_dir),
            "binDir": str(self.cri_bin),
            "kubeconfig": str(self.api.write_kubeconfig(self.root / "kubeconfig")),
            "logLevel": "error",
            "logFile": str(self.multus_log),
            "logToStderr": True,
        }
        return DaemonProcess(self.root, config, env={"MULTUS_NODE_NAME": NODE_NAME})

    def start(self) -> CriClient:
        if self.daemon is not None:
            self.daemon.start(wait="readyz")
            generated = self.cri_conf / "00-multus.conflist"
            assert generated.exists(), f"the daemon wrote no {generated}:\n{self.daemon.output()}"
        self.containerd.start()
        self.containerd.import_pause()
        self.cri = CriClient(str(self.containerd.socket))
        self.cri.wait_ready()
        return self.cri

    def cleanup(self) -> list[str]:
        """Remove every sandbox (CNI DEL through containerd), stop everything; the errors met."""
        errors: list[str] = []
        if self.cri is not None:
            if self.containerd.proc is not None:
                errors = self.cri.remove_all()
            self.cri.close()
        self.containerd.cleanup()
        if self.daemon is not None:
            self.daemon.stop()
            shutil.rmtree(self.daemon.socket_dir, ignore_errors=True)
        self.node.cleanup()
        return errors

    # -- pods and networks ------------------------------------------------------------------

    def network(self, *, plugins: list[dict[str, object]] | None = None) -> str:
        """A new NAD on its own bridge (optionally more plugins chained after it); its name."""
        name = unique_name("nad")
        self.subnets[name] = self.subnet()
        bridge = self.node.bridge_conf(name, self.subnets[name])
        config: dict[str, object] = bridge
        if plugins:
            del bridge["cniVersion"], bridge["name"]
            config = {"cniVersion": "1.0.0", "name": name, "plugins": [bridge, *plugins]}
        self.nad(name, config)
        return name

    def failing_network(self, code: int = 7) -> str:
        name = unique_name("bad")
        self.nad(
            name,
            {
                "cniVersion": "1.0.0",
                "name": name,
                "type": "pmtest",
                "pmtest": {"ADD": {"error": {"code": code, "msg": f"{name} refuses"}}},
            },
        )
        return name

    def nad(self, name: str, config: dict[str, object]) -> None:
        if self.api is None:
            self.node.add_nad(name, config, namespace=self.namespace)
        else:
            self.api.create_nad(self.namespace, name, config)

    def pod(self, networks: Sequence[str] = (), **spec: object) -> PodSpec:
        """A pod object (manifest or API) annotated with ``networks``, and its CRI spec."""
        pod = PodSpec(name=unique_name("pod"), namespace=self.namespace, **spec)  # type: ignore[arg-type]
        annotations = dict(pod.annotations)
        if networks:
            annotations[NETWORKS] = ",".join(networks)
        if self.api is None:
            self.node.add_pod(pod.name, namespace=pod.namespace, annotations=annotations, uid=pod.uid)
        else:
            self.api.create_pod(
                pod.namespace, pod.name, annotations=annotations, node_name=NODE_NAME, uid=pod.uid
            )
        return pod

    def network_status(self, pod: PodSpec) -> list[dict[str, object]]:
        """The pod's decoded network-status annotation, as pymultus wrote it."""
        if self.api is None:
            return self.node.network_status(pod.name, namespace=pod.namespace)
        obj = self.api.get_pod(pod.namespace, pod.name)
        assert obj is not None
        annotations = obj["metadata"]["annotations"]  # type: ignore[index]
        return json.loads(annotations[NETWORK_STATUS])  # type: ignore[no-any-return]

    def run(self, pod: PodSpec) -> Sandbox:
        assert self.cri is not None
        sandbox_id = self.cri.run_sandbox(pod)
        self.containerd.sandbox_ids.add(sandbox_id)
        return self.cri.sandbox(sandbox_id, pod)

    def stop_remove(self, sandbox_id: str) -> None:
        assert self.cri is not None
        self.cri.stop(sandbox_id)
        self.cri.remove(sandbox_id)

    # -- what reached the plugins, what is left ---------------------------------------------

    def records(self, container_id: str, command: str | None = None) -> list[dict[str, object]]:
        """What the recorder in the cluster network's chain received for ``container_id``."""
        if not self.record_log.exists():
            return []
        found = []
        for line in self.record_log.read_text().splitlines():
            entry = json.loads(line)
            env = entry["env"]
            if env.get("CNI_CONTAINERID") == container_id and command in (None, env.get("CNI_COMMAND")):
                found.append(entry)
        return found

    def execs(self, container_id: str) -> list[tuple[str, str, str]]:
        """(command, plugin, CNI_NETNS) of every plugin exec for ``container_id``, in order."""
        if self.exec_log is None or not self.exec_log.exists():
            return []
        out = []
        for line in self.exec_log.read_text().splitlines():
            command, plugin, cid, netns = [*line.split(" "), "", "", ""][:4]
            if cid == container_id:
                out.append((command, plugin, netns))
        return out

    def log_lines(self, container_id: str) -> list[str]:
        """pymultus's log lines (plugin or daemon) that name ``container_id``."""
        if not self.multus_log.exists():
            return []
        return [line for line in self.multus_log.read_text().splitlines() if container_id in line]

    def recorded_container_ids(self) -> set[str]:
        if not self.record_log.exists():
            return set()
        return {
            json.loads(line)["env"].get("CNI_CONTAINERID", "")
            for line in self.record_log.read_text().splitlines()
        }

    def leftovers(self, sandbox_ids: set[str] | None = None) -> dict[str, list[str]]:
        """Everything a torn-down pod could leave; every list must be empty after a scenario.
        (The bounded record of completed DELs, ``<cniDir>/deleted``, is meant to stay.)"""
        assert self.cri is not None
        ids = sandbox_ids if sandbox_ids is not None else self.containerd.sandbox_ids
        ids = ids | self.recorded_container_ids()
        nat = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
        return {
            "sandboxes": self.cri.list_ids(),
            "leases": self.node.leases(),
            "pymultus caches": [path for path in self.node.cache_files() if f"/{DELETED_DIR}/" not in path],
            "containerd results": self.containerd.cni_results(),
            "netns": self.containerd.netns_paths(),
            "bridge ports": self.node.host_veths(),
            "iptables rules": [line for line in nat.splitlines() if any(i and i in line for i in ids)],
            "ifb links": [
                str(link["ifname"])
                for link in ip_json("link", "show", "type", "ifb")
                if str(link["ifname"]).startswith("bwp")
            ],
        }

    def nothing_left(self, sandbox_ids: set[str] | None = None) -> dict[str, list[str]]:
        """The non-empty leftovers (an empty dict when the node is clean)."""
        return {what: found for what, found in self.leftovers(sandbox_ids).items() if found}
