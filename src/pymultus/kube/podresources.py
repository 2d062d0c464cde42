"""The devices the kubelet allocated to a pod: the PodResources API, else the checkpoint file.

Multus (reference §15) asks the kubelet's ``v1.PodResourcesLister/List`` over gRPC on
``/var/lib/kubelet/pod-resources/kubelet.sock`` (10 s timeout, 16 MiB maximum message) and falls
back to the device manager's checkpoint ``/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint``
when the socket does not exist. We also fall back when the socket exists but the call fails (a
kubelet restarting, an old kubelet without the v1 service, grpcio missing from a bundle): the
checkpoint is the kubelet's own record of the same allocations.

``grpc`` costs ~100 ms of import, so it is imported only inside :func:`list_pod_resources`, i.e.
only for a pod that has a NAD with a ``resourceName``. The few protobuf messages needed are
encoded and decoded by hand (field numbers from the kubelet's ``pkg/apis/podresources/v1/api.proto``)
instead of generated code, so neither ``protobuf`` nor ``grpcio-tools`` is needed::

    message ListPodResourcesRequest {}
    message ListPodResourcesResponse { repeated PodResources pod_resources = 1; }
    message PodResources { string name = 1; string namespace = 2;
                           repeated ContainerResources containers = 3; }
    message ContainerResources { string name = 1; repeated ContainerDevices devices = 2;
                                 repeated int64 cpu_ids = 3; ...memory = 4; ...dynamic_resources = 5; }
    message ContainerDevices { string resource_name = 1; repeated string device_ids = 2;
                               TopologyInfo topology = 3; }
    message TopologyInfo { repeated NUMANode nodes = 1; }
    message NUMANode { int64 ID = 1; }

Fields we do not model (``cpu_ids``, ``memory``, ``dynamic_resources``, anything newer) are skipped
by wire type, and a known field number arriving with an unexpected wire type is skipped too, as
protobuf-go does.
"""

from __future__ import annotations

import os

from pymultus import errors, jsonio
from pymultus.errors import MultusError
from pymultus.fileio import read_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
DEFAULT_CHECKPOINT = "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"
DEFAULT_TIMEOUT = 10.0  # seconds, as Multus's kubeletclient
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # Multus's defaultPodResourcesMaxSize
LIST_METHOD = "/v1.PodResourcesLister/List"

SOURCE_POD_RESOURCES = "pod-resources"
SOURCE_CHECKPOINT = "checkpoint"

# Protobuf wire types.
_VARINT = 0
_FIXED64 = 1
_LENGTH_DELIMITED = 2
_FIXED32 = 5
_MAX_VARINT_BYTES = 10


class ProtobufError(errors.DecodingError):
    """A PodResources message from the kubelet is not valid protobuf."""


class CheckpointError(errors.DecodingError):
    """The kubelet device checkpoint file is unreadable or has an unexpected shape."""


class PodResourcesUnavailable(errors.TryAgainLater):
    """Neither the PodResources API nor the checkpoint file can tell the pod's devices."""


# --- the messages ---------------------------------------------------------------------------


class ContainerDevices:
    """Devices of one resource allocated to one container (``numa_nodes``: TopologyInfo node IDs)."""

    __slots__ = ("device_ids", "numa_nodes", "resource_name")

    def __init__(
        self, resource_name: str, device_ids: list[str], numa_nodes: list[int] | None = None
    ) -> None:
        self.resource_name = resource_name
        self.device_ids = device_ids
        self.numa_nodes = numa_nodes if numa_nodes is not None else []

    def __repr__(self) -> str:
        return f"ContainerDevices({self.resource_name!r}, {self.device_ids!r}, {self.numa_nodes!r})"


class ContainerResources:
    __slots__ = ("devices", "name")

    def __init__(self, name: str, devices: list[ContainerDevices] | None = None) -> None:
        self.name = name
        self.devices = devices if devices is not None else []

    def __repr__(self) -> str:
        return f"ContainerResources({self.name!r}, {self.devices!r})"


