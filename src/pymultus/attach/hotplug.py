"""Hot-plug: bring a running pod's attachments in line with its networks annotation (issue 15).

Level-driven, for one container that pymultus attached (it has a delegate list,
``pymultus.store.delegates``): *desired* is what the current pod resolves to (the resolver of
ADD, with its namespace isolation and validation); *actual* is the saved delegate list. Then:

* the cluster network (the master, ``eth0``) is never touched; ``defaultNetworks`` and the
  auxiliary chain are matched by name and left alone;
* an annotation network is matched to a saved attachment of the same network: by interface name
  when the annotation names one, else the first saved attachment of that network. Matched ones
  are untouched; a match whose per-pod parameters changed (``ips``, ``mac``, ``cni-args``,
  ``default-route``, ...) is *refused* (a :class:`ParametersChanged` warning), never re-created
  behind the application's back: remove the entry and add it again under another name;
* saved attachments nothing matches are detached (DEL with the cached result: the lease is
  released), then unmatched desired networks are attached into the recorded netns, named as
  requested or ``net<N>`` with the smallest N no attachment or interface of the pod uses.

Crash safety: the delegate list is rewritten before each delegate runs, an item being added
marked ``hotplugPending``; the next reconcile first deletes a pending item (a daemon killed
half-way), so the list always names everything that may exist and a CNI DEL removes it all.

Coordination: the whole reconcile holds the container lock taken the ADD way (no wait; a busy
container raises ContainerBusy, code 11: retry later). A CNI DEL arriving meanwhile stops the
running ADD delegate (``pymultus.store.locks``), the attachment is rolled back, and the DEL then
deletes what the list names: DEL always wins and leaves nothing. The record is re-read under the
lock, so a container DEL'd before the lock was taken is left alone.
"""

from __future__ import annotations

from pymultus.attach.context import Call, EventKind
from pymultus.attach.model import Attachment
from pymultus.attach.runtime import check_capabilities, runtime_conf, search_path
from pymultus.cni import cache
from pymultus.cni.chain import CNIConfig
from pymultus.cni.request import CniRequest
from pymultus.cni.result import Result
from pymultus.errors import InterfaceExists, InvalidConfig, MultusError
from pymultus.store import delegates as store
from pymultus.store.locks import ContainerLock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pymultus.attach.context import Deps
    from pymultus.attach.ports import KubeObject
    from pymultus.config.multus import MultusConf

PENDING = "hotplugPending"
# Per-pod requests of the annotation that must not change under a running attachment.
_PARAMETERS = ("cniArgs", "capabilityArgs", "defaultRoute")


class ParametersChanged(InvalidConfig):
    """A network of the annotation asks for other parameters than its running attachment."""


class Outcome:
    """What one reconcile did: interfaces added and removed (``ifname from network``)."""

    __slots__ = ("added", "removed")

    def __init__(self) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def attached_pods(cni_dir: str, names: list[str]) -> dict[str, dict[str, str]]:
    """Container ID → its pod (namespace, name, uid) and netns for the pymultus delegate lists
    among the files ``names`` of ``cni_dir``; Go Multus lists and unreadable files are skipped
    (not ours to hot-plug)."""
    found: dict[str, dict[str, str]] = {}
    for name in names:
        try:
            record = store.load(cni_dir, name)
        except MultusError:
            continue  # a directory (results/, locks/), a temp file, a corrupt list
        pod = record.get("pod") if record is not None and not record.get("legacy") else None
        if isinstance(pod, dict) and pod.get("name") and isinstance(record, dict) and record.get("netns"):
            found[str(record.get("containerId") or name)] = {
                "namespace": str(pod.get("namespace") or ""),
                "name": str(pod["name"]),
                "uid": str(pod.get("uid") or ""),
                "netns": str(record["netns"]),
            }
    return found


