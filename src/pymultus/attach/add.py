"""ADD: attach every network of a pod, or none (reference §4; DESIGN "Semantics we choose").

The whole ADD holds the container's lock (``pymultus.store.locks``): a concurrent ADD or DEL of
the same container gets code 11 instead of racing it, and a DEL that arrives meanwhile stops
this ADD (its running delegate is killed, the rest rolled back) rather than deleting too early.

A container that already has a delegate list was added before and not deleted: the ADD is
refused up front with code 7, touching nothing ("DEL it first"; CNI forbids a second ADD without
a DEL in between). A failing repeated ADD used to roll back -- i.e. delete -- the first ADD's
cluster network and remove its delegate list.

The delegate list is saved crash-safely before the first delegate runs. Delegates run in order;
the first failure stops the ADD and rolls back, in reverse order, what this ADD added: the
failing network included (its partial state) when its delegate was called, not when the ADD
failed before calling it (its interface name is taken: that interface is someone else's). After
a rollback the saved list holds only the delegates whose rollback failed (none: the file is
removed), so the runtime's follow-up DEL retries exactly those.
"""

from __future__ import annotations

from pymultus import errors, paths
from pymultus.attach import routes
from pymultus.attach.context import Call, EventKind
from pymultus.attach.model import Attachment
from pymultus.attach.resolve import resolve
from pymultus.attach.runtime import check_capabilities, runtime_conf
from pymultus.cni.result import Result
from pymultus.errors import MultusError
from pymultus.store import delegates as store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pymultus.store.locks import ContainerLock


def add(call: Call) -> dict[str, object]:
    """Run ADD for the pod of ``call``; returns the master's result in the conf's cniVersion."""
    lock = call.lock_container()
    try:
        _refuse_if_attached(call)
        return _add(call, lock)
    finally:
        call.close()


def _refuse_if_attached(call: Call) -> None:
    path = store.entry_path(call.conf.cni_dir, call.request.container_id)
    if paths.lexists(path):
        raise errors.InterfaceExists(
            f"container {call.request.container_id} is already attached; DEL it before adding it again",
            details=f"delegate list {path}",
        )


def _add(call: Call, lock: ContainerLock) -> dict[str, object]:
    call.wait_for_default_network()
    pod = call.load_pod()
    if (
        pod is None
        and call.pod_ref.known
        and call.deps.pods is not None
        and call.deps.placeholder_for_missing_pod
    ):
        # Go Multus (PR #1408): a pod deleted before its ADD gets an empty success result so the
        # runtime can move on to DEL, instead of retrying a sandbox that will never be used.
        call.log("warning", f"pod {call.pod_ref} not found; returning an empty result without delegates")
        return _placeholder_result(call).to_version(call.conf.cni_version)

    try:
        resolution = resolve(
            call.conf,
            pod=pod,
            pod_ref=call.pod_ref,
            runtime_ifname=call.request.ifname,
            source=call.deps.pods,
            on_missing_network=lambda reason, message: call.event(EventKind.WARNING, reason, message),
        )
    except errors.NetworkForbidden as exc:
        call.event(EventKind.WARNING, "NetworkForbidden", exc.msg)
        raise
    attachments = resolution.attachments
    verbose, debug = call.logs("verbose"), call.logs("debug")
    if verbose:
        from pymultus.attach import trace

        trace.resolution(call, pod, attachments)
    for attachment in attachments:
        warning = check_capabilities(call.conf, attachment)
        if warning:
            call.log("warning", warning)
            call.event(EventKind.WARNING, "CapabilityNotDeclared", warning)

    problem = call.deps.netns.pod_netns_problem(call.request.netns)
    if problem:
        # Checked before anything is written, so a bad CNI_NETNS (not a netns, or the host's own)
        # changes nothing on the host.
        raise errors.InvalidEnvironment(
            f'CNI_NETNS "{call.request.netns}" {problem}', details=f"container {call.request.container_id}"
        )
    if any(attachment.resource_name or attachment.device_id for attachment in attachments):
        from pymultus.attach.devices import assign_devices

        assign_devices(call, attachments)
    lock.raise_if_cancelled()  # a DEL came during the waits above: nothing is written yet
    _save(call, attachments)
    cni = call.cni()
    results: list[Result] = []
    lock.killable = True  # a DEL may now SIGKILL the running delegate
    try:
        for index, attachment in enumerate(attachments):
            call.step = attachment  # log lines (and the failure line) name it
            started = trace.now() if verbose else 0.0
            rt = runtime_conf(call.request, call.conf, call.pod_ref, attachment)
            called = False
            try:
                if call.deps.netns.interface_exists(call.request.netns, attachment.ifname):
                    raise errors.InterfaceExists(
                        f'interface "{attachment.ifname}" already exists in the pod network namespace',
                        details=f"network {attachment.name}; netns {call.request.netns}",
                    )
                called = True
                if debug:
                    trace.delegate_sent(call, attachment, rt)
                result = cni.add_network_list(attachment.network, rt)
                routes.apply_default_routes(call.deps.netns, call.request.netns, cni, attachment, rt, result)
            except MultusError as exc:
                if verbose:
                    trace.attachment_done(call, attachment, started, action="added", error=exc)
                lock.killable = False  # the rollback's delegates are never killed
                failing = attachment if called else None
                _roll_back(call, attachments[:index] + ([attachment] if called else []), failing)
                raise _failed(call, lock, attachment, exc) from None
            results.append(result)
            if verbose:
                if debug:
                    trace.delegate_result(call, attachment, result)
                trace.attachment_done(call, attachment, started, action="added", result=result)
            _announce(call, attachment, result)
        call.step = None
    finally:
        lock.killable = False

    if pod is not None and call.deps.pods is not None:
        from pymultus.kube import netstatus

        entries: list[dict[str, object]] = []
        for attachment, result in zip(attachments, results, strict=True):
            entries.extend(
                netstatus.status_entries(
                    network_name=attachment.name,
                    ifname=attachment.ifname,
                    result=result.to_version("1.1.0"),
                    is_default=attachment.is_master,
                    device_info=_device_info(attachment),
                )
            )
        try:
            call.deps.pods.write_network_status(pod, entries)
        except MultusError as exc:
            # Go Multus fails the ADD here and leaves the interfaces to the runtime's DEL; like
            # every other failed ADD, this one undoes what it did, so its retry starts clean.
            _roll_back(call, attachments, None)
            message = (
                f"{call.subject}: network-status could not be written, the ADD was rolled back: {exc.msg}"
            )
            exc.msg = message
            exc.args = (message,)
            call.event(EventKind.WARNING, "AddInterfaceFailed", message)
            raise
    master = next((r for a, r in zip(attachments, results, strict=True) if a.is_master), results[0])
    return master.to_version(call.conf.cni_version)


