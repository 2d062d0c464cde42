"""The pod-resources client against a REAL grpcio server on a unix socket (the kubelet's transport).

The server implements ``/v1.PodResourcesLister/List`` with a generic handler on raw bytes, so the
client's hand-written protobuf and its ``unary_unary`` call are checked against grpcio's own HTTP/2
framing, deadlines, status codes and message-size limits. No root needed.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from pymultus.kube import podresources
from pymultus.kube.devices import DeviceAllocator
from pymultus.kube.podresources import (
    ContainerDevices,
    ContainerResources,
    PodResources,
    PodResourcesUnavailable,
    ProtobufError,
    encode_list_response,
    list_pod_resources,
    pod_devices,
)

UID = "0b7c2f9e-aaaa-4bbb-8ccc-0123456789ab"
SUN_PATH_MAX = 107

Handler = Callable[[bytes, grpc.ServicerContext], bytes]


class FakeKubelet:
    """A grpcio server speaking v1.PodResourcesLister/List; records every request it receives."""

    def __init__(self, socket_path: str, handler: Handler) -> None:
        self.socket_path = socket_path
        self.requests: list[tuple[str, bytes]] = []
        self._handler = handler
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        list_rpc = grpc.unary_unary_rpc_method_handler(self._list)  # no (de)serializers: raw bytes
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("v1.PodResourcesLister", {"List": list_rpc}),)
        )
        if self.server.add_insecure_port("unix://" + socket_path) == 0:
            raise RuntimeError(f"cannot listen on {socket_path}")

    def _list(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.requests.append((podresources.LIST_METHOD, request))
        return self._handler(request, context)

    def __enter__(self) -> FakeKubelet:
        self.server.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.stop(None).wait()


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    # sun_path holds 107 bytes; pytest's tmp_path can be longer, then use a short private dir.
    if len(str(tmp_path / "kubelet.sock")) <= SUN_PATH_MAX:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="pr-"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


def kubelet_pods() -> list[PodResources]:
    return [
        PodResources(
            "web-0",
            "team-a",
            [
                ContainerResources(
                    "app",
                    [
                        ContainerDevices("intel.com/sriov_vf", ["0000:af:02.3", "0000:af:02.1"], [0]),
                        ContainerDevices("nvidia.com/gpu", ["GPU-1"]),
                    ],
                ),
                ContainerResources(
                    "sidecar", [ContainerDevices("intel.com/sriov_vf", ["0000:af:02.2"], [1])]
                ),
            ],
        ),
        # Same name in another namespace, and another pod: neither must leak into web-0's devices.
        PodResources(
            "web-0", "team-b", [ContainerResources("app", [ContainerDevices("intel.com/sriov_vf", ["X"])])]
        ),
        PodResources(
            "db-0", "team-a", [ContainerResources("db", [ContainerDevices("intel.com/sriov_vf", ["Y"])])]
        ),
    ]


def answer(pods: list[PodResources]) -> Handler:
    payload = encode_list_response(pods)
    return lambda _request, _context: payload


def checkpoint(path: Path, ids: dict[str, list[str]]) -> str:
    path.write_text(
        json.dumps(
            {
                "Data": {
                    "PodDeviceEntries": [
                        {
                            "PodUID": UID,
                            "ContainerName": "app",
                            "ResourceName": "intel.com/sriov_vf",
                            "DeviceIDs": ids,
                        }
                    ],
                    "RegisteredDevices": {},
                },
                "Checksum": 1,
            }
        )
    )
    return str(path)


def test_list_through_a_real_grpc_server(sock_dir: Path) -> None:
    sock = str(sock_dir / "kubelet.sock")
    with FakeKubelet(sock, answer(kubelet_pods())) as kubelet:
        pods = list_pod_resources(sock)
    assert repr(pods) == repr(kubelet_pods())
    assert kubelet.requests == [("/v1.PodResourcesLister/List", b"")]


def test_allocator_hands_out_sorted_devices_of_all_containers(sock_dir: Path, tmp_path: Path) -> None:
    sock = str(sock_dir / "kubelet.sock")
    with FakeKubelet(sock, answer(kubelet_pods())) as kubelet:
        alloc = DeviceAllocator(
            "team-a", "web-0", UID, socket_path=sock, checkpoint_path=str(tmp_path / "no-checkpoint")
        )
        got = [alloc.next_device("intel.com/sriov_vf") for _ in range(4)]
        assert alloc.next_device("nvidia.com/gpu") == "GPU-1"
    assert got == ["0000:af:02.1", "0000:af:02.2", "0000:af:02.3", None]
    assert alloc.source == podresources.SOURCE_POD_RESOURCES
    assert alloc.fallback_reason == ""
    assert len(kubelet.requests) == 1  # one List per pod, however many NADs


def test_response_above_grpc_default_4mib_is_accepted(sock_dir: Path) -> None:
    # grpcio's default receive limit is 4 MiB; the kubelet on a busy node can send more (Multus: 16 MiB).
    many = [
        PodResources(f"pod-{i}", "bulk", [ContainerResources("c", [ContainerDevices("r", ["d" * 200])])])
        for i in range(25_000)
    ]
    sock = str(sock_dir / "kubelet.sock")
    payload = encode_list_response(many)
    assert 4 * 2**20 < len(payload) < 16 * 2**20
    with FakeKubelet(sock, lambda _r, _c: payload):
        pods = list_pod_resources(sock)
    assert len(pods) == 25_000


def test_response_above_16mib_is_refused_and_falls_back(sock_dir: Path, tmp_path: Path) -> None:
    big = [
        PodResources("huge", "bulk", [ContainerResources("c", [ContainerDevices("r", ["d" * (17 * 2**20)])])])
    ]
    sock = str(sock_dir / "kubelet.sock")
    with FakeKubelet(sock, answer(big)):
        with pytest.raises(PodResourcesUnavailable, match="RESOURCE_EXHAUSTED"):
            list_pod_resources(sock)
        found = pod_devices(
            "team-a",
            "web-0",
            UID,
            socket_path=sock,
            checkpoint_path=checkpoint(tmp_path / "cp", {"0": ["b", "a"]}),
        )
    assert found.source == podresources.SOURCE_CHECKPOINT
    assert found.by_resource == {"intel.com/sriov_vf": ["b", "a"]}
    assert "RESOURCE_EXHAUSTED" in found.fallback_reason


def test_rpc_error_falls_back_to_the_checkpoint(sock_dir: Path, tmp_path: Path) -> None:
    def unimplemented(_request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "v1 pod-resources disabled")
        raise AssertionError("abort returns only by raising")

    sock = str(sock_dir / "kubelet.sock")
    with FakeKubelet(sock, unimplemented):
        with pytest.raises(PodResourcesUnavailable) as info:
            list_pod_resources(sock)
        alloc = DeviceAllocator(
            "team-a", "web-0", UID, socket_path=sock, checkpoint_path=checkpoint(tmp_path / "cp", ["2", "1"])
        )
        assert [alloc.next_device("intel.com/sriov_vf") for _ in range(3)] == ["1", "2", None]
    assert str(info.value) == (
        f"the kubelet pod-resources API on {sock} failed: UNIMPLEMENTED: v1 pod-resources disabled"
    )
    assert info.value.code == 11
    assert "status=UNIMPLEMENTED" in info.value.details
    assert alloc.source == podresources.SOURCE_CHECKPOINT
    assert "UNIMPLEMENTED" in alloc.fallback_reason


def test_rpc_error_without_checkpoint_is_try_again_later(sock_dir: Path, tmp_path: Path) -> None:
    def unavailable(_request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.UNAVAILABLE, "kubelet restarting")
        raise AssertionError("abort returns only by raising")

    sock = str(sock_dir / "kubelet.sock")
    with FakeKubelet(sock, unavailable), pytest.raises(PodResourcesUnavailable) as info:
        pod_devices("team-a", "web-0", UID, socket_path=sock, checkpoint_path=str(tmp_path / "none"))
    assert info.value.code == 11
    assert "UNAVAILABLE: kubelet restarting" in str(info.value)
    assert "checkpoint" in str(info.value)


def test_deadline_is_enforced(sock_dir: Path) -> None:
    release = threading.Event()

    def slow(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        release.wait(5)
        return b""

    sock = str(sock_dir / "kubelet.sock")
    with FakeKubelet(sock, slow):
        started = time.monotonic()
        try:
            with pytest.raises(PodResourcesUnavailable, match="DEADLINE_EXCEEDED"):
                list_pod_resources(sock, timeout=0.3)
        finally:
            release.set()
        elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 3


def test_stale_socket_file_without_a_listener(sock_dir: Path, tmp_path: Path) -> None:
    # The kubelet died and left its socket file: connection refused, then the checkpoint.
    sock = str(sock_dir / "kubelet.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock)
    listener.close()
    with pytest.raises(PodResourcesUnavailable, match="UNAVAILABLE"):
        list_pod_resources(sock, timeout=5)
    found = pod_devices(
        "team-a", "web-0", UID, socket_path=sock, checkpoint_path=checkpoint(tmp_path / "cp", ["z"])
    )
    assert (found.source, found.by_resource) == ("checkpoint", {"intel.com/sriov_vf": ["z"]})


def test_garbage_response_is_a_protobuf_error(sock_dir: Path) -> None:
    sock = str(sock_dir / "kubelet.sock")
    with FakeKubelet(sock, lambda _r, _c: b"\x0a\x05ab"), pytest.raises(ProtobufError, match="truncated"):
        list_pod_resources(sock)


def test_missing_socket_uses_the_checkpoint(tmp_path: Path) -> None:
    found = pod_devices(
        "team-a",
        "web-0",
        UID,
        socket_path=str(tmp_path / "absent.sock"),
        checkpoint_path=checkpoint(tmp_path / "cp", {"1": ["b"], "0": ["a"]}),
    )
    assert (found.source, found.by_resource) == ("checkpoint", {"intel.com/sriov_vf": ["a", "b"]})
