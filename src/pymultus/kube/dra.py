"""Devices allocated through Dynamic Resource Allocation (``resource.k8s.io/v1``, Kubernetes 1.34+).

Like Go Multus (reference §15): for a pod with ``spec.resourceClaims``, each claim the pod uses is
read (``GET resourceclaims``; a claim made from a template is named in
``status.resourceClaimStatuses``, the claim of extended resources in
``status.extendedResourceClaimStatus``), its allocated devices are taken from
``status.allocation.devices.results`` (driver, pool, device) and looked up in the ResourceSlices of
the pod's node, and their attributes ``k8s.cni.cncf.io/resourceName`` and
``k8s.cni.cncf.io/deviceID`` give the same resource name → device IDs map as the kubelet's
PodResources path. For the extended-resource claim, a device counts only when the resource name of
its request's mapping equals its ``resourceName`` attribute exactly.

What is not usable is skipped with a warning (the caller turns each into a pod Warning event and
ADD goes on, as for a device-plugin resource with no device left): a claim that does not exist or
is not allocated (``ResourceClaimNotAllocated``), a device without both attributes or not found in
the node's slices (``DeviceAttributesMissing``). API failures (403, 5xx, ...) raise as usual.

ResourceSlices are listed with field selectors ``spec.nodeName=<node>`` and ``spec.nodeName=``
(slices for all nodes, per-device node selection or a node selector; the API server matches only
``spec.nodeName`` exactly), each with ``spec.driver=<driver>``. Only the newest generation of a
pool counts. :class:`SliceCache` keeps them per (node, driver), bounded and refreshed on a miss, so
the daemon lists a driver's slices once, not per ADD.

Nothing here is imported for a pod without claims (the caller checks :func:`has_claims` first).
"""

from __future__ import annotations

import threading
import time

from pymultus.errors import KubeInvalid, KubeNotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from pymultus.kube.client import KubeClient

    KubeObject = dict[str, object]

GROUP_PATH = "/apis/resource.k8s.io/v1"
RESOURCE_NAME_ATTRIBUTE = "k8s.cni.cncf.io/resourceName"
DEVICE_ID_ATTRIBUTE = "k8s.cni.cncf.io/deviceID"
NOT_ALLOCATED = "ResourceClaimNotAllocated"
ATTRIBUTES_MISSING = "DeviceAttributesMissing"
SLICE_CACHE_ENTRIES = 64  # (node, driver) pairs; a node sees few drivers
SLICE_CACHE_TTL = 60.0  # seconds; a miss refreshes at once, so staleness costs one LIST
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


def has_claims(pod: Mapping[str, object]) -> bool:
    """Whether the pod uses ResourceClaims (the only case anything here is loaded for)."""
    spec = pod.get("spec")
    return isinstance(spec, dict) and bool(spec.get("resourceClaims"))


class ClaimRef:
    """One ResourceClaim the pod uses; ``mappings`` (request → resource name) only for the
    extended-resource claim."""

    __slots__ = ("claim_name", "mappings", "pod_claim")

    def __init__(self, pod_claim: str, claim_name: str, mappings: dict[str, str] | None = None) -> None:
        self.pod_claim = pod_claim  # the entry name in spec.resourceClaims ("" for extended resources)
        self.claim_name = claim_name  # "" when the claim from a template is not generated yet
        self.mappings = mappings


class DraDevices:
    """Device IDs per resource name from the pod's claims, and why devices were skipped."""

    __slots__ = ("by_resource", "warnings")

    def __init__(self) -> None:
        self.by_resource: dict[str, list[str]] = {}
        self.warnings: list[tuple[str, str]] = []  # (event reason, message)


