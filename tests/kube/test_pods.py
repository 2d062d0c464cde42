"""ApiPodSource (the PodSource of the thin plugin) and API_CALLS, against the fake API server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pymultus import errors
from pymultus.kube.api_calls import API_CALLS, classify
from pymultus.kube.auth import load_kubeconfig
from pymultus.kube.client import KubeClient
from pymultus.kube.netstatus import decode_status, encode_status
from pymultus.kube.pods import NETWORK_STATUS, ApiPodSource, is_static_pod
from tests.fakeapi.server import FakeApiServer

STATUS = [
    {
        "name": "cbr0",
        "interface": "eth0",
        "ips": ["10.1.0.5"],
        "mac": "0a:58:0a:01:00:05",
        "default": True,
        "dns": {},
    },
    {"name": "ns1/net-a", "interface": "net1", "ips": ["10.2.0.5"], "mac": "02:00:00:00:00:01", "dns": {}},
]


class Clock:
    """A fake clock whose sleep advances time instantly (and can run a callback)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep: list[object] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            callback = self.on_sleep.pop(0)
            callback()  # type: ignore[operator]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(fake_api: FakeApiServer, tmp_path: Path) -> Iterator[KubeClient]:
    c = KubeClient(
        load_kubeconfig(str(fake_api.write_kubeconfig(tmp_path / "kubeconfig"))), sleep=lambda s: None
    )
    yield c
    c.close()


@pytest.fixture
def source(client: KubeClient, clock: Clock) -> ApiPodSource:
    return ApiPodSource(client, sleep=clock.sleep, clock=clock.monotonic)


def _uid(pod: dict[str, object] | None) -> str:
    assert pod is not None
    return str(pod["metadata"]["uid"])  # type: ignore[index]


def test_get_pod_with_matching_uid(fake_api: FakeApiServer, source: ApiPodSource, clock: Clock) -> None:
    pod = fake_api.create_pod("ns1", "p1")
    assert _uid(source.get_pod("ns1", "p1", uid=_uid(pod))) == _uid(pod)
    assert _uid(source.get_pod("ns1", "p1", uid=None)) == _uid(pod)
    assert clock.sleeps == [] and fake_api.count() == 2


def test_missing_pod_is_none_after_the_wait(
    fake_api: FakeApiServer, source: ApiPodSource, clock: Clock
) -> None:
    assert source.get_pod("ns1", "ghost", uid="u") is None
    assert sum(clock.sleeps) <= 2.5 and len(clock.sleeps) == 10  # 250 ms polls, 2.5 s in all
    assert fake_api.count("GET") == 11


def test_pod_that_appears_during_the_wait(
    fake_api: FakeApiServer, source: ApiPodSource, clock: Clock
) -> None:
    clock.on_sleep = [lambda: None, lambda: fake_api.create_pod("ns1", "late")]
    assert source.get_pod("ns1", "late", uid=None) is not None
    assert len(clock.sleeps) == 2


def test_no_wait_for_del(fake_api: FakeApiServer, client: KubeClient, clock: Clock) -> None:
    src = ApiPodSource(client, wait_timeout=0, sleep=clock.sleep, clock=clock.monotonic)
    assert src.get_pod("ns1", "ghost", uid=None) is None
    assert clock.sleeps == [] and fake_api.count() == 1


def test_uid_mismatch_is_an_error_naming_both_uids_but_static_pods_pass(
    fake_api: FakeApiServer, source: ApiPodSource, clock: Clock
) -> None:
    pod = fake_api.create_pod("ns1", "p1")
    with pytest.raises(errors.PodUidMismatch) as caught:
        source.get_pod("ns1", "p1", uid="another-uid")
    assert caught.value.code == errors.TRY_AGAIN_LATER
    assert f'expected pod UID "another-uid" but got "{_uid(pod)}" from Kube API' in caught.value.msg
    assert len(clock.sleeps) == 10  # the API may still catch up: the same wait as for a missing pod
    mirror = fake_api.create_pod(
        "kube-system", "etcd-node1",
        annotations={"kubernetes.io/config.mirror": "abc", "kubernetes.io/config.source": "file"},
    )  # fmt: skip
    assert _uid(source.get_pod("kube-system", "etcd-node1", uid="kubelet-side-uid")) == _uid(mirror)