class PodResources:
    __slots__ = ("containers", "name", "namespace")

    def __init__(self, name: str, namespace: str, containers: list[ContainerResources] | None = None) -> None:
        self.name = name
        self.namespace = namespace
        self.containers = containers if containers is not None else []

    def __repr__(self) -> str:
        return f"PodResources({self.name!r}, {self.namespace!r}, {self.containers!r})"


# --- protobuf encoding (the request, and responses for tests and fakes) -----------------------


def encode_list_request() -> bytes:
    """``ListPodResourcesRequest`` has no fields: its encoding is empty."""
    return b""


def encode_list_response(pods: list[PodResources]) -> bytes:
    out = bytearray()
    for pod in pods:
        _put_bytes(out, 1, _encode_pod(pod))
    return bytes(out)


def _encode_pod(pod: PodResources) -> bytes:
    out = bytearray()
    _put_string(out, 1, pod.name)
    _put_string(out, 2, pod.namespace)
    for container in pod.containers:
        body = bytearray()
        _put_string(body, 1, container.name)
        for devices in container.devices:
            _put_bytes(body, 2, _encode_devices(devices))
        _put_bytes(out, 3, bytes(body))
    return bytes(out)


def _encode_devices(devices: ContainerDevices) -> bytes:
    out = bytearray()
    _put_string(out, 1, devices.resource_name)
    for device_id in devices.device_ids:
        _put_bytes(out, 2, device_id.encode("utf-8"))
    if devices.numa_nodes:
        topology = bytearray()
        for node in devices.numa_nodes:
            numa = bytearray()
            if node:  # proto3 leaves default values out
                _put_key(numa, 1, _VARINT)
                _put_varint(numa, node & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement, 10 bytes when < 0
            _put_bytes(topology, 1, bytes(numa))
        _put_bytes(out, 3, bytes(topology))
    return bytes(out)


def _put_varint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_key(out: bytearray, field: int, wire_type: int) -> None:
    _put_varint(out, (field << 3) | wire_type)


def _put_bytes(out: bytearray, field: int, data: bytes) -> None:
    _put_key(out, field, _LENGTH_DELIMITED)
    _put_varint(out, len(data))
    out += data


def _put_string(out: bytearray, field: int, value: str) -> None:
    if value:  # proto3: an empty string is not on the wire
        _put_bytes(out, field, value.encode("utf-8"))


# --- protobuf decoding ------------------------------------------------------------------------


def decode_list_response(data: bytes) -> list[PodResources]:
    """Decode a ``ListPodResourcesResponse``; :class:`ProtobufError` names what is wrong."""
    view = memoryview(data)
    pods: list[PodResources] = []
    for field, wire_type, value in _fields(view, "ListPodResourcesResponse"):
        if field == 1 and wire_type == _LENGTH_DELIMITED:
            pods.append(_decode_pod(value))
    return pods


def _decode_pod(view: memoryview) -> PodResources:
    pod = PodResources("", "")
    for field, wire_type, value in _fields(view, "PodResources"):
        if wire_type != _LENGTH_DELIMITED:
            continue
        if field == 1:
            pod.name = _text(value, "PodResources.name")
        elif field == 2:
            pod.namespace = _text(value, "PodResources.namespace")
        elif field == 3:
            pod.containers.append(_decode_container(value))
    return pod


def _decode_container(view: memoryview) -> ContainerResources:
    container = ContainerResources("")
    for field, wire_type, value in _fields(view, "ContainerResources"):
        if wire_type != _LENGTH_DELIMITED:
            continue
        if field == 1:
            container.name = _text(value, "ContainerResources.name")
        elif field == 2:
            container.devices.append(_decode_devices(value))
    return container


def _decode_devices(view: memoryview) -> ContainerDevices:
    devices = ContainerDevices("", [])
    for field, wire_type, value in _fields(view, "ContainerDevices"):
        if wire_type != _LENGTH_DELIMITED:
            continue
        if field == 1:
            devices.resource_name = _text(value, "ContainerDevices.resource_name")
        elif field == 2:
            devices.device_ids.append(_text(value, "ContainerDevices.device_ids"))
        elif field == 3:
            devices.numa_nodes.extend(_decode_topology(value))
    return devices


def _decode_topology(view: memoryview) -> list[int]:
    nodes: list[int] = []
    for field, wire_type, value in _fields(view, "TopologyInfo"):
        if field == 1 and wire_type == _LENGTH_DELIMITED:
            node = 0
            for node_field, node_wire_type, node_value in _fields(value, "NUMANode"):
                if node_field == 1 and node_wire_type == _VARINT:
                    raw = int.from_bytes(node_value, "little")
                    node = raw - (1 << 64) if raw >= 1 << 63 else raw  # int64 two's complement
            nodes.append(node)
    return nodes


def _fields(view: memoryview, message: str) -> Iterator[tuple[int, int, memoryview]]:
    """Yield ``(field, wire_type, value)``; a varint's value is its number as 8 little-endian bytes."""
    pos = 0
    end = len(view)
    while pos < end:
        key, pos = _read_varint(view, pos, message)
        field = key >> 3
        wire_type = key & 7
        if field == 0:
            raise ProtobufError(f"the kubelet's {message} message has a field numbered 0 at byte {pos}")
        if wire_type == _VARINT:
            number, pos = _read_varint(view, pos, message)
            yield field, wire_type, memoryview(number.to_bytes(8, "little"))
        elif wire_type == _FIXED64:
            yield field, wire_type, _take(view, pos, 8, message)
            pos += 8
        elif wire_type == _LENGTH_DELIMITED:
            length, pos = _read_varint(view, pos, message)
            yield field, wire_type, _take(view, pos, length, message)
            pos += length
        elif wire_type == _FIXED32:
            yield field, wire_type, _take(view, pos, 4, message)
            pos += 4
        else:
            # 3/4 are the deprecated proto2 groups; the kubelet's proto3 messages never use them.
            raise ProtobufError(
                f"the kubelet's {message} message has field {field} with unsupported wire type {wire_type}"
            )


def _read_varint(view: memoryview, pos: int, message: str) -> tuple[int, int]:
    result = 0
    shift = 0
    for index in range(pos, min(pos + _MAX_VARINT_BYTES, len(view))):
        byte = view[index]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result >= 1 << 64:
                raise ProtobufError(f"the kubelet's {message} message has a varint over 64 bits (byte {pos})")
            return result, index + 1
        shift += 7
    if len(view) - pos >= _MAX_VARINT_BYTES:
        raise ProtobufError(f"the kubelet's {message} message has a varint over 10 bytes (byte {pos})")
    raise ProtobufError(f"the kubelet's {message} message is truncated inside a varint at byte {pos}")


def _take(view: memoryview, pos: int, length: int, message: str) -> memoryview:
    if pos + length > len(view):
        raise ProtobufError(
            f"the kubelet's {message} message is truncated: a field of {length} bytes at byte {pos} "
            f"runs past its end ({len(view)} bytes)"
        )
    return view[pos : pos + length]


def _text(view: memoryview, field: str) -> str:
    try:
        return bytes(view).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtobufError(f"the kubelet's {field} is not valid UTF-8 (byte {exc.start})") from exc


# --- the gRPC call ----------------------------------------------------------------------------


def list_pod_resources(
    socket_path: str = DEFAULT_SOCKET, *, timeout: float = DEFAULT_TIMEOUT
) -> list[PodResources]:
    """Call the kubelet's ``v1.PodResourcesLister/List`` on ``socket_path``.

    Raises :class:`PodResourcesUnavailable` (code 11) when grpcio is missing or the call fails
    (with the gRPC status in ``details``), :class:`ProtobufError` for an undecodable answer.
    """
    try:
        import grpc  # ~100 ms of import: paid only by pods with a resourceName
    except ImportError as exc:
        raise PodResourcesUnavailable(
            "cannot query the kubelet pod-resources API: the grpcio package is not installed",
            details=socket_path,
        ) from exc
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # One short-lived call per ADD: no background reconnects or pings afterwards.
        ("grpc.enable_retries", 0),
    ]
    channel = grpc.insecure_channel("unix://" + os.path.abspath(socket_path), options=options)
    try:
        call = channel.unary_unary(
            LIST_METHOD,
            request_serializer=_serialize_request,
            response_deserializer=_identity,
        )
        try:
            raw = call(None, timeout=timeout)
        except grpc.RpcError as exc:
            status = exc.code() if callable(getattr(exc, "code", None)) else None
            text = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            name = getattr(status, "name", "UNKNOWN")
            raise PodResourcesUnavailable(
                f"the kubelet pod-resources API on {socket_path} failed: {name}: {text}",
                details=f"method={LIST_METHOD} status={name}",
            ) from exc
    finally:
        channel.close()
    if not isinstance(raw, bytes):  # our deserializer returns the bytes as they came
        raise ProtobufError(f"the kubelet pod-resources API returned {type(raw).__name__}, not bytes")
    return decode_list_response(raw)


