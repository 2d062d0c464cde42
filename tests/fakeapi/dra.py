"""ResourceClaims and ResourceSlices (``resource.k8s.io/v1``) for the fake API server.

Faithful to the recordings (tests/data/k8s-wire, cases 29 to 39, wire facts 13 to 17): built-in types in
Go struct key order, a ResourceSlice has ``metadata.generation`` and a ResourceClaim none, a claim
request is defaulted to ``allocationMode: ExactCount, count: 1``, a claim has a ``status``
subresource whose allocation results are validated (422 with ``details.kind`` the Kind), and the
field selectors each kind supports (anything else is 400). ``spec.nodeName=`` matches the slices
that have no node name (``allNodes``, ``perDeviceNodeSelection``, ``nodeSelector``).

The server calls the hooks below; tests use :func:`create_slice`, :func:`create_claim` and
:func:`allocate_claim` to set objects up without HTTP.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from tests.fakeapi.store import NAMESPACES, PODS, Resource

if TYPE_CHECKING:
    from tests.fakeapi.server import FakeApiServer

Obj = dict[str, object]

GROUP = "resource.k8s.io"
CLAIMS = Resource(GROUP, "resourceclaims", "ResourceClaim", True, False)
SLICES = Resource(GROUP, "resourceslices", "ResourceSlice", False, False)
RESOURCES = {(r.group, r.plural): r for r in (CLAIMS, SLICES)}
WITH_STATUS = (CLAIMS,)  # resources of this module with a status subresource

SLICE_SPEC_ORDER = (
    "driver", "pool", "nodeName", "nodeSelector", "allNodes", "devices", "perDeviceNodeSelection",
    "sharedCounters",
)  # fmt: skip
POOL_ORDER = ("name", "generation", "resourceSliceCount")
DEVICE_ORDER = (
    "name", "attributes", "capacity", "consumesCounters", "nodeName", "nodeSelector", "allNodes", "taints",
)  # fmt: skip
EXACT_ORDER = ("deviceClassName", "selectors", "allocationMode", "count", "adminAccess", "tolerations")
RESULT_ORDER = ("request", "driver", "pool", "device", "adminAccess", "tolerations")
SLICE_FIELDS = ("metadata.name", "spec.nodeName", "spec.driver")
CLAIM_FIELDS = ("metadata.name", "metadata.namespace")
LABEL_RULE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def _ordered(obj: Obj, order: tuple[str, ...]) -> Obj:
    out = {k: obj[k] for k in order if k in obj}
    out.update((k, v) for k, v in obj.items() if k not in out)
    return out


def _dicts(value: object) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _dict(value: object) -> Obj:
    return value if isinstance(value, dict) else {}


def default(obj: Obj, res: Resource) -> Obj:
    """The object as kube-apiserver stores it: defaults and Go key order (wire fact 13)."""
    meta = dict(_dict(obj.get("metadata")))
    spec = dict(_dict(obj.get("spec")))
    if res is SLICES:
        meta["generation"] = 1
        if isinstance(spec.get("pool"), dict):
            spec["pool"] = _ordered(dict(_dict(spec["pool"])), POOL_ORDER)
        spec["devices"] = [_ordered(dict(d), DEVICE_ORDER) for d in _dicts(spec.get("devices"))]
        spec = _ordered(spec, SLICE_SPEC_ORDER)
        return {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta, "spec": spec}
    devices = dict(_dict(spec.get("devices")))
    requests = []
    for raw in _dicts(devices.get("requests")):
        request = dict(raw)
        if isinstance(request.get("exactly"), dict):
            exactly = dict(_dict(request["exactly"]))
            exactly.setdefault("allocationMode", "ExactCount")
            if exactly["allocationMode"] == "ExactCount":
                exactly.setdefault("count", 1)
            request["exactly"] = _ordered(exactly, EXACT_ORDER)
        requests.append(request)
    devices["requests"] = requests
    spec["devices"] = devices
    return {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta, "spec": spec, "status": {}}


def check_field_selector(res: Resource, terms: list[tuple[str, str, str | None]]) -> None:
    """400 for a field the kind cannot be selected by (wire fact 14)."""
    from tests.fakeapi.server import ApiStatus

    for key, _op, _value in terms:
        if res is SLICES and key not in SLICE_FIELDS:
            raise ApiStatus(
                400, "BadRequest", f"field label not supported for {GROUP}/v1, Kind={res.kind}: {key}"
            )
        if res is CLAIMS and key not in CLAIM_FIELDS:
            raise ApiStatus(
                400,
                "BadRequest",
                f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"',
            )


def _invalid(res: Resource, name: str, field: str, reason: str, detail: str) -> Exception:
    from tests.fakeapi.server import ApiStatus

    return ApiStatus(
        422,
        "Invalid",
        f'{res.kind}.{res.group} "{name}" is invalid: {field}: {detail}' if res.group else
        f'{res.kind} "{name}" is invalid: {field}: {detail}',
        {
            "name": name,
            **({"group": res.group} if res.group else {}),
            "kind": res.kind,
            "causes": [{"reason": reason, "message": detail, "field": field}],
        },
    )  # fmt: skip


def claim_status(name: str, current: Obj, new_status: object) -> Obj:
    """The validated ``status`` of a claim status write (wire fact 15)."""
    status = dict(_dict(new_status))
    requests = {
        str(r.get("name")) for r in _dicts(_dict(_dict(current.get("spec")).get("devices")).get("requests"))
    }
    allocation = _dict(status.get("allocation"))
    if status.get("reservedFor") and not allocation:
        raise _invalid(CLAIMS, name, "status.reservedFor", "Forbidden", "Forbidden: may not be specified")
    results = []
    for i, result in enumerate(_dicts(_dict(allocation.get("devices")).get("results"))):
        where = f"status.allocation.devices.results[{i}]"
        request = str(result.get("request", ""))
        if request.split("/", 1)[0] not in requests:
            raise _invalid(
                CLAIMS, name, f"{where}.request", "FieldValueInvalid",
                f'Invalid value: "{request}": must be the name of a request in the claim or the name of a '
                "request and a subrequest separated by '/'",
            )  # fmt: skip
        if not result.get("driver"):
            raise _invalid(CLAIMS, name, f"{where}.driver", "FieldValueRequired", "Required value")
        device = str(result.get("device", ""))
        if not _is_label(device):
            detail = f'Invalid value: "{device}": {LABEL_RULE}'
            raise _invalid(CLAIMS, name, f"{where}.device", "FieldValueInvalid", detail)
        results.append(_ordered(dict(result), RESULT_ORDER))
    if allocation:
        devices = dict(_dict(allocation.get("devices")))
        devices["results"] = results
        allocation = dict(allocation)
        allocation["devices"] = devices
        status["allocation"] = _ordered(allocation, ("devices", "nodeSelector", "allocationTimestamp"))
    return _ordered(status, ("allocation", "reservedFor", "devices"))


def check_pod_claim_statuses(name: str, pod: Obj) -> None:
    """A pod's ``status.resourceClaimStatuses`` must name entries of ``spec.resourceClaims``."""
    names = {r.get("name") for r in _dicts(_dict(pod.get("spec")).get("resourceClaims"))}
    for i, entry in enumerate(_dicts(_dict(pod.get("status")).get("resourceClaimStatuses"))):
        if entry.get("name") not in names:
            value = entry.get("name")
            detail = f'Invalid value: "{value}": must match the name of an entry in spec.resourceClaims'
            raise _invalid(PODS, name, f"status.resourceClaimStatuses[{i}].name", "FieldValueInvalid", detail)


