"""``PodSource`` (``pymultus.attach.ports``) on top of the live API: what the thin plugin uses.

Behaviour follows Go Multus (reference §4, §3.5, §11, §14) with the choices noted below:

* ``get_pod`` waits up to 2.5 s for a pod that is not visible yet (or still shows another UID),
  polling every 250 ms, then answers None when there is no pod of that name, and raises
  :class:`~pymultus.errors.PodUidMismatch` (code 11, Go Multus's message ``expected pod UID "X"
  but got "Y" from Kube API``) when there is one with another UID: a mismatch is never "not
  found", which would give the sandbox Go Multus's empty result and no network at all. DEL should
  not wait for a pod that is gone: build the source with ``wait_timeout=0`` for DEL (Go Multus
  returns at once on NotFound for DEL too). The UID check against ``K8S_POD_UID`` is skipped for
  static pods (their mirror pod in the API has another UID).
* ``write_network_status`` merge-patches the annotation through ``pods/status``: no
  resourceVersion is needed, so it never conflicts with kubelet's concurrent status writes and
  never writes back a stale status; ``metadata.uid`` in the patch is a precondition, so a pod
  re-created under the same name is not labelled with the old pod's networks. A 409 is retried
  (bounded). If the patch is forbidden — Go Multus's ClusterRole grants only get/update on
  pods/status — it falls back to Multus's own way: PUT with resourceVersion, GET + retry on 409.
  A pod that no longer exists is not an error (Multus tolerates it too).
* ``record_event`` POSTs the Event client-go's recorder sends for Multus and never raises. With
  ``defer_events`` (for the one-shot thin plugin) it does not wait for the answer: the API server
  stores the Event while the next delegate runs, the answer is read before the next request (or at
  exit) and a failure is logged then — as client-go's recorder, which sends Events in the
  background. Retries are unchanged (:meth:`KubeClient.send_deferred`).
"""

from __future__ import annotations

import time

from pymultus import errors
from pymultus.errors import MultusError
from pymultus.kube.netstatus import encode_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from pymultus.kube.client import KubeClient

    KubeObject = dict[str, object]

NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
CONFIG_MIRROR = "kubernetes.io/config.mirror"
CONFIG_SOURCE = "kubernetes.io/config.source"
EVENT_MESSAGE_LIMIT = 1024  # client-go's recorder truncates longer messages


class ApiPodSource:
    """Pods, NetworkAttachmentDefinitions, network-status and Events through a :class:`KubeClient`."""

    __slots__ = (
        "_last_event_ns",
        "client",
        "clock",
        "component",
        "conflict_backoff",
        "defer_events",
        "log",
        "now_ns",
        "poll_interval",
        "sleep",
        "status_retries",
        "wait_timeout",
    )

    def __init__(
        self,
        client: KubeClient,
        *,
        wait_timeout: float = 2.5,
        poll_interval: float = 0.25,
        status_retries: int = 5,
        conflict_backoff: float = 0.01,
        component: str = "multus",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now_ns: Callable[[], int] = time.time_ns,
        log: Callable[[str], None] | None = None,
        defer_events: bool = False,
    ) -> None:
        self.client = client
        self.defer_events = defer_events
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.status_retries = status_retries
        self.conflict_backoff = conflict_backoff
        self.component = component
        self.sleep = sleep
        self.clock = clock
        self.now_ns = now_ns
        self.log = log
        self._last_event_ns = 0

    def get_pod(self, namespace: str, name: str, *, uid: str | None) -> KubeObject | None:
        deadline = self.clock() + self.wait_timeout
        while True:
            try:
                pod: KubeObject | None = self.client.get_pod(namespace, name)
            except errors.KubeNotFound:
                pod = None
            if pod is not None and (not uid or pod_uid(pod) == uid or is_static_pod(pod)):
                return pod
            if self.clock() + self.poll_interval > deadline:
                if pod is not None:
                    # Another pod of that name: never "not found" (that would give the sandbox
                    # Go Multus's empty result, i.e. no network at all).
                    raise uid_mismatch(namespace, name, expected=uid or "", actual=pod_uid(pod))
                return None
            self.sleep(self.poll_interval)

    def get_network_attachment(self, namespace: str, name: str) -> KubeObject | None:
        try:
            return self.client.get_network_attachment(namespace, name)
        except errors.KubeNotFound:
            return None

    def write_network_status(self, pod: KubeObject, status: Sequence[Mapping[str, object]]) -> None:
        namespace, name = _namespace_name(pod)
        value = encode_status(status)  # byte-compatible with Go Multus (kube.netstatus)
        uid = pod_uid(pod)
        attempt = 0
        while True:
            try:
                self.client.patch_pod_status_annotations(namespace, name, {NETWORK_STATUS: value}, uid=uid)
                return
            except errors.KubeNotFound:
                return  # the pod is gone: nothing to label
            except errors.KubeForbidden:
                self._update_network_status(pod, value)
                return
            except errors.KubeConflict:
                if self._recreated(namespace, name, uid):
                    return  # another pod of that name now (the UID precondition failed): not ours
                if attempt >= self.status_retries:
                    raise
            attempt += 1
            self.sleep(self.conflict_backoff)

    def record_event(self, pod: KubeObject, *, kind: str, reason: str, message: str) -> None:
        try:
            namespace, name = _namespace_name(pod)
            metadata = pod.get("metadata")
            metadata = metadata if isinstance(metadata, dict) else {}
            stamp = self.now_ns()
            if stamp <= self._last_event_ns:  # two events in the same nanosecond: keep names unique
                stamp = self._last_event_ns + 1
            self._last_event_ns = stamp
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp // 1_000_000_000))
            involved: dict[str, object] = {"kind": "Pod", "namespace": namespace, "name": name}
            if metadata.get("uid"):
                involved["uid"] = metadata["uid"]
            involved["apiVersion"] = "v1"
            if metadata.get("resourceVersion"):
                involved["resourceVersion"] = metadata["resourceVersion"]
            event = {
                "kind": "Event",
                "apiVersion": "v1",
                "metadata": {"name": f"{name}.{stamp:x}", "namespace": namespace},
                "involvedObject": involved,
                "reason": reason,
                "message": message[:EVENT_MESSAGE_LIMIT],
                "source": {"component": self.component},
                "firstTimestamp": when,
                "lastTimestamp": when,
                "count": 1,
                "type": kind,
                "eventTime": None,
                "reportingComponent": self.component,
                "reportingInstance": "",
            }
            if self.defer_events:
                self.client.create_event_later(
                    namespace, event, on_error=lambda exc: self._event_failed(reason, exc)
                )
            else:
                self.client.create_event(namespace, event)
        except (MultusError, OSError, ValueError) as exc:
            # An Event is a courtesy to the user; failing to record one must never fail the CNI call.
            self._event_failed(reason, exc)

    def _event_failed(self, reason: str, exc: Exception) -> None:
        if self.log is not None:
            self.log(f"cannot record {reason} event: {exc}")

    # -- internals -------------------------------------------------------------------------

    def _recreated(self, namespace: str, name: str, uid: str) -> bool:
        """After a 409 on the patch: is the pod of that name now another pod (or gone)?"""
        if not uid:
            return False
        try:
            return pod_uid(self.client.get_pod(namespace, name)) != uid
        except errors.KubeNotFound:
            return True

    def _update_network_status(self, pod: KubeObject, value: str) -> None:
        """Go Multus's write: PUT pods/status guarded by resourceVersion; on 409 GET and retry."""
        namespace, name = _namespace_name(pod)
        current = pod
        attempt = 0
        while True:
            updated = _with_annotation(current, NETWORK_STATUS, value)
            try:
                self.client.update_pod_status(updated)
                return
            except errors.KubeNotFound:
                return
            except errors.KubeConflict:
                if attempt >= self.status_retries:
                    raise
            attempt += 1
            self.sleep(self.conflict_backoff)
            try:
                current = self.client.get_pod(namespace, name)
            except errors.KubeNotFound:
                return
            if pod_uid(current) != pod_uid(pod):
                return  # re-created under the same name: not ours to label


