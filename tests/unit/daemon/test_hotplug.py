"""The hot-plug controller's work queue and the ``dynamicNetworks`` key, without netns or API.

The reconcile itself (real daemon, plugins, netns, fake API) is in
tests/integration/test_hotplug.py; here ``_reconcile_pod`` is replaced by a recorder to check the
queue: every attached pod on resync, one operation at a time per pod, notifications merged,
back-off retries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymultus.config.multus import MultusConf, parse_multus_conf
from pymultus.daemon.config import parse_daemon_config
from pymultus.daemon.hotplug import HotplugController, Key
from pymultus.daemon.metrics import NullMetrics
from pymultus.errors import InvalidConfig
from pymultus.store import delegates as store
from tests.support.waiting import wait_until


class Recorder(HotplugController):
    """Records each reconcile; ``hold`` blocks the first one of a key until released."""

    def __init__(self, conf: MultusConf, *, resync: float = 3600.0) -> None:
        super().__init__(
            conf=lambda: conf, deps=_no_deps, metrics=NullMetrics(), synced=lambda: True, resync=resync
        )
        self.calls: list[Key] = []
        self.overlaps = 0
        self.running: set[Key] = set()
        self.hold: dict[Key, threading.Event] = {}
        self.retry: dict[Key, list[float]] = {}
        self._mutex = threading.Lock()

    def _reconcile_pod(self, key: Key) -> float | None:
        with self._mutex:
            self.overlaps += key in self.running
            self.running.add(key)
            self.calls.append(key)
        gate = self.hold.pop(key, None)
        if gate is not None:
            gate.wait(10)
        with self._mutex:
            self.running.discard(key)
        delays = self.retry.get(key)
        return delays.pop(0) if delays else None

    def count(self, key: Key) -> int:
        with self._mutex:
            return self.calls.count(key)

    def idle(self) -> bool:
        with self._cond:
            return not self._due and not self._active


def _no_deps() -> object:
    raise AssertionError("the recorder never reconciles")


@pytest.fixture
def cni_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def conf(cni_dir: Path) -> MultusConf:
    doc = {
        "cniVersion": "0.3.1",
        "name": "multus",
        "type": "multus",
        "cniDir": str(cni_dir),
        "delegates": [{"cniVersion": "0.3.1", "name": "x", "type": "bridge"}],
    }
    return parse_multus_conf(json.dumps(doc).encode())


@pytest.fixture
def controller(conf: MultusConf) -> Iterator[Recorder]:
    recorder = Recorder(conf)
    try:
        yield recorder
    finally:
        recorder.stop()


def _attach(cni_dir: Path, container: str, pod: str) -> None:
    record = {"pod": {"namespace": "default", "name": pod, "uid": f"uid-{pod}"}, "netns": f"/run/netns/{pod}"}
    store.save(str(cni_dir), container, {**record, "delegates": []})


def test_resync_queues_every_pod_attached_by_pymultus(controller: Recorder, cni_dir: Path) -> None:
    _attach(cni_dir, "c1", "a")
    _attach(cni_dir, "c2", "b")
    _attach(cni_dir, "c3", "b")  # a second sandbox of b: still one operation for the pod
    (cni_dir / "c4").write_text(json.dumps([{"Name": "go", "Bytes": "e30="}]))  # Go Multus's list
    (cni_dir / "c5").write_text("{truncated")
    (cni_dir / "results").mkdir()
    controller.start()
    wait_until(lambda: controller.count(("default", "a")) and controller.count(("default", "b")), "both pods")
    wait_until(controller.idle, "an idle queue")
    assert sorted(controller.calls) == [("default", "a"), ("default", "b")]


def test_one_operation_at_a_time_per_pod_and_notifications_merge(controller: Recorder) -> None:
    pod = ("default", "web")
    gate = controller.hold[pod] = threading.Event()
    controller.start()
    controller.pod_changed(*pod)
    wait_until(lambda: controller.count(pod) == 1, "the first reconcile")
    for _ in range(5):  # while it runs: queued once, for afterwards
        controller.pod_changed(*pod)
    controller.pod_changed("default", "other")  # another pod is not held up
    wait_until(lambda: controller.count(("default", "other")) == 1, "the other pod")
    gate.set()
    wait_until(lambda: controller.count(pod) == 2, "the second reconcile")
    wait_until(controller.idle, "an idle queue")
    assert controller.count(pod) == 2
    assert controller.overlaps == 0


def test_failures_are_retried_with_back_off_until_they_succeed(controller: Recorder) -> None:
    pod = ("default", "web")
    controller.retry[pod] = [0.01, 0.02]
    controller.start()
    controller.pod_changed(*pod)
    wait_until(lambda: controller.count(pod) == 3, "two retries")
    wait_until(controller.idle, "an idle queue")
    assert controller.count(pod) == 3


def test_dynamic_networks_is_off_by_default_and_validated() -> None:
    assert parse_daemon_config(b'{"cniVersion": "0.3.1"}').dynamic_networks is False
    assert parse_daemon_config(b'{"cniVersion": "0.3.1", "dynamicNetworks": true}').dynamic_networks
    with pytest.raises(InvalidConfig, match='"dynamicNetworks"'):
        parse_daemon_config(b'{"cniVersion": "0.3.1", "dynamicNetworks": 1}')
