"""Operations inside a pod's network namespace: does an interface exist, replace default routes.

How we get into the namespace: Python 3.11 has no ``os.setns``, so a short-lived thread calls
libc ``setns(fd, CLONE_NEWNET)`` and does the work there. ``setns`` of a network namespace
changes only the calling thread, and the thread ends right after, so the caller's threads never
run in the pod's namespace. libc is reached through the bare ``_ctypes`` extension (well under a
millisecond warm; ``ctypes`` itself adds its Python layer for nothing) and the thread through
``_thread`` (``threading`` costs ~5 ms of import).

Routes are edited with raw rtnetlink messages built with ``struct`` over an ``AF_NETLINK``
socket created inside that thread (a netlink socket belongs to the namespace it was created in).
pyroute2 takes ~210 ms to import, longer than the whole ADD budget, for four message types.

Route semantics (reference §4.6, Multus ``DeleteDefaultGW``/``RouteAdd``):

* removing deletes every default route (destination length 0) of the given families whose
  output interface is ``ifname``, in the main table, whatever its gateway, metric or protocol;
* adding creates ``default via <gw> dev <ifname>`` in the main table for each gateway; an
  identical existing route (``EEXIST``) is fine, so the call is idempotent.

Errors: a missing namespace path, a path that is not a network namespace, a missing interface
(for route edits) and any netlink error are :class:`~pymultus.errors.IOFailure` (code 5) with the
path, interface and errno name in the message and ``details``; the caller decides whether e.g. a
missing namespace is fine (DEL) by asking :func:`netns_exists` first. A malformed gateway is
:class:`~pymultus.errors.InvalidConfig` (code 7).
"""

from __future__ import annotations

import errno as _errno
import os

from pymultus.errors import InvalidConfig, IOFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeVar

    _T = TypeVar("_T")

CLONE_NEWNET = 0x40000000
_NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux >= 4.11

# rtnetlink constants (linux/netlink.h, linux/rtnetlink.h)
_NETLINK_ROUTE = 0
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLM_F_REQUEST = 0x1
_NLM_F_MULTI = 0x2
_NLM_F_ACK = 0x4
_NLM_F_DUMP = 0x300
_NLM_F_EXCL = 0x200
_NLM_F_CREATE = 0x400
_RTM_NEWROUTE = 24
_RTM_DELROUTE = 25
_RTM_GETROUTE = 26
_RTA_DST = 1
_RTA_OIF = 4
_RTA_GATEWAY = 5
_RTA_PRIORITY = 6
_RTA_TABLE = 15
_RT_TABLE_MAIN = 254
_RTPROT_BOOT = 3
_RT_SCOPE_UNIVERSE = 0
_RT_SCOPE_NOWHERE = 255
_RTN_UNICAST = 1
_AF_INET = 2
_AF_INET6 = 10
_FAMILIES = {4: _AF_INET, 6: _AF_INET6}


class Netns:
    """The ``NetnsOps`` port (``pymultus.attach.ports``) on the local kernel."""

    __slots__ = ()

    def netns_exists(self, path: str) -> bool:
        return netns_exists(path)

    def pod_netns_problem(self, path: str) -> str:
        return pod_netns_problem(path)

    def interface_exists(self, netns: str, ifname: str) -> bool:
        """Whether ``ifname`` exists in the namespace at ``netns`` (IOFailure if that is missing)."""
        if not _plausible_ifname(ifname):
            return False
        return _in_netns(netns, lambda: _ifindex(ifname) is not None)

    def replace_default_routes(
        self, netns: str, ifname: str, *, remove_families: Sequence[int], gateways: Sequence[str]
    ) -> None:
        """Delete the default routes of ``remove_families`` (4, 6) on ``ifname``, then add a
        default route via each of ``gateways`` on ``ifname`` (an identical existing one is fine)."""
        families = []
        for family in remove_families:
            if family not in _FAMILIES:
                raise InvalidConfig(f"unknown IP family {family!r} (expected 4 or 6)")
            families.append(_FAMILIES[family])
        packed = [_pack_gateway(gw) for gw in gateways]
        if not families and not packed:
            return
        if not _plausible_ifname(ifname):
            raise IOFailure(f"interface {ifname!r} not found in network namespace {netns}")

        def edit() -> None:
            index = _ifindex(ifname)
            if index is None:
                raise IOFailure(
                    f"interface {ifname} not found in network namespace {netns}",
                    details=f"netns={netns} ifname={ifname} errno=ENODEV",
                )
            with _Netlink() as nl:
                for family in families:
                    for route in nl.default_routes(family, index):
                        nl.delete_route(route, netns=netns, ifname=ifname)
                for gw, (family, raw) in zip(gateways, packed, strict=True):
                    nl.add_default_route(family, raw, index, netns=netns, ifname=ifname, gateway=gw)

        _in_netns(netns, edit)


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
    own = os.stat("/proc/self/ns/net")
    if identity == (own.st_dev, own.st_ino):
        return "is the network namespace multus itself runs in (the host's), not a pod's"
    return ""


