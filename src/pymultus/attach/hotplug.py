"""Hot-plug: bring a running pod's attachments in line with its networks annotation (issue 15).

For one container that pymultus attached (it has a delegate list, ``pymultus.store.delegates``):
what to attach and detach is decided by ``pymultus.attach.hotplug_plan``; this module does it.
Removals run first (their names become free), each attachment on its own: one that fails is
reported (the first failure is raised after the others ran) and stays recorded for the retry.

Crash safety: the delegate list is rewritten before each delegate runs, an item being added
marked ``hotplugPending``; the next reconcile first deletes a pending item (a daemon killed
half-way), so the list always names everything that may exist and a CNI DEL removes it all.

Coordination: the reconcile holds the container lock taken the ADD way (no wait; a busy
container raises ContainerBusy, code 11: retry later). A CNI DEL arriving meanwhile stops the
running ADD delegate (``pymultus.store.locks``), the attachment is rolled back, and the DEL then
deletes what the list names: DEL always wins and leaves nothing. The record is re-read under the
lock, so a container DEL'd before the lock was taken is left alone. ``network-status`` is written
after the lock is let go, so a DEL never waits for the API server.
"""

from __future__ import annotations

from pymultus import errors
from pymultus.attach.context import Call, EventKind
from pymultus.attach.model import Attachment
from pymultus.attach.runtime import runtime_conf, search_path
from pymultus.cni import cache
from pymultus.cni.chain import CNIConfig
from pymultus.cni.request import CniRequest
from pymultus.cni.result import Result
from pymultus.errors import MultusError
from pymultus.store import delegates as store
from pymultus.store.locks import ContainerLock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from pymultus.attach.context import Deps
    from pymultus.attach.ports import KubeObject
    from pymultus.config.multus import MultusConf

PENDING = "hotplugPending"


class Outcome:
    """What one reconcile did: interfaces added and removed (``ifname from network``)."""

    __slots__ = ("added", "removed")

    def __init__(self) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def attached_pod(cni_dir: str, name: str) -> dict[str, str] | None:
    """The container, pod (namespace, name, uid) and netns of the file ``name`` of ``cni_dir``
    when it is a pymultus delegate list; None for anything else (Go Multus's lists, the
    ``results``/``locks`` directories, temp files, corrupt lists: not ours to hot-plug)."""
    try:
        record = store.load(cni_dir, name)
    except MultusError:
        return None
    pod = record.get("pod") if record is not None and not record.get("legacy") else None
    if record is None or not isinstance(pod, dict) or not pod.get("name") or not record.get("netns"):
        return None
    return {
        "container": str(record.get("containerId") or name),
        "namespace": str(pod.get("namespace") or ""),
        "name": str(pod["name"]),
        "uid": str(pod.get("uid") or ""),
        "netns": str(record["netns"]),
    }


def reconcile(conf: MultusConf, deps: Deps, container_id: str) -> Outcome:
    """Reconcile one container's attachments with its pod; see the module docstring."""
    from pymultus.attach.hotplug_plan import plan

    outcome = Outcome()
    failure: MultusError | None = None
    lock = ContainerLock.for_add(conf.cni_dir, container_id)
    try:
        record = store.load(conf.cni_dir, container_id)
        if record is None or record.get("legacy"):
            return outcome  # deleted meanwhile (DEL won), or Go Multus's: not ours
        call = _call(conf, deps, container_id, record)
        pod = call.load_pod()  # another UID (pod re-created) raises PodUidMismatch: retried
        if pod is None:
            return outcome  # the pod is gone: the runtime's DEL cleans up
        op = _Operation(call, lock, record)
        op.finish_pending(outcome)
        to_add, to_remove = plan(call, op.items, pod)
        steps: list[tuple[Callable[[Attachment], object], Attachment, list[str]]]
        steps = [(op.detach, a, outcome.removed) for a in reversed(to_remove)]
        steps += [(op.attach, a, outcome.added) for a in to_add]
        for step, attachment, done in steps:
            try:
                step(attachment)
            except MultusError as exc:
                failure = failure or exc
                if lock.cancelled():
                    break  # a DEL of the pod came: it deletes the rest
                continue
            done.append(f"{attachment.ifname} from {attachment.name}")
    finally:
        lock.release()
    if outcome.changed and not lock.cancelled():
        op.write_network_status(pod)
    if failure is not None:
        raise failure
    return outcome


