"""The soak's node: the fake API server, three networks, fault-injecting wrapper plugins, and the
real ``multus`` (thin) or ``multus-shim`` + daemon (thick) run as subprocesses.

Networks, in attachment order: ``eth0`` the cluster network (bridge + host-local, a conf file),
``net1`` a NAD whose type is a wrapper script that runs ``bridge`` unless the cycle's control file
tells it to fail, hang or sleep first, and ``net2`` a macvlan NAD on a private veth parent.
Everything lives under a private directory with unique names, so nothing else is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fakeapi import FakeApiServer
from tests.support.daemon import DaemonProcess
from tests.support.netns import PLUGIN_DIR, ip, unique_name, veth_parent
from tests.support.node import Node

NAMESPACE = "soak"
NODE_NAME = "node1"
WRAPPED_TYPE = "pmsoakbr"  # the wrapper plugin's type: it execs ``bridge``
DELEGATE_TIMEOUT = 1.5  # seconds; a "hang" sleeps far beyond it
CALL_TIMEOUT = 30.0  # a call taking longer is killed and counted as hung (20 x the delegate timeout)

# The wrapper reads ``<ctl>/<containerID>.<command>``: "fail <code> [times]" or "sleep <seconds>
# [times]" (a hang when longer than the delegate timeout; a slow ADD to kill mid-way when
# shorter); with a count, only that many calls misbehave.
WRAPPER = """#!/bin/sh
ctl="{ctl}/$CNI_CONTAINERID.$CNI_COMMAND"
if [ -f "$ctl" ]; then
  read -r action arg times < "$ctl"
  if [ -n "$times" ]; then
    if [ "$times" -le 0 ]; then action=none; else echo "$action $arg $((times - 1))" > "$ctl"; fi
  fi
  case "$action" in
    fail) printf '{{"cniVersion":"1.0.0","code":%s,"msg":"soak: injected delegate failure"}}' "$arg"
          exit 1 ;;
    sleep) sleep "$arg" ;;
  esac