def _serialize_request(_request: object) -> bytes:
    return encode_list_request()


def _identity(data: bytes) -> bytes:
    # Decoding happens after the call so a ProtobufError is ours, not wrapped by grpc.
    return data


# --- the checkpoint file ----------------------------------------------------------------------


class CheckpointEntry:
    """One ``Data.PodDeviceEntries[]`` element: devices of a resource for one container."""

    __slots__ = ("container_name", "device_ids", "pod_uid", "resource_name")

    def __init__(self, pod_uid: str, container_name: str, resource_name: str, device_ids: list[str]) -> None:
        self.pod_uid = pod_uid
        self.container_name = container_name
        self.resource_name = resource_name
        self.device_ids = device_ids

    def __repr__(self) -> str:
        return (
            f"CheckpointEntry({self.pod_uid!r}, {self.container_name!r}, {self.resource_name!r}, "
            f"{self.device_ids!r})"
        )


def read_checkpoint(path: str = DEFAULT_CHECKPOINT, *, pod_uid: str | None = None) -> list[CheckpointEntry]:
    """The entries of the kubelet device checkpoint (only ``pod_uid``'s when given).

    ``DeviceIDs`` is a map NUMA node → IDs since Kubernetes 1.20 and a plain list before; both
    are read (map values in ascending NUMA order). Entries of other pods are not validated, so
    one odd entry cannot hide this pod's devices. Raises :class:`FileNotFoundError` when the file
    is missing and :class:`CheckpointError` when it cannot be used.
    """
    try:
        data = read_file(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CheckpointError(f"cannot read the kubelet device checkpoint {path}: {exc.strerror}") from exc
    what = f"the kubelet device checkpoint {path}"
    try:
        document = jsonio.loads_object(data, what=what)
    except MultusError as exc:
        raise CheckpointError(exc.msg) from exc
    body = document.get("Data")
    if not isinstance(body, dict):
        raise CheckpointError(f"{what} has no Data object")
    raw_entries = body.get("PodDeviceEntries")
    if raw_entries is None:
        return []
    if not isinstance(raw_entries, list):
        raise CheckpointError(f"{what} has a Data.PodDeviceEntries that is not a list")
    entries: list[CheckpointEntry] = []
    for index, raw in enumerate(raw_entries):
        if not isinstance(raw, dict):
            raise CheckpointError(f"{what} has a Data.PodDeviceEntries[{index}] that is not an object")
        uid = raw.get("PodUID")
        if pod_uid is not None and uid != pod_uid:
            continue
        entries.append(_checkpoint_entry(raw, f"{what} Data.PodDeviceEntries[{index}]"))
    return entries


def _checkpoint_entry(raw: dict[str, object], where: str) -> CheckpointEntry:
    strings: dict[str, str] = {}
    for key in ("PodUID", "ContainerName", "ResourceName"):
        value = raw.get(key, "")
        if not isinstance(value, str):
            raise CheckpointError(f"{where}.{key} is not a string")
        strings[key] = value
    return CheckpointEntry(
        strings["PodUID"],
        strings["ContainerName"],
        strings["ResourceName"],
        _checkpoint_ids(raw.get("DeviceIDs"), where),
    )


def _checkpoint_ids(raw: object, where: str) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, list):  # kubelet < 1.20
        lists: list[object] = [raw]
    elif isinstance(raw, dict):  # kubelet >= 1.20: {"<NUMA node>": [ids]}, node -1 when unknown
        try:
            keys = sorted(raw, key=int)
        except ValueError as exc:
            raise CheckpointError(f"{where}.DeviceIDs has a NUMA key that is not a number") from exc
        lists = [raw[key] for key in keys]
    else:
        raise CheckpointError(f"{where}.DeviceIDs is neither a list nor a NUMA map")
    ids: list[str] = []
    for item in lists:
        if not isinstance(item, list) or not all(isinstance(device, str) for device in item):
            raise CheckpointError(f"{where}.DeviceIDs must hold lists of strings")
        ids.extend(item)
    return ids


