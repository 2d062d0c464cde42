"""A :class:`~pymultus.attach.ports.PodSource` backed by the daemon's informer caches.

Reads come from the caches; a pod or NAD that is not there yet (the watch lags a freshly
scheduled pod by a few milliseconds) or whose UID differs (a StatefulSet pod re-created under the
same name) falls back to one live GET, so a request never fails because of cache lag. The live
answer decides: a pod of that name with another UID there too is a
:class:`~pymultus.errors.PodUidMismatch` (code 11), never "not found" (the informer may still hold
the old pod, or already the new one). Writes (network-status) and events always go through the
API: events through their own source (``events``) when one is given.

Why the daemon gives events their own client: an ``AddedInterface`` event is sent without
waiting for its answer, which is read before its connection's next request; with one client the
ADD's ``network-status`` PATCH, right after the last event, took that connection and waited for
the event's answer first (~1 ms per ADD against the fake API server, an etcd write's time against
a real one; issue 12). On their own keep-alive connection the events' answers are read when the
next event goes out, long after they arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pymultus.daemon.informer import Informer
from pymultus.kube.pods import is_static_pod, pod_uid, uid_mismatch

if TYPE_CHECKING:
    from pymultus.attach.ports import KubeObject, PodSource

log = logging.getLogger("pymultus.daemon.podsource")


class CachedPodSource:
    def __init__(
        self,
        pods: Informer | None,
        nads: Informer | None,
        live: PodSource | None,
        *,
        events: PodSource | None = None,
    ) -> None:
        self.pods = pods
        self.nads = nads
        self.live = live
        self.events = events or live
        self.cache_hits = 0
        self.live_gets = 0

    def get_pod(self, namespace: str, name: str, *, uid: str | None) -> KubeObject | None:
        cached = self.pods.get(namespace, name) if self.pods is not None else None
        if cached is not None and (not uid or pod_uid(cached) == uid):
            self.cache_hits += 1
            return cached
        if self.live is None:
            if cached is None or is_static_pod(cached):
                return cached
            raise uid_mismatch(
                namespace, name, expected=uid or "", actual=pod_uid(cached), source="the pod cache"
            )
        self.live_gets += 1
        log.debug("pod %s/%s not in the cache; live GET", namespace, name)
        return self.live.get_pod(namespace, name, uid=uid)

    def get_network_attachment(self, namespace: str, name: str) -> KubeObject | None:
        if self.nads is not None:
            nad = self.nads.get(namespace, name)
            if nad is not None:
                self.cache_hits += 1
                return nad
        if self.live is None:
            return None
        self.live_gets += 1
        return self.live.get_network_attachment(namespace, name)

    def write_network_status(self, pod: KubeObject, status: Sequence[Mapping[str, object]]) -> None:
        if self.live is not None:
            self.live.write_network_status(pod, status)

    def record_event(self, pod: KubeObject, *, kind: str, reason: str, message: str) -> None:
        if self.events is not None:
            self.events.record_event(pod, kind=kind, reason=reason, message=message)
