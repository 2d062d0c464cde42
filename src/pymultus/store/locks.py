"""The per-container lock ``<cniDir>/locks/<containerID>``: one ADD or DEL of a container at a
time, and a DEL that stops a running ADD instead of racing it.

Why: runtimes SIGKILL the plugin when their CNI timeout expires (containerd cancels the exec)
and then send DEL. Delegates run in their own process group (``pymultus.cni.invoke``), so they
outlive ``multus``; a DEL that ran while one was still running found nothing to delete yet, and
the delegate then created its interface and lease with no record left. In thick mode the ADD
goes on in a daemon thread after the shim was killed, with the same result.

ADD (:meth:`ContainerLock.for_add`) takes an exclusive ``flock`` without waiting: a container
that is already being added or deleted gets :class:`~pymultus.errors.ContainerBusy` (code 11).
It holds it for its whole run, and each delegate it starts gets the locked open file description
as fd 3 (``posix_spawn`` dup2; the parent's fd stays close-on-exec, so other threads' children
never inherit it). The lock therefore stays held while any delegate of the ADD is alive, even
after ``multus`` itself was killed. While an ADD delegate runs, its process group is in the file.

DEL (:meth:`ContainerLock.for_del`) takes the lock too. When an ADD holds it, DEL marks the file
cancelled (the ADD checks the mark before it writes anything and before each delegate, stops
with ContainerBusy and rolls back what it did), lets the running delegate finish for
:data:`KILL_GRACE` seconds, then SIGKILLs the recorded delegate's process group -- only after
checking in ``/proc`` that this process has the lock file open: pids are reused -- and waits
for the lock, at most :data:`DEL_WAIT` seconds in all; then it deletes from the delegate list
saved before the first delegate ran, as usual. If the lock is still held then: by a live ADD
(its process has the file open) the DEL fails with code 11 and the runtime retries it; by nothing
but a stray process (a delegate's daemonised child, say) the DEL goes on without it, logged, so
a pod can never be stuck in Terminating. The delegates of a DEL and of an ADD's rollback hold
the lock as well but are never killed: a DEL is not interrupted half-way.

Lock files do not leak: each holder unlinks the file before it lets the lock go (whoever locks
checks afterwards that the path still names the file it locked: the usual flock + unlink
protocol), so a file is left only by a holder that was killed, and the next DEL removes it.

The file's content, written with ``pwrite`` and never synced (it matters only while the
processes live): bytes 0-31 ``"<holder pid> <delegate pgid>"`` space-padded, byte 32 ``C`` once
a DEL cancelled the ADD. Cost, medians of 200 calls on ext4 here: ~40 us per ADD (take, one
delegate bracketed, unlink, release), ~30 us per DEL, ~20 us more per delegate started (the
extra dup2 and two pwrites); importing this module ~0.3 ms. (An ``ftruncate`` to clear the file
made ext4 flush it on close: 0.34 ms per ADD; one ``pwrite`` over it does the same job.)
"""

from __future__ import annotations

import fcntl
import posix
import time

from pymultus import errors, fileio, paths
from pymultus.cni.spec import validate_container_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Callable
else:
    import _signal  # not `signal`: it imports `enum` (start-up cost, DESIGN.md)

LOCKS_DIR = "locks"
DEL_WAIT = 10.0  # seconds a DEL waits for a stopped ADD to roll back and let go
# Seconds a DEL lets the ADD's running delegate finish before it SIGKILLs it: a plugin killed
# half-way can leave what no DEL can find (host-local killed between creating a lease file and
# writing the container ID into it leaves an empty lease: seen in 1 of 120 ADD+DEL races).
KILL_GRACE = 2.0
CHILD_FD = 3  # where delegates find the lock (4 when the parent's own fd is 3)
_SLOT = 32  # bytes of "<holder pid> <delegate pgid>"
_CANCELLED = b"C"
_POLL = 0.01


def lock_path(cni_dir: str, container_id: str) -> str:
    validate_container_id(container_id)
    return paths.join(cni_dir, LOCKS_DIR, fileio.bounded_name(container_id))


