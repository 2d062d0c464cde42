"""KubeClient against the fake API server: error translation, retries, keep-alive, LIST, WATCH."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymultus import errors
from pymultus.kube.auth import load_kubeconfig
from pymultus.kube.client import KubeClient, api_error, pod_path
from tests.fakeapi.server import FakeApiServer
from tests.kube.conftest import Sleeps


@pytest.fixture
def client(fake_api: FakeApiServer, tmp_path: Path, sleeps: Sleeps) -> Iterator[KubeClient]:
    fake_api.create_pod("ns1", "p1", annotations={"k8s.v1.cni.cncf.io/networks": "net-a"})
    fake_api.create_nad("ns1", "net-a", {"cniVersion": "1.0.0", "name": "net-a", "type": "bridge"})
    kc = fake_api.write_kubeconfig(tmp_path / "kubeconfig")
    c = KubeClient(load_kubeconfig(str(kc)), sleep=sleeps, jitter=lambda: 0.5, timeout=5)
    yield c
    c.close()


def test_get_pod_and_nad(client: KubeClient) -> None:
    pod = client.get_pod("ns1", "p1")
    assert pod["metadata"]["annotations"] == {"k8s.v1.cni.cncf.io/networks": "net-a"}  # type: ignore[index]
    nad = client.get_network_attachment("ns1", "net-a")
    assert json.loads(nad["spec"]["config"])["type"] == "bridge"  # type: ignore[index]


ERRORS = [
    (400, errors.KubeInvalid),
    (401, errors.KubeUnauthorized),
    (403, errors.KubeForbidden),
    (404, errors.KubeNotFound),
    (409, errors.KubeConflict),
    (410, errors.KubeGone),
    (422, errors.KubeInvalid),
    (429, errors.KubeUnavailable),
    (500, errors.KubeUnavailable),
    (503, errors.KubeUnavailable),
    (504, errors.KubeUnavailable),
    (405, errors.KubeError),
]


@pytest.mark.parametrize(("status", "cls"), ERRORS, ids=[str(s) for s, _ in ERRORS])
def test_every_status_maps_to_one_error_class(status: int, cls: type[errors.KubeError]) -> None:
    body = json.dumps(
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": f"message {status}", "reason": f"Reason{status}", "code": status}
    ).encode()  # fmt: skip
    err = api_error("GET", "/api/v1/namespaces/a/pods/b", status, body)
    assert type(err) is cls
    assert err.status == status and err.reason == f"Reason{status}"
    assert err.msg == f"Kubernetes API: message {status}"
    assert err.details == "GET /api/v1/namespaces/a/pods/b"
    assert err.code == (errors.TRY_AGAIN_LATER if cls is errors.KubeUnavailable else errors.INTERNAL)


def test_non_status_body_and_transport_errors() -> None:
    err = api_error("GET", "/x", 502, b"<html>bad gateway</html>")
    assert isinstance(err, errors.KubeUnavailable) and "HTTP 502: <html>bad gateway</html>" in err.msg
    err = api_error("GET", "/x", 0, b"", ConnectionRefusedError(111, "Connection refused"))
    assert isinstance(err, errors.KubeUnavailable) and err.msg.endswith("Connection refused")
    assert isinstance(api_error("GET", "/x", 0, b"", TimeoutError()), errors.KubeUnavailable)


def test_real_not_found_keeps_status_message(client: KubeClient) -> None:
    with pytest.raises(errors.KubeNotFound) as info:
        client.get_network_attachment("ns1", "missing")
    assert (
        info.value.msg == 'Kubernetes API: network-attachment-definitions.k8s.cni.cncf.io "missing" not found'
    )
    assert info.value.reason == "NotFound" and info.value.status == 404


def test_invalid_name_is_422(client: KubeClient) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
                       "spec": {"containers": [{"name": "a", "image": "x"}]}}).encode()  # fmt: skip
    with pytest.raises(errors.KubeInvalid) as info:
        client.request("POST", "/api/v1/namespaces/ns1/pods", body=body)
    assert info.value.reason == "Invalid" and "metadata.name" in info.value.msg


def test_unsafe_names_never_reach_the_path(client: KubeClient) -> None:
    with pytest.raises(errors.KubeInvalid):
        client.get_pod("ns1", "..")
    with pytest.raises(errors.KubeNotFound):
        client.get_pod("ns1", "a/b")  # sent as a%2Fb: one segment, simply not found
    assert pod_path("ns", "a/b") == "/api/v1/namespaces/ns/pods/a%2Fb"


def test_5xx_retried_with_exponential_backoff(
    client: KubeClient, fake_api: FakeApiServer, sleeps: Sleeps
) -> None:
    fake_api.inject(503, count=2, method="GET")
    assert client.get_pod("ns1", "p1")["metadata"]["name"] == "p1"  # type: ignore[index]
    # backoff 0.2 s doubling, "equal jitter" with jitter()=0.5 -> 3/4 of the step
    assert sleeps.calls == pytest.approx([0.15, 0.3])
    assert fake_api.count("GET", "/api/v1/namespaces/ns1/pods/p1") == 3


def test_retries_exhausted_is_unavailable(
    client: KubeClient, fake_api: FakeApiServer, sleeps: Sleeps
) -> None:
    fake_api.inject(500, count=10)
    with pytest.raises(errors.KubeUnavailable) as info:
        client.get_pod("ns1", "p1")
    assert info.value.code == 11 and info.value.status == 500 and info.value.reason == "InternalError"
    assert len(sleeps.calls) == client.retries == 3
    assert fake_api.count() == 4


def test_429_honours_retry_after(client: KubeClient, fake_api: FakeApiServer, sleeps: Sleeps) -> None:
    fake_api.inject(429, count=1, retry_after=7)
    client.get_pod("ns1", "p1")
    assert sleeps.calls == [7.0]
    fake_api.inject(429, count=1, retry_after=3600)
    client.get_pod("ns1", "p1")
    assert sleeps.calls[-1] == client.max_retry_after


def test_4xx_is_not_retried(client: KubeClient, fake_api: FakeApiServer, sleeps: Sleeps) -> None:
    with pytest.raises(errors.KubeNotFound):
        client.get_pod("ns1", "nope")
    assert sleeps.calls == [] and fake_api.count() == 1


def test_server_down_is_unavailable_after_retries(
    client: KubeClient, fake_api: FakeApiServer, sleeps: Sleeps
) -> None:
    fake_api.set_down()
    with pytest.raises(errors.KubeUnavailable) as info:
        client.get_pod("ns1", "p1")
    assert info.value.reason == "ConnectionFailed" and info.value.code == 11
    assert len(sleeps.calls) == 3
    fake_api.set_down(False)
    assert client.get_pod("ns1", "p1")["metadata"]["name"] == "p1"  # type: ignore[index]


def test_server_comes_back_during_retries(client: KubeClient, fake_api: FakeApiServer) -> None:
    fake_api.set_down()

    def sleep(_seconds: float) -> None:
        fake_api.set_down(False)

    client.sleep = sleep
    assert client.get_pod("ns1", "p1")["metadata"]["name"] == "p1"  # type: ignore[index]


def test_timeout_is_unavailable(client: KubeClient, fake_api: FakeApiServer) -> None:
    client.timeout = 0.3
    client.retries = 0
    client.close()
    fake_api.inject(None, count=1, delay=1.5)
    with pytest.raises(errors.KubeUnavailable) as info:
        client.get_pod("ns1", "p1")
    assert "timed out" in info.value.msg


def test_keep_alive_reuses_one_connection(client: KubeClient) -> None:
    for _ in range(5):
        client.get_pod("ns1", "p1")
    assert len(client._idle) == 1
    assert client._idle[0].requests == 5


def test_stale_keep_alive_connection_is_replaced_silently(
    client: KubeClient, fake_api: FakeApiServer, sleeps: Sleeps
) -> None:
    client.get_pod("ns1", "p1")
    fake_api.stop()  # closes the kept-alive connection from the server side
    fake_api.start()  # same port
    assert client.get_pod("ns1", "p1")["metadata"]["name"] == "p1"  # type: ignore[index]
    assert sleeps.calls == []  # not counted as a failure


def test_token_file_is_reread_on_every_request(client: KubeClient, fake_api: FakeApiServer) -> None:
    client.get_pod("ns1", "p1")
    fake_api.rotate_token(write_token_files=False)  # the old token expires
    with pytest.raises(errors.KubeUnauthorized) as info:
        client.get_pod("ns1", "p1")
    assert info.value.msg == "Kubernetes API: Unauthorized"
    fake_api.write_token_files()  # kubelet/installer writes the new token
    assert client.get_pod("ns1", "p1")["metadata"]["name"] == "p1"  # type: ignore[index]


def test_wrong_ca_is_not_retried(
    fake_api: FakeApiServer, tmp_path: Path, fake_api_pki: object, sleeps: Sleeps
) -> None:
    from tests.fakeapi.certs import Pki

    other = Pki(tmp_path / "other-pki")
    kc = fake_api.write_kubeconfig(tmp_path / "kubeconfig")
    creds = load_kubeconfig(str(kc))
    creds.ca_data = other.ca_pem
    c = KubeClient(creds, sleep=sleeps)
    with pytest.raises(errors.KubeError) as info:
        c.get_pod("default", "x")
    assert info.value.reason == "CertificateVerifyFailed" and sleeps.calls == []


def test_status_writes(client: KubeClient, fake_api: FakeApiServer) -> None:
    pod = client.get_pod("ns1", "p1")
    patched = client.patch_pod_status_annotations("ns1", "p1", {"k": "v"}, uid=pod["metadata"]["uid"])  # type: ignore[index]
    assert patched["metadata"]["annotations"]["k"] == "v"  # type: ignore[index]
    with pytest.raises(errors.KubeConflict):  # stale resourceVersion
        client.update_pod_status(pod)
    fresh = client.get_pod("ns1", "p1")
    fresh["metadata"]["annotations"]["k"] = "w"  # type: ignore[index]
    assert client.update_pod_status(fresh)["metadata"]["annotations"]["k"] == "w"  # type: ignore[index]
    with pytest.raises(errors.KubeConflict):  # uid precondition: another pod of that name
        client.patch_pod_status_annotations(
            "ns1", "p1", {"k": "x"}, uid="00000000-0000-0000-0000-000000000000"
        )
    patched = client.patch_pod_status_annotations("ns1", "p1", {"k": None})
    assert "k" not in patched["metadata"]["annotations"]  # type: ignore[index,operator]


def test_list_pages_with_continue(client: KubeClient, fake_api: FakeApiServer) -> None:
    for i in range(4):
        fake_api.create_pod("ns2", f"q{i}", node_name="node1" if i != 2 else "node2")
    items, rv = client.list("/api/v1/pods", {"fieldSelector": "spec.nodeName=node1"}, limit=2)
    names = [i["metadata"]["name"] for i in items]  # type: ignore[index]
    assert names == ["p1", "q0", "q1", "q3"]
    assert rv.isdigit()
    assert fake_api.count("GET", "/api/v1/pods") == 2
    assert "continue" in fake_api.requests[-1].query and "limit" in fake_api.requests[-1].query


def test_list_in_missing_namespace_is_empty(client: KubeClient) -> None:
    assert client.list("/api/v1/namespaces/nowhere/pods")[0] == []


def test_watch_events_split_across_chunks(client: KubeClient, fake_api: FakeApiServer) -> None:
    _items, rv = client.list("/api/v1/namespaces/ns1/pods")
    big = "x" * 3000  # each event > 2 KiB: the replay is cut in 0x800 chunks inside events
    for i in range(3):
        client.patch_pod_status_annotations("ns1", "p1", {"big": f"{big}{i}"})
    events = list(client.watch("/api/v1/namespaces/ns1/pods", rv, timeout_seconds=1))
    assert [t for t, _ in events] == ["MODIFIED"] * 3
    assert [o["metadata"]["annotations"]["big"][-1] for _, o in events] == ["0", "1", "2"]  # type: ignore[index]


def test_watch_too_old_is_gone(client: KubeClient, fake_api: FakeApiServer) -> None:
    client.patch_pod_status_annotations("ns1", "p1", {"a": "1"})
    fake_api.compact()
    stream = client.watch("/api/v1/pods", "1", timeout_seconds=5)  # the HTTP answer is 200
    with pytest.raises(errors.KubeGone) as info:
        next(iter(stream))
    assert info.value.reason == "Expired" and "too old resource version: 1" in info.value.msg


def test_exact_list_after_compaction_is_gone(client: KubeClient, fake_api: FakeApiServer) -> None:
    fake_api.compact()
    with pytest.raises(errors.KubeGone):
        client.list("/api/v1/pods", {"resourceVersion": "1", "resourceVersionMatch": "Exact"})


def test_watch_list_initial_events_and_bookmark(client: KubeClient, fake_api: FakeApiServer) -> None:
    events = list(client.watch("/api/v1/pods", None, timeout_seconds=1, send_initial_events=True,
                               params={"fieldSelector": "spec.nodeName=node1"}))  # fmt: skip
    assert [t for t, _ in events] == ["ADDED", "BOOKMARK"]
    assert events[1][1]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}  # type: ignore[index]


def test_watch_live_events_and_periodic_bookmark(client: KubeClient, fake_api: FakeApiServer) -> None:
    fake_api.bookmark_interval = 0.3
    _items, rv = client.list("/apis/k8s.cni.cncf.io/v1/network-attachment-definitions")
    stream = client.watch("/apis/k8s.cni.cncf.io/v1/network-attachment-definitions", rv, timeout_seconds=2)
    threading.Timer(0.1, fake_api.create_nad, args=("ns1", "net-b", "{}")).start()
    events = list(stream)
    assert events[0][0] == "ADDED" and events[0][1]["metadata"]["name"] == "net-b"  # type: ignore[index]
    assert "BOOKMARK" in [t for t, _ in events]


def test_cut_watch_raises_unavailable(client: KubeClient, fake_api: FakeApiServer) -> None:
    stream = client.watch("/api/v1/pods", None, timeout_seconds=30)
    assert next(iter(stream))[0] == "ADDED"
    threading.Timer(0.2, fake_api.cut_watches).start()
    with pytest.raises(errors.KubeUnavailable):
        for _event in stream:
            pass


def test_watch_close_from_another_thread_stops_cleanly(client: KubeClient) -> None:
    stream = client.watch("/api/v1/namespaces/ns1/pods", "999999", timeout_seconds=30)
    threading.Timer(0.2, stream.close).start()
    started = time.monotonic()
    assert list(stream) == []
    assert time.monotonic() - started < 5


def test_watch_http_error_raises_before_iteration(client: KubeClient, fake_api: FakeApiServer) -> None:
    fake_api.rotate_token(write_token_files=False)
    with pytest.raises(errors.KubeUnauthorized):
        client.watch("/api/v1/pods")
