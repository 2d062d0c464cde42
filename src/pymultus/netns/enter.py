"""Running a piece of work inside a pod's network namespace, in a throw-away thread.

Python 3.11 has no ``posix.setns``, so a short-lived thread calls libc ``setns(fd, CLONE_NEWNET)``
and does the work there. ``setns`` of a network namespace changes only the calling thread, and
the thread ends right after, so the caller's threads never run in the pod's namespace. libc is
reached through the bare ``_ctypes`` extension (~1 ms to load: used only where the work must
run inside, i.e. route edits; ``ctypes`` itself adds its Python layer for nothing) and the thread
through ``_thread`` (``threading`` costs ~5 ms of import).
"""

from __future__ import annotations

import errno as _errno
import posix

from pymultus import errors
from pymultus.netns.ops import open_netns, os_failure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    _T = TypeVar("_T")

CLONE_NEWNET = 0x40000000


class _Outcome:
    __slots__ = ("error", "value")

    def __init__(self) -> None:
        self.value: object = None
        self.error: BaseException | None = None


_setns_fn: Callable[[int, int], int] | None = None


def _setns() -> Callable[[int, int], int]:
    """libc ``setns`` with errno capture, built on the bare ``_ctypes`` module."""
    global _setns_fn  # noqa: PLW0603 - resolved once per process, then reused
    if _setns_fn is None:
        import _ctypes

        class _CInt(_ctypes._SimpleCData):  # type: ignore[type-arg]
            _type_ = "i"

        class _LibcFunc(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = _CInt

        handle = _ctypes.dlopen(None, posix.RTLD_NOW)  # type: ignore[arg-type]  # None = the process itself
        func = _LibcFunc(_ctypes.dlsym(handle, "setns"))
        get_errno = _ctypes.get_errno

        def setns(fd: int, nstype: int) -> int:
            return 0 if func(fd, nstype) == 0 else int(get_errno()) or _errno.EINVAL

        _setns_fn = setns
    return _setns_fn


def in_netns(path: str, work: Callable[[], _T]) -> _T:
    """Run ``work`` in a new thread that has joined the network namespace at ``path``."""
    import _thread

    fd = open_netns(path)
    try:
        setns = _setns()
        outcome = _Outcome()
        done = _thread.allocate_lock()
        done.acquire()

        def thread_main() -> None:
            try:
                err = setns(fd, CLONE_NEWNET)
                if err:
                    if err == _errno.EINVAL:
                        outcome.error = errors.IOFailure(
                            f"{path} is not a network namespace", details=f"netns={path} errno=EINVAL"
                        )
                    else:
                        outcome.error = os_failure(
                            f"cannot enter network namespace {path}",
                            OSError(err, posix.strerror(err)),
                            f"netns={path}",
                        )
                    return
                outcome.value = work()
            except BaseException as exc:  # handed to the caller's thread below
                outcome.error = exc
            finally:
                done.release()

        _thread.start_new_thread(thread_main, ())
        done.acquire()
    finally:
        posix.close(fd)
    if outcome.error is not None:
        raise outcome.error
    return outcome.value  # type: ignore[return-value]