fi
exec {plugin_dir}/bridge
"""


@dataclass
class Outcome:
    """How one call of the executable ended: "0", the CNI error code, "exit<N>" without one,
    "killed" (by the fault), "hung" (past CALL_TIMEOUT) or "stopped" (the soak was interrupted)."""

    code: str
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.code == "0"


class Rig:
    """One mode's node: ``start()``, then ``new_pod()`` and ``call()``/``launch()`` per cycle;
    ``close()`` always."""

    def __init__(self, mode: str, root: Path, rng: random.Random) -> None:
        self.mode = mode
        self.root = root
        self.node = Node(root)
        self.ctl_dir = root / "ctl"
        self.wrap_dir = root / "wrapbin"
        self.ctl_dir.mkdir()
        self.wrap_dir.mkdir()
        self.api = FakeApiServer(root / "api")
        self.daemon: DaemonProcess | None = None
        self.socket_root = ""
        self.parent = ""  # the macvlan parent (a host veth), made by start()
        self.run_id = unique_name("s")  # every container ID starts with it
        octet = rng.randint(100, 250)
        self.subnets = [f"10.{octet}.{i}.0/24" for i in range(3)]
        self.conf_path = root / "stdin.conf"  # what the runtime writes to the plugin's stdin
        self._netns: set[str] = set()
        self._parents = contextlib.ExitStack()
        self.stop = threading.Event()  # set on Ctrl-C: calls in flight are killed, the run ends

    # -- set-up -------------------------------------------------------------------------------

    def start(self) -> None:
        self.api.start()
        kubeconfig = self.api.write_kubeconfig(self.root / "kubeconfig")
        self.api.create_namespace(NAMESPACE)
        self.parent = self._parents.enter_context(veth_parent("pmsv"))
        wrapper = self.wrap_dir / WRAPPED_TYPE
        wrapper.write_text(WRAPPER.format(ctl=self.ctl_dir, plugin_dir=PLUGIN_DIR))
        wrapper.chmod(0o755)

        tag = self.run_id[1:7]
        cluster = self.node.bridge_conf(f"soak-{tag}-c", self.subnets[0])
        cluster_path = self.node.write_conf("10-cluster.conf", cluster)
        wrapped = self.node.bridge_conf(f"soak-{tag}-w", self.subnets[1], type=WRAPPED_TYPE)
        macvlan = {
            "cniVersion": "1.0.0",
            "name": f"soak-{tag}-m",
            "type": "macvlan",
            "master": self.parent,
            "mode": "bridge",
            "ipam": {"type": "host-local", "subnet": self.subnets[2], "dataDir": str(self.node.ipam_dir)},
        }
        self.api.create_nad(NAMESPACE, "wrapped", wrapped)
        self.api.create_nad(NAMESPACE, "macvlan", macvlan)
        if self.mode == "thin":
            conf = self.node.multus_conf(
                clusterNetwork=str(cluster_path),
                kubeconfig=str(kubeconfig),
                binDir=str(self.wrap_dir),
                delegateTimeout=DELEGATE_TIMEOUT,
            )
            del conf["manifestsDir"]
            self.conf_path.write_text(json.dumps(conf))
        else:
            self._start_daemon(kubeconfig)

    def _start_daemon(self, kubeconfig: Path) -> None:
        # Unix socket paths are limited to 107 bytes: keep the socket dir short.
        self.socket_root = tempfile.mkdtemp(prefix="pmsk", dir="/tmp")
        config: dict[str, object] = {
            "socketDir": self.socket_root + "/sock/",
            "daemonSocketDir": self.socket_root + "/sock/",
            "cniVersion": "1.0.0",
            "cniConfigDir": str(self.node.conf_dir),
            "multusAutoconfigDir": str(self.node.conf_dir),
            "cniDir": str(self.node.cni_dir),
            "confDir": str(self.root / "multus.d"),
            "binDir": str(self.wrap_dir),
            "kubeconfig": str(kubeconfig),
            "delegateTimeout": DELEGATE_TIMEOUT,
            "logLevel": "verbose",
            "logToStderr": True,
        }
        (self.root / "multus.d").mkdir()
        self.daemon = DaemonProcess(self.root, config, env={"MULTUS_NODE_NAME": NODE_NAME})
        self.daemon.start(wait="readyz")
        generated = sorted(self.node.conf_dir.glob("00-multus.conf*"))
        assert generated, f"the daemon wrote no 00-multus.conf[list] in {self.node.conf_dir}"
        conf = json.loads(generated[0].read_text())
        if "plugins" in conf:  # a conflist: libcni sends its one plugin with the list's name and version
            conf = {"cniVersion": conf["cniVersion"], "name": conf["name"], **conf["plugins"][0]}
        self.conf_path.write_text(json.dumps(conf))

    def restart_daemon(self) -> None:
        assert self.daemon is not None
        self.daemon.proc = None  # it was SIGKILLed and reaped by kill_daemon()
        self.daemon.start(wait="readyz")

    def kill_daemon(self) -> None:
        assert self.daemon is not None and self.daemon.proc is not None
        self.daemon.proc.kill()
        self.daemon.proc.wait()

    @property
    def daemon_pid(self) -> int | None:
        proc = self.daemon.proc if self.daemon else None
        return proc.pid if proc is not None and proc.poll() is None else None

    # -- pods -------------------------------------------------------------------------------

    def recreate_pod(self, name: str) -> str:
        """Create the pod ``name`` (a new UID each time); returns the UID."""
        pod = self.api.create_pod(
            NAMESPACE,
            name,
            annotations={"k8s.v1.cni.cncf.io/networks": "wrapped,macvlan"},
            node_name=NODE_NAME,
        )
        return str(pod["metadata"]["uid"])  # type: ignore[index]

    def new_pod(self, index: int) -> tuple[str, str, str, str]:
        """Create a pod (API) and its netns: (pod name, uid, container ID, netns name)."""
        name = f"p{index}-{self.run_id}"
        uid = self.recreate_pod(name)
        netns = unique_name("pmsn")
        ip("netns", "add", netns)
        self._netns.add(netns)
        ip("link", "set", "lo", "up", netns=netns)
        return name, uid, f"{self.run_id}{index:06d}", netns

    def drop_netns(self, netns: str) -> None:
        ip("netns", "delete", netns, check=False)
        self._netns.discard(netns)

    def set_delegate_action(self, container_id: str, action: str, command: str = "ADD") -> None:
        (self.ctl_dir / f"{container_id}.{command}").write_text(action + "\n")

    def clear_delegate_action(self, container_id: str) -> None:
        for command in ("ADD", "DEL"):
            (self.ctl_dir / f"{container_id}.{command}").unlink(missing_ok=True)

    def clear_api_faults(self) -> None:
        """Drop injections the cycle's requests did not use, so they cannot hit the next cycle."""
        with self.api._lock:
            self.api._injections.clear()

    # -- calls ------------------------------------------------------------------------------

    def launch(
        self, command: str, pod: str, uid: str, container_id: str, netns: str
    ) -> subprocess.Popen[bytes]:
        executable = "multus" if self.mode == "thin" else "multus-shim"
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": f"/var/run/netns/{netns}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(PLUGIN_DIR),
            "CNI_ARGS": (
                f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NAMESPACE};K8S_POD_NAME={pod};"
                f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}"
            ),
        }
        with open(self.conf_path, "rb") as stdin:
            return subprocess.Popen(
                [str(self.node.bin_dir / executable)],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )

    def finish(self, proc: subprocess.Popen[bytes], timeout: float = CALL_TIMEOUT) -> Outcome:
        """Wait for a launched call; "hung" (and killed) past ``timeout``, "stopped" (and
        killed) when the soak is interrupted meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                out, err = proc.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline and not self.stop.is_set():
                    continue
            proc.kill()
            out, err = proc.communicate()
            code = "stopped" if self.stop.is_set() else "hung"
            return Outcome(code, out.decode(errors="replace"), err.decode(errors="replace"))
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if proc.returncode == -signal.SIGKILL:
            return Outcome("killed", stdout, stderr)
        if proc.returncode == 0:
            return Outcome("0", stdout, stderr)
        try:
            code = json.loads(stdout).get("code")
        except (ValueError, AttributeError):
            code = None
        return Outcome(f"exit{proc.returncode}" if code is None else str(code), stdout, stderr)

    def call(self, command: str, pod: str, uid: str, container_id: str, netns: str) -> Outcome:
        return self.finish(self.launch(command, pod, uid, container_id, netns))

    # -- clean-up ---------------------------------------------------------------------------

    def close(self) -> None:
        """Remove everything this rig created; safe to call twice and after a failure."""
        if self.daemon is not None and self.daemon.proc is not None:
            self.daemon.stop()
        self.api.set_down(False)
        self.api.stop()
        for netns in list(self._netns):
            self.drop_netns(netns)
        self._parents.close()
        self.node.cleanup()
        if self.socket_root:
            shutil.rmtree(self.socket_root, ignore_errors=True)
