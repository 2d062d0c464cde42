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

Importing this module does not import ``grpc``; only a lookup through the API socket does.
"""

from __future__ import annotations

from pymultus.errors import InvalidConfig, InvalidEnvironment
from pymultus.kube import podresources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class DeviceNotAllocated(InvalidConfig):
    """A NAD needs a device of a resource the pod has none (left) of; see ``require_device``."""


class DeviceAllocator:
    """The devices of one pod, loaded on first use, handed out in sorted order per resource.

    ``loader`` replaces the kubelet lookup (tests, or the daemon with its own source); by default
    :func:`pymultus.kube.podresources.pod_devices` with the given paths and timeout.
    """

    __slots__ = ("_loader", "_map", "_next", "name", "namespace", "uid")

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

    @property
    def loaded(self) -> bool:
        """Whether the kubelet has been asked (no lookup happens until a device is needed)."""
        return self._map is not None

    @property
    def source(self) -> str:
        """Where the devices came from: ``pod-resources`` or ``checkpoint`` ("" before loading)."""
        return self._map.source if self._map is not None else ""

    @property
    def fallback_reason(self) -> str:
        """Why the checkpoint was used instead of the API ("" when it was not), for logs."""
        return self._map.fallback_reason if self._map is not None else ""

    def devices(self, resource_name: str) -> tuple[str, ...]:
        """All of the pod's device IDs of ``resource_name``, sorted, without duplicates."""
        return tuple(self._resources().get(resource_name, ()))

    def next_device(self, resource_name: str) -> str | None:
        """The next unused device ID of ``resource_name``; None when the pod has none left."""
        ids = self._resources().get(resource_name)
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
        total = len(self._resources().get(resource_name, ()))
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
        raise DeviceNotAllocated(message, details=f"resourceName={resource_name} source={self.source}")

    def _resources(self) -> dict[str, list[str]]:
        if self._map is None:
            if not self.namespace or not self.name:
                raise InvalidEnvironment(
                    "the pod's namespace and name are needed to look up its devices "
                    "(K8S_POD_NAMESPACE/K8S_POD_NAME missing from CNI_ARGS)"
                )
            loaded = self._loader()
            loaded.by_resource = {resource: sorted(set(ids)) for resource, ids in loaded.by_resource.items()}
            self._map = loaded
        return self._map.by_resource
