"""``pymultus status``: a pod's attachments from its network-status and from the node's caches.

The two views are merged by interface name. What one has and the other lacks is flagged, as are
different IPs, and (when run as root on the pod's node) an interface that the cache records but
the pod's network namespace no longer has. The cache is node-local: a pod running on another
node shows all its interfaces as "not in this node's cache".
"""

from __future__ import annotations

import os
import time

from pymultus.cni import cache as result_cache
from pymultus.errors import MultusError
from pymultus.kube.netstatus import NETWORK_STATUS_ANNOTATION, decode_status
from pymultus.ops import node
from pymultus.store import delegates as store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymultus.attach.ports import PodSource
    from pymultus.config.multus import MultusConf


class Row:
    """One interface of the pod, as the annotation and/or the cache see it."""

    __slots__ = (
        "container",
        "default",
        "gateways",
        "in_annotation",
        "in_cache",
        "interface",
        "ips",
        "mac",
        "network",
        "notes",
        "plugin",
        "since",
    )

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.network = ""
        self.plugin = ""
        self.ips: list[str] = []
        self.mac = ""
        self.default = False
        self.gateways: list[str] = []
        self.since = ""
        self.container = ""
        self.in_annotation = False
        self.in_cache = False
        self.notes: list[str] = []

    def to_json(self) -> dict[str, object]:
        return {
            "interface": self.interface,
            "network": self.network,
            "plugin": self.plugin,
            "ips": self.ips,
            "mac": self.mac,
            "default": self.default,
            "defaultRoute": self.gateways,
            "since": self.since,
            "containerID": self.container,
            "inNetworkStatus": self.in_annotation,
            "inCache": self.in_cache,
            "differences": self.notes,
        }


class PodStatus:
    __slots__ = ("annotation", "name", "namespace", "problems", "rows")

    def __init__(self, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        self.annotation: bool = False  # whether the pod has a network-status at all
        self.rows: list[Row] = []
        self.problems: list[str] = []  # pod-level findings (pod missing, unreadable cache, ...)

    @property
    def consistent(self) -> bool:
        return not self.problems and not any(row.notes for row in self.rows)

    def to_json(self) -> dict[str, object]:
        return {
            "pod": f"{self.namespace}/{self.name}",
            "networkStatus": self.annotation,
            "interfaces": [row.to_json() for row in self.rows],
            "problems": self.problems,
            "consistent": self.consistent,
        }


def pod_status(
    conf: MultusConf, namespace: str, name: str, source: PodSource | None, *, check_netns: bool = True
) -> PodStatus:
    status = PodStatus(namespace, name)
    rows: dict[str, Row] = {}
    entries = _annotation(status, source)
    for entry in entries or []:
        row = rows.setdefault(str(entry.get("interface") or ""), Row(str(entry.get("interface") or "")))
        row.in_annotation = True
        row.network = str(entry.get("name") or "")
        row.ips = [str(ip) for ip in _list(entry.get("ips"))]
        row.mac = str(entry.get("mac") or "")
        row.default = entry.get("default") is True
        row.gateways = [str(gw) for gw in _list(entry.get("gateway"))]
    for container_id, record in _pod_records(status, conf.cni_dir):
        _add_cached(rows, conf.cni_dir, container_id, record, check_netns=check_netns)
    for row in rows.values():
        _compare(row)
    status.rows = list(rows.values())
    return status


def _annotation(status: PodStatus, source: PodSource | None) -> list[dict[str, object]] | None:
    if source is None:
        status.problems.append("no Kubernetes API and no manifestsDir: the network-status cannot be read")
        return None
    from pymultus.kube.manifests import ManifestPodSource

    try:
        pod = source.get_pod(status.namespace, status.name, uid=None)
        if pod is None:
            status.problems.append(f"pod {status.namespace}/{status.name} does not exist")
            return None
        if isinstance(source, ManifestPodSource):  # written next to the manifests
            entries = source.read_network_status(status.namespace, status.name)
        else:
            entries = _decode(pod)
    except MultusError as exc:
        status.problems.append(f"the network-status cannot be read: {exc.msg}")
        return None
    if entries is None:
        status.problems.append(
            "the pod has no network-status: no ADD of it succeeded (yet); its events say why"
        )
    status.annotation = entries is not None
    return entries


def _decode(pod: Mapping[str, object]) -> list[dict[str, object]] | None:
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    value = annotations.get(NETWORK_STATUS_ANNOTATION) if isinstance(annotations, dict) else None
    return decode_status(value) if isinstance(value, str) else None


def _pod_records(status: PodStatus, cni_dir: str) -> list[tuple[str, dict[str, object]]]:
    found = []
    for container_id, record, problem in node.cached_records(cni_dir):
        if record is None:
            status.problems.append(f"delegate cache of container {container_id} is unreadable: {problem}")
        elif node.record_pod(record) == (status.namespace, status.name):
            found.append((container_id, record))
    return found


def _add_cached(
    rows: dict[str, Row], cni_dir: str, container_id: str, record: Mapping[str, object], *, check_netns: bool
) -> None:
    netns = str(record.get("netns") or "")
    for delegate in store.delegate_items(record):
        ifname = str(delegate.get("ifname") or "")
        row = rows.setdefault(ifname, Row(ifname))
        row.in_cache = True
        row.container = container_id
        row.network = row.network or str(delegate.get("name") or "")
        row.plugin = ",".join(node.delegate_types(delegate))
        conf = delegate.get("conf")
        network_name = str(conf.get("name") or "") if isinstance(conf, dict) else ""
        _from_result_cache(row, cni_dir, network_name, container_id, ifname)
        if check_netns and netns:
            problem = _netns_problem(netns, ifname)
            if problem:
                row.notes.append(problem)


def _from_result_cache(row: Row, cni_dir: str, network: str, container_id: str, ifname: str) -> None:
    try:
        entry = result_cache.read(cni_dir, network, container_id, ifname)
        path = result_cache.result_path(cni_dir, network, container_id, ifname)
    except MultusError:
        return
    if entry is None or entry.result is None:
        return
    result = entry.result
    cached_ips = [str(ip.get("address", "")).split("/")[0] for ip in _dicts(result.get("ips"))]
    if row.in_annotation and _canonical(cached_ips) != _canonical(row.ips):
        row.notes.append(f"IPs differ: network-status {','.join(row.ips)}, cache {','.join(cached_ips)}")
    row.ips = row.ips or cached_ips
    for iface in _dicts(result.get("interfaces")):
        if iface.get("name") == ifname and iface.get("sandbox"):
            row.mac = row.mac or str(iface.get("mac") or "")
    row.gateways = row.gateways or _default_gateways(result)
    try:
        row.since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.stat(path).st_mtime))
    except OSError:
        pass


