"""Running plugins as real child processes (the test-double plugin, no root needed)."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from pymultus.cni.invoke import PluginExecutor, find_plugin
from pymultus.errors import DelegateFailed, DelegateTimeout, PluginNotFound

PLUGINS = str(Path(__file__).resolve().parents[2] / "support" / "plugins")
PMTEST = os.path.join(PLUGINS, "pmtest")
ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": PLUGINS,
}


def _conf(**behaviour: object) -> bytes:
    return json.dumps(
        {"cniVersion": "1.0.0", "name": "t", "type": "pmtest", "pmtest": {"ADD": behaviour}}
    ).encode()


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_find_plugin(tmp_path: Path) -> None:
    assert find_plugin("pmtest", ["/nonexistent", PLUGINS]) == PMTEST
    (tmp_path / "pmtest").write_text("not executable")
    assert find_plugin("pmtest", [str(tmp_path), PLUGINS]) == PMTEST
    for bad in ("", "../pmtest", "a/b", ".hidden"):
        with pytest.raises(PluginNotFound) as info:
            find_plugin(bad, [PLUGINS])
        assert info.value.code == 7
    with pytest.raises(PluginNotFound, match="'nope' was not found") as info:
        find_plugin("nope", [PLUGINS])
    assert PLUGINS in info.value.details


def test_success_returns_stdout_with_env_and_stdin_delivered(tmp_path: Path) -> None:
    record = tmp_path / "log"
    conf = json.dumps(
        {"cniVersion": "1.0.0", "name": "t", "type": "pmtest", "pmtest": {"record": str(record)}}
    )
    out = PluginExecutor(base_env={"PATH": "/usr/bin:/bin", "CNI_ARGS": "from-base"}).run(
        PMTEST, ENV, conf.encode()
    )
    assert json.loads(out) == {"cniVersion": "1.0.0"}
    seen = json.loads(record.read_text())
    assert seen["env"] == {**ENV, "CNI_ARGS": "from-base"} and seen["conf"]["name"] == "t"


def test_a_failing_plugin_keeps_its_own_code_and_stderr() -> None:
    conf = _conf(error={"code": 142, "msg": "vlan 4095 is reserved", "details": "vlan"}, stderr="trace")
    with pytest.raises(DelegateFailed) as info:
        PluginExecutor(base_env={}).run(PMTEST, ENV, conf)
    assert (info.value.code, info.value.msg) == (142, "vlan 4095 is reserved")
    assert info.value.details == "vlan; stderr: trace" and info.value.delegate == "pmtest"


def test_a_failing_plugin_without_a_cni_error_is_999_with_its_output_in_details() -> None:
    with pytest.raises(DelegateFailed) as info:
        PluginExecutor(base_env={}).run(
            PMTEST, ENV, _conf(exit=3, print="panic: nil map", stderr="goroutine 1")
        )
    assert info.value.code == 999 and "exit status 3" in info.value.msg
    assert "goroutine 1" in info.value.details and "panic: nil map" in info.value.details


def test_a_hanging_plugin_is_killed_with_its_process_group_at_the_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    before = _fds()
    started = time.monotonic()
    with pytest.raises(DelegateTimeout) as info:
        PluginExecutor(base_env={}, timeout=30).run(
            PMTEST, ENV, _conf(sleep=60, child_pidfile=str(pidfile), stderr="working"), timeout=1.0
        )
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5 and info.value.code == 11 and "killed" in info.value.msg
    assert "working" in info.value.details
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the plugin's child survived the process-group kill"
    assert _fds() == before


def test_a_detached_helper_holding_stdout_does_not_block_the_caller() -> None:
    started = time.monotonic()
    out = PluginExecutor(base_env={}).run(
        PMTEST, ENV, _conf(daemon_holds_stdout=True, result={"cniVersion": "1.0.0"})
    )
    assert json.loads(out) == {"cniVersion": "1.0.0"} and time.monotonic() - started < 10


def test_large_stdin_and_stdout_do_not_deadlock() -> None:
    big = "x" * (2 * 1024 * 1024)
    conf = json.dumps({"cniVersion": "1.0.0", "pad": big, "pmtest": {"ADD": {"echo_stdin": True}}}).encode()
    assert json.loads(PluginExecutor(base_env={}).run(PMTEST, ENV, conf))["pad"] == big


def test_a_plugin_that_ignores_stdin_still_finishes() -> None:
    conf = json.dumps({"pad": "y" * (1024 * 1024)}).encode()
    # /bin/true exits without reading: the writer must not hang or raise on the broken pipe.
    output = PluginExecutor(base_env={}).run_raw("/bin/true", {}, conf)
    assert output.status == 0 and output.stdout == b""


def test_killed_by_a_signal_is_reported() -> None:
    with pytest.raises(DelegateFailed, match="killed by signal 9") as info:
        PluginExecutor(base_env={}).run("/bin/sh", {}, b"kill -9 $$\n")  # sh reads its script from stdin
    assert info.value.code == 999


def test_missing_and_non_executable_binaries(tmp_path: Path) -> None:
    with pytest.raises(PluginNotFound) as info:
        PluginExecutor(base_env={}).run(str(tmp_path / "gone"), ENV, b"{}")
    assert info.value.code == 7
    script = tmp_path / "noexec"
    script.write_text("#!/bin/sh\n")
    script.chmod(stat.S_IRUSR)
    with pytest.raises(PluginNotFound, match="not executable"):
        PluginExecutor(base_env={}).run(str(script), ENV, b"{}")


def test_many_threads_share_one_executor_without_leaking(tmp_path: Path) -> None:
    executor = PluginExecutor(base_env={})
    before = _fds()
    errors: list[BaseException] = []
    results: list[bytes] = []

    def worker(index: int) -> None:
        try:
            conf = _conf(result={"cniVersion": "1.0.0", "ips": [{"address": f"10.0.{index}.2/24"}]})
            results.append(executor.run(PMTEST, ENV, conf))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(json.loads(r)["ips"][0]["address"] for r in results) == sorted(
        f"10.0.{i}.2/24" for i in range(24)
    )
    assert _fds() == before
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no unreaped child left behind


def test_the_chroot_form_runs_through_chroot(tmp_path: Path) -> None:
    executor = PluginExecutor(base_env={}, chroot="/")
    assert json.loads(executor.run(PMTEST, ENV, _conf())) == {"cniVersion": "1.0.0"}


def test_a_symlinked_plugin_is_followed_inside_the_chroot(tmp_path: Path) -> None:
    """Thick mode: /opt/cni/bin/bridge -> /usr/lib/cni/bridge exists only in the host root the
    daemon chroots into, not in its own container."""
    root = tmp_path / "hostroot"
    real = root / "pm-nowhere" / "lib" / "bridge"
    real.parent.mkdir(parents=True)
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bridge").symlink_to("/pm-nowhere/lib/bridge")  # absolute: the host's view
    (bin_dir / "loop").symlink_to("loop")
    assert find_plugin("bridge", [str(bin_dir)], root=str(root)) == str(bin_dir / "bridge")
    with pytest.raises(PluginNotFound):
        find_plugin("bridge", [str(bin_dir)])  # no chroot: the link leads nowhere here
    with pytest.raises(PluginNotFound):
        find_plugin("loop", [str(bin_dir)], root=str(root))
