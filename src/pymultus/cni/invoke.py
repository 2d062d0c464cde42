"""Running one CNI plugin: find it on the search path, exec it, collect its answer.

``posix.posix_spawn`` (vfork + exec in the C library) instead of ``subprocess``: importing
``subprocess`` costs ~10 ms of start-up on the hot path, and spawning is cheaper too. The plugin
runs in its own process group so a timeout kills everything it started. Pipes are created
close-on-exec, so concurrent spawns from other threads never inherit them (the daemon runs this
from many threads); every fd is closed and the child reaped on every path.
"""

from __future__ import annotations

import errno
import posix
import select
import time

from pymultus import errors, jsonio, paths
from pymultus.errors import INTERNAL, error_from_cni

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Mapping, Sequence
    from typing import Protocol

    class SpawnGuard(Protocol):
        """Watches the plugins of one request (``PluginExecutor.guarded``)."""

        @property
        def fd(self) -> int: ...  # handed to each plugin; -1: none

        def child_fd(self) -> int: ...

        def before_spawn(self) -> None: ...  # may raise: the plugin is then not started

        def spawned(self, pid: int) -> None: ...

        def finished(self) -> None: ...
else:
    # `_signal`, not `signal`: the public module imports `enum` (start-up cost, see DESIGN.md).
    import _signal

CHROOT_BIN = "/usr/sbin/chroot"
DEFAULT_TIMEOUT = 60.0
_READ_SIZE = 65536
_DETAIL_LIMIT = 4000  # characters of stderr/stdout kept in an error's details
_SPAWN_RETRIES = 5  # ETXTBSY: the binary is still open for writing (libcni retries too)
# The child must not inherit Python's SIG_IGN for SIGPIPE/SIGXFSZ (subprocess resets them too).
_RESET_SIGNALS = (_signal.SIGPIPE, _signal.SIGXFSZ)
_POLLIN = select.POLLIN | select.POLLPRI
_POLLDONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


def find_plugin(plugin_type: str, search_path: Sequence[str], *, root: str | None = None) -> str:
    """The executable for ``plugin_type`` in the first directory of ``search_path`` that has it.

    ``root``: the plugins run chroot'ed there (the thick daemon's ``chrootDir``), so a plugin that
    is a symlink (``/opt/cni/bin/bridge -> /usr/lib/cni/bridge``) is followed inside that root;
    the daemon's own container has no ``/usr/lib/cni``."""
    if not plugin_type or "/" in plugin_type or plugin_type.startswith(".") or "\0" in plugin_type:
        raise errors.PluginNotFound(f"plugin type {plugin_type!r} is not a valid plugin name")
    for directory in search_path:
        if not directory:
            continue
        candidate = paths.join(directory, plugin_type)
        if paths.isfile(candidate) and posix.access(candidate, posix.X_OK):
            return candidate
        if root is not None and _runs_in_root(candidate, root):
            return candidate
    raise errors.PluginNotFound(
        f"plugin {plugin_type!r} was not found in the CNI plugin path",
        details=f"searched: {':'.join(search_path) or '(empty)'}",
    )


def _runs_in_root(candidate: str, root: str) -> bool:
    """Whether ``candidate`` is a symlink that leads to an executable file inside ``root``
    (absolute targets taken relative to ``root``; at most 8 links, like a short libc chain)."""
    path = candidate
    for _ in range(8):
        try:
            target = posix.readlink(path)
        except OSError:
            return False  # not a link (or gone): the plain check above already said no
        if target.startswith("/"):
            path = paths.join(root, target.lstrip("/"))
        else:
            path = paths.join(paths.dirname(path), target)
        if not paths.islink(path):
            return paths.isfile(path) and posix.access(path, posix.X_OK)
    return False


class PluginOutput:
    """What a finished plugin left behind (``run_raw``)."""

    __slots__ = ("status", "stderr", "stdout")

    def __init__(self, status: int, stdout: bytes, stderr: bytes) -> None:
        self.status = status  # exit code, or -signal when killed by a signal
        self.stdout = stdout
        self.stderr = stderr


