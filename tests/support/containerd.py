"""A private containerd for tests and benches: its own config, root, state, socket, CNI dirs and
a locally built pause image; stopped and cleaned up even when a test fails.

Nothing of the host's containerd is used or touched: not /etc/containerd, not
/run/containerd/containerd.sock, not /etc/cni/net.d or /opt/cni/bin. Facts this relies on
(containerd 1.6 from Debian 12, runc 1.1):

- root here lacks CAP_SYS_RESOURCE, and runc fails with "can't get final child's PID from pipe:
  EOF" unless the CRI config sets ``restrict_oom_score_adj``;
- ``netns_mounts_under_state_dir`` keeps the sandboxes' netns under the private state dir, runc's
  ``Root`` and the ``io.containerd.internal.v1.opt`` path keep the rest private. containerd 1.6
  still writes its CNI result cache to /var/lib/cni/results and the shims' sockets under
  /run/containerd/s: ``cleanup`` removes what this instance left there;
- the CNI conf must be in place before containerd starts and must never be removed and re-created
  while it runs (it stays "cni plugin not initialized" until the file is rewritten), so one
  instance serves one Multus conf;
- no registry: the pause image is a static C program built here with gcc, packed as an OCI archive
  and imported with ``ctr -n k8s.io images import``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.netns import PLUGIN_DIR

NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin works in
PAUSE_IMAGE = "pymultus.test/pause:local"
RESULTS_DIR = Path("/var/lib/cni/results")  # containerd 1.6's libcni result cache (not configurable)
SHIM_SOCKETS = Path("/run/containerd/s")
# Host directories containerd 1.6 creates outside its configured paths; removed at the end when
# empty (another instance, in this or another test process, still has entries there) and never
# while a host containerd runs (its socket is in /run/containerd).
HOST_DIRS = [SHIM_SOCKETS, SHIM_SOCKETS.parent, RESULTS_DIR]
HOST_SOCKET = Path("/run/containerd/containerd.sock")

PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGINT, quit);
    signal(SIGTERM, quit);
    for (;;) pause();
}
"""


class ContainerdUnavailable(RuntimeError):
    """containerd, runc, ctr or gcc cannot run here; the message says what is missing."""


def missing_tools() -> list[str]:
    """The executables a private containerd needs that are not installed (scripts/setup.sh does)."""
    return [tool for tool in ("containerd", "ctr", "runc", "gcc") if shutil.which(tool) is None]


