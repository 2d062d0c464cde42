"""``default-route`` handling after a delegate's ADD (reference §4.6).

The decisions (who loses which family, who gets which gateway) are made by
``resolve._decide_default_routes``; this module applies them inside the pod's netns and keeps
the delegate's cached result consistent, so a later CHECK or DEL sees the routes that are really
there. Unlike Go Multus, only the families someone else claims are removed (quirk §17.15).
"""

from __future__ import annotations

from pymultus.cni.result import Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pymultus.attach.model import Attachment
    from pymultus.attach.ports import NetnsOps
    from pymultus.cni.chain import CNIConfig, RuntimeConf

_DEFAULT_DESTINATIONS = {4: ("0.0.0.0/0",), 6: ("::/0", "::0/0")}


def _needs_route_changes(attachment: Attachment) -> bool:
    return attachment.filter_v4 or attachment.filter_v6 or bool(attachment.default_route)


def apply_default_routes(  # noqa: PLR0917 (each argument is a distinct collaborator)
    netns_ops: NetnsOps,
    netns: str,
    cni: CNIConfig,
    attachment: Attachment,
    rt: RuntimeConf,
    result: Result,
) -> None:
    if not _needs_route_changes(attachment) or not (result.interfaces or result.ips):
        return
    families = [family for family, on in ((4, attachment.filter_v4), (6, attachment.filter_v6)) if on]
    gateways = list(attachment.default_route or ())
    netns_ops.replace_default_routes(netns, attachment.ifname, remove_families=families, gateways=gateways)
    cni.rewrite_cached_result(attachment.network, rt, rewritten_result(result, families, gateways))


def rewritten_result(result: Result, remove_families: list[int], gateways: list[str]) -> Result:
    """``result`` with the removed default routes dropped and the new ones added."""
    document = result.to_version("1.1.0")
    dropped = {dst for family in remove_families for dst in _DEFAULT_DESTINATIONS[family]}
    routes = [
        route for route in _routes(document) if not (isinstance(route, dict) and route.get("dst") in dropped)
    ]
    for gateway in gateways:
        routes.append({"dst": "::/0" if ":" in gateway else "0.0.0.0/0", "gw": gateway})
    document["routes"] = routes
    return Result.parse(document, "1.1.0")


def _routes(document: dict[str, object]) -> list[object]:
    routes = document.get("routes")
    return list(routes) if isinstance(routes, list) else []
