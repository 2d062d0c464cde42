"""The installed executables on a node without Python: ADD and DEL inside a minimal root.

The root holds only what `pymultus install` copied, the C library (glibc's .so files and the
ELF loader, copied from this machine) and the CNI plugins. No /usr/bin/python, no virtualenv,
no shell: the runtime's exec of `/opt/cni/bin/multus` is done by `chroot`, in a private mount
namespace into which /run/netns, /proc, /sys and /dev/null are bind-mounted (they vanish with
the namespace).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_installer import bundle  # noqa: F401 - the session's bundle fixture
from tests.support.netns import NETNS_DIR, PLUGIN_DIR, Netns, delete_host_link, netns, unique_name

pytestmark = pytest.mark.netns

GLIBC = re.compile(r"^(ld-linux.*|libc|libm|libpthread|libdl|librt|libresolv|libutil|libmvec)\.so")


def _elves(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF":
                yield path


def _copy_glibc(root: Path, elves: list[Path]) -> list[str]:
    """Copy the glibc files these ELF files load (and nothing else) to the same paths in ``root``."""
    copied: set[str] = set()
    for elf in elves:
        out = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            parts = line.split()
            path = parts[2] if len(parts) >= 3 and parts[1] == "=>" else parts[0] if parts else ""
            if path.startswith("/") and GLIBC.match(os.path.basename(path)):
                copied.add(path)
    for path in copied:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), target)
    return sorted(copied)


@pytest.fixture
def minimal_root(tmp_path: Path, bundle: Path) -> Path:  # noqa: F811 - the imported fixture
    root = tmp_path / "node"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pymultus", "install", "--mode", "thick",
            "--cni-bin-dir", str(root / "opt/cni/bin"), "--cni-bin-dir-host", "/opt/cni/bin",
            "--bundle-source", str(bundle),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    plugins = root / "usr/lib/cni"
    plugins.mkdir(parents=True)
    for name in ("bridge", "host-local", "loopback"):
        shutil.copy2(PLUGIN_DIR / name, plugins / name)
    glibc = _copy_glibc(root, list(_elves(root)))
    assert any("libc.so" in p for p in glibc), glibc
    for d in ("proc", "sys", "dev", "tmp", "var/run/netns", "var/lib/cni"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "dev/null").touch()
    return root


def _no_python_in(root: Path) -> None:
    bundles = [p for p in (root / "opt/cni/bin").iterdir() if p.name.startswith("pymultus-")]
    found = [p for p in root.rglob("*python*") if not any(p.is_relative_to(b) for b in bundles)]
    assert found == [], found  # the only interpreter is the one inside the installed bundle
    assert not (root / "usr/bin").exists()
    assert not (root / "bin").exists()


def _run_in_root(root: Path, command: str, conf: dict[str, object], cid: str, ns: Netns) -> dict[str, object]:
    script = (
        'set -e; r="$1"; '
        f'mount --rbind {NETNS_DIR} "$r/var/run/netns"; mount -t proc proc "$r/proc"; '
        'mount --rbind /sys "$r/sys"; mount --bind /dev/null "$r/dev/null"; '
        'exec chroot "$r" /opt/cni/bin/multus'
    )
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": f"/var/run/netns/{ns.name}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": "IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",  # for unshare/mount/chroot on the host side only
    }
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root)],
        input=json.dumps(conf).encode(), capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


def test_multus_adds_and_deletes_in_a_root_without_python(minimal_root: Path) -> None:
    _no_python_in(minimal_root)
    bridge = unique_name("pmc")
    conf = {
        "cniVersion": "1.0.0",
        "name": "multus-cni-network",
        "type": "multus",
        "cniDir": "/var/lib/cni/multus",
        "delegates": [
            {
                "cniVersion": "1.0.0",
                "name": "chroot-net",
                "type": "bridge",
                "bridge": bridge,
                "ipam": {"type": "host-local", "subnet": "10.231.7.0/24", "dataDir": "/var/lib/cni/networks"},
            }
        ],
    }
    cid = unique_name("c")
    try:
        with netns("pmr") as ns:
            added = _run_in_root(minimal_root, "ADD", conf, cid, ns)
            assert "eth0" in ns.links()
            address = ns.addresses("eth0")[0]
            assert address.startswith("10.231.7.")
            assert [ip["address"] for ip in added["ips"]] == [address]  # type: ignore[union-attr,index]
            assert list((minimal_root / "var/lib/cni/networks/chroot-net").glob("10.231.7.*"))

            _run_in_root(minimal_root, "DEL", conf, cid, ns)
            assert "eth0" not in ns.links()
            assert not list((minimal_root / "var/lib/cni/networks/chroot-net").glob("10.231.7.*"))
    finally:
        delete_host_link(bridge)
