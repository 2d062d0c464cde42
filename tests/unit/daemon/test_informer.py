"""Informer machinery against an in-memory list/watch source (the fake API tests are integration)."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator, Mapping

from pymultus.daemon.informer import Informer, trim_pod
from pymultus.daemon.podsource import CachedPodSource
from pymultus.errors import KubeGone, KubeUnavailable


def pod(name: str, rv: int, uid: str = "u", **annotations: str) -> dict[str, object]:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": uid,
            "resourceVersion": str(rv),
            "annotations": dict(annotations),
            "managedFields": [{"manager": "kubelet"}],
            "labels": {"a": "b"},
        },
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "env": [{"name": "X"}]}]},
        "status": {"phase": "Running"},
    }


class Source:
    """Pages of a LIST, then scripted watch streams: events, or an exception to raise."""

    def __init__(self, items: list[dict[str, object]], rv: str = "10") -> None:
        self.items = items
        self.rv = rv
        self.lists: list[Mapping[str, str]] = []
        self.watches: list[Mapping[str, str]] = []
        self.streams: queue.Queue[list[object]] = queue.Queue()

    def list_page(self, path: str, params: Mapping[str, str]) -> dict[str, object]:
        self.lists.append(dict(params))
        limit = int(params.get("limit", "1000"))
        start = int(params.get("continue", "0"))
        page = self.items[start : start + limit]
        meta: dict[str, object] = {"resourceVersion": self.rv}
        if start + limit < len(self.items):
            meta["continue"] = str(start + limit)
        return {"metadata": meta, "items": page}

    def watch(self, path: str, params: Mapping[str, str]) -> Iterator[dict[str, object]]:
        self.watches.append(dict(params))
        script = self.streams.get(timeout=10)
        for step in script:
            if isinstance(step, Exception):
                raise step
            if step == "pause":
                time.sleep(1.2)  # a watch that has been running a while ends normally
                continue
            yield step  # type: ignore[misc]


def wait(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_list_pages_trim_and_watch_events() -> None:
    source = Source([pod(f"p{i}", i) for i in range(5)])
    source.streams.put(
        [
            {"type": "ADDED", "object": pod("new", 11)},
            {"type": "MODIFIED", "object": pod("p0", 12, k="v")},
            {"type": "DELETED", "object": pod("p1", 13)},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
            "pause",
        ]
    )
    informer = Informer(
        "pods", "/api/v1/pods", source, trim=trim_pod, field_selector="spec.nodeName=node1", page_size=2
    )
    informer.start()
    try:
        assert informer.synced.wait(5)
        wait(lambda: informer.resource_version == "20")
        assert len(source.lists) == 3  # 5 items in pages of 2
        assert source.lists[0]["fieldSelector"] == "spec.nodeName=node1"
        assert source.watches[0]["resourceVersion"] == "10"
        assert sorted(name for _, name in informer.cached_keys()) == ["new", "p0", "p2", "p3", "p4"]
        cached = informer.get("default", "p0")
        assert cached == {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "p0",
                "namespace": "default",
                "uid": "u",
                "resourceVersion": "12",
                "annotations": {"k": "v"},
            },
            "spec": {"nodeName": "node1"},
        }
        # After the normal end of the stream it re-watches from the bookmark's resourceVersion.
        source.streams.put([])
        wait(lambda: len(source.watches) >= 2)
        assert source.watches[1]["resourceVersion"] == "20"
    finally:
        informer.stop()
        source.streams.put([])


def test_gone_relists_and_disconnect_rewatches() -> None:
    restarts: list[str] = []
    source = Source([pod("a", 1)])
    source.streams.put([{"type": "ADDED", "object": pod("b", 11)}, KubeUnavailable("cut")])
    informer = Informer("pods", "/p", source, trim=trim_pod, on_restart=restarts.append)
    informer.start()
    try:
        assert informer.synced.wait(5)
        wait(lambda: len(source.watches) == 1 and len(restarts) == 1)
        # A disconnect re-watches from the last RV without a LIST.
        source.streams.put(
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}]
        )
        wait(lambda: len(source.watches) == 2)
        assert source.watches[1]["resourceVersion"] == "11" and len(source.lists) == 1
        # 410 → a fresh LIST replaces the cache (b is gone from the new list).
        source.items = [pod("a", 30), pod("c", 31)]
        source.rv = "31"
        wait(lambda: len(source.lists) == 2)
        wait(lambda: sorted(n for _, n in informer.cached_keys()) == ["a", "c"])
        source.streams.put([KubeGone("gone")])  # the client's own 410 exception: relist again
        wait(lambda: len(source.lists) == 3)
        assert len(restarts) == 3
    finally:
        informer.stop()
        source.streams.put([])
        source.streams.put([])


class Live:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def get_pod(self, namespace: str, name: str, *, uid: str | None):
        self.calls.append(("pod", name))
        return {"metadata": {"name": name, "namespace": namespace, "uid": uid or "live"}}

    def get_network_attachment(self, namespace: str, name: str):
        self.calls.append(("nad", name))
        return None

    def write_network_status(self, pod, status) -> None:
        self.calls.append(("status", pod["metadata"]["name"]))

    def record_event(self, pod, *, kind: str, reason: str, message: str) -> None:
        self.calls.append(("event", reason))


def test_cached_pod_source_falls_back_to_live_get() -> None:
    source = Source([pod("cached", 1, uid="u1")])
    source.streams.put(["pause"])
    informer = Informer("pods", "/p", source, trim=trim_pod)
    informer.start()
    assert informer.synced.wait(5)
    live = Live()
    pods = CachedPodSource(informer, None, live)  # type: ignore[arg-type]
    try:
        assert pods.get_pod("default", "cached", uid="u1")["metadata"]["uid"] == "u1"  # type: ignore[index]
        assert live.calls == []
        # Not in the cache yet, or re-created with another UID: one live GET.
        assert pods.get_pod("default", "fresh", uid="u9") is not None
        assert pods.get_pod("default", "cached", uid="u2")["metadata"]["uid"] == "u2"  # type: ignore[index]
        assert pods.get_network_attachment("default", "nad") is None
        pods.write_network_status({"metadata": {"name": "cached"}}, [])
        assert live.calls == [("pod", "fresh"), ("pod", "cached"), ("nad", "nad"), ("status", "cached")]
        assert pods.cache_hits == 1 and pods.live_gets == 3
    finally:
        informer.stop()
        source.streams.put([])
    # Without a live client nothing is invented.
    assert CachedPodSource(None, None, None).get_pod("a", "b", uid=None) is None
