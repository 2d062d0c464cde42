"""Prometheus metrics of the daemon (``/metrics`` on ``metricsPort``).

prometheus-client is imported only when ``metricsPort`` is set; otherwise :class:`NullMetrics`
records nothing. The names below are the documented interface (docs/metrics): change them only
together with the docs.

* ``pymultus_requests_total{command,code}`` — CNI requests by command and CNI result code (0 = ok)
* ``pymultus_request_duration_seconds{command}`` — histogram of whole-request latency
* ``pymultus_delegate_duration_seconds{command,plugin}`` — histogram of each delegate plugin run
* ``pymultus_requests_in_flight`` / ``pymultus_requests_queued`` — gauges
* ``pymultus_requests_abandoned_total`` — queued requests not run because their client had gone
* ``pymultus_connections_rejected_total{reason}`` — connections answered 408/4xx/503 by the server
  itself (``timeout``, ``malformed``, ``connection_limit``, ``queue_full``, ``body_budget``,
  ``shutting_down``)
* ``pymultus_cache_objects{kind}`` — objects in the informer caches (pods, nads)
* ``pymultus_watch_restarts_total{kind}`` — watch reconnects and re-lists
* ``pymultus_hotplug_reconciles_total{result}`` / ``pymultus_hotplug_duration_seconds{result}`` —
  hot-plug reconciles of one pod (``dynamicNetworks``) by result: ``changed``, ``unchanged``,
  ``error`` (retried with back-off), ``refused`` (a code-7 problem, told in a Warning event)
* ``pymultus_hotplug_interfaces_total{change}`` — interfaces hot-plugged (``added``, ``removed``)
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("pymultus.daemon.metrics")

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class NullMetrics:
    """Metrics disabled (no ``metricsPort``): every recording is a no-op."""

    def request(self, command: str, code: int, seconds: float) -> None:
        pass

    def delegate(self, command: str, plugin: str, seconds: float) -> None:
        pass

    def in_flight(self, running: int, queued: int) -> None:
        pass

    def abandoned(self) -> None:
        pass

    def rejected(self, reason: str) -> None:
        pass

    def cache_objects(self, kind: str, count: int) -> None:
        pass

    def watch_restart(self, kind: str) -> None:
        pass

    def hotplug(self, result: str, seconds: float) -> None:
        pass

    def hotplug_interface(self, change: str) -> None:
        pass

    def close(self) -> None:
        pass


class PrometheusMetrics(NullMetrics):
    def __init__(self, port: int, address: str = "") -> None:
        import prometheus_client as prom

        self.registry = prom.CollectorRegistry()
        self._requests = prom.Counter(
            "pymultus_requests_total",
            "CNI requests handled, by command and CNI result code (0 = success).",
            ["command", "code"],
            registry=self.registry,
        )
        self._duration = prom.Histogram(
            "pymultus_request_duration_seconds",
            "Time to handle one CNI request.",
            ["command"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._delegate = prom.Histogram(
            "pymultus_delegate_duration_seconds",
            "Time of one delegate plugin execution.",
            ["command", "plugin"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._in_flight = prom.Gauge(
            "pymultus_requests_in_flight", "CNI requests running now.", registry=self.registry
        )
        self._queued = prom.Gauge(
            "pymultus_requests_queued", "CNI requests waiting for a worker.", registry=self.registry
        )
        self._abandoned = prom.Counter(
            "pymultus_requests_abandoned_total",
            "Queued CNI requests not run because their client closed the connection first.",
            registry=self.registry,
        )
        self._rejected = prom.Counter(
            "pymultus_connections_rejected_total",
            "Connections the server answered itself (timeout, malformed, busy) by reason.",
            ["reason"],
            registry=self.registry,
        )
        self._cache = prom.Gauge(
            "pymultus_cache_objects", "Objects in the informer caches.", ["kind"], registry=self.registry
        )
        self._restarts = prom.Counter(
            "pymultus_watch_restarts_total",
            "Watch reconnects and re-lists of the informer caches.",
            ["kind"],
            registry=self.registry,
        )
        self._hotplug = prom.Counter(
            "pymultus_hotplug_reconciles_total",
            "Hot-plug reconciles of one pod, by result (changed, unchanged, error, refused).",
            ["result"],
            registry=self.registry,
        )
        self._hotplug_duration = prom.Histogram(
            "pymultus_hotplug_duration_seconds",
            "Time of one hot-plug reconcile of a pod.",
            ["result"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._hotplug_interfaces = prom.Counter(
            "pymultus_hotplug_interfaces_total",
            "Interfaces hot-plugged into running pods (added) or out of them (removed).",
            ["change"],
            registry=self.registry,
        )
        prom.ProcessCollector(registry=self.registry)
        # All interfaces by default, like Go Multus's metrics listener (Prometheus scrapes the node).
        bind = address or "0.0.0.0"  # noqa: S104
        result: Any = prom.start_http_server(port, addr=bind, registry=self.registry)
        # prometheus-client >= 0.20 returns (server, thread); older versions return None.
        self._server = result[0] if isinstance(result, tuple) else None
        log.info("metrics on port %d", port)

    def request(self, command: str, code: int, seconds: float) -> None:
        self._requests.labels(command=command, code=str(code)).inc()
        self._duration.labels(command=command).observe(seconds)

    def delegate(self, command: str, plugin: str, seconds: float) -> None:
        self._delegate.labels(command=command, plugin=plugin).observe(seconds)

    def in_flight(self, running: int, queued: int) -> None:
        self._in_flight.set(running)
        self._queued.set(queued)

    def abandoned(self) -> None:
        self._abandoned.inc()

    def rejected(self, reason: str) -> None:
        self._rejected.labels(reason=reason).inc()

    def cache_objects(self, kind: str, count: int) -> None:
        self._cache.labels(kind=kind).set(count)

    def watch_restart(self, kind: str) -> None:
        self._restarts.labels(kind=kind).inc()

    def hotplug(self, result: str, seconds: float) -> None:
        self._hotplug.labels(result=result).inc()
        self._hotplug_duration.labels(result=result).observe(seconds)

    def hotplug_interface(self, change: str) -> None:
        self._hotplug_interfaces.labels(change=change).inc()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()


def create_metrics(port: int | None, address: str = "") -> NullMetrics:
    if port is None:
        return NullMetrics()
    return PrometheusMetrics(port, address)
