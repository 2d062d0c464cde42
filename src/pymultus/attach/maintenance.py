"""CHECK, STATUS and GC across every attachment (DESIGN "Semantics we choose" 6).

Go Multus checks only the static delegates of its conf, and STATUS/GC touch only the cluster
network while ignoring the runtime's ``cni.dev/valid-attachments`` (reference §6, §17.9).
"""

from __future__ import annotations

from pymultus import errors
from pymultus.attach.delete import delete
from pymultus.attach.model import Attachment, PodRef
from pymultus.attach.resolve import resolve
from pymultus.attach.runtime import runtime_conf
from pymultus.cni import spec
from pymultus.errors import MultusError
from pymultus.store import delegates as store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pymultus.attach.context import Call


def check(call: Call) -> None:
    """Every saved attachment's interface must exist, and every delegate's CHECK must pass."""
    record = store.load(call.conf.cni_dir, call.request.container_id)
    if record is None:
        raise errors.UnknownContainer(
            f"container {call.request.container_id} has no attachments to check",
            details="CHECK before ADD or after DEL",
        )
    attachments = [Attachment.from_record(item) for item in store.delegate_items(record)]
    cni = call.cni()
    for attachment in attachments:
        if not call.deps.netns.interface_exists(call.request.netns, attachment.ifname):
            raise errors.InvalidConfig(
                f'interface "{attachment.ifname}" of network {attachment.name} is missing '
                "from the pod network namespace",
                details=f"netns {call.request.netns}",
            )
        rt = runtime_conf(call.request, call.conf, call.pod_ref, attachment)
        if attachment.network.disable_check or not spec.version_at_least(
            attachment.network.cni_version, "0.4.0"
        ):
            continue  # CHECK is not defined for that network (libcni would refuse or skip it)
        cni.check_network_list(attachment.network, rt)


def status(call: Call) -> None:
    """STATUS of the networks every pod gets: the cluster network and ``defaultNetworks``."""
    call.wait_for_default_network()
    resolution = resolve(
        call.conf,
        pod=None,
        pod_ref=PodRef("", ""),
        runtime_ifname="eth0",
        source=call.deps.pods,
    )
    cni = call.cni()
    for attachment in resolution.attachments:
        cni.get_status_network_list(attachment.network)


def gc(call: Call) -> None:
    """Remove the attachments of containers the runtime no longer lists, then GC every network.

    Without ``cni.dev/valid-attachments`` nothing is removed (there is no way to tell what is
    stale); the plugins' own GC still runs with the list of what pymultus knows to be live.
    """
    call.wait_for_default_network()
    valid = call.conf.valid_attachments
    valid_ids = None if valid is None else {str(item.get("containerID", "")) for item in valid}
    failures: list[MultusError] = []
    live: list[tuple[str, Attachment]] = []
    for name in store.entry_names(call.conf.cni_dir):
        try:
            record = store.load(call.conf.cni_dir, name)
        except errors.CorruptEntry:
            record = None
        container_id = name
        if record is not None and isinstance(record.get("containerId"), str):
            container_id = str(record["containerId"])  # a long ID's file name is shortened
        if valid_ids is not None and container_id not in valid_ids:
            stale = _call_for(call, container_id, record)
            try:
                delete(stale)
            except MultusError as exc:
                failures.append(exc)
            finally:
                stale.close()  # its container lock, now: not when the object happens to go
            continue
        if record is not None:
            live.extend((container_id, Attachment.from_record(item)) for item in store.delegate_items(record))

    networks: dict[str, Attachment] = {}
    for _, attachment in live:
        networks.setdefault(attachment.network.name, attachment)
    try:
        for attachment in resolve(
            call.conf, pod=None, pod_ref=PodRef("", ""), runtime_ifname="eth0", source=call.deps.pods
        ).attachments:
            networks.setdefault(attachment.network.name, attachment)
    except MultusError as exc:
        call.log("warning", f"GC cannot resolve the cluster network: {exc.msg}")
    cni = call.cni()
    for name, attachment in sorted(networks.items()):
        valid_here = [{"containerID": cid, "ifname": a.ifname} for cid, a in live if a.network.name == name]
        try:
            cni.gc_network_list(attachment.network, valid_here)
        except MultusError as exc:
            failures.append(exc)
    if failures:
        first = failures[0]
        raise errors.DelegateFailed(
            f"GC finished with {len(failures)} failure(s); first: {first.msg}",
            code=first.code,
            details="; ".join(f"code {f.code}: {f.msg}" for f in failures),
        )


def _call_for(call: Call, container_id: str, record: dict[str, object] | None) -> Call:
    """A DEL call for another container, rebuilt from what its record says."""
    from pymultus.attach.context import Call as CallType
    from pymultus.cni.request import CniRequest

    pod = record.get("pod") if record else None
    args: list[tuple[str, str]] = []
    if isinstance(pod, dict) and pod.get("name"):
        args = [
            ("K8S_POD_NAMESPACE", str(pod.get("namespace", ""))),
            ("K8S_POD_NAME", str(pod.get("name", ""))),
            ("K8S_POD_UID", str(pod.get("uid", ""))),
        ]
    netns = str(record.get("netns", "")) if record else ""
    ifname = str(record.get("ifname", "eth0")) if record else "eth0"
    request = CniRequest(
        command=spec.DEL,
        container_id=container_id,
        netns=netns,
        ifname=ifname or "eth0",
        args=args,
        path=call.request.path,
        config=call.request.config,
    )
    return CallType(request, call.conf, call.deps)
