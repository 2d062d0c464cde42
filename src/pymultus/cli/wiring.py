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
    from collections.abc import Callable, Mapping

    from pymultus.attach.model import PodRef
    from pymultus.attach.ports import PodSource
    from pymultus.config.multus import MultusConf
    from pymultus.kube.devices import DeviceAllocator


def build_deps(
    conf: MultusConf, env: Mapping[str, str], *, component: str = "multus", with_pods: bool = True
) -> Deps:
    from pymultus.netns.ops import Netns

    log = make_logger(
        level=conf.log_level, log_file=conf.log_file, to_stderr=conf.log_to_stderr, component=component
    )
    pods: PodSource | None = None
    placeholder = True
    if with_pods:
        pods, placeholder = _pod_source(conf, env, log)
    return Deps(
        device_allocator=_kubelet_devices(conf),
        device_info_dir=conf.device_info_dir,
        pods=pods,
        netns=Netns(),
        executor=PluginExecutor(base_env=env, timeout=conf.delegate_timeout),
        base_env=env,
        placeholder_for_missing_pod=placeholder,
        log=log,
    )


def _kubelet_devices(conf: MultusConf) -> Callable[[PodRef], DeviceAllocator]:
    def allocator(pod_ref: PodRef) -> DeviceAllocator:
        import os

        from pymultus.kube.devices import DeviceAllocator

        root = conf.kubelet_root_dir
        return DeviceAllocator(
            pod_ref.namespace,
            pod_ref.name,
            pod_ref.uid,
            socket_path=os.path.join(root, "pod-resources", "kubelet.sock"),
            checkpoint_path=os.path.join(root, "device-plugins", "kubelet_internal_checkpoint"),
        )

    return allocator


def _pod_source(conf: MultusConf, env: Mapping[str, str], log: object) -> tuple[PodSource | None, bool]:
    if conf.kubeconfig or (env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT")):
        from pymultus.kube import auth
        from pymultus.kube.client import KubeClient
        from pymultus.kube.pods import ApiPodSource

        credentials = auth.load_kubeconfig(conf.kubeconfig) if conf.kubeconfig else auth.load_in_cluster(env)
        return ApiPodSource(KubeClient(credentials)), True
    if conf.manifests_dir:
        from pymultus.kube.manifests import ManifestPodSource

        return ManifestPodSource(conf.manifests_dir), False
    return None, True
