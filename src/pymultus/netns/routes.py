"""Default-route edits inside a pod's network namespace (reference §4.6, Multus
``DeleteDefaultGW``/``RouteAdd``), over rtnetlink from a thread that joined the namespace.

* removing deletes every default route (destination length 0) of the given families whose
  output interface is ``ifname``, in the main table, whatever its gateway, metric or protocol;
* adding creates ``default via <gw> dev <ifname>`` in the main table for each gateway; an
  identical existing route (``EEXIST``) is fine, so the call is idempotent.

Errors: a missing interface and any netlink error are :class:`~pymultus.errors.IOFailure` (code
5) with the path, interface and errno name in the message and ``details``; a malformed gateway or
family is :class:`~pymultus.errors.InvalidConfig` (code 7), raised before the namespace is entered.
"""

from __future__ import annotations

import _struct as struct  # the built-in behind ``struct``: no stdlib file to find and load
import errno as _errno

from pymultus import errors
from pymultus.netns.enter import in_netns
from pymultus.netns.ops import os_failure, plausible_ifname
from pymultus.netns.rtnetlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    Rtnetlink,
    attr,
    attrs,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_RTM_NEWROUTE = 24
_RTM_DELROUTE = 25
_RTM_GETROUTE = 26
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


def replace_default_routes(
    netns: str, ifname: str, *, remove_families: Sequence[int], gateways: Sequence[str]
) -> None:
    """Delete the default routes of ``remove_families`` (4, 6) on ``ifname``, then add a default
    route via each of ``gateways`` on ``ifname`` (an identical existing one is fine)."""
    families = []
    for family in remove_families:
        if family not in _FAMILIES:
            raise errors.InvalidConfig(f"unknown IP family {family!r} (expected 4 or 6)")
        families.append(_FAMILIES[family])
    packed = [_pack_gateway(gw) for gw in gateways]
    if not families and not packed:
        return
    if not plausible_ifname(ifname):
        raise errors.IOFailure(f"interface {ifname!r} not found in network namespace {netns}")

    def edit() -> None:
        index = _ifindex(ifname)
        if index is None:
            raise errors.IOFailure(
                f"interface {ifname} not found in network namespace {netns}",
                details=f"netns={netns} ifname={ifname} errno=ENODEV",
            )
        with Rtnetlink() as nl:
            for family in families:
                for route in _default_routes(nl, family, index):
                    _delete_route(nl, route, netns=netns, ifname=ifname)
            for gw, (family, raw) in zip(gateways, packed, strict=True):
                _add_default_route(nl, family, raw, index, netns=netns, ifname=ifname, gateway=gw)

    in_netns(netns, edit)


def _ifindex(ifname: str) -> int | None:
    import _socket

    try:
        return int(_socket.if_nametoindex(ifname))
    except OSError:
        return None


def _pack_gateway(gateway: str) -> tuple[int, bytes]:
    import _socket

    family = _AF_INET6 if ":" in gateway else _AF_INET
    try:
        return family, _socket.inet_pton(family, gateway)
    except (OSError, ValueError):
        raise errors.InvalidConfig(f"default-route gateway {gateway!r} is not an IP address") from None


class _Route:
    __slots__ = ("family", "gateway", "oif", "priority", "table", "tos")

    def __init__(self, family: int, tos: int, table: int) -> None:
        self.family = family
        self.tos = tos
        self.table = table
        self.oif = 0
        self.gateway: bytes | None = None
        self.priority: int | None = None


def _route_body(family: int, tos: int, table: int, *, protocol: int, scope: int, rtype: int) -> bytes:
    return struct.pack(
        "=BBBBBBBBI", family, 0, 0, tos, table & 0xFF if table < 256 else 252, protocol, scope, rtype, 0
    )


def _default_routes(nl: Rtnetlink, family: int, ifindex: int) -> list[_Route]:
    body = struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0)
    try:
        replies = nl.request(_RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, body)
    except OSError as exc:
        raise os_failure("cannot list routes", exc, f"family={family}") from None
    routes: list[_Route] = []
    for msg_type, payload in replies:
        if msg_type != _RTM_NEWROUTE or len(payload) < 12:
            continue
        rt_family, dst_len, _src_len, tos, table, _proto, _scope, rtype, _flags = struct.unpack_from(
            "=BBBBBBBBI", payload, 0
        )
        if rt_family != family or dst_len != 0 or rtype != _RTN_UNICAST:
            continue
        route = _Route(family, tos, table)
        for attr_type, value in attrs(payload, 12):
            if attr_type == _RTA_TABLE and len(value) >= 4:
                route.table = struct.unpack_from("=I", value, 0)[0]
            elif attr_type == _RTA_OIF and len(value) >= 4:
                route.oif = struct.unpack_from("=I", value, 0)[0]
            elif attr_type == _RTA_GATEWAY:
                route.gateway = bytes(value)
            elif attr_type == _RTA_PRIORITY and len(value) >= 4:
                route.priority = struct.unpack_from("=I", value, 0)[0]
        if route.table == _RT_TABLE_MAIN and route.oif == ifindex:
            routes.append(route)
    return routes


def _delete_route(nl: Rtnetlink, route: _Route, *, netns: str, ifname: str) -> None:
    body = _route_body(route.family, route.tos, route.table, protocol=0, scope=_RT_SCOPE_NOWHERE, rtype=0)
    body += attr(_RTA_TABLE, struct.pack("=I", route.table))
    body += attr(_RTA_OIF, struct.pack("=I", route.oif))
    if route.gateway is not None:
        body += attr(_RTA_GATEWAY, route.gateway)
    if route.priority is not None:
        body += attr(_RTA_PRIORITY, struct.pack("=I", route.priority))
    try:
        nl.request(_RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, body)
    except OSError as exc:
        if exc.errno == _errno.ESRCH:
            return  # already gone (e.g. removed with its address meanwhile)
        raise os_failure(
            f"cannot delete a default route of {ifname} in network namespace {netns}",
            exc,
            f"netns={netns} ifname={ifname}",
        ) from None


def _add_default_route(
    nl: Rtnetlink, family: int, packed: bytes, ifindex: int, *, netns: str, ifname: str, gateway: str
) -> None:
    body = _route_body(
        family, 0, _RT_TABLE_MAIN, protocol=_RTPROT_BOOT, scope=_RT_SCOPE_UNIVERSE, rtype=_RTN_UNICAST
    )
    body += attr(_RTA_GATEWAY, packed)
    body += attr(_RTA_OIF, struct.pack("=I", ifindex))
    try:
        nl.request(_RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)
    except OSError as exc:
        if exc.errno == _errno.EEXIST:
            return
        hint = " (is the gateway in a subnet of that interface?)" if exc.errno == _errno.ENETUNREACH else ""
        raise os_failure(
            f"cannot add a default route via {gateway} on {ifname} in network namespace {netns}{hint}",
            exc,
            f"netns={netns} ifname={ifname} gateway={gateway}",
        ) from None
