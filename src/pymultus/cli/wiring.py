"""Build the attach layer's dependencies for a one-shot process (thin plugin, shim DEL fallback).

The source of pods and NADs, in Go Multus's order: the conf's ``kubeconfig``; the in-cluster
service account when ``KUBERNETES_SERVICE_HOST``/``PORT`` are set; pymultus's embedded
``manifestsDir``; otherwise none (only the configured delegates run).
"""

from __future__ import annotations

from pymultus.attach.context import Deps
from pymultus.cli.logsink import make_logger
from pymultus.cni.invoke import PluginExecutor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from pymultus.attach.model import PodRef
    from pymultus.attach.ports import KubeObject, PodSource
    from pymultus.config.multus import MultusConf
    from pymultus.kube.client import KubeClient
    from pymultus.kube.devices import DeviceAllocator
    from pymultus.kube.dra import ClaimReader
    from pymultus.kube.pods import ApiPodSource


def build_deps(
    conf: MultusConf,
    env: Mapping[str, str],
    *,
    component: str = "multus",
    with_pods: bool = True,
    command: str = "",
) -> Deps:
    from pymultus.netns.ops import Netns

    log = make_logger(
        level=conf.log_level,
        log_file=conf.log_file,
        to_stderr=conf.log_to_stderr,
        component=component,
        options=conf.log_options,
    )
    pods: PodSource | None = None
    placeholder = True
    if with_pods:
        pods, placeholder = _pod_source(conf, env, command)
    return Deps(
        device_allocator=_kubelet_devices(conf, pods if isinstance(pods, LazyPodSource) else None),
        device_info_dir=conf.device_info_dir,
        pods=pods,
        netns=Netns(),
        executor=PluginExecutor(base_env=env, timeout=conf.delegate_timeout),
        base_env=env,
        placeholder_for_missing_pod=placeholder,
        log=log,
        log_level=conf.log_level,
    )


def _kubelet_devices(conf: MultusConf, api: LazyPodSource | None) -> Callable[[PodRef], DeviceAllocator]:
    def claims() -> ClaimReader:
        from pymultus.kube.dra import ClaimReader

        assert api is not None
        return ClaimReader(api.client)

    def allocator(pod_ref: PodRef) -> DeviceAllocator:
        from pymultus import paths
        from pymultus.kube.devices import DeviceAllocator

        root = conf.kubelet_root_dir
        return DeviceAllocator(
            pod_ref.namespace,
            pod_ref.name,
            pod_ref.uid,
            socket_path=paths.join(root, "pod-resources", "kubelet.sock"),
            checkpoint_path=paths.join(root, "device-plugins", "kubelet_internal_checkpoint"),
            claims=claims if api is not None else None,  # DRA devices from the same API client
        )

    return allocator


def _pod_source(conf: MultusConf, env: Mapping[str, str], command: str) -> tuple[PodSource | None, bool]:
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
    """Builds the API client on first use: a DEL served from the cache never loads ``ssl``, the
    client or the kubeconfig (so a broken kubeconfig cannot block the release of a pod)."""

    __slots__ = ("_factory", "_source")

    def __init__(self, factory: Callable[[], ApiPodSource]) -> None:
        self._factory = factory
        self._source: ApiPodSource | None = None

    def _get(self) -> ApiPodSource:
        if self._source is None:
            self._source = self._factory()
        return self._source

    def client(self) -> KubeClient:
        """The API client (DRA claims are read with the same connection)."""
        return self._get().client

    def get_pod(self, namespace: str, name: str, *, uid: str | None) -> KubeObject | None:
        return self._get().get_pod(namespace, name, uid=uid)

    def get_network_attachment(self, namespace: str, name: str) -> KubeObject | None:
        return self._get().get_network_attachment(namespace, name)

    def write_network_status(self, pod: KubeObject, status: Sequence[Mapping[str, object]]) -> None:
        self._get().write_network_status(pod, status)

    def record_event(self, pod: KubeObject, *, kind: str, reason: str, message: str) -> None:
        self._get().record_event(pod, kind=kind, reason=reason, message=message)
