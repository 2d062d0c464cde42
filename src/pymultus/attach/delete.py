"""DEL: undo everything ADD set up; missing state is success (DESIGN "Semantics we choose" 2).

Where the attachments come from, in order:
1. the saved delegate list ``<cniDir>/<containerID>`` (written before ADD's first delegate);
2. if it is missing or corrupt: the delegates' own libcni result caches
   ``<cniDir>/results/*-<containerID>-*`` (they hold the exact config, CNI_ARGS and capability
   args each delegate was added with) — so a crash that truncated the list still releases
   every lease and interface instead of skipping the delegates (Multus #948, #1087);
3. if neither exists and a DEL of the container already completed (``store.deleted``: containerd
   sends DEL three times per pod): nothing, at once and quietly;
4. otherwise: re-resolution from the configuration and the pod, best effort (state is
   unknown: failures are logged, not reported, so a pod never gets stuck in Terminating).

Every delegate is attempted, in reverse order; failures are collected and reported with the
first failing delegate's own code. A repeated DEL succeeds.

What DEL guarantees (docs/troubleshooting.md, "What DEL guarantees"):
- it never reports success while a recorded attachment (in the delegate list or a result cache)
  was not removed, unless removal is impossible by construction; what failed stays recorded, so
  a later DEL (or GC) retries exactly that;
- "impossible by construction": a delegate whose binary is missing and that has no result cache
  (its ADD never completed: nothing can exist through it), and a cache entry that cannot be
  decoded (it names no plugin to call) — both logged as errors; an undecodable result cache of
  the container is removed, a bad item of the delegate list is replaced by the container's
  result caches;
- one bad entry never stops the others from being deleted;
- without any record, DEL re-resolves the networks best effort and always succeeds: a broken
  pod annotation, manifest or NAD is logged, never reported.
"""

from __future__ import annotations

from pymultus import errors
from pymultus.attach.model import Attachment
from pymultus.attach.runtime import runtime_conf
from pymultus.cni import cache as result_cache
from pymultus.cni import netconf
from pymultus.errors import MultusError
from pymultus.store import delegates as store
from pymultus.store import deleted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pymultus.attach.context import Call


def delete(call: Call) -> None:
    call.lock_container()  # stops a still-running ADD of the container first (store.locks)
    attachments, certain, unusable = _attachments_to_delete(call)
    cni = call.cni()
    failures: list[tuple[Attachment, MultusError]] = []
    verbose, debug = call.logs("verbose"), call.logs("debug")
    if verbose:
        from pymultus.attach import trace
    for attachment in reversed(attachments):
        call.step = attachment  # log lines name it
        started = trace.now() if verbose else 0.0
        rt = runtime_conf(call.request, call.conf, call.pod_ref, attachment)
        try:
            if debug:
                trace.delegate_sent(call, attachment, rt)
            cni.del_network_list(attachment.network, rt)
        except errors.PluginNotFound as exc:
            if certain and _was_added(call, attachment):
                # Its ADD completed (libcni cached the result): an interface and a lease exist
                # that only this plugin can remove. Report it and keep it recorded.
                if verbose:
                    trace.attachment_done(call, attachment, started, action="deleted", error=exc)
                failures.append((attachment, exc))
                continue
            # Never added through this binary (e.g. a rolled-back ADD that failed on it):
            # nothing can exist through it, and failing would leave the pod stuck in Terminating.
            call.log("verbose", f"{exc.msg}; nothing to undo through it")
        except MultusError as exc:
            if not certain:
                # No record: this network may never have been added here (a normal repeated DEL).
                call.log("verbose", f"best-effort DEL failed: {exc.msg}")
                continue
            if verbose:
                trace.attachment_done(call, attachment, started, action="deleted", error=exc)
            failures.append((attachment, exc))
            continue  # its device-info file stays with it until a DEL succeeds
        if attachment.device_info_file:
            from pymultus.attach.devices import remove_device_info

            remove_device_info(attachment)
        if verbose:
            trace.attachment_done(call, attachment, started, action="deleted")
    # The failure line (attach.service) names the first failing network, as the error does.
    call.step = failures[0][0] if failures else None

    if failures and call.conf.retry_delete_on_error:
        kept = [attachment for attachment in attachments if any(attachment is f for f, _ in failures)]
        store.save(call.conf.cni_dir, call.request.container_id, {"delegates": [a.to_record() for a in kept]})
    else:
        store.remove(call.conf.cni_dir, call.request.container_id)
    for path, reason in unusable:
        _remove_unusable(call, path, reason)
    if failures:
        raise _summary(call, failures)
    # containerd sends DEL up to three times per pod: the later ones find this and stop at once.
    deleted.mark(call.conf.cni_dir, call.request.container_id)


