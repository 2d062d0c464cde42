"""The one entry of the attach layer: thin plugin, thick daemon and CLI all call these.

``handle`` runs a pod-level command; the ``*_delegate`` functions serve the daemon's
``/delegate`` hot-plug API (one network for a running pod, without touching network-status).
"""

from __future__ import annotations

from pymultus.attach.add import add
from pymultus.attach.context import Call, Deps
from pymultus.attach.delete import delete
from pymultus.attach.maintenance import check, gc, status
from pymultus.attach.model import Attachment
from pymultus.attach.runtime import runtime_conf
from pymultus.cni import netconf, spec
from pymultus.errors import InvalidEnvironment

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymultus.cni.request import CniRequest
    from pymultus.config.multus import MultusConf

__all__ = ["Deps", "add_delegate", "check_delegate", "del_delegate", "handle", "status_delegate"]


def handle(request: CniRequest, config: MultusConf, deps: Deps) -> dict[str, object] | None:
    """Run ``request.command`` for one pod; returns what to print (ADD only), else None."""
    call = Call(request, config, deps)
    command = request.command
    if command == spec.ADD:
        return add(call)
    if command == spec.DEL:
        delete(call)
        return None
    if command == spec.CHECK:
        check(call)
        return None
    if command == spec.STATUS:
        status(call)
        return None
    if command == spec.GC:
        gc(call)
        return None
    raise InvalidEnvironment(f'CNI_COMMAND "{command}" is not handled by multus')


def _delegate_attachment(
    request: CniRequest, delegate_conf: bytes, interface_attributes: Mapping[str, object]
) -> Attachment:
    network = netconf.load_bytes(delegate_conf)
    attachment = Attachment(name=network.name, network=network, ifname=request.ifname)
    ips = interface_attributes.get("ips")
    if isinstance(ips, list) and ips:
        attachment.capability_args["ips"] = [str(ip) for ip in ips]
        attachment.cni_args.append(("IP", ",".join(str(ip) for ip in ips)))
    mac = interface_attributes.get("mac")
    if isinstance(mac, str) and mac:
        attachment.capability_args["mac"] = mac
        attachment.cni_args.append(("MAC", mac))
    return attachment


def add_delegate(
    request: CniRequest,
    config: MultusConf,
    deps: Deps,
    delegate_conf: bytes,
    interface_attributes: Mapping[str, object],
) -> dict[str, object]:
    call = Call(request, config, deps)
    attachment = _delegate_attachment(request, delegate_conf, interface_attributes)
    result = call.cni().add_network_list(
        attachment.network, runtime_conf(request, config, call.pod_ref, attachment)
    )
    return result.to_version(config.cni_version)


def del_delegate(
    request: CniRequest,
    config: MultusConf,
    deps: Deps,
    delegate_conf: bytes,
    interface_attributes: Mapping[str, object],
) -> None:
    call = Call(request, config, deps)
    attachment = _delegate_attachment(request, delegate_conf, interface_attributes)
    call.cni().del_network_list(attachment.network, runtime_conf(request, config, call.pod_ref, attachment))


def check_delegate(
    request: CniRequest,
    config: MultusConf,
    deps: Deps,
    delegate_conf: bytes,
    interface_attributes: Mapping[str, object],
) -> None:
    call = Call(request, config, deps)
    attachment = _delegate_attachment(request, delegate_conf, interface_attributes)
    call.cni().check_network_list(attachment.network, runtime_conf(request, config, call.pod_ref, attachment))


def status_delegate(
    request: CniRequest,
    config: MultusConf,
    deps: Deps,
    delegate_conf: bytes,
    interface_attributes: Mapping[str, object],
) -> None:
    call = Call(request, config, deps)
    network = netconf.load_bytes(delegate_conf)
    call.cni().get_status_network_list(network)
