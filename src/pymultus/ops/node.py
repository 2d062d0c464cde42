"""What the operator commands read about a node: its Multus conf, caches and pod source.

The node's Multus conf is the file the runtime uses: ``00-multus.conf[list]`` in the runtime's
conf dir (``/etc/cni/net.d``), or any conf of type ``multus``/``multus-shim`` there. Everything
else (cniDir, binDir, kubeconfig, manifestsDir, daemonSocketDir) comes from it, so the commands
look where the plugin looks.
"""

from __future__ import annotations

import os

from pymultus import fileio
from pymultus.config.generate import CONF_EXTENSIONS, OWN_NAMES, is_multus_conf
from pymultus.config.multus import MultusConf, parse_multus_conf
from pymultus.errors import InvalidConfig, MultusError
from pymultus.store import delegates as store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymultus.attach.ports import PodSource
    from pymultus.kube.auth import Credentials

RUNTIME_CONF_DIR = "/etc/cni/net.d"


def find_multus_conf(conf_dir: str) -> str | None:
    """Our conf in ``conf_dir``: ``00-multus.conf[list]``, else the first conf of our type."""
    for name in OWN_NAMES:
        path = os.path.join(conf_dir, name)
        if os.path.isfile(path):
            return path
    for path in conf_paths(conf_dir):
        if is_multus_conf(path):
            return path
    return None


def conf_paths(conf_dir: str) -> list[str]:
    """The CNI conf files of ``conf_dir`` in the order the runtime considers them (lexical)."""
    try:
        names = sorted(os.listdir(conf_dir))
    except OSError:
        return []
    return [
        os.path.join(conf_dir, name)
        for name in names
        if name.endswith(CONF_EXTENSIONS) and os.path.isfile(os.path.join(conf_dir, name))
    ]


def load_multus_conf(path: str) -> MultusConf:
    """Parse a Multus conf file with the plugin's own parser."""
    try:
        data = fileio.read_file(path)
    except OSError as exc:
        raise InvalidConfig(f"cannot read the multus configuration {path}: {exc.strerror}") from None
    try:
        return parse_multus_conf(data)
    except MultusError as exc:
        raise InvalidConfig(f"{path}: {exc.msg}", details=exc.details) from None


def cached_records(cni_dir: str) -> list[tuple[str, dict[str, object] | None, str]]:
    """(container ID, delegate list or None, problem) of every delegate list in ``cni_dir``."""
    found: list[tuple[str, dict[str, object] | None, str]] = []
    for name in store.entry_names(cni_dir):
        try:
            record = store.load(cni_dir, name)
        except MultusError as exc:
            found.append((name, None, exc.msg))
            continue
        if record is not None:
            container_id = record.get("containerId")
            found.append((container_id if isinstance(container_id, str) else name, record, ""))
    return found


def record_pod(record: Mapping[str, object]) -> tuple[str, str]:
    """(namespace, name) a delegate list was saved for; empty strings when it does not say."""
    pod = record.get("pod")
    if not isinstance(pod, dict):
        return "", ""
    return str(pod.get("namespace") or ""), str(pod.get("name") or "")


def plugins_of(conf: object) -> list[dict[str, object]]:
    """The plugin objects of a network conf document (a conf or a conflist)."""
    if not isinstance(conf, dict):
        return []
    plugins = conf.get("plugins")
    items = plugins if isinstance(plugins, list) else [conf]
    return [plugin for plugin in items if isinstance(plugin, dict)]


def delegate_types(delegate: Mapping[str, object]) -> list[str]:
    """The plugin types of a saved delegate's conf."""
    return [str(p["type"]) for p in plugins_of(delegate.get("conf")) if isinstance(p.get("type"), str)]


def pod_source(conf: MultusConf, env: Mapping[str, str]) -> PodSource | None:
    """Where the plugin reads pods: the conf's kubeconfig, in-cluster, manifestsDir, or none."""
    if conf.kubeconfig or (env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT")):
        from pymultus.kube.client import KubeClient
        from pymultus.kube.pods import ApiPodSource

        return ApiPodSource(KubeClient(credentials(conf, env), retries=0), wait_timeout=0.0)
    if conf.manifests_dir:
        from pymultus.kube.manifests import ManifestPodSource

        return ManifestPodSource(conf.manifests_dir)
    return None


NAD_PATH = "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions"


def defined_nads(conf: MultusConf, env: Mapping[str, str]) -> list[tuple[str, dict[str, object]]]:
    """("namespace/name", NAD) of every NAD the plugin could be asked for: all of the cluster's
    (one LIST), or those of manifestsDir; empty without either. Errors raise MultusError."""
    found: list[tuple[str, dict[str, object]]] = []
    if conf.kubeconfig or (env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT")):
        from pymultus.kube.client import KubeClient

        items, _ = KubeClient(credentials(conf, env), retries=0, timeout=10.0).list(NAD_PATH)
    elif conf.manifests_dir:
        from pymultus.kube.manifests import file_objects, manifest_files  # the plugin's own reader

        items = [obj for path in manifest_files(conf.manifests_dir) for _, obj in file_objects(path)]
        items = [obj for obj in items if obj.get("kind") == "NetworkAttachmentDefinition"]
    else:
        return found
    for nad in items:
        metadata = nad.get("metadata")
        meta = metadata if isinstance(metadata, dict) else {}
        found.append((f"{meta.get('namespace') or 'default'}/{meta.get('name')}", nad))
    return found


def nad_plugins(nad: Mapping[str, object]) -> list[dict[str, object]]:
    """The plugin objects of a NAD's ``spec.config`` (none when it has no valid one)."""
    from pymultus import jsonio

    spec = nad.get("spec")
    config = spec.get("config") if isinstance(spec, dict) else None
    if not isinstance(config, str) or not config.strip():
        return []
    try:
        return plugins_of(jsonio.loads_object(config))
    except MultusError:
        return []


def credentials(conf: MultusConf, env: Mapping[str, str]) -> Credentials:
    from pymultus.kube import auth

    return auth.load_kubeconfig(conf.kubeconfig) if conf.kubeconfig else auth.load_in_cluster(env)