def _attachments_to_delete(call: Call) -> tuple[list[Attachment], bool, list[tuple[str, str]]]:
    """The attachments, whether we know for sure they were added (errors are then reported), and
    the container's result-cache files that cannot be used (path, why)."""
    try:
        record = store.load(call.conf.cni_dir, call.request.container_id)
    except errors.CorruptEntry as exc:
        call.log("error", f"{exc.msg}; recovering the delegates from their result caches")
        record = None
    if record is not None:
        attachments: list[Attachment] = []
        bad = 0
        for index, item in enumerate(store.delegate_items(record)):
            try:
                attachments.append(Attachment.from_record(item))
            except MultusError as exc:
                bad += 1
                call.log("error", f"item {index} of the delegate cache is unusable ({exc.msg})")
        if record.get("legacy"):
            _name_legacy(attachments, call.request.ifname)
        if not bad:
            return attachments, True, []
        # One bad item must not stop the others: add what the result caches know beyond them.
        recorded = {(a.network.name, a.ifname) for a in attachments}
        cached, unusable = _from_result_caches(call)
        extra = [a for a in cached if (a.network.name, a.ifname) not in recorded]
        call.log("error", f"recovering {len(extra)} attachment(s) from their result caches")
        return extra + attachments, True, unusable

    cached, unusable = _from_result_caches(call)
    if cached:
        return cached, True, unusable
    if deleted.was_deleted(call.conf.cni_dir, call.request.container_id):
        # A repeated DEL: an earlier one completed and undid everything (store.deleted).
        call.log("debug", "already deleted: nothing to do")
        return [], True, unusable

    try:
        pod = call.load_pod() if call.deps.pods is not None else None
    except MultusError as exc:
        # A broken manifest, annotation or API answer must not block the release of a pod.
        call.log(
            "warning", f"no delegate cache and the pod cannot be read ({exc.msg}); using the configuration"
        )
        pod = None
    if pod is None and call.conf.cluster_network == "" and not call.conf.delegates:
        return [], False, unusable
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
            "verbose", f"no delegate cache and the networks cannot be resolved ({exc.msg}); nothing to delete"
        )
        return [], False, unusable
    # No record at all: an ADD that failed before it saved anything, or a container never added
    # here (a completed DEL or rolled-back ADD left a record and stopped earlier). Normal for
    # runtimes: verbose, not a warning.
    call.log(
        "verbose", "no delegate cache: deleting the networks resolved from the configuration, best effort"
    )
    return resolution.attachments, False, unusable


def _from_result_caches(call: Call) -> tuple[list[Attachment], list[tuple[str, str]]]:
    """The container's attachments according to libcni's result caches, and the files of the
    container that cannot be used (one bad file never hides the others)."""
    cni_dir, container_id = call.conf.cni_dir, call.request.container_id
    unusable: list[tuple[str, str]] = []
    try:
        entries = result_cache.list_attachments(
            cni_dir, container_id=container_id, on_corrupt=lambda path, why: unusable.append((path, why))
        )
    except errors.IOFailure as exc:
        call.log("error", f"{exc.msg}; the result caches cannot be used")
        return [], []
    attachments: list[Attachment] = []
    for entry in entries:
        try:
            attachments.append(_from_result_cache(entry))
        except MultusError as exc:
            try:
                path = result_cache.result_path(cni_dir, entry.network_name, container_id, entry.ifname)
            except MultusError:
                call.log(
                    "error", f"the result cache of network {entry.network_name!r} is unusable: {exc.msg}"
                )
                continue
            unusable.append((path, f"its config is unusable: {exc.msg}"))
    return attachments, unusable


def _was_added(call: Call, attachment: Attachment) -> bool:
    """Whether libcni's result cache proves the attachment's ADD completed (unreadable: assume so)."""
    try:
        entry = result_cache.read(
            call.conf.cni_dir, attachment.network.name, call.request.container_id, attachment.ifname
        )
    except MultusError:
        return True
    return entry is not None


def _remove_unusable(call: Call, path: str, reason: str) -> None:
    """An undecodable result cache names no plugin to call: no DEL can ever use it (the rule in
    the module docstring). Say so, and remove it so that it is not reported forever."""
    import posix

    call.log("error", f"the result cache {path} cannot be used and is removed: {reason}")
    try:
        posix.unlink(path)
    except OSError as exc:
        call.log("error", f"cannot remove the result cache {path}: {exc.strerror}")


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
    return errors.DelegateFailed(message, code=first.code, details=names, delegate=first_attachment.name)
