"""The per-request context shared by the use cases: request, conf, dependencies, log, events."""

from __future__ import annotations

from pymultus import errors, logfmt
from pymultus.attach.model import PodRef
from pymultus.cni.chain import CNIConfig
from pymultus.cni.spec import DEL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pymultus.attach.model import Attachment
    from pymultus.attach.ports import KubeObject, NetnsOps, PodSource
    from pymultus.cni.invoke import PluginExecutor
    from pymultus.cni.request import CniRequest
    from pymultus.config.multus import MultusConf
    from pymultus.kube.devices import DeviceAllocator
    from pymultus.store.locks import ContainerLock

    LogFn = Callable[[str, str], None]


class EventKind:
    NORMAL = "Normal"
    WARNING = "Warning"


def _no_log(level: str, message: str) -> None:
    return None


def _kubelet_devices(pod_ref: PodRef) -> DeviceAllocator:
    from pymultus.kube.devices import DeviceAllocator

    return DeviceAllocator(pod_ref.namespace, pod_ref.name, pod_ref.uid)


class Deps:
    """What an entry point hands to the use cases; thin and thick mode differ only here.

    ``placeholder_for_missing_pod``: with a live API, a pod that does not exist gets Go Multus's
    empty result (PR #1408); the embedded manifests source sets it False so a netns wired by
    hand without a Pod manifest simply gets the configured delegates.
    """

    __slots__ = (
        "base_env",
        "device_allocator",
        "device_info_dir",
        "executor",
        "log",
        "log_level",
        "netns",
        "placeholder_for_missing_pod",
        "pods",
        "wait_readiness",
    )

    def __init__(
        self,
        *,
        pods: PodSource | None,
        netns: NetnsOps,
        executor: PluginExecutor,
        base_env: Mapping[str, str] | None = None,
        wait_readiness: bool = True,
        placeholder_for_missing_pod: bool = True,
        log: LogFn | None = None,
        log_level: str = "",
        device_allocator: Callable[[PodRef], DeviceAllocator] | None = None,
        device_info_dir: str = "/var/run/k8s.cni.cncf.io",
    ) -> None:
        self.pods = pods
        self.netns = netns
        self.executor = executor
        self.base_env = dict(base_env or {})
        self.wait_readiness = wait_readiness
        self.placeholder_for_missing_pod = placeholder_for_missing_pod
        self.log = log or _no_log
        # The configured level, so the engine builds no line the sink would drop; without one
        # every line goes to ``log``, which filters itself (the daemon's logging).
        self.log_level = logfmt.threshold(log_level) if log_level else 3 if log else 0
        self.device_allocator = device_allocator or _kubelet_devices
        self.device_info_dir = device_info_dir


class Call:
    """One CNI request being served."""

    __slots__ = ("_lock", "_pod", "_pod_loaded", "conf", "deps", "pod_ref", "request", "step")

    def __init__(self, request: CniRequest, conf: MultusConf, deps: Deps) -> None:
        self.request = request
        self.conf = conf
        self.deps = deps
        self.pod_ref = PodRef.from_request(request)
        self._pod: KubeObject | None = None
        self._pod_loaded = False
        self._lock: ContainerLock | None = None
        # The attachment being added or deleted: log lines and the failure line name it.
        self.step: Attachment | None = None

    def lock_container(self) -> ContainerLock:
        """Take the container's lock (``pymultus.store.locks``) for the rest of this call: ADD
        fails with code 11 if another ADD or DEL of the container runs; DEL stops a running ADD
        and waits for it. Every delegate started afterwards holds it too. ``close()`` lets go."""
        from pymultus.store.locks import ContainerLock

        if self._lock is None:
            cni_dir, container_id = self.conf.cni_dir, self.request.container_id
            if self.request.command == DEL:
                self._lock = ContainerLock.for_del(cni_dir, container_id, log=self.log)
            else:
                self._lock = ContainerLock.for_add(cni_dir, container_id)
            if self._lock.recovered:
                self._remove_orphaned_temps()
        return self._lock

    def _remove_orphaned_temps(self) -> None:
        """A killed ADD or DEL may have died in the middle of a cache write."""
        from pymultus import paths
        from pymultus.cni.cache import RESULTS_DIR
        from pymultus.fileio import remove_orphaned_temps

        cni_dir = self.conf.cni_dir
        removed = remove_orphaned_temps(cni_dir) + remove_orphaned_temps(paths.join(cni_dir, RESULTS_DIR))
        if removed:
            self.log("info", f"removed {removed} temp file(s) of cache writes a killed process left")

    def close(self) -> None:
        """Release what the call holds (the container lock); idempotent."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    @property
    def subject(self) -> str:
        """How messages name what is being attached: the pod, or the bare container."""
        return f"pod {self.pod_ref}" if self.pod_ref.known else f"container {self.request.container_id}"

    def logs(self, level: str) -> bool:
        """Whether a line of ``level`` is written: call sites whose fields cost something to
        build (verbose, debug) ask first, so a level that is off costs nothing."""
        return logfmt.enabled(level, self.deps.log_level)

    def log(self, level: str, message: str, **fields: object) -> None:
        """One logfmt line (``pymultus.logfmt``) naming the pod, container, command and the
        attachment in progress, then ``fields``."""
        if not logfmt.enabled(level, self.deps.log_level):
            return
        pairs: list[tuple[str, object]] = [
            ("pod", str(self.pod_ref) if self.pod_ref.known else ""),
            ("containerID", self.request.container_id[: logfmt.SHORT_ID]),
            ("command", self.request.command),
        ]
        step = self.step
        if step is not None and "network" not in fields:
            pairs += [("network", step.name), ("ifname", step.ifname)]
        pairs.extend(fields.items())
        self.deps.log(level, logfmt.fragment(message, pairs))

    def wait_for_default_network(self) -> None:
        if self.deps.wait_readiness and self.conf.readiness_indicator_file:
            from pymultus.attach.readiness import wait_for_default_network

            wait_for_default_network(self.conf.readiness_indicator_file, self.conf.readiness_timeout)

    def load_pod(self) -> KubeObject | None:
        """The pod; a pod of that name with another UID raises PodUidMismatch, except on DEL,
        which then goes on without the pod (Go Multus: the delegate cache decides)."""
        if not self._pod_loaded:
            self._pod_loaded = True
            if self.deps.pods is not None and self.pod_ref.known:
                try:
                    self._pod = self.deps.pods.get_pod(
                        self.pod_ref.namespace, self.pod_ref.name, uid=self.pod_ref.uid or None
                    )
                except errors.PodUidMismatch as exc:
                    if self.request.command != DEL:
                        raise
                    self.log("warning", f"{exc.msg}; deleting without the pod")
        return self._pod

    def event(self, kind: str, reason: str, message: str) -> None:
        pod = self._pod
        if pod is not None and self.deps.pods is not None:
            self.deps.pods.record_event(pod, kind=kind, reason=reason, message=message)

    def cni(self) -> CNIConfig:
        from pymultus.attach.runtime import search_path

        executor = self.deps.executor
        if self._lock is not None and self._lock.fd >= 0:
            executor = executor.guarded(self._lock)
        return CNIConfig(
            search_path=search_path(self.conf, self.request),
            executor=executor,
            cache_dir=self.conf.cni_dir,
        )
