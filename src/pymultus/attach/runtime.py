"""What each delegate receives: ``CNI_ARGS``, capability args (``runtimeConfig``) and env.

Go Multus's ``CreateCNIRuntimeConf`` (reference §4.2), with two deliberate differences
(DESIGN "Semantics we choose" 5): the runtime's own runtimeConfig (portMappings, bandwidth, ...)
goes only to the cluster network (NPWG §7.5), and a per-attachment request that no plugin of the
network declares as a capability is reported (warning) or refused (``strictCapabilities``).
"""

from __future__ import annotations

from pymultus import errors
from pymultus.attach.model import POD_INFRA_CONTAINER_ID, POD_NAME, POD_NAMESPACE, POD_UID
from pymultus.cni.chain import RuntimeConf

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pymultus.attach.model import Attachment, PodRef
    from pymultus.cni.request import CniRequest
    from pymultus.config.multus import MultusConf

_POD_KEYS = (POD_NAMESPACE, POD_NAME, POD_INFRA_CONTAINER_ID, POD_UID)
# Capabilities that, like Go Multus, also travel as CNI_ARGS (host-local/static read IP= and MAC=).
_ALSO_IN_CNI_ARGS = {"ips": "IP", "mac": "MAC"}


def cni_args(request: CniRequest, pod_ref: PodRef, attachment: Attachment) -> list[tuple[str, str]]:
    """``IgnoreUnknown=true`` + the pod keys + the request's other keys + the attachment's own."""
    args: list[tuple[str, str]] = [("IgnoreUnknown", "true")]
    values = {
        POD_NAMESPACE: pod_ref.namespace,
        POD_NAME: pod_ref.name,
        POD_INFRA_CONTAINER_ID: pod_ref.infra_container_id,
        POD_UID: pod_ref.uid,
    }
    if pod_ref.known:
        args.extend((key, values[key]) for key in _POD_KEYS)
    own = {key for key, _ in attachment.cni_args}
    for key, value in request.args:
        if key in _POD_KEYS or key == "IgnoreUnknown" or key in own:
            continue
        args.append((key, value))
    args.extend(attachment.cni_args)
    return args


def capability_args(conf: MultusConf, attachment: Attachment) -> dict[str, object]:
    """The runtime's runtimeConfig goes to the master only; others get their own requests."""
    if attachment.is_master:
        merged = dict(conf.runtime_config)
        merged.update(attachment.capability_args)
        return merged
    return dict(attachment.capability_args)


def missing_capabilities(attachment: Attachment) -> list[str]:
    """Requested per-attachment capabilities that no plugin of the network declares."""
    declared = attachment.network.capabilities()
    return [name for name in attachment.requested_capabilities if name not in declared]


def check_capabilities(conf: MultusConf, attachment: Attachment) -> str:
    """A warning message for undeclared requests ("" when fine); raises under strictCapabilities."""
    missing = missing_capabilities(attachment)
    if not missing:
        return ""
    carried = [name for name in missing if name in _ALSO_IN_CNI_ARGS]
    message = (
        f"network {attachment.name} ({attachment.ifname}) declares no capability for the requested "
        f"{', '.join(missing)}"
    )
    if carried:
        message += f"; {', '.join(carried)} still travel as CNI_ARGS " + ", ".join(
            f"{_ALSO_IN_CNI_ARGS[name]}=" for name in carried
        )
    if conf.strict_capabilities:
        raise errors.MissingCapability(
            f"network {attachment.name} declares no capability for the requested {', '.join(missing)}",
            details="strictCapabilities is set; declare the capability in a plugin of the network "
            "or remove the request",
        )
    return message


def runtime_conf(
    request: CniRequest, conf: MultusConf, pod_ref: PodRef, attachment: Attachment
) -> RuntimeConf:
    return RuntimeConf(
        container_id=request.container_id,
        netns=request.netns,
        ifname=attachment.ifname,
        args=cni_args(request, pod_ref, attachment),
        capability_args=capability_args(conf, attachment),
        cache_dir=conf.cni_dir,
    )


def search_path(conf: MultusConf, request: CniRequest) -> list[str]:
    """``binDir`` in front of the request's own ``CNI_PATH`` (Go Multus ``confAdd``)."""
    path = [conf.bin_dir]
    path.extend(entry for entry in request.path if entry and entry != conf.bin_dir)
    return path
