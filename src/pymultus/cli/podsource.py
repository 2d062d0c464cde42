"""Where a one-shot process gets pods and NADs from, built lazily — and fetched early on ADD.

The source, in Go Multus's order: the conf's ``kubeconfig``; the in-cluster service account when
``KUBERNETES_SERVICE_HOST``/``PORT`` are set; pymultus's embedded ``manifestsDir``; otherwise
none (only the configured delegates run).

The API client is built on first use (:class:`LazyPodSource`): a DEL served from the cache never
loads TLS, the client or the kubeconfig, so a broken kubeconfig cannot block the release of a pod.

An ADD always needs its pod first, so the thin plugin starts on it before anything else
(:meth:`LazyPodSource.prefetch_pod`, called right after the conf is parsed): it builds the client
and its TLS context, then a thread connects, shakes hands and GETs the pod while the main thread
imports and sets up the rest of the ADD (~3 ms of Python). The two overlap only where the thread
waits — for the API server's side of the TLS handshake and of the GET — which is exactly what a
pod on a real cluster waits for longest. Nothing is decided in the thread: the use case takes its
answer (or its error) as the first attempt of its usual pod lookup (UID check, waiting for the
pod to appear, errors with their codes), and anything that fails while building the client is
left to fail again at the first real use, where the use case reports it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from pymultus.attach.ports import KubeObject, PodSource
    from pymultus.config.multus import MultusConf
    from pymultus.kube.client import KubeClient
    from pymultus.kube.pods import ApiPodSource, PodPrefetch


def pod_source(conf: MultusConf, env: Mapping[str, str], command: str) -> tuple[PodSource | None, bool]:
    """The pod source for ``conf`` and whether a missing pod gets a placeholder (not manifests)."""
    if conf.kubeconfig or (env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT")):
        # DEL does not wait for a pod to appear (Go Multus returns on NotFound at once).
        wait = 0.0 if command == "DEL" else 2.5
        return LazyPodSource(lambda: _api_pod_source(conf, env, wait)), True
    if conf.manifests_dir:
        from pymultus.kube.manifests import ManifestPodSource

        return ManifestPodSource(conf.manifests_dir), False
    return None, True


def _api_pod_source(conf: MultusConf, env: Mapping[str, str], wait: float) -> ApiPodSource:
    from pymultus.kube import auth
    from pymultus.kube.client import KubeClient
    from pymultus.kube.pods import ApiPodSource

    credentials = auth.load_kubeconfig(conf.kubeconfig) if conf.kubeconfig else auth.load_in_cluster(env)
    # Events are fire-and-forget for the one-shot plugin (Go Multus's event broadcaster is async
    # too): each answer is read before the next request or at exit, saving a round trip each.
    return ApiPodSource(KubeClient(credentials), wait_timeout=wait, defer_events=True)


class LazyPodSource:
    """Builds the API client on first use (or on :meth:`prefetch_pod`)."""

    __slots__ = ("_factory", "_prefetch", "_source")

    def __init__(self, factory: Callable[[], ApiPodSource]) -> None:
        self._factory = factory
        self._source: ApiPodSource | None = None
        self._prefetch: PodPrefetch | None = None

    def _get(self) -> ApiPodSource:
        if self._source is None:
            self._source = self._factory()
        return self._source

    def prefetch_pod(self, namespace: str, name: str) -> None:
        """Build the client and its TLS context now, and GET the pod in a thread (ADD)."""
        from pymultus.kube.pods import PodPrefetch

        try:
            source = self._get()
            source.client.credentials.ssl_context()  # holds the GIL: here, not in the thread
        except Exception:
            self._source = None
            return
        self._prefetch = PodPrefetch(source.client, namespace, name)

    def client(self) -> KubeClient:
        """The API client (DRA claims are read with the same connection)."""
        return self._get().client

    def get_pod(self, namespace: str, name: str, *, uid: str | None) -> KubeObject | None:
        prefetch, self._prefetch = self._prefetch, None
        first = prefetch.answer_for(namespace, name) if prefetch is not None else None
        return self._get().get_pod(namespace, name, uid=uid, first=first)

    def get_network_attachment(self, namespace: str, name: str) -> KubeObject | None:
        return self._get().get_network_attachment(namespace, name)

    def write_network_status(self, pod: KubeObject, status: Sequence[Mapping[str, object]]) -> None:
        self._get().write_network_status(pod, status)

    def record_event(self, pod: KubeObject, *, kind: str, reason: str, message: str) -> None:
        self._get().record_event(pod, kind=kind, reason=reason, message=message)