def _netns_problem(netns: str, ifname: str) -> str:
    """What is wrong with the cached interface in the live netns ("" when fine or unknowable:
    entering a namespace needs root)."""
    from pymultus.netns.ops import Netns, netns_exists

    if not netns_exists(netns):
        return f"the pod's network namespace {netns} is gone (stale cache)"
    try:
        present = Netns().interface_exists(netns, ifname)
    except MultusError:
        return ""
    return "" if present else f"not in the pod's network namespace {netns}"


def _default_gateways(result: Mapping[str, object]) -> list[str]:
    """The gateways of the result's default routes; a route without ``gw`` uses the gateway of
    the result's IP of that family (CNI spec), so that one is shown."""
    found = []
    for route in _dicts(result.get("routes")):
        dst = route.get("dst")
        if dst not in ("0.0.0.0/0", "::/0"):
            continue
        gateway = route.get("gw")
        if not gateway:
            v6 = dst == "::/0"
            gateway = next(
                (
                    ip.get("gateway")
                    for ip in _dicts(result.get("ips"))
                    if (":" in str(ip.get("address"))) == v6
                ),
                None,
            )
        if gateway:
            found.append(str(gateway))
    return found


def _compare(row: Row) -> None:
    if row.in_annotation and not row.in_cache:
        row.notes.insert(0, "in network-status but not in this node's cache")
    elif row.in_cache and not row.in_annotation:
        row.notes.insert(0, "in this node's cache but not in network-status")


def _canonical(addresses: list[str]) -> list[str]:
    """Sorted, in one spelling (the annotation prints IPv6 like Go, the cache as the plugin did)."""
    import ipaddress

    found = []
    for address in addresses:
        try:
            found.append(str(ipaddress.ip_address(address)))
        except ValueError:
            found.append(address)
    return sorted(found)


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _dicts(value: object) -> list[dict[str, object]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