def _failed(call: Call, lock: ContainerLock, attachment: Attachment, exc: MultusError) -> MultusError:
    """The error of a rolled-back ADD: its own class and code with the pod and network named,
    or ContainerBusy (code 11) when a DEL stopped it (its delegate then died of SIGKILL)."""
    where = f'network "{attachment.name}" ({attachment.ifname})'
    if lock.cancelled():
        exc = errors.ContainerBusy(
            f"{call.subject} was not attached to {where}: a DEL of container "
            f"{call.request.container_id} arrived during the ADD, which was stopped and rolled back",
            details=exc.msg,
        )
    else:
        message = f"{call.subject} cannot be attached to {where}: {exc.msg}"
        exc.msg = message  # same class and code, with the pod and network named
        exc.args = (message,)
    call.event(EventKind.WARNING, "AddInterfaceFailed", exc.msg)
    return exc


def _device_info(attachment: Attachment) -> dict[str, object] | None:
    if not attachment.device_info_file:
        return None  # the common case: no device, and no device code to import
    from pymultus.attach.devices import device_info

    return device_info(attachment)


def _save(call: Call, attachments: list[Attachment]) -> None:
    store.save(
        call.conf.cni_dir,
        call.request.container_id,
        {
            "pod": {"namespace": call.pod_ref.namespace, "name": call.pod_ref.name, "uid": call.pod_ref.uid},
            "netns": call.request.netns,
            "ifname": call.request.ifname,
            "cniPath": list(call.request.path),  # where a later hot-plug finds the same plugins
            "delegates": [attachment.to_record() for attachment in attachments],
        },
    )


def _roll_back(call: Call, attempted: list[Attachment], failing: Attachment | None) -> None:
    """DEL ``attempted`` (``failing`` last, when its delegate was called) in reverse; keep in
    the cache only what could not be removed."""
    cni = call.cni()
    left: list[Attachment] = []
    for attachment in reversed(attempted):
        rt = runtime_conf(call.request, call.conf, call.pod_ref, attachment)
        try:
            cni.del_network_list(attachment.network, rt)
            if attachment.device_info_file:
                from pymultus.attach.devices import remove_device_info

                remove_device_info(attachment)
        except MultusError as exc:
            if attachment is failing:
                # Its ADD did not succeed: a later DEL must not call it (DESIGN item 2).
                # Expected: the ADD's own failure line reports it.
                call.log("verbose", f"rollback DEL whose ADD failed: {exc.msg}", **_named(attachment))
                continue
            call.log("error", f"rollback DEL failed: {exc.msg}", code=exc.code, **_named(attachment))
            left.append(attachment)
    left.reverse()
    if left:
        _save(call, left)  # the runtime's DEL retries exactly these
    else:
        # Nothing left to undo: the runtime's DEL that follows a failed ADD (containerd sends
        # it up to three times) answers at once from the record of completed DELs instead of
        # re-resolving the pod's networks and calling every delegate again.
        store.remove(call.conf.cni_dir, call.request.container_id)
        from pymultus.store import deleted

        deleted.mark(call.conf.cni_dir, call.request.container_id)


def _named(attachment: Attachment) -> dict[str, object]:
    """The fields naming ``attachment`` in a log line about it (not the one in progress)."""
    return {"network": attachment.name, "ifname": attachment.ifname}


def _announce(call: Call, attachment: Attachment, result: Result) -> None:
    if not result.interfaces and not result.ips:
        return
    addresses = ",".join(ip.address for ip in result.ips)
    call.event(
        EventKind.NORMAL, "AddedInterface", f"Add {attachment.ifname} [{addresses}] from {attachment.name}"
    )


def _placeholder_result(call: Call) -> Result:
    return Result.parse(
        {
            "cniVersion": "1.1.0",
            "interfaces": [{"name": call.request.ifname, "sandbox": call.request.netns}],
            "ips": [{"address": "0.0.0.0/0", "gateway": "0.0.0.0"}],  # noqa: S104 (Multus's placeholder)
        },
        "1.1.0",
    )
