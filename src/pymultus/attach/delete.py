"""DEL: undo everything ADD set up; missing state is success (DESIGN "Semantics we choose" 2).

Where the attachments come from, in order:
1. the saved delegate list ``<cniDir>/<containerID>`` (written before ADD's first delegate);
2. if it is missing or corrupt: the delegates' own libcni result caches
   ``<cniDir>/results/*-<containerID>-*`` (they hold the exact config, CNI_ARGS and capability
   args each delegate was added with) — so a crash that truncated the list still releases
   every lease and interface instead of skipping the delegates (Multus #948, #1087);
3. if neither exists: re-resolution from the configuration and the pod, best effort (state is
   unknown: failures are logged, not reported, so a pod never gets stuck in Terminating).

Every delegate is attempted, in reverse order; failures are collected and reported with the
first failing delegate's own code. A repeated DEL succeeds.
"""

from __future__ import annotations

from pymultus.attach.model import Attachment
from pymultus.attach.runtime import runtime_conf
from pymultus.cni import cache as result_cache
from pymultus.cni import netconf
from pymultus.errors import DelegateFailed, MultusError, PluginNotFound
from pymultus.store import delegates as store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pymultus.attach.context import Call


def delete(call: Call) -> None:
    attachments, certain = _attachments_to_delete(call)
    cni = call.cni()
    failures: list[tuple[Attachment, MultusError]] = []
    for attachment in reversed(attachments):
        rt = runtime_conf(call.request, call.conf, call.pod_ref, attachment)
        try:
            cni.del_network_list(attachment.network, rt)
        except PluginNotFound as exc:
            # A delegate whose binary is gone cannot have resources we could free through it;
            # failing here would only leave the pod stuck in Terminating (Multus's behaviour).
            call.log("warning", f"DEL of {attachment.name}: {exc.msg}; nothing to undo through it")
        except MultusError as exc:
            if not certain:
                call.log(
                    "warning", f"best-effort DEL of {attachment.name} ({attachment.ifname}) failed: {exc.msg}"
                )
                continue
            call.log("error", f"DEL of {attachment.name} ({attachment.ifname}) failed: {exc.msg}")
            failures.append((attachment, exc))
        if attachment.device_info_file:
            from pymultus.attach.devices import remove_device_info

            remove_device_info(attachment)

    if failures and call.conf.retry_delete_on_error:
        kept = [attachment for attachment in attachments if any(attachment is f for f, _ in failures)]
        store.save(call.conf.cni_dir, call.request.container_id, {"delegates": [a.to_record() for a in kept]})
    else:
        store.remove(call.conf.cni_dir, call.request.container_id)
    if failures:
        raise _summary(call, failures)


def _attachments_to_delete(call: Call) -> tuple[list[Attachment], bool]:
    """The attachments and whether we know for sure they were added (errors are then reported)."""
    try:
        record = store.load(call.conf.cni_dir, call.request.container_id)
    except store.CorruptEntry as exc:
        call.log("error", f"{exc.msg}; recovering the delegates from their result caches")
        record = None
    if record is not None:
        attachments = [Attachment.from_record(item) for item in _records(record)]
        if record.get("legacy"):
            _name_legacy(attachments, call.request.ifname)
        return attachments, True

    cached = [
        entry
        for entry in result_cache.list_attachments(call.conf.cni_dir)
        if entry.container_id == call.request.container_id
    ]
    if cached:
        return [_from_result_cache(entry) for entry in cached], True

    pod = call.load_pod() if call.deps.pods is not None else None
    if pod is None and call.conf.cluster_network == "" and not call.conf.delegates:
        return [], False
    from pymultus.attach.resolve import resolve

    try:
        resolution = resolve(
            call.conf,
            pod=pod,
            pod_ref=call.pod_ref,
            runtime_ifname=call.request.ifname,
            source=call.deps.pods,
        )
    except MultusError as exc:
        call.log(
            "warning", f"no delegate cache and the networks cannot be resolved ({exc.msg}); nothing to delete"
        )
        return [], False
    call.log(
        "warning", "no delegate cache: deleting the networks resolved from the configuration, best effort"
    )
    return resolution.attachments, False


def _records(record: dict[str, object]) -> list[dict[str, object]]:
    items = record.get("delegates")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _name_legacy(attachments: list[Attachment], runtime_ifname: str) -> None:
    # Go Multus caches ifnames only when requested; the rest are positional (§4.1).
    for index, attachment in enumerate(attachments):
        if not attachment.ifname:
            attachment.ifname = runtime_ifname if attachment.is_master else f"net{index}"


def _from_result_cache(entry: result_cache.CachedAttachment) -> Attachment:
    network = netconf.load_bytes(entry.config)
    attachment = Attachment(name=entry.network_name, network=network, ifname=entry.ifname)
    attachment.cni_args = [(key, value) for key, value in entry.cni_args if key not in _RUNTIME_KEYS]
    attachment.capability_args = dict(entry.capability_args)
    return attachment


# Keys runtime_conf() adds itself from the request; the rest are the attachment's own (IP=, MAC=).
_RUNTIME_KEYS = frozenset(
    ("IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID")
)


def _summary(call: Call, failures: list[tuple[Attachment, MultusError]]) -> MultusError:
    first_attachment, first = failures[0]
    names = "; ".join(f"{a.name} ({a.ifname}): code {e.code}: {e.msg}" for a, e in failures)
    if len(failures) == 1:
        message = f'{call.subject} cannot be detached from network "{first_attachment.name}": {first.msg}'
    else:
        message = f"{call.subject} cannot be detached from {len(failures)} networks"
    return DelegateFailed(message, code=first.code, details=names, delegate=first_attachment.name)
