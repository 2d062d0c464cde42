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
