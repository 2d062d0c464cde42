"""The thick daemon: wires config, Kubernetes caches, the config manager, metrics and the server.

Lifecycle (reference §12 "Daemon lifecycle", DESIGN item 9):

* start: serve the socket at once (``/healthz`` 200); ``/readyz`` turns 200 when the caches have
  synced, the conf is written and the readiness-indicator file (if any) exists;
* SIGTERM/SIGINT: ``/readyz`` fails at once, new CNI work gets 503 (code 11; a shim doing DEL then
  deletes locally), queued and running requests finish (bounded by ``shutdownTimeout``, 10 s),
  the socket is removed, ``00-multus.conf`` is kept.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Mapping
from types import FrameType
from typing import TYPE_CHECKING

from pymultus import jsonio
from pymultus.daemon import wire
from pymultus.daemon.autoconf import ConfigManager
from pymultus.daemon.config import DaemonConfig
from pymultus.daemon.http1 import Request, Response
from pymultus.daemon.informer import Informer, trim_nad, trim_pod
from pymultus.daemon.metrics import NullMetrics, create_metrics
from pymultus.daemon.podsource import CachedPodSource
from pymultus.daemon.server import UnixHttpServer, Work
from pymultus.daemon.service import CniService
from pymultus.errors import INVALID_ENVIRONMENT, InvalidEnvironment

if TYPE_CHECKING:
    from pymultus.daemon.hotplug import HotplugController
    from pymultus.kube.auth import Credentials
    from pymultus.kube.certs import NodeCertificates
    from pymultus.kube.dra import ClaimReader

log = logging.getLogger("pymultus.daemon")

_ANY = ("GET", "POST")


class Daemon:
    def __init__(self, config: DaemonConfig, *, node_name: str, env: Mapping[str, str]) -> None:
        self.config = config
        self.node_name = node_name
        self.env = env
        self.metrics: NullMetrics = NullMetrics()
        self.informers: list[Informer] = []
        self.manager = ConfigManager(config)
        self.service: CniService | None = None
        self.server: UnixHttpServer | None = None
        self._stopping = threading.Event()
        self._kube_client: object = None
        self._claims: ClaimReader | None = None
        self._certs: NodeCertificates | None = None
        self.hotplug: HotplugController | None = None

    # -- assembly ----------------------------------------------------------------------------

    def start(self) -> None:
        config = self.config
        self.metrics = create_metrics(config.metrics_port, config.metrics_address)
        pods = self._kube_sources()
        self.manager.start()
        self.service = CniService(
            config, pods=pods, metrics=self.metrics, ready=self.not_ready_reason, claims=self._claims
        )
        self.server = UnixHttpServer(
            config.socket_path,
            self.route,
            workers=config.connection_limit,
            queue_limit=config.queue_limit,
            metrics=self.metrics,
        )
        self.server.start()
        if config.dynamic_networks and pods is not None:
            self._start_hotplug(self.service)
        for informer in self.informers:
            informer.start()
        log.info(
            "pymultus daemon started on node %s (socket %s, connectionLimit %d)",
            self.node_name or "-",
            config.socket_path,
            config.connection_limit,
        )

    def _start_hotplug(self, service: CniService) -> None:
        from pymultus.daemon.hotplug import HotplugController, multus_conf

        overrides = self.config.request_overrides()
        self.hotplug = HotplugController(
            conf=lambda: multus_conf(lambda: self.manager.written, overrides),
            deps=service.engine_deps,
            metrics=self.metrics,
            synced=lambda: all(informer.synced.is_set() for informer in self.informers),
        )
        self.hotplug.start()
        log.info("dynamicNetworks: running pods follow their networks annotation (hot-plug)")

    def _pod_changed(self, namespace: str, name: str) -> None:
        if self.hotplug is not None:
            self.hotplug.pod_changed(namespace, name)

    def _kube_sources(self) -> CachedPodSource | None:
        from pymultus.kube import auth
        from pymultus.kube.client import KubeClient
        from pymultus.kube.dra import ClaimReader
        from pymultus.kube.pods import ApiPodSource

        config = self.config
        if config.per_node_certificate.enabled:
            credentials = self._node_certificate()
        elif config.kubeconfig:
            credentials = auth.load_kubeconfig(config.kubeconfig)
        elif self.env.get("KUBERNETES_SERVICE_HOST"):
            credentials = auth.load_in_cluster(self.env)
        else:
            log.warning("no kubeconfig and not in a pod: running without Kubernetes (clusterNetwork only)")
            return None
        if not self.node_name:
            raise InvalidEnvironment(
                "the daemon needs its node name to cache this node's pods: "
                "set MULTUS_NODE_NAME or --node-name"
            )
        from pymultus.daemon.kubeadapter import NAD_COLLECTION, POD_COLLECTION, KubeListWatch

        client = KubeClient(credentials)
        self._kube_client = client
        watch_client = KubeClient(credentials)  # its own pool: watches hold connections
        # Its own pool too: the status PATCH never waits for an event's answer (podsource.py).
        events_client = KubeClient(credentials)
        if self._certs is not None:  # their idle connections are closed when the certificate rotates
            self._certs.register(client)
            self._certs.register(watch_client)
            self._certs.register(events_client)
        self._claims = ClaimReader(lambda: client)  # its ResourceSlice cache lives as long as the daemon
        listwatch = KubeListWatch(watch_client)
        pods = Informer(
            "pods",
            POD_COLLECTION,
            listwatch,
            trim=trim_pod,
            field_selector=f"spec.nodeName={self.node_name}",
            on_count=self.metrics.cache_objects,
            on_restart=self.metrics.watch_restart,
            on_change=self._pod_changed if config.dynamic_networks else None,
        )
        nads = Informer(
            "nads",
            NAD_COLLECTION,
            listwatch,
            trim=trim_nad,
            on_count=self.metrics.cache_objects,
            on_restart=self.metrics.watch_restart,
        )
        self.informers = [pods, nads]
        # Events without waiting for each answer (read before the connection's next request), as
        # client-go's recorder sends them in the background: one round trip less per interface
        # on every ADD (issue 12; the thin plugin does the same).
        return CachedPodSource(
            pods,
            nads,
            ApiPodSource(client, log=log.info),
            events=ApiPodSource(events_client, log=log.info, defer_events=True),
        )

    def _node_certificate(self) -> Credentials:
        """Credentials of this node's own client certificate (pymultus.kube.certs): blocks until
        it is issued; raises (and the daemon does not start) when it cannot be had."""
        from pymultus.kube import auth
        from pymultus.kube.certs import NodeCertificates, parse_duration

        cert = self.config.per_node_certificate
        self._certs = NodeCertificates(
            self.node_name,
            cert.cert_dir,
            auth.load_kubeconfig(cert.bootstrap_kubeconfig)
            if cert.bootstrap_kubeconfig
            else auth.load_in_cluster(self.env),
            parse_duration(cert.cert_duration),
            approval_timeout=cert.approval_timeout,
        )
        log.info("requesting or loading the per-node client certificate for system:multus:%s", self.node_name)
        return self._certs.start()

    # -- readiness ---------------------------------------------------------------------------

    def not_ready_reason(self) -> str:
        if self._stopping.is_set():
            return "the daemon is shutting down"
        for informer in self.informers:
            if not informer.synced.is_set():
                return f"the {informer.kind} cache has not synced yet"
        if not self.manager.ready:
            return self.manager.not_ready_reason()
        return ""

    # -- routing -----------------------------------------------------------------------------

    def route(self, request: Request) -> Response | Work:
        path, method = request.path, request.method
        service = self.service
        assert service is not None
        if path == wire.PATH_CNI:
            if method != "POST":
                return _method_not_allowed(path, "POST")
            return lambda: service.handle_cni(request)
        if path == wire.PATH_DELEGATE:
            if method != "POST":
                return _method_not_allowed(path, "POST")
            return lambda: service.handle_delegate(request)
        if path == wire.PATH_HEALTHZ:
            if method not in _ANY:
                return _method_not_allowed(path, "GET, POST")
            return Response(200, b"ok\n", "text/plain")
        if path == wire.PATH_READYZ:
            if method not in _ANY:
                return _method_not_allowed(path, "GET, POST")
            why = self.not_ready_reason()
            if why:
                return Response(500, f"not ready: {why}\n".encode(), "text/plain")
            return Response(200, b"ok\n", "text/plain")
        if path == wire.PATH_STATS:
            if method != "GET":
                return _method_not_allowed(path, "GET")
            return Response(200, jsonio.dumpb(self.stats()))
        return Response.cni_error(404, INVALID_ENVIRONMENT, f"no such endpoint {path[:100]}")

    def stats(self) -> dict[str, object]:
        server = self.server
        stats: dict[str, object] = dict(server.stats.snapshot(server.queued())) if server else {}
        stats["connection_limit"] = self.config.connection_limit
        stats["caches"] = {
            informer.kind: {
                "objects": len(informer),
                "synced": informer.synced.is_set(),
                "lists": informer.lists,
                "resourceVersion": informer.resource_version,
            }
            for informer in self.informers
        }
        stats["conf"] = {
            "written": self.manager.written,
            "primary": self.manager.primary,
            "generations": self.manager.generations,
            "error": self.manager.last_error,
        }
        stats["ready"] = self.not_ready_reason() or "ok"
        return stats

    # -- lifecycle ---------------------------------------------------------------------------

    def run_until_signal(self) -> int:
        stop = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received signal %d: shutting down", signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop.wait(1.0):
            pass
        return self.shutdown()

    def shutdown(self) -> int:
        self._stopping.set()  # /readyz fails from now on
        if self.hotplug is not None:
            self.hotplug.stop()
        clean = True
        if self.server is not None:
            clean = self.server.drain(self.config.shutdown_timeout)
            if not clean:
                log.warning(
                    "requests still running after %.0f s; exiting anyway", self.config.shutdown_timeout
                )
            self.server.close()
        for informer in self.informers:
            informer.stop()
        if self.hotplug is not None and not self.hotplug.join(self.config.shutdown_timeout):
            log.warning("a hot-plug still runs; the next daemon finishes it")
        if self._certs is not None:
            self._certs.stop()
        self.manager.stop()
        self.metrics.close()
        log.info("pymultus daemon stopped (the generated CNI configuration is kept)")
        return 0 if clean else 1


def _method_not_allowed(path: str, allowed: str) -> Response:
    return Response.cni_error(405, INVALID_ENVIRONMENT, f"{path} accepts only {allowed}")