def attach_one(
    conf: MultusConf, deps: Deps, request: CniRequest, attachment: Attachment
) -> dict[str, object]:
    """``/delegate`` ADD of one network into a running pymultus-attached container: recorded in
    its delegate list (so the pod's DEL removes it too) under the container lock."""
    lock = ContainerLock.for_add(conf.cni_dir, request.container_id)
    try:
        record = store.load(conf.cni_dir, request.container_id) or {}
        if record.get("legacy"):
            record = {}  # Go Multus's list is left in its own format
        op = _Operation(Call(request, conf, deps), lock, record)
        result = op.attach(attachment)
        return result.to_version(conf.cni_version)
    finally:
        lock.release()


def detach_one(conf: MultusConf, deps: Deps, request: CniRequest, attachment: Attachment) -> None:
    """``/delegate`` DEL of one network; drops it from the delegate list."""
    lock = ContainerLock.for_add(conf.cni_dir, request.container_id)
    try:
        record = store.load(conf.cni_dir, request.container_id) or {}
        if record.get("legacy"):
            record = {}
        _Operation(Call(request, conf, deps), lock, record).detach(attachment)
    finally:
        lock.release()


def _call(conf: MultusConf, deps: Deps, container_id: str, record: dict[str, object]) -> Call:
    """A Call as the pod's ADD had it: same container, netns, pod keys and CNI_PATH."""
    from pymultus.attach.model import POD_NAME, POD_NAMESPACE, POD_UID

    pod = record.get("pod")
    pod = pod if isinstance(pod, dict) else {}
    args = [(POD_NAMESPACE, str(pod.get("namespace") or "")), (POD_NAME, str(pod.get("name") or ""))]
    if pod.get("uid"):
        args.append((POD_UID, str(pod["uid"])))
    cni_path = record.get("cniPath")
    request = CniRequest(
        command="ADD",
        container_id=container_id,
        netns=str(record.get("netns") or ""),
        ifname=str(record.get("ifname") or "eth0"),
        args=args,
        path=tuple(str(p) for p in cni_path) if isinstance(cni_path, list) else (),
    )
    return Call(request, conf, deps)