class PluginExecutor:
    """Runs plugins as child processes; stateless and safe to share between threads.

    ``guarded(guard)`` gives a copy for one request whose plugins are watched by ``guard`` (the
    container lock of ``pymultus.store.locks``): each child gets ``guard.fd`` as
    ``guard.child_fd()``, so the lock stays held while the plugin lives, even after this process
    was killed; ``before_spawn`` may refuse to start it; ``spawned(pid)`` and ``finished()``
    bracket its run.
    """

    __slots__ = ("_base_env", "chroot", "guard", "timeout")

    def __init__(
        self, *, base_env: Mapping[str, str], timeout: float = DEFAULT_TIMEOUT, chroot: str | None = None
    ) -> None:
        self._base_env = dict(base_env)
        self.timeout = timeout
        self.chroot = chroot
        self.guard: SpawnGuard | None = None

    def guarded(self, guard: SpawnGuard) -> PluginExecutor:
        """A copy of this executor (of its class: the daemon's subclass times plugins) whose
        plugins are watched by ``guard``."""
        clone = object.__new__(type(self))
        for slot in PluginExecutor.__slots__:
            setattr(clone, slot, getattr(self, slot))
        if hasattr(self, "__dict__"):  # a subclass's own attributes
            clone.__dict__.update(self.__dict__)
        clone.guard = guard
        return clone

    def run(self, path: str, env: Mapping[str, str], stdin: bytes, *, timeout: float | None = None) -> bytes:
        """Run the plugin at ``path``; its stdout on success, else its CNI error as DelegateFailed."""
        output = self.run_raw(path, env, stdin, timeout=timeout)
        if output.status == 0:
            return output.stdout
        raise _failure(paths.basename(path), output)

    def run_raw(
        self, path: str, env: Mapping[str, str], stdin: bytes, *, timeout: float | None = None
    ) -> PluginOutput:
        """Run the plugin and return its exit status and output; only spawning and timeouts raise."""
        limit = self.timeout if timeout is None else timeout
        full_env = dict(self._base_env)
        full_env.update(env)
        argv = [path] if self.chroot is None else [CHROOT_BIN, self.chroot, path]
        guard = self.guard
        inherit: tuple[int, int] | None = None
        if guard is not None:
            guard.before_spawn()
            if guard.fd >= 0:
                inherit = (guard.fd, guard.child_fd())
        in_r, in_w = posix.pipe()
        out_r, out_w = posix.pipe()
        err_r, err_w = posix.pipe()
        try:
            pid = _spawn(
                argv,
                full_env,
                stdin=in_r,
                stdout=out_w,
                stderr=err_w,
                name=paths.basename(path),
                inherit=inherit,
            )
        except BaseException:
            for fd in (in_w, out_r, err_r):
                posix.close(fd)
            raise
        finally:
            # The child has its own copies; ours would keep the pipes from reaching EOF.
            for fd in (in_r, out_w, err_w):
                posix.close(fd)
        if guard is None:
            return _communicate(
                pid, in_w=in_w, out_r=out_r, err_r=err_r, data=stdin, limit=limit, name=paths.basename(path)
            )
        try:
            guard.spawned(pid)
            return _communicate(
                pid, in_w=in_w, out_r=out_r, err_r=err_r, data=stdin, limit=limit, name=paths.basename(path)
            )
        finally:
            guard.finished()