def _is_label(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    return 0 < len(name) <= 63 and set(name) <= allowed and name[0].isalnum() and name[-1].isalnum()


# -- set-up helpers for tests (no HTTP) ------------------------------------------------------------


def device(name: str, resource_name: str | None = None, device_id: str | None = None, **extra: object) -> Obj:
    """A slice device; with ``resource_name``/``device_id`` the attributes Multus reads."""
    out: Obj = {"name": name}
    attributes: Obj = {}
    if device_id is not None:
        attributes["k8s.cni.cncf.io/deviceID"] = {"string": device_id}
    if resource_name is not None:
        attributes["k8s.cni.cncf.io/resourceName"] = {"string": resource_name}
    if attributes:
        out["attributes"] = attributes
    out.update(extra)
    return out


def create_slice(
    api: FakeApiServer,
    name: str,
    *,
    driver: str,
    pool: str,
    devices: list[Obj],
    node_name: str | None = None,
    all_nodes: bool = False,
    per_device: bool = False,
    generation: int = 1,
) -> Obj:
    spec: Obj = {"driver": driver, "pool": {"name": pool, "generation": generation, "resourceSliceCount": 1}}
    if node_name:
        spec["nodeName"] = node_name
    if all_nodes:
        spec["allNodes"] = True
    spec["devices"] = devices
    if per_device:
        spec["perDeviceNodeSelection"] = True
    obj = default({"metadata": {"name": name}, "spec": spec}, SLICES)
    return api.store.create(SLICES, "", api._finish_meta(obj, "unknown"))


def create_claim(
    api: FakeApiServer,
    namespace: str,
    name: str,
    requests: tuple[str, ...] = ("net",),
    device_class: str = "net",
) -> Obj:
    if not api.store.exists(NAMESPACES, "", namespace):
        api.create_namespace(namespace)
    spec = {
        "devices": {"requests": [{"name": r, "exactly": {"deviceClassName": device_class}} for r in requests]}
    }
    obj = default({"metadata": {"name": name, "namespace": namespace}, "spec": spec}, CLAIMS)
    return api.store.create(CLAIMS, namespace, api._finish_meta(obj, "unknown"))


def allocate_claim(api: FakeApiServer, namespace: str, name: str, results: list[Obj]) -> Obj:
    """Write ``status.allocation`` as the scheduler does (results: request, driver, pool, device)."""
    with api.store.cond:
        current = api.store.get(CLAIMS, namespace, name)
        assert current is not None, f"no claim {namespace}/{name}"
        updated = copy.deepcopy(current)
        updated["status"] = claim_status(name, current, {"allocation": {"devices": {"results": results}}})
        api._finish_meta(updated, "unknown", subresource="status")
        return api.store.replace(CLAIMS, namespace, name, updated)


def create_pod(
    api: FakeApiServer,
    namespace: str,
    name: str,
    claims: dict[str, str],
    *,
    annotations: dict[str, str] | None = None,
    node_name: str = "node1",
) -> Obj:
    """A pod using ResourceClaims (``claims``: pod claim name -> ResourceClaim name), as case 37."""
    meta: Obj = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    container = {
        "name": "app",
        "image": "registry.invalid/pause:3.10",
        "resources": {"claims": [{"name": c} for c in claims]},
    }
    spec: Obj = {
        "containers": [container],
        "automountServiceAccountToken": False,
        "nodeName": node_name,
        "resourceClaims": [{"name": c, "resourceClaimName": claim} for c, claim in claims.items()],
    }
    body: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    return api.store.create(PODS, namespace, api._default_pod(body, "unknown"))
