"""Build the attach layer's dependencies for a one-shot process (thin plugin, shim DEL fallback).

The source of pods and NADs is :mod:`pymultus.cli.podsource`'s.
"""

from __future__ import annotations

from pymultus.attach.context import Deps
from pymultus.cli.logsink import make_logger
from pymultus.cli.podsource import LazyPodSource, pod_source
from pymultus.cni.invoke import PluginExecutor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pymultus.attach.model import PodRef
    from pymultus.attach.ports import PodSource
    from pymultus.config.multus import MultusConf
    from pymultus.kube.devices import DeviceAllocator
    from pymultus.kube.dra import ClaimReader


def build_deps(
    conf: MultusConf,
    env: Mapping[str, str],
    *,
    component: str = "multus",
    with_pods: bool = True,
    command: str = "",
    prepared: tuple[PodSource | None, bool] | None = None,
) -> Deps:
    """The dependencies of one request; ``prepared``: the pod source :func:`pod_source` made
    for it already (the thin plugin makes it first, to fetch an ADD's pod early)."""
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
    if prepared is not None:
        pods, placeholder = prepared
    elif with_pods:
        pods, placeholder = pod_source(conf, env, command)
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