def _spawn(
    argv: list[str],
    env: dict[str, str],
    *,
    stdin: int,
    stdout: int,
    stderr: int,
    name: str,
    inherit: tuple[int, int] | None = None,
) -> int:
    actions = [
        (posix.POSIX_SPAWN_DUP2, stdin, 0),
        (posix.POSIX_SPAWN_DUP2, stdout, 1),
        (posix.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    if inherit is not None:
        # dup2 in the child only: the parent's fd stays close-on-exec, so the plugins other
        # threads start at the same time never get it.
        actions.append((posix.POSIX_SPAWN_DUP2, inherit[0], inherit[1]))

    delay = 0.02
    for attempt in range(_SPAWN_RETRIES + 1):
        try:
            return posix.posix_spawn(
                argv[0],
                argv,
                env,
                file_actions=actions,
                setpgroup=0,
                setsigdef=_RESET_SIGNALS,
                setsigmask=(),
            )
        except OSError as exc:
            if exc.errno == errno.ETXTBSY and attempt < _SPAWN_RETRIES:
                time.sleep(delay)
                delay *= 2
                continue
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise errors.PluginNotFound(f"plugin {name!r} does not exist at {argv[0]}") from exc
            if exc.errno == errno.EACCES:
                raise errors.PluginNotFound(f"plugin {name!r} at {argv[0]} is not executable") from exc
            raise errors.IOFailure(
                f"cannot execute plugin {name!r}: {exc.strerror}", details=argv[0]
            ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _pidfd(pid: int) -> int | None:
    try:
        return posix.pidfd_open(pid)
    except (AttributeError, OSError):
        return None  # kernels before 5.3: fall back to polling waitpid


def _communicate(
    pid: int, *, in_w: int, out_r: int, err_r: int, data: bytes, limit: float, name: str
) -> PluginOutput:
    deadline = time.monotonic() + limit
    pidfd = _pidfd(pid)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    open_fds = {out_r, err_r}
    view = memoryview(data)
    poller = select.poll()
    for fd in (out_r, err_r):
        posix.set_blocking(fd, False)
        poller.register(fd, _POLLIN)
    if view:
        posix.set_blocking(in_w, False)
        poller.register(in_w, select.POLLOUT)
    else:
        posix.close(in_w)
        in_w = -1
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    status: int | None = None
    try:
        while open_fds or in_w >= 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                status = _kill(pid)
                raise errors.DelegateTimeout(
                    f"plugin {name!r} did not finish within {limit:g} s and was killed",
                    details=_excerpt(b"".join(chunks[err_r])),
                )
            exited = False
            for fd, events in poller.poll(remaining * 1000.0):
                if fd == in_w:
                    try:
                        written = posix.write(in_w, view[:_READ_SIZE])
                        view = view[written:]
                    except (BrokenPipeError, OSError):
                        view = view[:0]  # the plugin stopped reading; its exit status tells why
                    if not view or events & _POLLDONE:
                        poller.unregister(in_w)
                        posix.close(in_w)
                        in_w = -1
                elif fd == pidfd:
                    exited = True
                elif fd in open_fds:
                    _drain(fd, chunks[fd], open_fds, poller)
            if exited:
                # All the plugin wrote is in the pipes now; a background child that inherited
                # them must not keep us waiting, so read what is there and stop.
                for fd in list(open_fds):
                    _drain(fd, chunks[fd], open_fds, poller)
                break
        reaped = _wait(pid, deadline, pidfd)
        if reaped is None:
            status = _kill(pid)
            raise errors.DelegateTimeout(
                f"plugin {name!r} did not finish within {limit:g} s and was killed",
                details=_excerpt(b"".join(chunks[err_r])),
            )
        status = reaped
    finally:
        if status is None:
            _kill(pid)  # an unexpected error: never leave a child or a zombie behind
        for fd in (*open_fds, in_w, -1 if pidfd is None else pidfd):
            if fd >= 0:
                posix.close(fd)
    return PluginOutput(status, b"".join(chunks[out_r]), b"".join(chunks[err_r]))


def _drain(fd: int, sink: list[bytes], open_fds: set[int], poller: select.poll) -> None:
    while True:
        try:
            chunk = posix.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        if not chunk:
            poller.unregister(fd)
            open_fds.discard(fd)
            posix.close(fd)
            return
        sink.append(chunk)


def _wait(pid: int, deadline: float, pidfd: int | None) -> int | None:
    """Reap the plugin once its pipes are closed; None when the deadline passes first."""
    delay = 0.0005
    while True:
        done, raw = posix.waitpid(pid, posix.WNOHANG)
        if done:
            return posix.waitstatus_to_exitcode(raw)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        if pidfd is not None:
            select.select([pidfd], [], [], remaining)
        else:
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)


def _kill(pid: int) -> int:
    """SIGKILL the plugin's whole process group and reap the plugin."""
    try:  # not contextlib.suppress: contextlib costs start-up time
        posix.killpg(pid, _signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        _, raw = posix.waitpid(pid, 0)
    except ChildProcessError:
        return -int(_signal.SIGKILL)
    return posix.waitstatus_to_exitcode(raw)


def _excerpt(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    if len(text) > _DETAIL_LIMIT:
        text = text[:_DETAIL_LIMIT] + "..."
    return text


def _failure(name: str, output: PluginOutput) -> errors.DelegateFailed:
    """The plugin's own CNI error (its code preserved), with its stderr in ``details``."""
    stderr = _excerpt(output.stderr)
    if output.status < 0:
        error = errors.DelegateFailed(
            f"plugin {name!r} was killed by signal {-output.status}", code=INTERNAL, delegate=name
        )
    else:
        try:
            answer: object = jsonio.loads(output.stdout, what=f"output of plugin {name!r}")
        except errors.JSONDecodeError:
            answer = None
        fallback = f"plugin {name!r} failed with exit status {output.status}"
        error = error_from_cni(answer, fallback_msg=fallback, delegate=name)
        if answer is None and output.stdout.strip():
            stderr = (stderr + "; " if stderr else "") + "stdout: " + _excerpt(output.stdout)
    if stderr:
        error.details = f"{error.details}; stderr: {stderr}" if error.details else f"stderr: {stderr}"
    return error
