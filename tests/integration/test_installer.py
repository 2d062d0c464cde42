"""`pymultus install` / `uninstall` on a temporary root: real subprocesses, real files, real bundle.

The installer runs as it does in the DaemonSet (a separate process, env from the "pod"), against
a fake node: `<root>/host/opt/cni/bin`, `<root>/host/etc/cni/net.d` and a fake service account.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

PYTHON = sys.executable
BRIDGE = {"cniVersion": "0.3.1", "name": "br", "type": "bridge", "capabilities": {"portMappings": True}}


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One self-contained bundle for the whole session (building takes a couple of seconds)."""
    if shutil.which("patchelf") is None:
        pytest.fail("patchelf is missing: run scripts/setup.sh")
    path = tmp_path_factory.mktemp("bundle") / "b"
    proc = subprocess.run(
        [PYTHON, "-m", "pymultus", "install", "--build-bundle", str(path)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return path


class Node:
    """A fake node root with the DaemonSet's view of it."""

    def __init__(self, root: Path, bundle: Path) -> None:
        self.root = root
        self.bundle = bundle
        self.bin = root / "host/opt/cni/bin"
        self.conf = root / "host/etc/cni/net.d"
        self.sa = root / "sa"
        self.conf.mkdir(parents=True)
        self.sa.mkdir()
        (self.sa / "token").write_text("token-1\n")
        (self.sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nCA-1\n-----END CERTIFICATE-----\n")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "KUBERNETES_SERVICE_HOST": "fd00::1",
            "KUBERNETES_SERVICE_PORT": "6443",
        }

    def args(self, *extra: str) -> list[str]:
        return [
            PYTHON, "-m", "pymultus", "install",
            "--cni-bin-dir", str(self.bin), "--cni-bin-dir-host", str(self.bin),
            "--cni-conf-dir", str(self.conf), "--cni-conf-dir-host", "/etc/cni/net.d",
            "--service-account-dir", str(self.sa), "--log-level", "debug",
            *extra,
        ]  # fmt: skip

    def install(
        self, *extra: str, bundle: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        source = ["--bundle-source", str(bundle or self.bundle)]
        proc = subprocess.run(
            self.args(*source, *extra), check=False, capture_output=True, text=True, env=self.env, timeout=120
        )
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def start(self, *extra: str) -> subprocess.Popen[str]:
        source = ["--bundle-source", str(self.bundle)]
        return subprocess.Popen(
            self.args(*source, "--watch", "--watch-interval", "0.05", *extra),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
        )  # fmt: skip

    def uninstall(self) -> None:
        proc = subprocess.run(
            [
                PYTHON,
                "-m",
                "pymultus",
                "uninstall",
                "--cni-bin-dir",
                str(self.bin),
                "--cni-conf-dir",
                str(self.conf),
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr

    def primary(self, name: str, conf: dict[str, object]) -> Path:
        path = self.conf / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(json.dumps(conf))
        tmp.rename(path)  # like a CNI installer would, so the watcher never sees half a file
        return path

    def multus_conf(self) -> dict[str, object]:
        files = sorted(self.conf.glob("00-multus.conf*"))
        assert len(files) == 1, files
        return json.loads(files[0].read_text())

    def kubeconfig(self) -> dict[str, object]:
        return json.loads((self.conf / "multus.d/multus.kubeconfig").read_text())

    def launcher_python(self, name: str = "multus") -> str:
        first = (self.bin / name).read_text().splitlines()[0]
        assert first.startswith("#!") and first.endswith(" -IS")
        return first[2:-4]

    def version(self, name: str = "multus") -> dict[str, object]:
        proc = subprocess.run(
            [str(self.bin / name)],
            input=b"{}",
            check=False,
            capture_output=True,
            env={"CNI_COMMAND": "VERSION"},
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture
def node(tmp_path: Path, bundle: Path) -> Node:
    return Node(tmp_path, bundle)


def tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` with its mode and (for files) content."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_mode, path.read_bytes() if path.is_file() else None)
    return out


@pytest.fixture
def watcher(node: Node) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> subprocess.Popen[str]:
        proc = node.start(*extra)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return err


# --- tests ---------------------------------------------------------------------------------------


def test_fresh_install(node: Node) -> None:
    node.primary("10-bridge.conf", BRIDGE)
    node.install("--no-watch")

    for name in ("multus", "multus-shim"):
        assert os.stat(node.bin / name).st_mode & 0o777 == 0o755
    python = node.launcher_python()
    assert python.startswith(str(node.bin / "pymultus-")) and python.endswith("/bin/python3.11")
    assert node.version()["supportedVersions"]  # the installed executable really runs
    bundle_dir = Path(python).parent.parent
    marker = json.loads((bundle_dir / "BUNDLE.json").read_text())
    assert bundle_dir.name == f"pymultus-{marker['pymultus']}-{marker['digest'][:12]}"

    assert node.multus_conf() == {
        "cniVersion": "0.3.1",
        "name": "multus-cni-network",
        "type": "multus",
        "capabilities": {"portMappings": True},
        "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
        "logToStderr": True,
        "clusterNetwork": "/etc/cni/net.d/10-bridge.conf",  # the host's path, not /host/...
    }
    kubeconfig = node.kubeconfig()
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://[fd00::1]:6443"  # type: ignore[index]
    assert kubeconfig["users"][0]["user"]["token"] == "token-1"  # type: ignore[index]
    assert os.stat(node.conf / "multus.d").st_mode & 0o777 == 0o700
    assert os.stat(node.conf / "multus.d/multus.kubeconfig").st_mode & 0o777 == 0o600


def test_the_installed_thin_plugin_loads_its_modules_from_the_code_archive(node: Node) -> None:
    node.primary("10-bridge.conf", BRIDGE)
    node.install("--no-watch")
    runtime = Path(node.launcher_python()).parent.parent
    launcher = (node.bin / "multus").read_text()
    assert f"posix.open({str(runtime / 'multus.code')!r}," in launcher
    assert f"posix.open({str(runtime / 'multus.code')!r}," in (node.bin / "multus-shim").read_text()
    # The launcher's own lines, then a report of where the entry module came from.
    head = launcher.split("from pymultus.cli.thin import main")[0]
    probe = node.root / "probe"
    probe.write_text(head + "import pymultus.cli.thin\nprint(pymultus.cli.thin.__loader__ is None)\n")
    probe.chmod(0o755)
    out = subprocess.run([str(probe)], capture_output=True, text=True, env={}, check=False, timeout=60)
    assert (out.returncode, out.stdout) == (0, "True\n"), out.stderr
    node.uninstall()
    assert not runtime.exists()  # the archive goes with its runtime directory


def test_thick_mode_installs_the_executables_only(node: Node) -> None:
    node.primary("10-bridge.conf", BRIDGE)
    before = tree(node.conf)
    node.install("--mode", "thick")  # thick: no watch by default, returns at once
    assert tree(node.conf) == before
    assert node.version("multus-shim")


def test_reinstall_over_a_running_copy_is_atomic(node: Node, tmp_path: Path) -> None:
    node.primary("10-bridge.conf", BRIDGE)
    node.install("--no-watch")
    old_python = node.launcher_python()
    # A call in flight on the old runtime: started, then imports lazily after the upgrade.
    running = subprocess.Popen(
        [old_python, "-IS", "-c", "import time; time.sleep(1.5); import json, ssl, email; print('done')"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={},
    )  # fmt: skip

    # The same bundle again: nothing changes.
    launcher = (node.bin / "multus").stat()
    node.install("--no-watch")
    assert (node.bin / "multus").stat().st_ino == launcher.st_ino

    # A new version (different content, so a different digest and directory).
    new_bundle = tmp_path / "new-bundle"
    shutil.copytree(node.bundle, new_bundle, symlinks=True)
    (new_bundle / "site/upgrade.txt").write_text("v2")
    marker = json.loads((new_bundle / "BUNDLE.json").read_text())
    marker["digest"] = "f" * 64
    (new_bundle / "BUNDLE.json").write_text(json.dumps(marker))
    node.install("--no-watch", bundle=new_bundle)

    new_python = node.launcher_python()
    assert new_python != old_python and "pymultus-0.1.0-ffffffffffff" in new_python
    assert node.version()  # new calls use the new runtime
    out, err = running.communicate(timeout=30)
    assert running.returncode == 0 and out.strip() == "done", err  # the old call was not disturbed
    assert Path(old_python).exists()  # the previous runtime is kept for calls still in flight

    # A third version: the oldest runtime goes, the previous stays.
    marker["digest"] = "e" * 64
    (new_bundle / "BUNDLE.json").write_text(json.dumps(marker))
    node.install("--no-watch", bundle=new_bundle)
    assert not Path(old_python).exists()
    assert Path(new_python).exists()
    assert sorted(p.name for p in node.bin.glob("pymultus-*")) == [
        "pymultus-0.1.0-eeeeeeeeeeee",
        "pymultus-0.1.0-ffffffffffff",
    ]


def test_watch_picks_up_token_rotation_and_ca_change(
    node: Node, watcher: Callable[..., subprocess.Popen[str]]
) -> None:
    node.primary("10-bridge.conf", BRIDGE)
    proc = watcher()
    wait_until((node.conf / "00-multus.conf").exists)

    (node.sa / "token").write_text("token-2\n")
    wait_until(lambda: node.kubeconfig()["users"][0]["user"]["token"] == "token-2")  # type: ignore[index]

    (node.sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nCA-2\n-----END CERTIFICATE-----\n")
    wait_until(lambda: b"CA-2" in _ca_of(node.kubeconfig()))
    assert os.stat(node.conf / "multus.d/multus.kubeconfig").st_mode & 0o777 == 0o600
    stop(proc)
    assert (node.conf / "00-multus.conf").exists()  # kept on exit unless --cleanup-config-on-exit


def _ca_of(kubeconfig: dict[str, object]) -> bytes:
    import base64

    return base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])  # type: ignore[index]


def test_primary_appearing_late_then_changing(
    node: Node, watcher: Callable[..., subprocess.Popen[str]]
) -> None:
    proc = watcher()
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting for the primary
    assert not list(node.conf.glob("00-multus*"))

    node.primary("20-bridge.conf", BRIDGE)
    wait_until((node.conf / "00-multus.conf").exists)
    assert node.multus_conf()["clusterNetwork"] == "/etc/cni/net.d/20-bridge.conf"

    # The primary changes: new capabilities and cniVersion 1.0.0 -> the conflist form replaces the conf.
    node.primary("20-bridge.conf", {**BRIDGE, "cniVersion": "1.0.0", "capabilities": {"ips": True}})
    wait_until(
        lambda: (node.conf / "00-multus.conflist").exists() and not (node.conf / "00-multus.conf").exists()
    )
    plugin = node.multus_conf()["plugins"][0]  # type: ignore[index]
    assert plugin["capabilities"] == {"ips": True}

    # A different file now sorts first (boot-order race, multus#1499): it becomes the primary.
    node.primary("10-other.conflist", {"cniVersion": "1.0.0", "name": "o", "plugins": [{"type": "ptp"}]})
    wait_until(
        lambda: node.multus_conf()["plugins"][0]["clusterNetwork"] == "/etc/cni/net.d/10-other.conflist"
    )  # type: ignore[index]

    # Someone removes our conf (cilium renames it, multus#972): it is written again.
    (node.conf / "00-multus.conflist").unlink()
    wait_until((node.conf / "00-multus.conflist").exists)

    # A broken primary is reported and the last good conf is kept.
    (node.conf / "10-other.conflist").write_text("{broken")
    time.sleep(0.5)
    assert node.multus_conf()["plugins"][0]["clusterNetwork"] == "/etc/cni/net.d/10-other.conflist"  # type: ignore[index]
    err = stop(proc)
    assert "10-other.conflist is not valid JSON" in err
    assert err.count("is not valid JSON") == 1  # reported once, not every second


def test_cleanup_config_on_exit(node: Node, watcher: Callable[..., subprocess.Popen[str]]) -> None:
    node.primary("10-bridge.conf", BRIDGE)
    proc = watcher("--cleanup-config-on-exit")
    wait_until((node.conf / "00-multus.conf").exists)
    stop(proc)
    assert not (node.conf / "00-multus.conf").exists()
    assert not (node.conf / "multus.d/multus.kubeconfig").exists()
    assert (node.conf / "10-bridge.conf").exists()


def test_no_primary_within_the_wait_is_a_clear_error(node: Node) -> None:
    proc = node.install("--no-watch", "--primary-wait", "0.3", check=False)
    assert proc.returncode == 1
    assert f"no primary CNI conf appeared in {node.conf} within 0.3 s" in proc.stderr


def test_our_own_conf_is_never_wrapped(node: Node) -> None:
    stale = {"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus", "delegates": [BRIDGE]}
    node.primary("00-multus.conf", stale)  # Go Multus's leftover
    node.primary("01-multus-renamed.conf", stale)  # a Multus conf under another name (multus#1108)
    node.primary("10-bridge.conflist", {"cniVersion": "1.0.0", "name": "br", "plugins": [{"type": "bridge"}]})
    node.install("--no-watch")
    # The stale 00-multus.conf would shadow our 00-multus.conflist (it sorts first): it is gone.
    assert not (node.conf / "00-multus.conf").exists()
    plugin = node.multus_conf()["plugins"][0]  # type: ignore[index]
    assert plugin["clusterNetwork"] == "/etc/cni/net.d/10-bridge.conflist"
    assert (node.conf / "01-multus-renamed.conf").exists()  # not ours to remove; just never wrapped


def test_bad_flags_give_clear_errors(node: Node) -> None:
    proc = node.install("--python", "python3", check=False)
    assert (
        proc.returncode == 1
        and "--python 'python3' must be bundled, auto or host:/absolute/path" in proc.stderr
    )
    proc = node.install("--multus-conf-file", "/nonexistent.conf", check=False)
    assert proc.returncode == 1 and "--multus-conf-file /nonexistent.conf is not a file" in proc.stderr
    node.env.pop("KUBERNETES_SERVICE_HOST")
    node.primary("10-bridge.conf", BRIDGE)
    proc = node.install("--no-watch", check=False)
    assert proc.returncode == 1 and "KUBERNETES_SERVICE_HOST is not set" in proc.stderr


def test_uninstall_leaves_nothing(node: Node) -> None:
    node.primary("10-bridge.conf", BRIDGE)
    node.bin.mkdir(parents=True)
    (node.bin / "bridge").write_bytes(b"a plugin that is not ours")
    before = tree(node.root)
    node.install("--no-watch")
    node.install("--no-watch", "--cni-version", "1.0.0", "--force-cni-version")  # conf -> conflist
    assert tree(node.root) != before
    node.uninstall()
    assert tree(node.root) == before
    node.uninstall()  # a second uninstall finds nothing to do


def test_uninstall_keeps_files_changed_since(node: Node) -> None:
    node.primary("10-bridge.conf", BRIDGE)
    node.install("--no-watch")
    (node.conf / "00-multus.conf").write_text('{"edited": "by the operator"}')
    node.uninstall()
    assert (node.conf / "00-multus.conf").read_text() == '{"edited": "by the operator"}'
    assert not (node.bin / "multus").exists()
    assert not list(node.bin.glob("pymultus-*"))


def test_host_python_form(node: Node) -> None:
    """--python host:/path: launchers on the operator's own interpreter, packages copied."""
    node.primary("10-bridge.conf", BRIDGE)
    base = os.path.realpath(sys.executable)
    node.install("--no-watch", f"--python=host:{base}")
    assert node.launcher_python() == base
    assert node.version()["supportedVersions"]
    node.uninstall()
    assert not (node.bin / "multus").exists()


def test_user_conf_file_is_copied_and_removed_on_uninstall(node: Node, tmp_path: Path) -> None:
    user_conf = tmp_path / "00-multus.conf"
    user_conf.write_text(
        json.dumps({"cniVersion": "0.3.1", "name": "m", "type": "multus", "delegates": [BRIDGE]})
    )
    node.install("--no-watch", "--multus-conf-file", str(user_conf))
    assert (node.conf / "00-multus.conf").read_bytes() == user_conf.read_bytes()
    node.uninstall()
    assert not (node.conf / "00-multus.conf").exists()
