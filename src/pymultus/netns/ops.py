"""Checks on a pod's network namespace, and the ``NetnsOps`` port on the local kernel.

* :func:`netns_exists`, :func:`pod_netns_problem`: by the nsfs file's identity (``NS_GET_NSTYPE``,
  device and inode), without entering anything.
* ``interface_exists``: asked from the caller's own namespace over rtnetlink — the pod's namespace
  is named by the ID the caller's namespace gives it (``RTM_GETNSID``/``RTM_NEWNSID`` on the open
  namespace file), and ``RTM_GETLINK`` with ``IFLA_TARGET_NETNSID`` looks the name up there
  (Linux >= 4.20). No thread, no ``setns``, no ``_ctypes`` (~1 ms to load) on a plain ADD; a kernel
  that refuses those requests gets the old way: a thread that joins the namespace
  (:mod:`pymultus.netns.enter`) and asks for the index of the name.
* ``replace_default_routes``: :mod:`pymultus.netns.routes`, which works inside the namespace.

Errors: a missing namespace path, a path that is not a network namespace and any netlink error
are :class:`~pymultus.errors.IOFailure` (code 5) with the path, interface and errno name in the
message and ``details``; the caller decides whether e.g. a missing namespace is fine (DEL) by
asking :func:`netns_exists` first.
"""

from __future__ import annotations

import errno as _errno
import posix

from pymultus import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

CLONE_NEWNET = 0x40000000
_NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux >= 4.11
# What a kernel without namespace IDs for RTM_GETLINK answers (then: enter the namespace).
_UNSUPPORTED = (_errno.EINVAL, _errno.EOPNOTSUPP, _errno.EPROTONOSUPPORT, _errno.EAFNOSUPPORT)


class Netns:
    """The ``NetnsOps`` port (``pymultus.attach.ports``) on the local kernel."""

    __slots__ = ()

    def netns_exists(self, path: str) -> bool:
        return netns_exists(path)

    def pod_netns_problem(self, path: str) -> str:
        return pod_netns_problem(path)

    def interface_exists(self, netns: str, ifname: str) -> bool:
        """Whether ``ifname`` exists in the namespace at ``netns`` (IOFailure if that is missing)."""
        if not plausible_ifname(ifname):
            return False
        from pymultus.netns.rtnetlink import Rtnetlink

        fd = open_netns(netns)
        try:
            with Rtnetlink() as nl:
                return nl.link_exists(ifname, nsid=nl.peer_nsid(fd))
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise os_failure(
                    f"cannot look up interface {ifname} in network namespace {netns}",
                    exc,
                    f"netns={netns} ifname={ifname}",
                ) from None
        finally:
            posix.close(fd)
        # An older kernel, or not a network namespace (entering it tells which, with its error).
        from pymultus.netns.enter import in_netns

        def look_up() -> bool:
            with Rtnetlink() as nl:
                return nl.link_exists(ifname)

        return in_netns(netns, look_up)

    def replace_default_routes(
        self, netns: str, ifname: str, *, remove_families: Sequence[int], gateways: Sequence[str]
    ) -> None:
        from pymultus.netns.routes import replace_default_routes

        replace_default_routes(netns, ifname, remove_families=remove_families, gateways=gateways)


def netns_exists(path: str) -> bool:
    """Whether ``path`` is a network namespace (a missing path, or a leftover plain file after the
    runtime unmounted the namespace, is not)."""
    return _netns_identity(path) is not None


def pod_netns_problem(path: str) -> str:
    """Why ``path`` cannot be a pod's network namespace ("is not a network namespace", "is the
    network namespace multus itself runs in ..."), or "" when it can.

    The caller's own namespace (``CNI_NETNS=/proc/self/ns/net``, or any path to the host's when
    the thin plugin or the hostNetwork daemon runs there) is refused: the delegates would
    configure the host itself. Compared by the nsfs device and inode, as ``ip netns identify``.
    """
    identity = _netns_identity(path)
    if identity is None:
        return "is not a network namespace"
    own = posix.stat("/proc/self/ns/net")
    if identity == (own.st_dev, own.st_ino):
        return "is the network namespace multus itself runs in (the host's), not a pod's"
    return ""


def _netns_identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the network namespace at ``path``, None when it is not one."""
    import fcntl

    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        if fcntl.ioctl(fd, _NS_GET_NSTYPE) != CLONE_NEWNET:
            return None
        st = posix.fstat(fd)
        return st.st_dev, st.st_ino
    except OSError:
        return None
    finally:
        posix.close(fd)


def open_netns(path: str) -> int:
    """A file descriptor (close-on-exec) of the namespace file at ``path``; IOFailure naming it."""
    try:
        return posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == _errno.ENOENT:
            raise errors.IOFailure(
                f"network namespace {path} does not exist", details=f"netns={path} errno=ENOENT"
            ) from None
        raise os_failure(f"cannot open network namespace {path}", exc, f"netns={path}") from None


def plausible_ifname(ifname: str) -> bool:
    """Whether ``ifname`` can be a Linux interface name at all (1-15 bytes, no NUL or slash)."""
    return (
        0 < len(ifname.encode("utf-8", "surrogateescape")) <= 15
        and "\x00" not in ifname
        and "/" not in ifname
    )


def os_failure(what: str, exc: OSError, details: str, *, hint: str = "") -> errors.IOFailure:
    """An IOFailure for ``exc``: ``what``, the errno's text and name; ``details`` + errno name."""
    code = exc.errno or 0
    name = _errno.errorcode.get(code, str(code))
    return errors.IOFailure(
        f"{what}: {posix.strerror(code)} ({name}){hint}", details=f"{details} errno={name}"
    )
