"""The one entry of the attach layer: thin plugin, thick daemon and CLI all call these.

``handle`` runs a pod-level command; ``handle_delegate`` serves the daemon's ``/delegate``
hot-plug API (one network for a running pod, without touching network-status; ADD and DEL share
the code path of the daemon's own hot-plug, ``attach.hotplug``). Each command
imports only the use case it runs: the CNI executables start twice per pod.
"""

from __future__ import annotations

from pymultus import errors
from pymultus.attach.context import Call, Deps
from pymultus.attach.model import Attachment
from pymultus.attach.runtime import runtime_conf
from pymultus.cni import netconf, spec
from pymultus.errors import MultusError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymultus.cni.request import CniRequest
    from pymultus.config.multus import MultusConf

__all__ = ["Deps", "handle", "handle_delegate"]


def handle(request: CniRequest, config: MultusConf, deps: Deps) -> dict[str, object] | None:
    """Run ``request.command`` for one pod; returns what to print (ADD only), else None."""
    call = Call(request, config, deps)
    # One line per command: at verbose when done, at error when failed (attach.trace).
    started = 0.0
    if call.logs("verbose"):
        from pymultus.attach.trace import now

        started = now()
    try:
        result = _handle(call)
    except Exception as exc:
        if call.logs("error"):
            from pymultus.attach.trace import command_failed

            command_failed(call, exc, started)
            if isinstance(exc, MultusError):
                exc.logged = True
        raise
    if started:
        from pymultus.attach.trace import command_done

        command_done(call, started)
    return result


def _handle(call: Call) -> dict[str, object] | None:
    command = call.request.command
    if command == spec.ADD:
        from pymultus.attach.add import add

        return add(call)
    if command == spec.DEL:
        from pymultus.attach.delete import delete

        try:
            delete(call)
        finally:
            call.close()  # the container lock DEL took
        return None
    if command in (spec.CHECK, spec.STATUS, spec.GC):
        from pymultus.attach import maintenance

        {spec.CHECK: maintenance.check, spec.STATUS: maintenance.status, spec.GC: maintenance.gc}[command](
            call
        )
        return None
    raise errors.InvalidEnvironment(f'CNI_COMMAND "{command}" is not handled by multus')


def handle_delegate(
    request: CniRequest,
    config: MultusConf,
    deps: Deps,
    delegate_conf: bytes,
    interface_attributes: Mapping[str, object],
) -> dict[str, object] | None:
    """Run ADD/DEL/CHECK/STATUS of one delegate for a running pod; returns the ADD result."""
    call = Call(request, config, deps)
    attachment = _delegate_attachment(request, delegate_conf, interface_attributes)
    cni = call.cni()
    command = request.command
    if command == spec.STATUS:
        cni.get_status_network_list(attachment.network)
        return None
    if command in (spec.ADD, spec.DEL):
        # The hot-plug code path (attach.hotplug): under the container lock, and recorded in the
        # container's delegate list, so that the pod's DEL removes a hot-plugged network too.
        from pymultus.attach import hotplug

        if command == spec.ADD:
            return hotplug.attach_one(config, deps, request, attachment)
        hotplug.detach_one(config, deps, request, attachment)
        return None
    rt = runtime_conf(request, config, call.pod_ref, attachment)
    if command == spec.CHECK:
        cni.check_network_list(attachment.network, rt)
        return None
    raise errors.InvalidEnvironment(f'CNI_COMMAND "{command}" is not supported by the delegate API')


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