@pytest.mark.parametrize(
    ("annotations", "static"),
    [({}, False), ({"kubernetes.io/config.source": "api"}, False),
     ({"kubernetes.io/config.source": "file"}, True), ({"kubernetes.io/config.mirror": "x"}, True)],
)  # fmt: skip
def test_is_static_pod(annotations: dict[str, str], static: bool) -> None:
    assert is_static_pod({"metadata": {"annotations": annotations}}) is static


def test_network_attachment(fake_api: FakeApiServer, source: ApiPodSource) -> None:
    fake_api.create_nad("ns1", "net-a", '{"type":"bridge"}')
    nad = source.get_network_attachment("ns1", "net-a")
    assert nad is not None and nad["spec"] == {"config": '{"type":"bridge"}'}
    assert source.get_network_attachment("ns1", "missing") is None
    fake_api.inject(403, count=1)
    with pytest.raises(errors.KubeError):
        source.get_network_attachment("ns1", "net-a")


def test_write_network_status_by_merge_patch(fake_api: FakeApiServer, source: ApiPodSource) -> None:
    pod = fake_api.create_pod("ns1", "p1")
    source.write_network_status(pod, STATUS)
    stored = fake_api.get_pod("ns1", "p1")
    value = stored["metadata"]["annotations"][NETWORK_STATUS]  # type: ignore[index]
    assert value == encode_status(STATUS) and decode_status(value)[1]["name"] == "ns1/net-a"
    assert [(r.method, r.path) for r in fake_api.requests] == [
        ("PATCH", "/api/v1/namespaces/ns1/pods/p1/status")
    ]


def test_write_network_status_retries_409(fake_api: FakeApiServer, source: ApiPodSource) -> None:
    pod = fake_api.create_pod("ns1", "p1")
    fake_api.fail_status_writes(2)
    source.write_network_status(pod, STATUS)
    assert fake_api.get_pod("ns1", "p1")["metadata"]["annotations"][NETWORK_STATUS] == encode_status(STATUS)  # type: ignore[index]
    assert fake_api.count("PATCH") == 3


def test_write_network_status_gives_up_after_bounded_conflicts(
    fake_api: FakeApiServer, source: ApiPodSource
) -> None:
    pod = fake_api.create_pod("ns1", "p1")
    fake_api.fail_status_writes(100)
    with pytest.raises(errors.KubeConflict):
        source.write_network_status(pod, STATUS)
    assert fake_api.count("PATCH") == source.status_retries + 1


def test_status_of_a_deleted_or_recreated_pod_is_skipped(
    fake_api: FakeApiServer, source: ApiPodSource
) -> None:
    pod = fake_api.create_pod("ns1", "p1")
    fake_api.delete_pod("ns1", "p1")
    source.write_network_status(pod, STATUS)  # gone: nothing to label, no error
    fake_api.create_pod("ns1", "p1")  # same name, another pod
    source.write_network_status(pod, STATUS)
    assert NETWORK_STATUS not in (fake_api.get_pod("ns1", "p1")["metadata"].get("annotations") or {})  # type: ignore[index,union-attr]


def test_status_falls_back_to_update_under_go_multus_rbac(
    fake_api: FakeApiServer, tmp_path: Path, clock: Clock
) -> None:
    """Go Multus's ClusterRole grants get/update on pods/status, not patch: PUT with the RV, GET on 409."""
    multus_role = [("get", "", "pods"), ("update", "", "pods/status"), ("create", "", "events")]
    fake_api.add_token("multus-token", "system:serviceaccount:kube-system:multus", allowed=multus_role)
    kc = fake_api.write_kubeconfig(tmp_path / "kc", token="multus-token")
    multus = KubeClient(load_kubeconfig(str(kc)))
    admin = KubeClient(load_kubeconfig(str(fake_api.write_kubeconfig(tmp_path / "admin"))))
    try:
        src = ApiPodSource(multus, sleep=clock.sleep, clock=clock.monotonic)
        pod = fake_api.create_pod("ns1", "p1")
        # Another writer changes the pod after we read it: the first PUT is stale.
        admin.patch_pod_status_annotations("ns1", "p1", {"other": "writer"})
        src.write_network_status(pod, STATUS)
    finally:
        multus.close()
        admin.close()
    stored = fake_api.get_pod("ns1", "p1")["metadata"]["annotations"]  # type: ignore[index]
    assert stored[NETWORK_STATUS] == encode_status(STATUS) and stored["other"] == "writer"  # type: ignore[index]
    methods = [r.method for r in fake_api.requests if r.user.endswith(":multus")]
    assert methods == ["PATCH", "PUT", "GET", "PUT"]  # 403, 409 (stale), re-read, 200


