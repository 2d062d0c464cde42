"""The daemon's pod source decides a UID mismatch on the live API, never on the cache alone."""

from __future__ import annotations

import pytest

from pymultus.daemon.podsource import CachedPodSource
from pymultus.errors import TRY_AGAIN_LATER, PodUidMismatch

Obj = dict[str, object]


def _pod(uid: str, **annotations: str) -> Obj:
    return {"metadata": {"name": "sts-0", "namespace": "default", "uid": uid, "annotations": annotations}}


class Cache:
    def __init__(self, pod: Obj | None) -> None:
        self.pod = pod

    def get(self, namespace: str, name: str) -> Obj | None:
        return self.pod


class Live:
    """The API: holds ``pod``; a mismatch there is the ApiPodSource's error."""

    def __init__(self, pod: Obj) -> None:
        self.pod = pod
        self.gets = 0

    def get_pod(self, namespace: str, name: str, *, uid: str | None) -> Obj | None:
        self.gets += 1
        actual = str(self.pod["metadata"]["uid"])  # type: ignore[index]
        if uid and actual != uid:
            raise PodUidMismatch(f'expected pod UID "{uid}" but got "{actual}" from Kube API')
        return self.pod


def test_a_stale_cache_is_checked_live_and_the_api_decides() -> None:
    live = Live(_pod("new"))
    source = CachedPodSource(Cache(_pod("old")), None, live)  # type: ignore[arg-type]
    assert source.get_pod("default", "sts-0", uid="new") is live.pod
    with pytest.raises(PodUidMismatch):
        source.get_pod("default", "sts-0", uid="other")  # neither the cache nor the API has it
    assert live.gets == 2 and source.cache_hits == 0


def test_without_a_live_client_a_mismatch_is_an_error_not_a_missing_pod() -> None:
    source = CachedPodSource(Cache(_pod("old")), None, None)  # type: ignore[arg-type]
    with pytest.raises(PodUidMismatch) as caught:
        source.get_pod("default", "sts-0", uid="new")
    assert caught.value.code == TRY_AGAIN_LATER
    assert 'expected pod UID "new" but got "old" from the pod cache' in caught.value.msg
    mirror = _pod("mirror", **{"kubernetes.io/config.mirror": "x"})
    static = CachedPodSource(Cache(mirror), None, None)  # type: ignore[arg-type]
    assert static.get_pod("default", "sts-0", uid="kubelet-uid") is mirror
    assert CachedPodSource(Cache(None), None, None).get_pod("default", "x", uid="u") is None  # type: ignore[arg-type]


class Recorder:
    """The API side of writes: what went through this source."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def write_network_status(self, pod: Obj, status: object) -> None:
        self.calls.append("status")

    def record_event(self, pod: Obj, *, kind: str, reason: str, message: str) -> None:
        self.calls.append(f"event {reason}")


def test_events_go_through_their_own_source_and_the_status_through_the_live_one() -> None:
    """The daemon gives events their own client, so the status PATCH never waits for an
    event's answer on a shared connection."""
    live, events = Recorder(), Recorder()
    source = CachedPodSource(None, None, live, events=events)  # type: ignore[arg-type]
    source.record_event(_pod("u"), kind="Normal", reason="AddedInterface", message="m")
    source.write_network_status(_pod("u"), [])
    assert live.calls == ["status"] and events.calls == ["event AddedInterface"]
    # Without a source of their own, events take the live one, as before.
    alone = Recorder()
    CachedPodSource(None, None, alone).record_event(_pod("u"), kind="Normal", reason="R", message="m")  # type: ignore[arg-type]
    assert alone.calls == ["event R"]
