"""Devices allocated to a pod: the PodResources protobuf codec, the kubelet checkpoint, allocation.

The gRPC transport itself runs against a real grpcio server in tests/integration/test_podresources.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pymultus.errors import InvalidEnvironment, MultusError
from pymultus.kube import podresources
from pymultus.kube.devices import DeviceAllocator, DeviceNotAllocated
from pymultus.kube.podresources import (
    CheckpointError,
    ContainerDevices,
    ContainerResources,
    PodDeviceMap,
    PodResources,
    PodResourcesUnavailable,
    ProtobufError,
    decode_list_response,
    encode_list_request,
    encode_list_response,
    pod_devices,
    read_checkpoint,
)
from tests.support.isolated import run_isolated

SRC = Path(__file__).resolve().parents[3] / "src"

# --- an independent, minimal protobuf writer (so the codec is not only checked against itself) ---


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def ld(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return key(field, 2) + varint(len(data)) + data


def devices_msg(resource: str, *ids: str, numa: tuple[int, ...] = ()) -> bytes:
    body = ld(1, resource) + b"".join(ld(2, i) for i in ids)
    if numa:
        nodes = b"".join(ld(1, (key(1, 0) + varint(n & (2**64 - 1))) if n else b"") for n in numa)
        body += ld(3, nodes)
    return body


# --- codec ----------------------------------------------------------------------------------------


def test_request_is_empty() -> None:
    assert encode_list_request() == b""


def test_golden_bytes_match_the_proto_field_numbers() -> None:
    pods = [
        PodResources(
            "p",
            "ns",
            [ContainerResources("c", [ContainerDevices("r/x", ["0000:01:00.1"], [1])])],
        )
    ]
    expected = ld(
        1,
        ld(1, "p") + ld(2, "ns") + ld(3, ld(1, "c") + ld(2, devices_msg("r/x", "0000:01:00.1", numa=(1,)))),
    )
    assert encode_list_response(pods) == expected
    # A literal too, worked out by hand: tag 0x0a = field 1 length-delimited, 39 bytes of PodResources
    # (name 3 + namespace 4 + containers 2+30), then 0x0a 0x01 "p" and 0x12 (field 2, namespace).
    assert expected[:6] == b"\x0a\x27\x0a\x01p\x12"
    assert len(expected) == 2 + 39


def test_round_trip() -> None:
    pods = [
        PodResources(
            "web-0",
            "team-a",
            [
                ContainerResources(
                    "app",
                    [
                        ContainerDevices("intel.com/sriov_vf", ["0000:af:02.1", "0000:af:02.0"], [0, 1]),
                        ContainerDevices("nvidia.com/gpu", ["GPU-ü-unicode"], [-1]),
                    ],
                ),
                ContainerResources("sidecar"),
            ],
        ),
        PodResources("other", "team-b"),
    ]
    decoded = decode_list_response(encode_list_response(pods))
    assert repr(decoded) == repr(pods)
    assert decoded[0].containers[0].devices[1].numa_nodes == [-1]


def test_empty_response_decodes_to_no_pods() -> None:
    assert decode_list_response(b"") == []


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    unknown = (
        key(9, 0)
        + varint(300)  # varint
        + key(10, 1)
        + b"\x01" * 8  # 64-bit
        + ld(11, b"\xff\xfe anything")  # length-delimited, not UTF-8: never decoded
        + key(12, 5)
        + b"\x02" * 4  # 32-bit
    )
    container = (
        unknown
        + ld(1, "app")
        + key(3, 2)
        + varint(3)
        + varint(4)
        + varint(5)
        + varint(6)  # packed cpu_ids, skipped
        + ld(4, ld(1, "hugepages-2Mi") + key(2, 0) + varint(2**21))  # ContainerMemory, skipped
        + ld(2, unknown + devices_msg("r", "b", "a") + unknown)
        + ld(5, ld(2, "claim"))  # DynamicResource, skipped
    )
    pod = ld(1, "p") + unknown + ld(2, "ns") + ld(3, container) + key(4, 2) + varint(1) + b"\x07"
    data = unknown + ld(1, pod) + unknown + key(2, 0) + varint(1)
    (decoded,) = decode_list_response(data)
    assert (decoded.name, decoded.namespace) == ("p", "ns")
    (devs,) = decoded.containers[0].devices
    assert (decoded.containers[0].name, devs.resource_name, devs.device_ids) == ("app", "r", ["b", "a"])


def test_known_field_with_unexpected_wire_type_is_skipped_like_protobuf_go() -> None:
    pod = key(1, 0) + varint(7) + ld(1, "p") + key(2, 5) + b"\0\0\0\0" + ld(2, "ns")
    (decoded,) = decode_list_response(ld(1, pod))
    assert (decoded.name, decoded.namespace) == ("p", "ns")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (ld(1, ld(1, "pod")[:-1]), "PodResources message is truncated: a field of 3 bytes"),
        (ld(1, b"x" * 10)[:5], "ListPodResourcesResponse message is truncated"),
        (b"\x0a", "ListPodResourcesResponse message is truncated inside a varint"),
        (b"\x0a\x80", "truncated inside a varint"),
        (key(3, 1) + b"\0" * 7, "a field of 8 bytes"),
        (key(3, 5) + b"\0" * 3, "a field of 4 bytes"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "varint over 10 bytes"),
        (b"\x08" + b"\xff" * 9 + b"\x7f", "varint over 64 bits"),
        (key(1, 3), "field 1 with unsupported wire type 3"),
        (b"\x00\x00", "field numbered 0"),
        (ld(1, ld(3, ld(2, ld(2, b"\xff")))), "ContainerDevices.device_ids is not valid UTF-8"),
    ],
)
def test_malformed_input_is_a_clear_decoding_error(data: bytes, fragment: str) -> None:
    with pytest.raises(ProtobufError) as info:
        decode_list_response(data)
    assert fragment in str(info.value)
    assert info.value.code == 6
    assert str(info.value).startswith("the kubelet's ")


# --- checkpoint -----------------------------------------------------------------------------------

UID = "5f0d9a7e-1111-4a4a-9c9c-000000000001"
OTHER = "5f0d9a7e-2222-4a4a-9c9c-000000000002"


def write_checkpoint(path: Path, entries: object, **extra: object) -> Path:
    path.write_text(json.dumps({"Data": {"PodDeviceEntries": entries, "RegisteredDevices": {}}, **extra}))
    return path


def test_checkpoint_numa_map_shape(tmp_path: Path) -> None:
    # Kubernetes >= 1.20: DeviceIDs is {"<numa>": [...]}; keys read in numeric order (-1 < 0 < 1 < 10).
    path = write_checkpoint(
        tmp_path / "cp",
        [
            {
                "PodUID": UID,
                "ContainerName": "app",
                "ResourceName": "intel.com/vf",
                "DeviceIDs": {"10": ["d"], "1": ["c"], "0": ["b", "a"], "-1": ["z"]},
                "AllocResp": "CgA=",
            },
            {
                "PodUID": OTHER,
                "ContainerName": "x",
                "ResourceName": "intel.com/vf",
                "DeviceIDs": {"0": ["q"]},
            },
        ],
        Checksum=1234,
    )
    entries = read_checkpoint(str(path), pod_uid=UID)
    assert [(e.container_name, e.resource_name, e.device_ids) for e in entries] == [
        ("app", "intel.com/vf", ["z", "b", "a", "c", "d"])
    ]
    assert len(read_checkpoint(str(path))) == 2


def test_checkpoint_plain_list_shape(tmp_path: Path) -> None:
    # Kubernetes < 1.20: DeviceIDs is a plain list.
    path = write_checkpoint(
        tmp_path / "cp",
        [{"PodUID": UID, "ContainerName": "app", "ResourceName": "r", "DeviceIDs": ["2", "1"]}],
    )
    (entry,) = read_checkpoint(str(path), pod_uid=UID)
    assert entry.device_ids == ["2", "1"]


def test_checkpoint_null_entries_and_null_ids(tmp_path: Path) -> None:
    assert read_checkpoint(str(write_checkpoint(tmp_path / "a", None))) == []
    path = write_checkpoint(
        tmp_path / "b", [{"PodUID": UID, "ContainerName": "c", "ResourceName": "r", "DeviceIDs": None}]
    )
    assert read_checkpoint(str(path))[0].device_ids == []


def test_checkpoint_bad_entry_of_another_pod_does_not_hide_ours(tmp_path: Path) -> None:
    path = write_checkpoint(
        tmp_path / "cp",
        [
            {"PodUID": OTHER, "ResourceName": 5, "DeviceIDs": "garbage"},
            {"PodUID": UID, "ContainerName": "c", "ResourceName": "r", "DeviceIDs": ["1"]},
        ],
    )
    assert [e.device_ids for e in read_checkpoint(str(path), pod_uid=UID)] == [["1"]]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "is empty"),
        ("{not json", "is not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"Data": 3}', "has no Data object"),
        ('{"Data": {"PodDeviceEntries": {}}}', "Data.PodDeviceEntries that is not a list"),
        ('{"Data": {"PodDeviceEntries": [7]}}', "Data.PodDeviceEntries[0] that is not an object"),
        (
            json.dumps({"Data": {"PodDeviceEntries": [{"PodUID": UID, "ResourceName": 1}]}}),
            "Data.PodDeviceEntries[0].ResourceName is not a string",
        ),
        (
            json.dumps({"Data": {"PodDeviceEntries": [{"PodUID": UID, "DeviceIDs": {"x": ["a"]}}]}}),
            "DeviceIDs has a NUMA key that is not a number",
        ),
        (
            json.dumps({"Data": {"PodDeviceEntries": [{"PodUID": UID, "DeviceIDs": {"0": [1]}}]}}),
            "DeviceIDs must hold lists of strings",
        ),
        (
            json.dumps({"Data": {"PodDeviceEntries": [{"PodUID": UID, "DeviceIDs": "a"}]}}),
            "DeviceIDs is neither a list nor a NUMA map",
        ),
    ],
)
def test_checkpoint_malformed(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "cp"
    path.write_text(content)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(str(path), pod_uid=UID)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_checkpoint_missing_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_checkpoint(str(tmp_path / "absent"))


# --- pod_devices: source selection without a socket (the gRPC path is in the integration tests) ----


def test_pod_devices_falls_back_to_checkpoint_when_socket_missing(tmp_path: Path) -> None:
    path = write_checkpoint(
        tmp_path / "cp",
        [
            {"PodUID": UID, "ContainerName": "a", "ResourceName": "r1", "DeviceIDs": {"0": ["3"]}},
            {"PodUID": UID, "ContainerName": "b", "ResourceName": "r1", "DeviceIDs": {"1": ["1"]}},
            {"PodUID": UID, "ContainerName": "b", "ResourceName": "r2", "DeviceIDs": ["x"]},
            {"PodUID": OTHER, "ContainerName": "a", "ResourceName": "r1", "DeviceIDs": ["9"]},
        ],
    )
    found = pod_devices("ns", "pod", UID, socket_path=str(tmp_path / "no.sock"), checkpoint_path=str(path))
    assert found.source == podresources.SOURCE_CHECKPOINT
    assert found.by_resource == {"r1": ["3", "1"], "r2": ["x"]}
    assert "no.sock does not exist" in found.fallback_reason


def test_pod_devices_neither_source(tmp_path: Path) -> None:
    with pytest.raises(PodResourcesUnavailable) as info:
        pod_devices("ns", "pod", UID, socket_path=str(tmp_path / "s"), checkpoint_path=str(tmp_path / "cp"))
    assert info.value.code == 11
    assert "socket" in str(info.value)
    assert "checkpoint" in str(info.value)


def test_pod_devices_checkpoint_needs_the_uid(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "cp", [])
    with pytest.raises(PodResourcesUnavailable, match="without the pod UID"):
        pod_devices("ns", "pod", "", socket_path=str(tmp_path / "s"), checkpoint_path=str(path))


def test_pod_devices_corrupt_checkpoint_names_both_causes(tmp_path: Path) -> None:
    path = tmp_path / "cp"
    path.write_text("{")
    with pytest.raises(PodResourcesUnavailable) as info:
        pod_devices("ns", "pod", UID, socket_path=str(tmp_path / "s"), checkpoint_path=str(path))
    assert "does not exist" in str(info.value)
    assert "is not valid JSON" in str(info.value)


# --- DeviceAllocator --------------------------------------------------------------------------------


def allocator(by_resource: dict[str, list[str]], calls: list[int] | None = None) -> DeviceAllocator:
    def load() -> PodDeviceMap:
        if calls is not None:
            calls.append(1)
        return PodDeviceMap({k: list(v) for k, v in by_resource.items()}, "test")

    return DeviceAllocator("ns", "pod", UID, loader=load)


def test_allocation_is_sorted_distinct_and_exhausts() -> None:
    alloc = allocator({"intel.com/vf": ["0000:af:02.2", "0000:af:02.0", "0000:af:02.1"], "other": ["z"]})
    assert alloc.devices("intel.com/vf") == ("0000:af:02.0", "0000:af:02.1", "0000:af:02.2")
    got = [alloc.next_device("intel.com/vf") for _ in range(4)]
    assert got == ["0000:af:02.0", "0000:af:02.1", "0000:af:02.2", None]
    assert alloc.next_device("other") == "z"  # each resource has its own cursor
    assert alloc.next_device("missing") is None


def test_allocation_is_deterministic_across_instances() -> None:
    ids = ["b", "c", "a"]
    first = allocator({"r": ids})
    second = allocator({"r": list(reversed(ids))})
    assert [first.next_device("r") for _ in ids] == [second.next_device("r") for _ in ids] == ["a", "b", "c"]


def test_duplicate_ids_are_handed_out_once() -> None:
    # The checkpoint lists an init container's devices again for the app container that reuses them.
    alloc = allocator({"r": ["1", "0", "1"]})
    assert [alloc.next_device("r") for _ in range(3)] == ["0", "1", None]


def test_lookup_is_lazy_and_happens_once() -> None:
    calls: list[int] = []
    alloc = allocator({"r": ["a", "b"]}, calls)
    assert not alloc.loaded
    assert alloc.source == ""
    assert calls == []
    alloc.next_device("r")
    alloc.next_device("r")
    alloc.devices("x")
    assert calls == [1]
    assert alloc.loaded
    assert alloc.source == "test"


def test_require_device_names_the_missing_resource() -> None:
    alloc = allocator({"r": ["a"]})
    with pytest.raises(DeviceNotAllocated) as none:
        alloc.require_device("intel.com/vf", "ns/sriov-a")
    assert str(none.value) == (
        "network ns/sriov-a needs a device of resource intel.com/vf, "
        "but the kubelet allocated none to pod ns/pod"
    )
    assert none.value.code == 7
    assert alloc.require_device("r", "ns/net-1") == "a"
    with pytest.raises(DeviceNotAllocated, match="all 1 allocated to pod ns/pod are used by earlier"):
        alloc.require_device("r", "ns/net-2")


def test_pod_identity_is_required_at_lookup_only() -> None:
    alloc = DeviceAllocator("", "", "", loader=lambda: PodDeviceMap({}, "test"))  # constructing is free
    with pytest.raises(InvalidEnvironment, match="namespace and name"):
        alloc.next_device("r")


def test_default_loader_uses_the_injected_paths(tmp_path: Path) -> None:
    path = write_checkpoint(
        tmp_path / "cp", [{"PodUID": UID, "ContainerName": "a", "ResourceName": "r", "DeviceIDs": ["2", "1"]}]
    )
    alloc = DeviceAllocator(
        "ns", "pod", UID, socket_path=str(tmp_path / "none.sock"), checkpoint_path=str(path)
    )
    assert [alloc.next_device("r"), alloc.next_device("r")] == ["1", "2"]
    assert alloc.source == "checkpoint"
    assert "none.sock" in alloc.fallback_reason


def test_lookup_failure_propagates_and_is_a_multus_error(tmp_path: Path) -> None:
    alloc = DeviceAllocator(
        "ns", "pod", UID, socket_path=str(tmp_path / "s"), checkpoint_path=str(tmp_path / "cp")
    )
    with pytest.raises(MultusError) as info:
        alloc.next_device("r")
    assert info.value.code == 11
    assert not alloc.loaded


# --- start-up cost ----------------------------------------------------------------------------------


def test_importing_and_using_without_socket_does_not_import_grpc(tmp_path: Path) -> None:
    path = write_checkpoint(
        tmp_path / "cp", [{"PodUID": UID, "ContainerName": "a", "ResourceName": "r", "DeviceIDs": ["1"]}]
    )
    code = f"""
import sys
sys.path.insert(0, {str(SRC)!r})
import pymultus.kube.devices, pymultus.store.deviceinfo
assert "grpc" not in sys.modules, "import"
heavy = sorted(m for m in ("json", "re", "typing", "dataclasses", "enum", "subprocess") if m in sys.modules)
assert not heavy, heavy
alloc = pymultus.kube.devices.DeviceAllocator(
    "ns", "pod", {UID!r}, socket_path={str(tmp_path / "no.sock")!r}, checkpoint_path={str(path)!r})
assert alloc.next_device("r") == "1"
assert "grpc" not in sys.modules, "checkpoint lookup"
print("ok")
"""
    assert run_isolated(code).strip() == "ok"