def _netns_identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the network namespace at ``path``, None when it is not one."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if fcntl.ioctl(fd, _NS_GET_NSTYPE) != CLONE_NEWNET:
            return None
        st = os.fstat(fd)
        return st.st_dev, st.st_ino
    except OSError:
        return None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Entering a namespace in a throw-away thread


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

        handle = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]  # None = the process itself
        func = _LibcFunc(_ctypes.dlsym(handle, "setns"))
        get_errno = _ctypes.get_errno

        def setns(fd: int, nstype: int) -> int:
            return 0 if func(fd, nstype) == 0 else int(get_errno()) or _errno.EINVAL

        _setns_fn = setns
    return _setns_fn


def _in_netns(path: str, work: Callable[[], _T]) -> _T:
    """Run ``work`` in a new thread that has joined the network namespace at ``path``."""
    import _thread

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == _errno.ENOENT:
            raise IOFailure(
                f"network namespace {path} does not exist", details=f"netns={path} errno=ENOENT"
            ) from None
        raise _os_failure(f"cannot open network namespace {path}", exc, f"netns={path}") from None
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
                        outcome.error = IOFailure(
                            f"{path} is not a network namespace", details=f"netns={path} errno=EINVAL"
                        )
                    else:
                        outcome.error = _os_failure(
                            f"cannot enter network namespace {path}",
                            OSError(err, os.strerror(err)),
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
        os.close(fd)
    if outcome.error is not None:
        raise outcome.error
    return outcome.value  # type: ignore[return-value]


def _ifindex(ifname: str) -> int | None:
    import _socket

    try:
        return int(_socket.if_nametoindex(ifname))
    except OSError:
        return None


def _plausible_ifname(ifname: str) -> bool:
    return (
        0 < len(ifname.encode("utf-8", "surrogateescape")) <= 15
        and "\x00" not in ifname
        and "/" not in ifname
    )


def _pack_gateway(gateway: str) -> tuple[int, bytes]:
    import _socket

    family = _AF_INET6 if ":" in gateway else _AF_INET
    try:
        return family, _socket.inet_pton(family, gateway)
    except (OSError, ValueError):
        raise InvalidConfig(f"default-route gateway {gateway!r} is not an IP address") from None


def _os_failure(what: str, exc: OSError, details: str, *, hint: str = "") -> IOFailure:
    code = exc.errno or 0
    name = _errno.errorcode.get(code, str(code))
    return IOFailure(f"{what}: {os.strerror(code)} ({name}){hint}", details=f"{details} errno={name}")


# --------------------------------------------------------------------------------------------
# rtnetlink


class _Route:
    __slots__ = ("family", "gateway", "oif", "priority", "table", "tos")

    def __init__(self, family: int, tos: int, table: int) -> None:
        self.family = family
        self.tos = tos
        self.table = table
        self.oif = 0
        self.gateway: bytes | None = None
        self.priority: int | None = None


class _Netlink:
    """A NETLINK_ROUTE socket in the current thread's network namespace."""

    def __init__(self) -> None:
        import _socket
        import struct

        self._struct = struct
        self._sock = _socket.socket(
            _socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, _NETLINK_ROUTE
        )
        self._sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> _Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    # -- messages -----------------------------------------------------------------------------

    def _send(self, msg_type: int, flags: int, body: bytes) -> int:
        self._seq += 1
        header = self._struct.pack("=IHHII", 16 + len(body), msg_type, flags, self._seq, 0)
        self._sock.sendall(header + body)
        return self._seq

    def _replies(self, seq: int) -> list[tuple[int, bytes]]:
        """Messages answering ``seq`` until DONE (dump) or the ACK/error; raises OSError on error."""
        out: list[tuple[int, bytes]] = []
        unpack_from = self._struct.unpack_from
        while True:
            data = self._sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, msg_type, flags, msg_seq, _pid = unpack_from("=IHHII", data, offset)
                if length < 16:
                    raise OSError(_errno.EBADMSG, "malformed netlink message")
                payload = data[offset + 16 : offset + length]
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue
                if msg_type == _NLMSG_DONE:
                    return out
                if msg_type == _NLMSG_ERROR:
                    (error,) = unpack_from("=i", payload, 0)
                    if error:
                        raise OSError(-error, os.strerror(-error))
                    return out
                out.append((msg_type, payload))
                if not flags & _NLM_F_MULTI:
                    return out

    def _route_body(
        self, family: int, tos: int, table: int, *, protocol: int, scope: int, rtype: int
    ) -> bytes:
        return self._struct.pack(
            "=BBBBBBBBI", family, 0, 0, tos, table & 0xFF if table < 256 else 252, protocol, scope, rtype, 0
        )

    def _attr(self, attr_type: int, value: bytes) -> bytes:
        length = 4 + len(value)
        return self._struct.pack("=HH", length, attr_type) + value + b"\0" * (((length + 3) & ~3) - length)

    # -- operations ---------------------------------------------------------------------------

    def default_routes(self, family: int, ifindex: int) -> list[_Route]:
        body = self._struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0)
        try:
            replies = self._replies(self._send(_RTM_GETROUTE, _NLM_F_REQUEST | _NLM_F_DUMP, body))
        except OSError as exc:
            raise _os_failure("cannot list routes", exc, f"family={family}") from None
        unpack_from = self._struct.unpack_from
        routes: list[_Route] = []
        for msg_type, payload in replies:
            if msg_type != _RTM_NEWROUTE or len(payload) < 12:
                continue
            rt_family, dst_len, _src_len, tos, table, _proto, _scope, rtype, _flags = unpack_from(
                "=BBBBBBBBI", payload, 0
            )
            if rt_family != family or dst_len != 0 or rtype != _RTN_UNICAST:
                continue
            route = _Route(family, tos, table)
            offset = 12
            while offset + 4 <= len(payload):
                attr_len, attr_type = unpack_from("=HH", payload, offset)
                if attr_len < 4:
                    break
                value = payload[offset + 4 : offset + attr_len]
                attr_type &= 0x3FFF  # strip NLA_F_NESTED / NLA_F_NET_BYTEORDER
                if attr_type == _RTA_TABLE and len(value) >= 4:
                    route.table = unpack_from("=I", value, 0)[0]
                elif attr_type == _RTA_OIF and len(value) >= 4:
                    route.oif = unpack_from("=I", value, 0)[0]
                elif attr_type == _RTA_GATEWAY:
                    route.gateway = bytes(value)
                elif attr_type == _RTA_PRIORITY and len(value) >= 4:
                    route.priority = unpack_from("=I", value, 0)[0]
                offset += (attr_len + 3) & ~3
            if route.table == _RT_TABLE_MAIN and route.oif == ifindex:
                routes.append(route)
        return routes

    def delete_route(self, route: _Route, *, netns: str, ifname: str) -> None:
        body = self._route_body(
            route.family, route.tos, route.table, protocol=0, scope=_RT_SCOPE_NOWHERE, rtype=0
        )
        body += self._attr(_RTA_TABLE, self._struct.pack("=I", route.table))
        body += self._attr(_RTA_OIF, self._struct.pack("=I", route.oif))
        if route.gateway is not None:
            body += self._attr(_RTA_GATEWAY, route.gateway)
        if route.priority is not None:
            body += self._attr(_RTA_PRIORITY, self._struct.pack("=I", route.priority))
        try:
            self._replies(self._send(_RTM_DELROUTE, _NLM_F_REQUEST | _NLM_F_ACK, body))
        except OSError as exc:
            if exc.errno == _errno.ESRCH:
                return  # already gone (e.g. removed with its address meanwhile)
            raise _os_failure(
                f"cannot delete a default route of {ifname} in network namespace {netns}",
                exc,
                f"netns={netns} ifname={ifname}",
            ) from None

    def add_default_route(
        self, family: int, packed: bytes, ifindex: int, *, netns: str, ifname: str, gateway: str
    ) -> None:
        body = self._route_body(
            family, 0, _RT_TABLE_MAIN, protocol=_RTPROT_BOOT, scope=_RT_SCOPE_UNIVERSE, rtype=_RTN_UNICAST
        )
        body += self._attr(_RTA_GATEWAY, packed)
        body += self._attr(_RTA_OIF, self._struct.pack("=I", ifindex))
        flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL
        try:
            self._replies(self._send(_RTM_NEWROUTE, flags, body))
        except OSError as exc:
            if exc.errno == _errno.EEXIST:
                return
            hint = (
                " (is the gateway in a subnet of that interface?)" if exc.errno == _errno.ENETUNREACH else ""
            )
            raise _os_failure(
                f"cannot add a default route via {gateway} on {ifname} in network namespace {netns}{hint}",
                exc,
                f"netns={netns} ifname={ifname} gateway={gateway}",
            ) from None