def test_record_event(fake_api: FakeApiServer, source: ApiPodSource) -> None:
    pod = fake_api.create_pod("ns1", "p1")
    source.record_event(
        pod, kind="Normal", reason="AddedInterface", message="Add net1 [10.2.0.5/24] from ns1/net-a"
    )
    source.record_event(pod, kind="Warning", reason="NoNetworkFound", message="x" * 5000)
    events = fake_api.events_for("ns1", "p1")
    assert [e["reason"] for e in events] and {e["reason"] for e in events} == {
        "AddedInterface",
        "NoNetworkFound",
    }
    added = next(e for e in events if e["reason"] == "AddedInterface")
    assert added["involvedObject"] == {
        "kind": "Pod", "namespace": "ns1", "name": "p1", "uid": _uid(pod), "apiVersion": "v1",
        "resourceVersion": pod["metadata"]["resourceVersion"],  # type: ignore[index]
    }  # fmt: skip
    assert added["source"] == {"component": "multus"} and added["type"] == "Normal" and added["count"] == 1
    assert str(added["metadata"]["name"]).startswith("p1.")  # type: ignore[index]
    warning = next(e for e in events if e["reason"] == "NoNetworkFound")
    assert warning["type"] == "Warning" and len(str(warning["message"])) == 1024


def test_record_event_never_raises(fake_api: FakeApiServer, source: ApiPodSource) -> None:
    pod = fake_api.create_pod("ns1", "p1")
    logged: list[str] = []
    source.log = logged.append
    fake_api.set_down()
    source.record_event(pod, kind="Normal", reason="AddedInterface", message="m")
    source.record_event({"metadata": {}}, kind="Normal", reason="AddedInterface", message="m")
    assert len(logged) == 2 and "AddedInterface" in logged[0]


def test_every_call_is_declared_in_api_calls(fake_api: FakeApiServer, tmp_path: Path, clock: Clock) -> None:
    """Drive every client method with a token that holds exactly the RBAC derived from API_CALLS:
    each request must succeed (the ClusterRole suffices) and classify into API_CALLS."""
    fake_api.add_token("rbac-token", "system:serviceaccount:kube-system:pymultus", allowed=API_CALLS)
    kc = fake_api.write_kubeconfig(tmp_path / "kc", token="rbac-token")
    client = KubeClient(load_kubeconfig(str(kc)))
    try:
        _drive_every_call(fake_api, client, ApiPodSource(client, sleep=clock.sleep, clock=clock.monotonic))
    finally:
        client.close()
    seen = {classify(r.method, r.path, r.query) for r in fake_api.requests if r.user.endswith(":pymultus")}
    assert seen <= set(API_CALLS), seen - set(API_CALLS)
    assert seen == set(API_CALLS), set(API_CALLS) - seen  # and nothing declared is unused