def uid_mismatch(
    namespace: str,
    name: str,
    *,
    expected: str,
    actual: str,
    source: str = "Kube API",
    code: int | None = None,
) -> errors.PodUidMismatch:
    """Go Multus's message for a pod whose UID is not the runtime's ``K8S_POD_UID``."""
    return errors.PodUidMismatch(
        f'pod {namespace}/{name}: expected pod UID "{expected}" but got "{actual}" from {source}',
        details="the pod was re-created under the same name, or the source still holds the other one",
        code=code,
    )


def is_static_pod(pod: Mapping[str, object]) -> bool:
    """A static pod's API object is a mirror pod with another UID than the one kubelet runs.

    kubelet marks mirror pods with ``kubernetes.io/config.mirror`` and a ``config.source`` other
    than ``api`` (``file``, ``http``).
    """
    annotations = _annotations(pod)
    if CONFIG_MIRROR in annotations:
        return True
    source = annotations.get(CONFIG_SOURCE)
    return isinstance(source, str) and source != "api"


def _annotations(obj: Mapping[str, object]) -> dict[str, object]:
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            return annotations
    return {}


def pod_uid(obj: Mapping[str, object]) -> str:
    """``metadata.uid`` of a Kubernetes object ("" when absent)."""
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        uid = metadata.get("uid")
        if isinstance(uid, str):
            return uid
    return ""


def _namespace_name(obj: Mapping[str, object]) -> tuple[str, str]:
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        namespace = metadata.get("namespace")
        name = metadata.get("name")
        if isinstance(namespace, str) and namespace and isinstance(name, str) and name:
            return namespace, name
    raise ValueError("the pod object has no metadata.namespace and metadata.name")


def _with_annotation(pod: KubeObject, key: str, value: str) -> KubeObject:
    """A shallow copy of ``pod`` with one annotation set (the caller's object is not changed)."""
    metadata = pod.get("metadata")
    new_metadata = dict(metadata) if isinstance(metadata, dict) else {}
    annotations = new_metadata.get("annotations")
    new_annotations = dict(annotations) if isinstance(annotations, dict) else {}
    new_annotations[key] = value
    new_metadata["annotations"] = new_annotations
    new_metadata.pop("managedFields", None)  # server-owned; sending it back only costs bytes
    updated = dict(pod)
    updated["metadata"] = new_metadata
    return updated