def build_pause_archive(workdir: Path) -> Path:
    """A one-layer OCI image archive of a static ``/pause``, named ``PAUSE_IMAGE``."""
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "pause.c"
    binary = workdir / "pause"
    source.write_text(PAUSE_C)
    proc = subprocess.run(
        ["gcc", "-static", "-Os", "-s", "-o", str(binary), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ContainerdUnavailable(f"cannot build the static pause binary with gcc: {proc.stderr.strip()}")

    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as layer:
        info = layer.gettarinfo(str(binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        info.mode = 0o755
        with binary.open("rb") as f:
            layer.addfile(info, f)
    layer_bytes = layer_buf.getvalue()
    layer_digest = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    blobs: dict[str, bytes] = {layer_digest: layer_bytes}
    config_bytes = json.dumps(config).encode()
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    blobs[config_digest] = config_bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": len(layer_bytes),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    blobs[manifest_digest] = manifest_bytes
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "annotations": {
                    "io.containerd.image.name": PAUSE_IMAGE,
                    "org.opencontainers.image.ref.name": PAUSE_IMAGE.rsplit(":", 1)[1],
                },
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index).encode(),
    }
    files.update({f"blobs/sha256/{digest.split(':', 1)[1]}": data for digest, data in blobs.items()})
    archive = workdir / "pause-oci.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def config_toml(root: Path, *, bin_dir: Path, conf_dir: Path) -> str:
    """containerd 1.6 config (version 2) keeping every path private under ``root``."""
    return f"""version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{root}/containerd.sock"
[ttrpc]
  address = "{root}/containerd.sock.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin_dir}"
    conf_dir = "{conf_dir}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{root}/runc"
        SystemdCgroup = false
"""


class Containerd:
    """One private containerd: ``start()``, ``stop()``, ``restart()``, ``cleanup()``.

    ``bin_dir`` is containerd's CNI bin dir (it needs ``loopback`` there: the real plugins are
    linked in next to ``multus``/``multus-shim``); ``conf_dir`` holds the one conf it loads.
    """

    def __init__(self, root: Path, *, bin_dir: Path, conf_dir: Path, pause_archive: Path) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.conf_dir = conf_dir
        self.pause_archive = pause_archive
        self.socket = root / "containerd.sock"
        self.state_dir = root / "state"
        self.config_path = root / "config.toml"
        self.log_path = root / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sandbox_ids: set[str] = set()  # every sandbox this instance ran (for the cleanup)
        self._shim_sockets_before: set[str] = set()
        root.mkdir(parents=True, exist_ok=True)
        for name in PLUGIN_DIR.iterdir():
            link = bin_dir / name.name
            if not link.exists():
                link.symlink_to(name)
        self.config_path.write_text(config_toml(root, bin_dir=bin_dir, conf_dir=conf_dir))

    @property
    def address(self) -> str:
        return f"unix://{self.socket}"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        if SHIM_SOCKETS.is_dir():
            self._shim_sockets_before |= set(os.listdir(SHIM_SOCKETS))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.proc.poll() is not None:
                raise ContainerdUnavailable(f"containerd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise ContainerdUnavailable(f"containerd did not listen within {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def import_pause(self) -> None:
        proc = self.ctr("images", "import", "--no-unpack=false", str(self.pause_archive))
        if proc.returncode != 0:
            raise ContainerdUnavailable(f"ctr images import failed: {proc.stderr.strip()}")

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Stop the daemon (sandboxes and their shims keep running, as on a real node)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        # The socket file stays behind after a kill; the next start waits for a fresh one.
        self.socket.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    # -- clean-up ---------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop the daemon, kill our shims, unmount and remove everything this instance created."""
        self.stop()
        for pid in self.shim_pids():
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        # Containers whose shim was killed (containerd crashed, a test failed half-way) still run:
        # runc kills them and removes their cgroups; then their mounts can go.
        for state in (self.root / "runc").glob("*/*/state.json"):
            subprocess.run(
                ["runc", "--root", str(state.parent.parent), "delete", "--force", state.parent.name],
                capture_output=True,
                check=False,
            )
        for mount in reversed(mounts_under(self.root)):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        for sandbox in self.sandbox_ids:
            for cached in RESULTS_DIR.glob(f"*-{sandbox}-*"):
                cached.unlink(missing_ok=True)
        if SHIM_SOCKETS.is_dir():
            for name in set(os.listdir(SHIM_SOCKETS)) - self._shim_sockets_before:
                (SHIM_SOCKETS / name).unlink(missing_ok=True)
        if not HOST_SOCKET.exists():
            for directory in HOST_DIRS:
                try:
                    directory.rmdir()
                except OSError:
                    pass  # not empty: another instance still runs, or not there
        shutil.rmtree(self.root / "root", ignore_errors=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def shim_pids(self) -> list[int]:
        """containerd-shim processes serving this instance (their command line names our socket)."""
        pids = []
        needle = str(self.socket).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and needle in cmdline:
                pids.append(int(entry))
        return pids

    def netns_paths(self) -> list[str]:
        """Sandbox netns mounts that exist under the private state dir."""
        return [m for m in mounts_under(self.state_dir) if "/netns/" in m]

    def cni_results(self) -> list[str]:
        """containerd's own CNI result cache entries for sandboxes of this instance."""
        return sorted(str(p) for s in self.sandbox_ids for p in RESULTS_DIR.glob(f"*-{s}-*"))


def mounts_under(root: Path) -> list[str]:
    """Mount points under ``root``, in mount order."""
    prefix = str(root).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split(" ")[4].replace("\\040", " ")
        if point.startswith(prefix):
            found.append(point)
    return found


@contextmanager
def private_containerd(
    root: Path, *, bin_dir: Path, conf_dir: Path, pause_archive: Path
) -> Iterator[Containerd]:
    """Start a private containerd with the pause image imported; clean everything up afterwards."""
    missing = missing_tools()
    if missing:
        raise ContainerdUnavailable(f"not installed: {', '.join(missing)} (scripts/setup.sh installs them)")
    daemon = Containerd(root, bin_dir=bin_dir, conf_dir=conf_dir, pause_archive=pause_archive)
    try:
        daemon.start()
        daemon.import_pause()
        yield daemon
    finally:
        daemon.cleanup()
