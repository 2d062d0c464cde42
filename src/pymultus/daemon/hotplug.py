"""The hot-plug controller of the daemon (``dynamicNetworks``; issue 15, docs/hotplug.md).

It turns pod notifications of the informer into reconciles (``pymultus.attach.hotplug``):

* a work queue of pods (namespace, name): a pod is queued once however many notifications
  arrive, and handled by one worker at a time (a notification that arrives while it is handled
  queues it again afterwards), so there is one operation at a time per pod;
* level-driven and restart-safe: a reconcile compares the pod as it is now with the delegate
  lists on disk, so on start, after every re-list and every :data:`RESYNC` seconds every pod
  with a delegate list is queued, and whatever changed while the daemon was down (or was left
  half-done by a killed daemon) is applied;
* failures retry with capped exponential back-off (a newer notification retries at once);
  a refusal (a forbidden or unknown network, changed parameters: code 7) is not retried
  until the pod or a resync gives a reason; either is told once in a Warning event on the pod.

Only pods that pymultus attached on this node (a pymultus delegate list in ``cniDir``) are
reconciled; a container whose pod now has another UID (the pod was re-created) or whose netns
is gone is left to the runtime's DEL.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pymultus.errors import InvalidConfig, MultusError, TryAgainLater

if TYPE_CHECKING:
    from pymultus.attach.context import Deps
    from pymultus.config.multus import MultusConf
    from pymultus.daemon.metrics import NullMetrics

log = logging.getLogger("pymultus.daemon.hotplug")

RESYNC = 60.0  # seconds between full reconciles of every attached pod
BACKOFF_MIN = 0.5
BACKOFF_MAX = 60.0
WORKERS = 2
_ALL = ("", "")  # the key that means "every attached pod"

Key = tuple[str, str]


class HotplugController:
    def __init__(
        self,
        *,
        conf: Callable[[], MultusConf],
        deps: Callable[[], Deps],
        metrics: NullMetrics,
        synced: Callable[[], bool],
        workers: int = WORKERS,
        resync: float = RESYNC,
    ) -> None:
        self._conf = conf
        self._deps = deps
        self._metrics = metrics
        self._synced = synced
        self._workers = workers
        self._resync = resync
        self._cond = threading.Condition()
        self._heap: list[tuple[float, Key]] = []
        self._due: dict[Key, float] = {}
        self._active: set[Key] = set()
        self._again: dict[Key, float] = {}  # notified while being handled: due time afterwards
        self._failures: dict[Key, int] = {}
        self._warned: dict[Key, str] = {}  # the last Warning event, not repeated
        self._index: dict[str, tuple[int, dict[str, str]]] = {}  # container → (mtime, pod)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- notifications -------------------------------------------------------------------------

    def pod_changed(self, namespace: str, name: str) -> None:
        """An informer notification (``namespace == name == ""``: every pod, after a re-list)."""
        self._enqueue((namespace, name), 0.0)

    def _enqueue(self, key: Key, delay: float) -> None:
        due = time.monotonic() + delay
        with self._cond:
            if key in self._active:
                self._again[key] = min(self._again.get(key, due), due)
                return
            current = self._due.get(key)
            if current is None or due < current:
                self._due[key] = due
                heapq.heappush(self._heap, (due, key))
                self._cond.notify()

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        for index in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"hotplug-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        ticker = threading.Thread(target=self._tick, name="hotplug-resync", daemon=True)
        ticker.start()
        self._threads.append(ticker)

    def stop(self) -> None:
        """Start no new reconcile; the running ones go on (see :meth:`join`)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait for the running reconciles, at most ``timeout`` seconds; whether all ended (one
        cut short by the exit is finished by the next daemon: the delegate lists say what)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _tick(self) -> None:
        while not self._stop.is_set() and not self._synced():
            self._stop.wait(0.1)  # desired state must come from synced caches
        while not self._stop.is_set():
            self._enqueue(_ALL, 0.0)
            self._stop.wait(self._resync)

    def _next(self) -> Key | None:
        with self._cond:
            while not self._stop.is_set():
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded by an earlier due time
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._active.add(key)
                    return key
                self._cond.wait(self._heap[0][0] - now if self._heap else None)
        return None

    def _done(self, key: Key, retry: float | None) -> None:
        with self._cond:
            self._active.discard(key)
            again = self._again.pop(key, None)
        if again is not None:
            self._enqueue(key, max(0.0, again - time.monotonic()))
        elif retry is not None:
            self._enqueue(key, retry)

    def _work(self) -> None:
        while True:
            key = self._next()
            if key is None:
                return
            retry: float | None = None
            try:
                if not self._synced():
                    retry = BACKOFF_MIN
                elif key == _ALL:
                    for pod in {(p["namespace"], p["name"]) for p in self._attached().values()}:
                        self._enqueue(pod, 0.0)
                else:
                    retry = self._reconcile_pod(key)
            except MultusError as exc:  # e.g. the Multus conf not written yet
                log.info("hot-plug of %s/%s waits: %s", *key, exc.msg)
                retry = BACKOFF_MIN
            except Exception:
                log.exception("hot-plug of pod %s/%s failed unexpectedly", *key)
                retry = BACKOFF_MAX
            finally:
                self._done(key, retry)

    # -- one pod -------------------------------------------------------------------------------

    def _attached(self) -> dict[str, dict[str, str]]:
        """Container → pod of every pymultus delegate list, re-read only when a file changed."""
        from pymultus.attach.hotplug import attached_pod

        conf = self._conf()
        try:
            names = os.listdir(conf.cni_dir)
        except OSError:
            return {}
        index: dict[str, tuple[int, dict[str, str]]] = {}
        for name in names:
            try:
                mtime = os.stat(os.path.join(conf.cni_dir, name), follow_symlinks=False).st_mtime_ns
            except OSError:
                continue
            known = self._index.get(name)
            if known is not None and known[0] == mtime:
                index[name] = known
                continue
            pod = attached_pod(conf.cni_dir, name)
            if pod is not None:
                index[name] = (mtime, pod)
        self._index = index
        return {pod["container"]: pod for _, pod in index.values()}

    def _reconcile_pod(self, key: Key) -> float | None:
        """Reconcile each container of the pod; the back-off delay when it must be retried."""
        from pymultus.attach.hotplug import reconcile
        from pymultus.kube.pods import pod_uid

        namespace, name = key
        containers = [(c, p) for c, p in self._attached().items() if (p["namespace"], p["name"]) == key]
        if not containers:
            return None  # not attached by pymultus on this node
        deps = self._deps()
        pods = deps.pods
        pod = pods.get_pod(namespace, name, uid=None) if pods is not None else None
        if pod is None:
            return None  # deleted: the runtime's DEL removes everything
        for container, recorded in containers:
            if recorded.get("uid") and recorded["uid"] != pod_uid(pod):
                continue  # the container of an earlier pod of that name
            if not deps.netns.netns_exists(recorded.get("netns", "")):
                continue  # a sandbox already torn down
            started = time.monotonic()
            try:
                outcome = reconcile(self._conf(), deps, container)
            except MultusError as exc:
                refused = isinstance(exc, InvalidConfig)
                self._metrics.hotplug("refused" if refused else "error", time.monotonic() - started)
                failures = self._failures[key] = 0 if refused else self._failures.get(key, 0) + 1
                self._warn(key, pod, exc)
                if refused:
                    log.warning("hot-plug of pod %s/%s refused: %s", namespace, name, exc.msg)
                    return None
                level = logging.INFO if isinstance(exc, TryAgainLater) else logging.WARNING
                log.log(level, "hot-plug of pod %s/%s failed (%d): %s", namespace, name, failures, exc.msg)
                return float(min(BACKOFF_MIN * 2.0 ** (failures - 1), BACKOFF_MAX))
            self._metrics.hotplug("changed" if outcome.changed else "unchanged", time.monotonic() - started)
            for change, items in (("added", outcome.added), ("removed", outcome.removed)):
                for item in items:
                    self._metrics.hotplug_interface(change)
                    log.info("hot-plug: pod %s/%s: %s %s", namespace, name, change, item)
        self._failures.pop(key, None)
        self._warned.pop(key, None)
        return None

    def _warn(self, key: Key, pod: dict[str, object], exc: MultusError) -> None:
        if isinstance(exc, TryAgainLater) and self._failures.get(key, 0) < 3:
            return  # a busy container or a lagging cache: only a lasting problem is worth an event
        if self._warned.get(key) == exc.msg:
            return
        self._warned[key] = exc.msg
        pods = self._deps().pods
        if pods is not None:
            pods.record_event(pod, kind="Warning", reason="HotplugFailed", message=exc.msg)


def multus_conf(written: Callable[[], str | None], overrides: dict[str, object]) -> MultusConf:
    """The Multus conf a CNI request gets from this daemon: the conf it wrote, plus its keys."""
    from pymultus.config.multus import parse_multus_conf
    from pymultus.fileio import read_file

    path = written()
    if not path:
        raise TryAgainLater("the multus configuration has not been written yet")
    return parse_multus_conf(read_file(path), overrides=overrides)