def _drive_every_call(fake_api: FakeApiServer, client: KubeClient, src: ApiPodSource) -> None:
    fake_api.create_pod("ns1", "p1")
    fake_api.create_nad("ns1", "net-a", "{}")
    pod = client.get_pod("ns1", "p1")
    client.get_network_attachment("ns1", "net-a")
    pod = client.patch_pod_status_annotations("ns1", "p1", {"a": "b"}, uid=_uid(pod))
    client.update_pod_status(pod)
    src.get_pod("ns1", "p1", uid=None)
    src.get_network_attachment("ns1", "net-a")
    src.write_network_status(client.get_pod("ns1", "p1"), STATUS)
    src.record_event(pod, kind="Normal", reason="AddedInterface", message="m")
    client.create_event(
        "ns1", {"metadata": {"name": "p1.1"}, "involvedObject": {"name": "p1"}, "reason": "r"}
    )
    for path in ("/api/v1/pods", "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions"):
        _items, rv = client.list(
            path, {"fieldSelector": "spec.nodeName=node1"} if "pods" in path else None, limit=1
        )
        list(client.watch(path, rv, timeout_seconds=1))
        list(client.watch(path, None, timeout_seconds=1, send_initial_events=True))
    client.request_token("kube-system", "pymultus", bound_node="node1", expiration_seconds=600)
    _drive_dra(fake_api, client)
    _drive_node_certificate(fake_api, client)


def _drive_node_certificate(fake_api: FakeApiServer, client: KubeClient) -> None:
    """A per-node certificate requested with the client's identity (create, get, watch of its CSR),
    approved by an admin once the daemon watches, signed by the fake's signer."""
    import json
    import tempfile
    import threading
    import time

    from pymultus.kube.certs import CSR_PATH, NodeCertificates

    fake_api.csr_signing_duration = 600
    with tempfile.TemporaryDirectory() as tmp:
        admin = KubeClient(load_kubeconfig(str(fake_api.write_kubeconfig(Path(tmp) / "admin"))))

        def approve() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not fake_api.count("GET", CSR_PATH):
                time.sleep(0.02)  # the watch (a GET of the collection) has started
            (pending,) = admin.list(CSR_PATH)[0]
            pending["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Test"}]}
            name = pending["metadata"]["name"]  # type: ignore[index]
            admin.request("PUT", f"{CSR_PATH}/{name}/approval", body=json.dumps(pending).encode())

        approver = threading.Thread(target=approve, daemon=True)
        approver.start()
        certs = NodeCertificates("node1", f"{tmp}/certs", client.credentials, 600, approval_timeout=20)
        try:
            certs.start()
        finally:
            certs.stop()
            approver.join(20)
            admin.close()


def _drive_dra(fake_api: FakeApiServer, client: KubeClient) -> None:
    from pymultus.kube.dra import ClaimReader
    from tests.fakeapi import dra

    dra.create_claim(fake_api, "ns1", "claim")
    device = dra.device("dev", "example.com/r", "0000:01:00.1")
    dra.create_slice(fake_api, "s1", driver="d.example", pool="p", node_name="node1", devices=[device])
    result = {"request": "net", "driver": "d.example", "pool": "p", "device": "dev"}
    dra.allocate_claim(fake_api, "ns1", "claim", [result])
    spec = {"nodeName": "node1", "resourceClaims": [{"name": "c", "resourceClaimName": "claim"}]}
    pod = {"metadata": {"namespace": "ns1", "name": "p1"}, "spec": spec}
    assert ClaimReader(lambda: client).pod_devices(pod).by_resource == {"example.com/r": ["0000:01:00.1"]}


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/a/pods/b", {}, ("get", "", "pods")),
        ("GET", "/api/v1/pods", {}, ("list", "", "pods")),
        ("GET", "/api/v1/namespaces/a/pods", {"watch": "true"}, ("watch", "", "pods")),
        ("PUT", "/api/v1/namespaces/a/pods/b/status", {}, ("update", "", "pods/status")),
        ("PATCH", "/api/v1/namespaces/a/pods/b/status", {}, ("patch", "", "pods/status")),
        ("POST", "/api/v1/namespaces/a/events", {}, ("create", "", "events")),
        ("GET", "/apis/k8s.cni.cncf.io/v1/namespaces/a/network-attachment-definitions/n", {},
         ("get", "k8s.cni.cncf.io", "network-attachment-definitions")),
        ("GET", "/api/v1/namespaces/a", {}, ("get", "", "namespaces")),
        ("DELETE", "/api/v1/namespaces/a/pods", {}, ("deletecollection", "", "pods")),
    ],
)  # fmt: skip
def test_classify(method: str, path: str, query: dict[str, str], expected: tuple[str, str, str]) -> None:
    assert classify(method, path, query) == expected