class ContainerLock:
    """A held container lock; also the ``SpawnGuard`` of ``pymultus.cni.invoke`` for delegates."""

    __slots__ = ("_identity", "container_id", "fd", "killable", "path", "recovered")

    def __init__(self, path: str, fd: int, container_id: str, identity: tuple[int, int]) -> None:
        self.path = path
        self.fd = fd  # -1: not held (a DEL that goes on without it)
        self.container_id = container_id
        self.killable = False  # True while ADD delegates run: a DEL may SIGKILL them
        # The file was left by a holder that was killed (every other holder unlinks it): its
        # interrupted writes may have left temp files (fileio.remove_orphaned_temps).
        self.recovered = fd >= 0 and posix.fstat(fd).st_size > 0
        self._identity = identity

    # -- taking it ---------------------------------------------------------------------------

    @classmethod
    def for_add(cls, cni_dir: str, container_id: str) -> ContainerLock:
        path = lock_path(cni_dir, container_id)
        while True:
            fd = _open(path, cni_dir, create=True)
            if not _try_lock(fd):
                posix.close(fd)
                raise errors.ContainerBusy(
                    f"container {container_id} is being added or deleted by another request; try again later",
                    details=f"lock={path}",
                )
            identity = _identity(fd)
            if _names(path, identity):
                lock = cls(path, fd, container_id, identity)
                # Overwrite a killed holder's leftovers, its cancel mark included (not with
                # ftruncate: ext4 then flushes the file on close, ~0.3 ms on every ADD).
                posix.pwrite(fd, _slot(0) + b" ", 0)
                return lock
            posix.close(fd)  # its holder removed it after we opened it: lock the new file

    @classmethod
    def for_del(
        cls, cni_dir: str, container_id: str, *, log: Callable[[str, str], None], wait: float = DEL_WAIT
    ) -> ContainerLock:
        path = lock_path(cni_dir, container_id)
        now = time.monotonic()
        deadline, kill_after = now + wait, now + min(KILL_GRACE, wait)
        warned = False
        while True:
            fd = _open(path, cni_dir, create=False)
            if fd < 0:
                # A DEL has nothing to write when cniDir is read-only or not a directory: it
                # must still run (and then finds nothing to delete) without a lock.
                return cls(path, -1, container_id, (0, 0))
            identity = _identity(fd)
            while not _try_lock(fd):
                if not warned:
                    log("warning", f"container {container_id} is busy; waiting (stopping its ADD)")
                    warned = True
                _stop_add(fd, identity, kill=time.monotonic() >= kill_after)
                if time.monotonic() >= deadline:
                    holder, _ = _read_slot(fd)
                    posix.close(fd)
                    _give_up(holder, identity, container_id, path, wait)  # unless a stray holds it
                    log(
                        "warning",
                        f"the lock of container {container_id} is held by a leftover process, not "
                        "by a pymultus ADD; deleting without it",
                    )
                    return cls(path, -1, container_id, (0, 0))
                time.sleep(_POLL)
            if _names(path, identity):
                lock = cls(path, fd, container_id, identity)
                posix.pwrite(fd, _slot(0), 0)  # the holder, for a DEL that comes while this one runs
                return lock
            posix.close(fd)  # its holder removed it after we opened it: lock the new file

    # -- the SpawnGuard of pymultus.cni.invoke -------------------------------------------------

    def child_fd(self) -> int:
        return CHILD_FD if self.fd != CHILD_FD else CHILD_FD + 1

    def before_spawn(self) -> None:
        if self.killable:
            self.raise_if_cancelled()

    def spawned(self, pid: int) -> None:
        if self.killable:
            self._write_slot(pid)  # setpgroup=0: the delegate's process group is its pid

    def finished(self) -> None:
        if self.killable:
            self._write_slot(0)

    # -- the ADD's side ------------------------------------------------------------------------

    def cancelled(self) -> bool:
        return self.fd >= 0 and posix.pread(self.fd, 1, _SLOT) == _CANCELLED

    def raise_if_cancelled(self) -> None:
        if self.cancelled():
            raise errors.ContainerBusy(
                f"a DEL of container {self.container_id} arrived while it was being added; "
                "the ADD was stopped and rolled back",
                details=f"lock={self.path}",
            )

    def release(self) -> None:
        """Unlink the file (while still holding it), then let the lock go. Idempotent."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            if _names(self.path, self._identity):
                posix.unlink(self.path)
        except OSError:
            pass  # best effort: the next DEL removes a leftover
        finally:
            posix.close(fd)

    def __del__(self) -> None:
        # A safety net for a caller that drops the lock without release() (e.g. GC's DELs of
        # other containers); CPython runs it as soon as the last reference goes.
        self.release()

    def _write_slot(self, pgid: int) -> None:
        posix.pwrite(self.fd, _slot(pgid), 0)


def _slot(pgid: int) -> bytes:
    return f"{posix.getpid()} {pgid}".ljust(_SLOT).encode("ascii")


def _read_slot(fd: int) -> tuple[int, int]:
    """(holder pid, running ADD delegate's process group), zeros when unknown."""
    fields = posix.pread(fd, _SLOT, 0).split()
    if len(fields) != 2 or not all(field.isdigit() for field in fields):
        return 0, 0
    return int(fields[0]), int(fields[1])


def _stop_add(fd: int, identity: tuple[int, int], *, kill: bool) -> None:
    """Mark the ADD cancelled (it starts no further delegate); with ``kill``, SIGKILL its
    running delegate's process group too."""
    try:
        posix.pwrite(fd, _CANCELLED, _SLOT)
    except OSError:
        pass  # the kill still stops the ADD
    if not kill:
        return
    _, pgid = _read_slot(fd)
    if pgid > 1 and _has_open(pgid, identity):
        try:
            posix.killpg(pgid, _signal.SIGKILL)
        except OSError:
            pass  # already gone


def _give_up(holder: int, identity: tuple[int, int], container_id: str, path: str, wait: float) -> None:
    """After the wait: ContainerBusy when a live pymultus ADD or DEL still holds the lock."""
    if holder == posix.getpid() or (holder > 0 and _has_open(holder, identity)):
        raise errors.ContainerBusy(
            f"an ADD or DEL of container {container_id} (process {holder}) still runs after "
            f"{wait:g} s; try the DEL again later",
            details=f"lock={path}",
        )


def _open(path: str, cni_dir: str, *, create: bool) -> int:
    """The lock file, opened close-on-exec (created if missing); -1 when a DEL cannot open it."""
    flags = posix.O_RDWR | posix.O_CREAT | posix.O_CLOEXEC | posix.O_NOFOLLOW
    try:
        return posix.open(path, flags, 0o600)
    except FileNotFoundError:
        pass  # no locks/ directory yet
    except OSError as exc:
        return _cannot_open(path, cni_dir, exc, create=create)
    try:
        fileio.ensure_private_dir(paths.dirname(path))
        return posix.open(path, flags, 0o600)
    except OSError as exc:
        return _cannot_open(path, cni_dir, exc, create=create)


def _cannot_open(path: str, cni_dir: str, exc: OSError, *, create: bool) -> int:
    if not create:
        return -1
    if paths.exists(cni_dir) and not paths.isdir(cni_dir):
        raise errors.InvalidConfig(f"cniDir {cni_dir} is not a directory", details=f"cniDir={cni_dir}")
    raise errors.IOFailure(f"cannot create the container lock {path}: {exc.strerror}", details=f"path={path}")


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _identity(fd: int) -> tuple[int, int]:
    st = posix.fstat(fd)
    return st.st_dev, st.st_ino


def _names(path: str, identity: tuple[int, int]) -> bool:
    """Whether ``path`` still names the locked file (its holder may have unlinked it)."""
    try:
        st = posix.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == identity


def _has_open(pid: int, identity: tuple[int, int]) -> bool:
    """Whether process ``pid`` has the lock file open (so signalling its group is safe: pids
    are reused, and pid_max is only 32768 on many nodes)."""
    directory = f"/proc/{pid}/fd"
    try:
        names = posix.listdir(directory)
    except OSError:
        return False
    for name in names:
        try:
            st = posix.stat(f"{directory}/{name}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == identity:
            return True
    return False
