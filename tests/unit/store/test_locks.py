"""The per-container lock (``pymultus.store.locks``) with real processes and real flocks."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pymultus.cni.invoke import PluginExecutor
from pymultus.errors import ContainerBusy, InvalidConfig
from pymultus.store.locks import ContainerLock, lock_path

CID = "c0ffee"


def _log() -> tuple[list[str], object]:
    lines: list[str] = []
    return lines, lambda level, message: lines.append(f"{level}: {message}")


def _holder(lock: ContainerLock, command: list[str]) -> subprocess.Popen[bytes]:
    """A process that holds the lock like a delegate does (fd inherited, own process group)."""
    return subprocess.Popen(command, pass_fds=[lock.fd], start_new_session=True)


def _orphan(lock: ContainerLock) -> None:
    """What kill -9 of ``multus`` does to the ADD: its own fd goes, the delegate's stays."""
    os.close(lock.fd)
    lock.fd = -1


def test_add_then_release_leaves_no_file_and_a_second_add_waits_for_nobody(tmp_path: Path) -> None:
    lock = ContainerLock.for_add(str(tmp_path), CID)
    assert Path(lock.path).exists() and not lock.cancelled()
    with pytest.raises(ContainerBusy) as caught:
        ContainerLock.for_add(str(tmp_path), CID)
    assert caught.value.code == 11 and CID in caught.value.msg
    lock.release()
    lock.release()  # idempotent
    assert not Path(lock.path).exists()
    ContainerLock.for_add(str(tmp_path), CID).release()


def test_del_kills_an_orphaned_add_delegate_then_takes_the_lock(tmp_path: Path) -> None:
    lock = ContainerLock.for_add(str(tmp_path), CID)
    lock.killable = True
    delegate = _holder(lock, ["sleep", "60"])
    lock.spawned(delegate.pid)
    _orphan(lock)
    lines, log = _log()
    started = time.monotonic()
    taken = ContainerLock.for_del(str(tmp_path), CID, log=log)  # type: ignore[arg-type]
    assert delegate.wait(timeout=10) == -9
    assert taken.fd >= 0 and time.monotonic() - started < 10
    assert any("stopping its ADD" in line for line in lines)
    taken.release()
    assert not Path(taken.path).exists()


def test_del_waits_for_a_running_add_that_lets_go(tmp_path: Path) -> None:
    add = ContainerLock.for_add(str(tmp_path), CID)
    seen: list[bool] = []

    def finish_add() -> None:
        while not add.cancelled():
            time.sleep(0.005)
        seen.append(True)
        add.release()

    thread = threading.Thread(target=finish_add)
    thread.start()
    _, log = _log()
    taken = ContainerLock.for_del(str(tmp_path), CID, log=log)  # type: ignore[arg-type]
    thread.join()
    assert seen == [True] and taken.fd >= 0
    taken.release()


def test_del_fails_with_code_11_while_a_live_add_keeps_the_lock(tmp_path: Path) -> None:
    add = ContainerLock.for_add(str(tmp_path), CID)  # this process: alive and holding it
    _, log = _log()
    with pytest.raises(ContainerBusy) as caught:
        ContainerLock.for_del(str(tmp_path), CID, log=log, wait=0.05)  # type: ignore[arg-type]
    assert caught.value.code == 11 and "try the DEL again" in caught.value.msg
    add.release()


def test_del_goes_on_without_the_lock_when_only_a_stray_process_holds_it(tmp_path: Path) -> None:
    add = ContainerLock.for_add(str(tmp_path), CID)
    stray = _holder(add, ["sleep", "60"])  # not recorded: e.g. a delegate's daemonised child
    os.pwrite(add.fd, b"999999 0".ljust(32), 0)  # the holder: a process that is gone
    _orphan(add)
    try:
        lines, log = _log()
        taken = ContainerLock.for_del(str(tmp_path), CID, log=log, wait=0.05)  # type: ignore[arg-type]
        assert taken.fd == -1
        assert any("leftover process" in line for line in lines)
        assert stray.poll() is None  # never killed: it was not recorded as an ADD delegate
    finally:
        stray.kill()
        stray.wait()