# --- the pod's devices, from whichever source answers ------------------------------------------


class PodDeviceMap:
    """Device IDs per resource name, over all containers of one pod, in the kubelet's order."""

    __slots__ = ("by_resource", "fallback_reason", "source")

    def __init__(self, by_resource: dict[str, list[str]], source: str, fallback_reason: str = "") -> None:
        self.by_resource = by_resource
        self.source = source  # SOURCE_POD_RESOURCES or SOURCE_CHECKPOINT, for logs
        self.fallback_reason = fallback_reason  # why the API was not used, when it was not


def pod_devices(
    namespace: str,
    name: str,
    uid: str,
    *,
    socket_path: str = DEFAULT_SOCKET,
    checkpoint_path: str = DEFAULT_CHECKPOINT,
    timeout: float = DEFAULT_TIMEOUT,
) -> PodDeviceMap:
    """The pod's devices from the PodResources API (matched by namespace/name), else from the
    checkpoint (matched by UID). :class:`PodResourcesUnavailable` when neither source answers.
    """
    if os.path.exists(socket_path):
        try:
            pods = list_pod_resources(socket_path, timeout=timeout)
        except MultusError as exc:
            api_error: MultusError = exc
        else:
            by_resource: dict[str, list[str]] = {}
            for pod in pods:
                if pod.name == name and pod.namespace == namespace:
                    for container in pod.containers:
                        for devices in container.devices:
                            by_resource.setdefault(devices.resource_name, []).extend(devices.device_ids)
            return PodDeviceMap(by_resource, SOURCE_POD_RESOURCES)
        reason = api_error.msg
    else:
        api_error = PodResourcesUnavailable(f"the kubelet pod-resources socket {socket_path} does not exist")
        reason = api_error.msg
    return _from_checkpoint(uid, checkpoint_path, api_error, reason)


def _from_checkpoint(uid: str, checkpoint_path: str, api_error: MultusError, reason: str) -> PodDeviceMap:
    if not uid:
        raise PodResourcesUnavailable(
            f"cannot find the pod's devices: {reason}, and without the pod UID the kubelet "
            f"checkpoint {checkpoint_path} cannot be searched",
            details=api_error.details,
        )
    try:
        entries = read_checkpoint(checkpoint_path, pod_uid=uid)
    except FileNotFoundError:
        raise PodResourcesUnavailable(
            f"cannot find the pod's devices: {reason}, "
            f"and the kubelet checkpoint {checkpoint_path} does not exist",
            details=api_error.details,
        ) from None
    except CheckpointError as exc:
        raise PodResourcesUnavailable(
            f"cannot find the pod's devices: {reason}, and {exc.msg}",
            details=api_error.details,
        ) from exc
    by_resource: dict[str, list[str]] = {}
    for entry in entries:
        by_resource.setdefault(entry.resource_name, []).extend(entry.device_ids)
    return PodDeviceMap(by_resource, SOURCE_CHECKPOINT, reason)