def claim_refs(pod: Mapping[str, object]) -> list[ClaimRef]:
    """The claims of the pod, in ``spec.resourceClaims`` order, then the extended-resource claim."""
    spec = _mapping(pod.get("spec"))
    status = _mapping(pod.get("status"))
    generated = {
        _text(entry.get("name")): _text(entry.get("resourceClaimName"))
        for entry in _mappings(status.get("resourceClaimStatuses"))
    }
    refs = []
    for entry in _mappings(spec.get("resourceClaims")):
        pod_claim = _text(entry.get("name"))
        direct = _text(entry.get("resourceClaimName"))
        refs.append(ClaimRef(pod_claim, direct or generated.get(pod_claim, "")))
    extended = _mapping(status.get("extendedResourceClaimStatus"))
    if extended.get("resourceClaimName"):
        mappings = {
            _text(m.get("requestName")): _text(m.get("resourceName"))
            for m in _mappings(extended.get("requestMappings"))
        }
        refs.append(ClaimRef("", _text(extended.get("resourceClaimName")), mappings))
    return refs


class SliceCache:
    """ResourceSlices per (node, driver): at most ``entries`` pairs, each kept ``ttl`` seconds.

    Thread-safe; concurrent misses of one pair may both LIST (harmless, last one wins).
    """

    def __init__(
        self,
        *,
        entries: int = SLICE_CACHE_ENTRIES,
        ttl: float = SLICE_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries = entries
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._slices: dict[tuple[str, str], tuple[float, list[KubeObject]]] = {}
        self.lists = 0  # LIST calls made, for tests and metrics

    def get(self, client: KubeClient, node: str, driver: str, *, refresh: bool = False) -> list[KubeObject]:
        key = (node, driver)
        now = self._clock()
        with self._lock:
            cached = self._slices.get(key)
            if cached is not None and not refresh and now - cached[0] < self._ttl:
                self._slices[key] = self._slices.pop(key)  # most recently used last
                return cached[1]
        slices = list_node_slices(client, node, driver)
        with self._lock:
            self.lists += 1
            self._slices.pop(key, None)
            self._slices[key] = (now, slices)
            while len(self._slices) > self._entries:
                del self._slices[next(iter(self._slices))]
        return slices


def list_node_slices(client: KubeClient, node: str, driver: str) -> list[KubeObject]:
    """The driver's slices that can hold devices of ``node``: its own and the node-less ones."""
    path = f"{GROUP_PATH}/resourceslices"
    own, _rv = client.list(path, {"fieldSelector": f"spec.nodeName={node},spec.driver={driver}"})
    shared, _rv = client.list(path, {"fieldSelector": f"spec.nodeName=,spec.driver={driver}"})
    return own + [s for s in shared if _serves_node(_mapping(s.get("spec")), node)]


def _serves_node(spec: Mapping[str, object], node: str) -> bool:
    if spec.get("allNodes") is True or spec.get("nodeSelector"):
        return True  # a node selector is matched by the scheduler; the allocation already chose
    if spec.get("perDeviceNodeSelection") is True:
        return any(
            d.get("allNodes") is True or d.get("nodeSelector") or d.get("nodeName") == node
            for d in _mappings(spec.get("devices"))
        )
    return False


class ClaimReader:
    """Builds :class:`DraDevices` for a pod from the API (``client()`` is called on first use, so
    the thin plugin's client is built only when a pod has claims)."""

    def __init__(self, client: Callable[[], KubeClient], slices: SliceCache | None = None) -> None:
        self._client = client
        self._slices = slices or SliceCache()

    def pod_devices(self, pod: Mapping[str, object]) -> DraDevices:
        out = DraDevices()
        meta = _mapping(pod.get("metadata"))
        namespace, pod_name = _text(meta.get("namespace")), _text(meta.get("name"))
        node = _text(_mapping(pod.get("spec")).get("nodeName"))
        client = self._client()
        found: dict[str, set[str]] = {}
        for ref in claim_refs(pod):
            what = f"resource claim {ref.claim_name or ref.pod_claim} of pod {namespace}/{pod_name}"
            if not ref.claim_name:
                out.warnings.append((NOT_ALLOCATED, f"{what} has not been created yet; it gives no device"))
                continue
            try:
                claim = client.request("GET", claim_path(namespace, ref.claim_name))
            except KubeNotFound:
                out.warnings.append((NOT_ALLOCATED, f"{what} does not exist; it gives no device"))
                continue
            allocation = _mapping(_mapping(claim.get("status")).get("allocation"))
            results = _mappings(_mapping(allocation.get("devices")).get("results"))
            if not results:
                out.warnings.append((NOT_ALLOCATED, f"{what} is not allocated; it gives no device"))
                continue
            for result in results:
                resource, device_id, warning = self._device(client, node, what, ref, result)
                if warning:
                    out.warnings.append((ATTRIBUTES_MISSING, warning))
                elif device_id not in found.setdefault(resource, set()):
                    found[resource].add(device_id)
                    out.by_resource.setdefault(resource, []).append(device_id)
        return out

    def _device(
        self, client: KubeClient, node: str, what: str, ref: ClaimRef, result: Mapping[str, object]
    ) -> tuple[str, str, str]:
        """(resource name, device ID, "") of one allocated device, or ("", "", why it is skipped)."""
        driver, pool, name = (_text(result.get(k)) for k in ("driver", "pool", "device"))
        device = f"device {driver}/{pool}/{name} of {what}"
        attributes = self._attributes(client, node, driver, pool, name)
        if attributes is None:
            return "", "", f"{device} is in no ResourceSlice of node {node}; skipped"
        resource = _attribute(attributes, RESOURCE_NAME_ATTRIBUTE)
        device_id = _attribute(attributes, DEVICE_ID_ATTRIBUTE)
        if not resource or not device_id:
            return (
                "",
                "",
                (
                    f"{device} lacks the string attributes {RESOURCE_NAME_ATTRIBUTE} and "
                    f"{DEVICE_ID_ATTRIBUTE}; skipped"
                ),
            )
        if ref.mappings is not None and ref.mappings.get(_text(result.get("request"))) != resource:
            return (
                "",
                "",
                (
                    f"{device} has {RESOURCE_NAME_ATTRIBUTE} {resource}, not the extended resource its "
                    "request maps to; skipped"
                ),
            )
        return resource, device_id, ""

    def _attributes(
        self, client: KubeClient, node: str, driver: str, pool: str, name: str
    ) -> Mapping[str, object] | None:
        for refresh in (False, True):  # a device missing from cached slices: list once more
            device = find_device(self._slices.get(client, node, driver, refresh=refresh), pool, name)
            if device is not None:
                return _mapping(device.get("attributes"))
        return None


def find_device(slices: Iterable[Mapping[str, object]], pool: str, name: str) -> Mapping[str, object] | None:
    """The device ``name`` of ``pool`` in the pool's newest generation of slices, or None."""
    newest = -1
    device: Mapping[str, object] | None = None
    for obj in slices:
        spec = _mapping(obj.get("spec"))
        pool_spec = _mapping(spec.get("pool"))
        if pool_spec.get("name") != pool:
            continue
        generation = pool_spec.get("generation")
        generation = generation if isinstance(generation, int) else 0
        if generation < newest:
            continue
        if generation > newest:
            newest, device = generation, None
        for entry in _mappings(spec.get("devices")):
            if entry.get("name") == name:
                device = entry
    return device


def claim_path(namespace: str, name: str) -> str:
    for value, what in ((namespace, "namespace"), (name, "resource claim name")):
        if not value or not set(value) <= _NAME_CHARS or value in (".", ".."):
            raise KubeInvalid(f"{what} {value!r} is not a valid Kubernetes object name", reason="Invalid")
    return f"{GROUP_PATH}/namespaces/{namespace}/resourceclaims/{name}"


def _attribute(attributes: Mapping[str, object], key: str) -> str:
    value = _mapping(attributes.get(key)).get("string")
    return value if isinstance(value, str) else ""


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _mappings(value: object) -> list[Mapping[str, object]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
