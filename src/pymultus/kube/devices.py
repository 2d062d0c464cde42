"""Hand out the pod's allocated devices to the attachments whose NAD names a ``resourceName``.

Multus (reference §3.4, §15) builds a resource map once per ADD, the first time a NAD with the
``k8s.v1.cni.cncf.io/resourceName`` annotation is seen: the device IDs of all containers of the
pod, grouped by resource name and sorted; each attachment to a NAD of that resource takes the
next ID, so two NADs sharing a resource get distinct, deterministic devices.

What happens when the pod has no device (left) for the resource, deliberately like Multus: the
attachment gets no device ID and ADD goes on (``next_device`` returns None). Multus does not fail
there, and set-ups depend on it: some NADs carry a ``resourceName`` only to steer scheduling
(e.g. KubeVirt's bridge-marker ``bridge.network.kubevirt.io/<bridge>`` extended resources, which
no device plugin allocates and the kubelet never lists). A plugin that really needs a device then
fails with its own error; the engine should log/emit a warning naming the resource.
:meth:`DeviceAllocator.require_device` is the strict variant (:class:`DeviceNotAllocated`, code 7)
for callers that want to refuse instead.

Not reaching the kubelet at all (no socket answering and no checkpoint) is an error, as in
Multus: :class:`~pymultus.kube.podresources.PodResourcesUnavailable` (code 11).

Deviation: duplicate IDs are dropped before sorting. The kubelet's checkpoint repeats the devices
an init container handed on to an app container; Multus would then give the same device twice.

Devices allocated through DRA (:mod:`pymultus.kube.dra`) join the same map when the allocator is
given a claim reader and the pod has ``spec.resourceClaims`` (:meth:`DeviceAllocator.use_claims`):
a resource name that the pod's claims provide is served from them, any other from the kubelet, so
a pod whose NADs are all covered by DRA never asks the kubelet. The claims' warnings (unallocated
claim, device without the attributes) wait in :meth:`DeviceAllocator.take_warnings`.

Importing this module does not import ``grpc``; only a lookup through the API socket does.
"""

from __future__ import annotations

from pymultus import errors
from pymultus.kube import podresources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pymultus.kube.dra import ClaimReader, DraDevices


class DeviceNotAllocated(errors.InvalidConfig):
    """A NAD needs a device of a resource the pod has none (left) of; see ``require_device``."""


class DeviceAllocator:
    """The devices of one pod, loaded on first use, handed out in sorted order per resource.

    ``loader`` replaces the kubelet lookup (tests, or the daemon with its own source); by default
    :func:`pymultus.kube.podresources.pod_devices` with the given paths and timeout. ``claims``
    builds the DRA :class:`~pymultus.kube.dra.ClaimReader` (see :meth:`use_claims`).
    """

    __slots__ = ("_claims", "_dra", "_loader", "_map", "_next", "claims", "name", "namespace", "uid")

    def __init__(
        self,
        namespace: str,
        name: str,
        uid: str = "",
        *,
        socket_path: str = podresources.DEFAULT_SOCKET,
        checkpoint_path: str = podresources.DEFAULT_CHECKPOINT,
        timeout: float = podresources.DEFAULT_TIMEOUT,
        loader: Callable[[], podresources.PodDeviceMap] | None = None,
        claims: Callable[[], ClaimReader] | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid
        if loader is None:

            def loader() -> podresources.PodDeviceMap:
                return podresources.pod_devices(
                    namespace,
                    name,
                    uid,
                    socket_path=socket_path,
                    checkpoint_path=checkpoint_path,
                    timeout=timeout,
                )

        self._loader = loader
        self._map: podresources.PodDeviceMap | None = None
        self._next: dict[str, int] = {}
        # Builds the DRA claim reader (called only for a pod with claims); None without an API.
        self.claims = claims
        self._claims: Callable[[], DraDevices] | None = None
        self._dra: DraDevices | None = None

    def use_claims(self, pod: Mapping[str, object]) -> bool:
        """Serve the DRA devices of ``pod`` too, read on first need; False (and nothing is
        imported) when the pod has no claims or there is no claim reader."""
        spec = pod.get("spec")
        if self.claims is None or not isinstance(spec, dict) or not spec.get("resourceClaims"):
            return False
        reader = self.claims
        self._claims = lambda: reader().pod_devices(pod)
        return True

    def take_warnings(self) -> list[tuple[str, str]]:
        """The DRA warnings (event reason, message) not taken yet."""
        if self._dra is None:
            return []
        warnings, self._dra.warnings = self._dra.warnings, []
        return warnings

    @property
    def loaded(self) -> bool:
        """Whether the kubelet has been asked (no lookup happens until a device is needed)."""
        return self._map is not None

    @property
    def source(self) -> str:
        """Where the kubelet's devices came from: ``pod-resources`` or ``checkpoint`` ("" before
        loading, and when only DRA was asked)."""
        return self._map.source if self._map is not None else ""

    @property
    def fallback_reason(self) -> str:
        """Why the checkpoint was used instead of the API ("" when it was not), for logs."""
        return self._map.fallback_reason if self._map is not None else ""

    def devices(self, resource_name: str) -> tuple[str, ...]:
        """All of the pod's device IDs of ``resource_name``, sorted, without duplicates."""
        return tuple(self._ids(resource_name))

    def next_device(self, resource_name: str) -> str | None:
        """The next unused device ID of ``resource_name``; None when the pod has none left."""
        ids = self._ids(resource_name)
        index = self._next.get(resource_name, 0)
        if not ids or index >= len(ids):
            return None
        self._next[resource_name] = index + 1
        return ids[index]

    def require_device(self, resource_name: str, network: str) -> str:
        """Like :meth:`next_device`, but :class:`DeviceNotAllocated` names what is missing."""
        device = self.next_device(resource_name)
        if device is not None:
            return device
        total = len(self._ids(resource_name))
        pod = f"{self.namespace}/{self.name}"
        if total == 0:
            message = (
                f"network {network} needs a device of resource {resource_name}, "
                f"but the kubelet allocated none to pod {pod}"
            )
        else:
            message = (
                f"network {network} needs a device of resource {resource_name}, but all {total} "
                f"allocated to pod {pod} are used by earlier attachments"
            )
        source = "dra" if self._dra is not None and resource_name in self._dra.by_resource else self.source
        raise DeviceNotAllocated(message, details=f"resourceName={resource_name} source={source}")

    def _ids(self, resource_name: str) -> list[str]:
        if self._claims is not None and self._dra is None:
            loaded = self._claims()
            loaded.by_resource = {resource: sorted(set(ids)) for resource, ids in loaded.by_resource.items()}
            self._dra = loaded
        if self._dra is not None and resource_name in self._dra.by_resource:
            return self._dra.by_resource[resource_name]
        return self._resources().get(resource_name, [])

    def _resources(self) -> dict[str, list[str]]:
        if self._map is None:
            if not self.namespace or not self.name:
                raise errors.InvalidEnvironment(
                    "the pod's namespace and name are needed to look up its devices "
                    "(K8S_POD_NAMESPACE/K8S_POD_NAME missing from CNI_ARGS)"
                )
            loaded = self._loader()
            loaded.by_resource = {resource: sorted(set(ids)) for resource, ids in loaded.by_resource.items()}
            self._map = loaded
        return self._map.by_resource