class _Operation:
    """The reconcile's steps on one locked container; ``record`` is kept equal to the file."""

    def __init__(self, call: Call, lock: ContainerLock, record: dict[str, object]) -> None:
        self.call = call
        self.lock = lock
        self.record = record
        self.items: list[dict[str, object]] = store.delegate_items(record)
        executor = call.deps.executor.guarded(lock) if lock.fd >= 0 else call.deps.executor
        self.cni = CNIConfig(
            search_path=search_path(call.conf, call.request), executor=executor, cache_dir=call.conf.cni_dir
        )

    def _exists(self, ifname: str) -> bool:
        return self.call.deps.netns.interface_exists(self.call.request.netns, ifname)

    # -- doing ---------------------------------------------------------------------------------

    def finish_pending(self, outcome: Outcome) -> None:
        """Delete what a killed hot-plug left half-added; it is attached again if still desired."""
        for item in [item for item in self.items if item.get(PENDING)]:
            attachment = Attachment.from_record(item)
            self.call.log("warning", f"finishing an interrupted hot-plug of {attachment.name}: deleting it")
            self.detach(attachment)
            outcome.removed.append(f"{attachment.ifname} from {attachment.name}")

    def attach(self, attachment: Attachment) -> Result:
        from pymultus.attach import routes

        call, lock = self.call, self.lock
        netns = call.request.netns
        lock.raise_if_cancelled()
        if self._exists(attachment.ifname):
            raise errors.InterfaceExists(
                f'interface "{attachment.ifname}" already exists in the pod network namespace',
                details=f"network {attachment.name}; netns {netns}",
            )
        item = attachment.to_record()
        item[PENDING] = True
        self._save([*self.items, item])  # recorded before the delegate runs: a DEL finds it
        rt = runtime_conf(call.request, call.conf, call.pod_ref, attachment)
        lock.killable = True  # a DEL may now SIGKILL the running delegate
        try:
            result = self.cni.add_network_list(attachment.network, rt)
            routes.apply_default_routes(call.deps.netns, netns, self.cni, attachment, rt, result)
        except MultusError as exc:
            lock.killable = False  # the rollback's delegates are never killed
            self._roll_back(attachment, exc)
            raise
        finally:
            lock.killable = False
        del item[PENDING]
        self._save(self.items)
        addresses = ",".join(ip.address for ip in result.ips)
        call.event(
            EventKind.NORMAL,
            "AddedInterface",
            f"Add {attachment.ifname} [{addresses}] from {attachment.name}",
        )
        return result

    def _roll_back(self, attachment: Attachment, exc: MultusError) -> None:
        call = self.call
        message = f"pod {call.pod_ref} cannot be attached to network {attachment.name} ({attachment.ifname})"
        if self.lock.cancelled():
            message += ": a DEL of the pod arrived; stopped and rolled back"
        exc.msg = f"{message}: {exc.msg}"
        exc.args = (exc.msg,)
        try:
            self.cni.del_network_list(
                attachment.network, runtime_conf(call.request, call.conf, call.pod_ref, attachment)
            )
        except MultusError as undo:
            call.log("error", f"rollback of the hot-plug of {attachment.name} failed: {undo.msg}")
            return  # stays recorded (pending): the next reconcile or the pod's DEL retries it
        self._save([item for item in self.items if not _same(item, attachment)])

    def detach(self, attachment: Attachment) -> None:
        call = self.call
        rt = runtime_conf(call.request, call.conf, call.pod_ref, attachment)
        self.cni.del_network_list(attachment.network, rt)  # a failure keeps it recorded: retried
        if attachment.device_info_file:
            from pymultus.attach.devices import remove_device_info

            remove_device_info(attachment)
        self._save([item for item in self.items if not _same(item, attachment)])
        call.event(EventKind.NORMAL, "RemovedInterface", f"Remove {attachment.ifname} from {attachment.name}")

    def _save(self, items: list[dict[str, object]]) -> None:
        self.items = items
        if self.record.get("delegates") is None:
            return  # a /delegate call for a container without a pymultus list: nothing to keep
        self.record["delegates"] = items
        store.save(self.call.conf.cni_dir, self.call.request.container_id, self.record)

    def write_network_status(self, pod: KubeObject) -> None:
        """The whole network-status again, from each attachment's cached result, in list order."""
        from pymultus.attach.devices import device_info
        from pymultus.kube import netstatus

        call = self.call
        if call.deps.pods is None:
            return
        entries: list[dict[str, object]] = []
        for item in self.items:
            attachment = Attachment.from_record(item)
            entry = cache.read(
                call.conf.cni_dir, attachment.network.name, call.request.container_id, attachment.ifname
            )
            if entry is None or entry.result is None:
                continue  # nothing known about it (a pre-cache Multus attachment)
            entries.extend(
                netstatus.status_entries(
                    network_name=attachment.name,
                    ifname=attachment.ifname,
                    result=entry.result,
                    is_default=attachment.is_master,
                    device_info=device_info(attachment),
                )
            )
        call.deps.pods.write_network_status(pod, entries)


def _same(item: dict[str, object], attachment: Attachment) -> bool:
    """The saved item of ``attachment``: same interface and network (a ``/delegate`` caller
    names the network by its conf name, the list by its NAD)."""
    if item.get("ifname") != attachment.ifname:
        return False
    conf = item.get("conf")
    return item.get("name") == attachment.name or (
        isinstance(conf, dict) and conf.get("name") == attachment.network.name
    )
