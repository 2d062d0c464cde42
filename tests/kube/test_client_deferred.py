"""``KubeClient.send_deferred`` (Events of the thin plugin): sent now, answer read later, same
retry rules, failures reported, never lost at exit — against the fake API server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymultus import errors
from pymultus.kube.auth import load_kubeconfig
from pymultus.kube.client import KubeClient
from pymultus.kube.pods import ApiPodSource
from tests.fakeapi.server import FakeApiServer
from tests.kube.conftest import Sleeps
from tests.support.isolated import run_isolated

EVENTS = "/api/v1/namespaces/ns1/events"


@pytest.fixture
def client(fake_api: FakeApiServer, tmp_path: Path, sleeps: Sleeps) -> Iterator[KubeClient]:
    fake_api.create_pod("ns1", "p1")
    kc = fake_api.write_kubeconfig(tmp_path / "kubeconfig")
    c = KubeClient(load_kubeconfig(str(kc)), sleep=sleeps, jitter=lambda: 0.5, timeout=5)
    yield c
    c.close()


def _event(name: str) -> dict[str, object]:
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "ns1"},
        "involvedObject": {"kind": "Pod", "namespace": "ns1", "name": "p1"},
        "reason": "AddedInterface",
        "message": name,
        "type": "Normal",
    }


def _names(fake_api: FakeApiServer) -> list[str]:
    return [str(e["metadata"]["name"]) for e in fake_api.events_for("ns1", "p1")]  # type: ignore[index]


def _wait_for(predicate: object, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_answer_is_read_before_the_next_request_on_the_same_connection(
    client: KubeClient, fake_api: FakeApiServer
) -> None:
    failures: list[errors.MultusError] = []
    client.create_event_later("ns1", _event("e1"), on_error=failures.append)
    conn = client._idle[0]
    assert conn.deferred is not None  # sent, answer not read yet
    assert _wait_for(lambda: _names(fake_api) == ["e1"])  # the server stored it meanwhile
    client.create_event_later("ns1", _event("e2"), on_error=failures.append)  # reads e1's answer first
    assert client.get_pod("ns1", "p1")["metadata"]["name"] == "p1"  # type: ignore[index]
    assert client._idle == [conn] and conn.deferred is None and conn.requests == 3  # one connection
    assert sorted(_names(fake_api)) == ["e1", "e2"] and failures == []


def test_close_reads_the_outstanding_answer(client: KubeClient, fake_api: FakeApiServer) -> None:
    failures: list[errors.MultusError] = []
    fake_api.inject(403, method="POST", path=EVENTS)
    client.create_event_later("ns1", _event("e1"), on_error=failures.append)
    client.close()
    assert [type(f) for f in failures] == [errors.KubeForbidden]  # refused: reported, not retried
    assert fake_api.count("POST", EVENTS) == 1


def test_5xx_is_retried_with_the_usual_backoff(
    client: KubeClient, fake_api: FakeApiServer, sleeps: Sleeps
) -> None:
    failures: list[errors.MultusError] = []
    fake_api.inject(503, count=2, method="POST", path=EVENTS)
    client.create_event_later("ns1", _event("e1"), on_error=failures.append)
    client.settle()
    assert sleeps.calls == pytest.approx([0.15, 0.3])  # as test_client's synchronous 5xx case
    assert fake_api.count("POST", EVENTS) == 3 and _names(fake_api) == ["e1"] and failures == []


def test_retries_exhausted_are_reported_after_the_same_number_of_attempts(
    client: KubeClient, fake_api: FakeApiServer, sleeps: Sleeps
) -> None:
    failures: list[errors.MultusError] = []
    fake_api.inject(500, count=10, method="POST", path=EVENTS)
    client.create_event_later("ns1", _event("e1"), on_error=failures.append)
    client.settle()
    assert [type(f) for f in failures] == [errors.KubeUnavailable]
    assert fake_api.count("POST", EVENTS) == 1 + client.retries and len(sleeps.calls) == client.retries


def test_stale_keep_alive_connection_resends_at_once(
    client: KubeClient, fake_api: FakeApiServer, sleeps: Sleeps
) -> None:
    client.get_pod("ns1", "p1")
    fake_api.stop()  # the kept-alive connection is closed by the server
    fake_api.start()
    failures: list[errors.MultusError] = []
    client.create_event_later("ns1", _event("e1"), on_error=failures.append)
    client.settle()
    assert _names(fake_api) == ["e1"] and failures == [] and sleeps.calls == []


def test_server_down_is_reported_not_raised(client: KubeClient, fake_api: FakeApiServer) -> None:
    fake_api.set_down()
    failures: list[errors.MultusError] = []
    client.create_event_later("ns1", _event("e1"), on_error=failures.append)  # does not raise
    client.settle()
    assert [type(f) for f in failures] == [errors.KubeUnavailable]


def test_pod_source_with_deferred_events(client: KubeClient, fake_api: FakeApiServer) -> None:
    logged: list[str] = []
    source = ApiPodSource(client, defer_events=True, log=logged.append)
    pod = source.get_pod("ns1", "p1", uid=None)
    assert pod is not None
    source.record_event(pod, kind="Normal", reason="AddedInterface", message="Add eth0 [10.1.1.2/24]")
    source.write_network_status(pod, [{"name": "net", "interface": "eth0", "default": True}])
    events = fake_api.events_for("ns1", "p1")
    assert [e["reason"] for e in events] == ["AddedInterface"] and logged == []
    fake_api.inject(403, method="POST", path=EVENTS)
    source.record_event(pod, kind="Warning", reason="AddInterfaceFailed", message="m")
    client.close()
    assert logged and logged[0].startswith("cannot record AddInterfaceFailed event: Kubernetes API")


def test_outstanding_answer_is_read_at_interpreter_exit(fake_api: FakeApiServer, tmp_path: Path) -> None:
    """The thin plugin exits right after its last Event: the write must not be cut by a reset."""
    fake_api.create_pod("ns1", "p1")
    fake_api.inject(None, method="POST", path=EVENTS, delay=0.3)  # the answer comes late
    kc = fake_api.write_kubeconfig(tmp_path / "kubeconfig")
    src = str(Path(__file__).resolve().parents[2] / "src")
    code = (
        f"import sys, json; sys.path.insert(0, {src!r}); "
        "from pymultus.kube.auth import load_kubeconfig; from pymultus.kube.client import KubeClient; "
        f"c = KubeClient(load_kubeconfig({str(kc)!r})); event = json.loads({json.dumps(_event('late'))!r}); "
        "c.create_event_later('ns1', event, on_error=lambda e: print('ERROR', e)); print('sent')"
    )
    started = time.monotonic()
    out = run_isolated(code)
    assert out.split() == ["sent"] and time.monotonic() - started >= 0.3  # waited at exit
    assert _names(fake_api) == ["late"]
    assert fake_api.count("POST", EVENTS) == 1