def test_a_cancel_mark_left_by_a_killed_holder_does_not_cancel_the_next_add(tmp_path: Path) -> None:
    path = Path(lock_path(str(tmp_path), CID))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"1 0".ljust(32) + b"C")
    lock = ContainerLock.for_add(str(tmp_path), CID)
    assert not lock.cancelled()
    lock.release()


def test_unwritable_cni_dir_del_runs_unlocked_add_names_the_problem(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    _, log = _log()
    assert ContainerLock.for_del(str(not_a_dir), CID, log=log).fd == -1  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig) as caught:
        ContainerLock.for_add(str(not_a_dir), CID)
    assert str(not_a_dir) in caught.value.msg


def test_long_container_ids_get_a_bounded_lock_name(tmp_path: Path) -> None:
    long_id = "a" * 1500
    path = lock_path(str(tmp_path), long_id)
    assert len(os.path.basename(path).encode()) <= 255
    assert path != lock_path(str(tmp_path), long_id + "b")
    ContainerLock.for_add(str(tmp_path), long_id).release()


def test_guarded_executor_hands_the_lock_to_the_plugin_and_records_it(tmp_path: Path) -> None:
    plugin = tmp_path / "probe"
    plugin.write_text('#!/bin/sh\nreadlink /proc/$$/fd/3 /proc/$$/fd/4\nhead -c 32 "$LOCK"; echo " $$"\n')
    plugin.chmod(0o755)
    lock = ContainerLock.for_add(str(tmp_path / "cni"), CID)
    lock.killable = True
    executor = PluginExecutor(base_env={"PATH": "/usr/bin:/bin"}, timeout=20).guarded(lock)
    out = executor.run(str(plugin), {"LOCK": lock.path}, b"").decode().split("\n")
    assert lock.path in out  # the plugin has the lock open (fd 3, or 4 when ours is 3)
    holder, pgid, own_pid = out[-2].split()
    assert int(holder) == os.getpid() and pgid == own_pid  # recorded while it ran
    assert os.pread(lock.fd, 32, 0).split() == [str(os.getpid()).encode(), b"0"]  # cleared after
    lock.release()


def test_a_cancelled_add_starts_no_more_delegates(tmp_path: Path) -> None:
    lock = ContainerLock.for_add(str(tmp_path), CID)
    lock.killable = True
    os.pwrite(lock.fd, b"C", 32)
    executor = PluginExecutor(base_env={"PATH": "/usr/bin:/bin"}).guarded(lock)
    with pytest.raises(ContainerBusy):
        executor.run("/bin/true", {}, b"")
    lock.killable = False  # a rollback's delegates still run
    assert executor.run("/bin/true", {}, b"") == b""
    lock.release()


def test_a_killed_holders_lock_marks_the_next_one_recovered_and_its_temps_can_go(tmp_path: Path) -> None:
    from pymultus.fileio import remove_orphaned_temps

    killed = ContainerLock.for_add(str(tmp_path), CID)
    _orphan(killed)  # kill -9: the file stays, with content
    dead = tmp_path / f".{CID}.999999.140000.tmp"  # pid 999999 > pid_max: its writer is gone
    live = tmp_path / f".other.{os.getpid()}.140000.tmp"  # a write still in progress
    unrelated = tmp_path / ".not-a-temp.tmp"
    for path in (dead, live, unrelated):
        path.write_text("partial")
    _, log = _log()
    taken = ContainerLock.for_del(str(tmp_path), CID, log=log)  # type: ignore[arg-type]
    assert taken.recovered
    assert remove_orphaned_temps(str(tmp_path)) == 1
    assert not dead.exists() and live.exists() and unrelated.exists()
    taken.release()
    fresh = ContainerLock.for_add(str(tmp_path), CID)
    assert not fresh.recovered  # released normally: the file was removed, a new one is empty
    fresh.release()
