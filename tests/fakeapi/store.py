"""The state of the fake API server: objects, one resourceVersion counter, the event history.

Like etcd + kube-apiserver's watch cache: every write bumps a global resourceVersion and appends
an event; watches replay events newer than their RV; ``compact()`` forgets history, after which
watches and Exact lists from older RVs are "too old" (410). A base snapshot at the compaction
point lets LIST serve any retained RV exactly (``resourceVersionMatch=Exact``, continue tokens).
"""

from __future__ import annotations

import bisect
import copy
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

CORE = ""
NAD_GROUP = "k8s.cni.cncf.io"


@dataclass(frozen=True)
class Resource:
    group: str
    plural: str
    kind: str
    namespaced: bool
    crd: bool  # CRD objects come back with sorted keys and kind/apiVersion on list items

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


PODS = Resource(CORE, "pods", "Pod", True, False)
EVENTS = Resource(CORE, "events", "Event", True, False)
NAMESPACES = Resource(CORE, "namespaces", "Namespace", False, False)
NADS = Resource(NAD_GROUP, "network-attachment-definitions", "NetworkAttachmentDefinition", True, True)
RESOURCES = {(r.group, r.plural): r for r in (PODS, EVENTS, NAMESPACES, NADS)}

Key = tuple[str, str, str]  # (plural, namespace, name)


@dataclass
class WatchEvent:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    resource: Resource
    namespace: str
    name: str
    obj: dict[str, object]


class Expired(Exception):
    """The requested resourceVersion is older than the retained history."""

    def __init__(self, oldest: int) -> None:
        super().__init__(oldest)
        self.oldest = oldest


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Store:
    """Thread-safe object store with history; every public method takes the lock."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.RLock())
        self.rv = 0
        self.objects: dict[Key, dict[str, object]] = {}
        self.history: list[WatchEvent] = []
        self.compacted_rv = 0  # events with rv <= this are forgotten
        self.base: dict[Key, dict[str, object]] = {}  # state at compacted_rv
        self.listeners: list[Callable[[], None]] = []

    # -- writes -----------------------------------------------------------------------------

    def _commit(self, etype: str, res: Resource, namespace: str, name: str, obj: dict[str, object]) -> int:
        """Store ``obj`` (or delete it) at a new resourceVersion and record the event."""
        self.rv += 1
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        meta["resourceVersion"] = str(self.rv)
        key = (res.plural, namespace, name)
        if etype == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.history.append(WatchEvent(self.rv, etype, res, namespace, name, copy.deepcopy(obj)))
        self.cond.notify_all()
        return self.rv

    def create(self, res: Resource, namespace: str, obj: dict[str, object]) -> dict[str, object]:
        with self.cond:
            meta = obj["metadata"]
            assert isinstance(meta, dict)
            name = str(meta["name"])
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now_rfc3339())
            self._commit("ADDED", res, namespace, name, obj)
            return copy.deepcopy(obj)

    def replace(self, res: Resource, namespace: str, name: str, obj: dict[str, object]) -> dict[str, object]:
        with self.cond:
            self._commit("MODIFIED", res, namespace, name, obj)
            return copy.deepcopy(obj)

    def delete(self, res: Resource, namespace: str, name: str) -> dict[str, object] | None:
        with self.cond:
            obj = self.objects.get((res.plural, namespace, name))
            if obj is None:
                return None
            obj = copy.deepcopy(obj)
            self._commit("DELETED", res, namespace, name, obj)
            return copy.deepcopy(obj)

    def compact(self) -> int:
        """Forget all history up to now; returns the compaction resourceVersion."""
        with self.cond:
            self.base = copy.deepcopy(self.objects)
            self.compacted_rv = self.rv
            self.history = []
            return self.rv

    # -- reads ------------------------------------------------------------------------------

    def get(self, res: Resource, namespace: str, name: str) -> dict[str, object] | None:
        with self.cond:
            obj = self.objects.get((res.plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def exists(self, res: Resource, namespace: str, name: str) -> bool:
        with self.cond:
            return (res.plural, namespace, name) in self.objects

    def snapshot(
        self, res: Resource, namespace: str | None, at_rv: int | None = None
    ) -> tuple[list[dict[str, object]], int]:
        """The objects of ``res`` (in ``namespace`` or everywhere), sorted like etcd keys,
        at ``at_rv`` (default: now). Raises :class:`Expired` for an RV before the history."""
        with self.cond:
            if at_rv is None or at_rv >= self.rv:
                state = self.objects
                rv = self.rv
            else:
                if at_rv < self.compacted_rv:
                    raise Expired(self.compacted_rv)
                state = dict(self.base)
                for ev in self.history:
                    if ev.rv > at_rv:
                        break
                    key = (ev.resource.plural, ev.namespace, ev.name)
                    if ev.type == "DELETED":
                        state.pop(key, None)
                    else:
                        state[key] = ev.obj
                rv = at_rv
            items = [
                copy.deepcopy(obj)
                for (plural, ns, _name), obj in sorted(state.items())
                if plural == res.plural and (namespace is None or ns == namespace)
            ]
            return items, rv

    def events_since(self, rv: int) -> list[WatchEvent]:
        """History events newer than ``rv``; :class:`Expired` when ``rv`` is older than the history."""
        with self.cond:
            if rv < self.compacted_rv:
                raise Expired(self.compacted_rv + 1)
            return self.history[bisect.bisect_right(self.history, rv, key=lambda ev: ev.rv) :]