def reconcile(conf: MultusConf, deps: Deps, container_id: str) -> Outcome:
    """Reconcile one container's attachments with its pod; see the module docstring."""
    outcome = Outcome()
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
        plan_add, plan_remove = op.plan(pod)
        for attachment in reversed(plan_remove):
            op.detach(attachment)
            outcome.removed.append(f"{attachment.ifname} from {attachment.name}")
        failure: MultusError | None = None
        for attachment in plan_add:
            try:
                op.attach(attachment)
            except MultusError as exc:
                failure = failure or exc
                if lock.cancelled():
                    break  # a DEL of the pod came: it deletes the rest
                continue
            outcome.added.append(f"{attachment.ifname} from {attachment.name}")
        if outcome.changed:
            op.write_network_status(pod)
        if failure is not None:
            raise failure
        return outcome
    finally:
        lock.release()


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
        saved = record.get("delegates")
        self.items: list[dict[str, object]] = [
            item for item in (saved if isinstance(saved, list) else []) if isinstance(item, dict)
        ]
        executor = call.deps.executor.guarded(lock) if lock.fd >= 0 else call.deps.executor
        self.cni = CNIConfig(
            search_path=search_path(call.conf, call.request), executor=executor, cache_dir=call.conf.cni_dir
        )

    # -- deciding ------------------------------------------------------------------------------

    def plan(self, pod: KubeObject) -> tuple[list[Attachment], list[Attachment]]:
        """(to attach, to detach); raises the resolver's errors and ParametersChanged."""
        from pymultus.attach.resolve import NETWORKS_ANNOTATION, resolve

        call = self.call
        desired = resolve(
            call.conf,
            pod=pod,
            pod_ref=call.pod_ref,
            runtime_ifname=call.request.ifname,
            source=call.deps.pods,
        ).attachments
        explicit = _explicit_names(pod, NETWORKS_ANNOTATION, call.pod_ref.namespace)
        requested = desired[len(desired) - len(explicit) - self._aux_count(desired) :][: len(explicit)]
        fixed = {a.name for a in desired if not any(a is r for r in requested)}
        actual = [(item, Attachment.from_record(item)) for item in self.items]
        free = [(item, a) for item, a in actual if not a.is_master and a.name not in fixed]
        matched: dict[int, dict[str, object]] = {}
        # Explicit names first, so that a name-only entry cannot take their attachment.
        for index in sorted(range(len(requested)), key=lambda i: not explicit[i]):
            want = requested[index]
            for item, have in free:
                if any(item is m for m in matched.values()) or have.name != want.name:
                    continue
                if explicit[index] and have.ifname != want.ifname:
                    continue
                matched[index] = item
                _refuse_changes(want, item)
                want.ifname = have.ifname
                break
        to_remove = [a for item, a in free if not any(item is m for m in matched.values())]
        to_add = [want for index, want in enumerate(requested) if index not in matched]
        kept = {a.ifname for _, a in actual} - {a.ifname for a in to_remove}
        self._name(to_add, [bool(explicit[i]) for i in range(len(requested)) if i not in matched], kept)
        for attachment in to_add:
            if attachment.resource_name or attachment.device_id:
                raise InvalidConfig(
                    f"network {attachment.name} needs a device (resourceName/deviceID): devices are "
                    "allocated when the pod starts and cannot be hot-plugged",
                    details=f"pod {call.pod_ref}",
                )
            warning = check_capabilities(call.conf, attachment)  # raises under strictCapabilities
            if warning:
                call.event(EventKind.WARNING, "CapabilityNotDeclared", warning)
        return to_add, to_remove

    def _aux_count(self, desired: list[Attachment]) -> int:
        aux = self.call.conf.auxiliary_cni_chain_name
        return 1 if aux and desired and desired[-1].name == aux else 0

    def _name(self, to_add: list[Attachment], explicit: list[bool], kept: set[str]) -> None:
        used = set(kept) | {a.ifname for a, named in zip(to_add, explicit, strict=True) if named}
        for attachment, named in zip(to_add, explicit, strict=True):
            if named:
                if attachment.ifname in kept:
                    raise InterfaceExists(
                        f'interface "{attachment.ifname}" asked for network {attachment.name} '
                        "is already used by another attachment of the pod",
                        details=f"pod {self.call.pod_ref}",
                    )
                continue
            index = 1
            while f"net{index}" in used or self._exists(f"net{index}"):
                index += 1
            attachment.ifname = f"net{index}"
            used.add(attachment.ifname)

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
            raise InterfaceExists(
                f'interface "{attachment.ifname}" already exists in the pod network namespace',
                details=f"network {attachment.name}; netns {netns}",
            )
        item = attachment.to_record()
        item[PENDING] = True
        self._save([*self.items, item])  # recorded before the delegate runs: a DEL finds it
        rt = runtime_conf(call.request, call.conf, call.pod_ref, attachment)
        lock.killable = True
        try:
            result = self.cni.add_network_list(attachment.network, rt)
            lock.killable = False
            routes.apply_default_routes(call.deps.netns, netns, self.cni, attachment, rt, result)
        except MultusError as exc:
            lock.killable = False
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


def _explicit_names(pod: KubeObject, annotation: str, namespace: str) -> list[str]:
    """The interface name each entry of the networks annotation asks for ("" for none)."""
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    value = annotations.get(annotation) if isinstance(annotations, dict) else None
    if not isinstance(value, str) or not value.strip():
        return []
    from pymultus.kube import annotations as grammar

    return [
        selection.interface or ""
        for selection in grammar.parse_networks(value.strip(), pod_namespace=namespace)
    ]


def _refuse_changes(want: Attachment, have: dict[str, object]) -> None:
    if any(have.get(key) for key in ("deviceID", "resourceName", "deviceInfoFile")):
        return  # device assignment rewrote its args at ADD: not comparable, and never hot-plugged
    wanted = want.to_record()
    changed = [key for key in _PARAMETERS if _normal(wanted.get(key)) != _normal(have.get(key))]
    if changed:
        raise ParametersChanged(
            f"network {want.name} ({have.get('ifname')}) is attached with other {', '.join(changed)} "
            "than the annotation now asks for; a running attachment is not changed: remove it from the "
            "annotation, then add it again",
            details="hot-plug never re-creates an interface behind the application's back",
        )


def _normal(value: object) -> object:
    """Absent and empty are the same request."""
    return value or None
