"""The Multus netconf (``"type": "multus"`` or ``"multus-shim"``), parsed without side effects.

Every key of Go Multus's ``NetConf`` is accepted with its default and meaning (reference §2.1),
plus the pymultus settings listed in ``PYMULTUS_KEYS``. Parsing validates types and values and
raises :class:`~pymultus.errors.InvalidConfig` (code 7) naming the offending key; it never
touches the file system, logging or the network — the entry points do that afterwards.
"""

from __future__ import annotations

from pymultus import errors, jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_CONF_DIR = "/etc/cni/multus/net.d"
DEFAULT_CNI_DIR = "/var/lib/cni/multus"
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_MULTUS_NAMESPACE = "kube-system"
DEFAULT_SYSTEM_NAMESPACES = ("kube-system",)
DEFAULT_GLOBAL_NAMESPACES = ("default",)
DEFAULT_SOCKET_DIR = "/run/multus/"
DEFAULT_DELEGATE_TIMEOUT = 120.0
DEFAULT_READINESS_TIMEOUT = 45.0
LOG_LEVELS = ("debug", "verbose", "error", "panic")
KNOWN_CNI_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

# pymultus-only keys (documented in docs/configuration.md).
PYMULTUS_KEYS = (
    "strictCapabilities",  # refuse per-attachment requests no plugin declares (NPWG MUST, opt-in)
    "delegateTimeout",  # seconds before a delegate's process group is killed
    "readinessTimeout",  # seconds to wait for readinessindicatorfile
    "manifestsDir",  # embedded (no-Kubernetes) pods and NADs as YAML manifests
    "kubeletRootDir",  # where the kubelet keeps pod-resources/ and device-plugins/ (k0s, microk8s differ)
    "deviceInfoDir",  # base of the device-info files (Device Information Spec)
)
DEFAULT_KUBELET_ROOT_DIR = "/var/lib/kubelet"
DEFAULT_DEVICE_INFO_DIR = "/var/run/k8s.cni.cncf.io"


class LogOptions:
    __slots__ = ("compress", "max_age", "max_backups", "max_size")

    def __init__(self, max_age: int = 5, max_size: int = 100, max_backups: int = 5, compress: bool = True):
        self.max_age = max_age
        self.max_size = max_size
        self.max_backups = max_backups
        self.compress = compress


class MultusConf:
    """The typed view of a Multus netconf; ``raw`` keeps the whole document."""

    __slots__ = (
        "auxiliary_cni_chain_name",
        "bin_dir",
        "capabilities",
        "cluster_network",
        "cni_dir",
        "cni_version",
        "conf_dir",
        "daemon_socket_dir",
        "default_networks",
        "delegate_timeout",
        "delegates",
        "device_info_dir",
        "global_namespaces",
        "kubeconfig",
        "kubelet_root_dir",
        "log_file",
        "log_level",
        "log_options",
        "log_to_stderr",
        "manifests_dir",
        "multus_namespace",
        "name",
        "namespace_isolation",
        "plugin_type",
        "prev_result",
        "raw",
        "readiness_indicator_file",
        "readiness_timeout",
        "retry_delete_on_error",
        "runtime_config",
        "strict_capabilities",
        "system_namespaces",
        "valid_attachments",
    )

    cni_version: str
    name: str
    plugin_type: str
    cluster_network: str
    default_networks: list[str]
    delegates: list[dict[str, object]]
    kubeconfig: str
    conf_dir: str
    cni_dir: str
    bin_dir: str
    log_file: str
    log_level: str
    log_to_stderr: bool
    log_options: LogOptions
    runtime_config: dict[str, object]
    capabilities: dict[str, bool]
    readiness_indicator_file: str
    readiness_timeout: float
    namespace_isolation: bool
    global_namespaces: list[str]
    system_namespaces: list[str]
    multus_namespace: str
    retry_delete_on_error: bool
    auxiliary_cni_chain_name: str
    prev_result: dict[str, object] | None
    valid_attachments: list[dict[str, object]] | None
    daemon_socket_dir: str
    strict_capabilities: bool
    delegate_timeout: float
    manifests_dir: str
    kubelet_root_dir: str
    device_info_dir: str
    raw: dict[str, object]

    def to_bytes(self) -> bytes:
        return jsonio.dumpb(self.raw)


def parse_multus_conf(data: bytes, *, overrides: Mapping[str, object] | None = None) -> MultusConf:
    """Parse the Multus netconf from the runtime's stdin bytes.

    ``overrides`` are the thick daemon's config keys, copied over the request's conf before
    parsing, as Go Multus's ``overrideCNIConfigWithServerConfig`` does.
    """
    try:
        doc = jsonio.loads_object(data, what="the multus network configuration")
    except errors.DecodingError:
        raise
    if overrides:
        doc = _apply_overrides(doc, overrides)
    return _from_document(doc)


def _apply_overrides(doc: dict[str, object], overrides: Mapping[str, object]) -> dict[str, object]:
    merged = dict(doc)
    plugins = merged.get("plugins")
    if isinstance(plugins, list) and plugins and isinstance(plugins[0], dict):
        first = dict(plugins[0])
        first.update(overrides)
        merged["plugins"] = [first, *plugins[1:]]
    else:
        merged.update(overrides)
    return merged


def _from_document(doc: dict[str, object]) -> MultusConf:
    # The conflist form wraps the multus plugin as plugins[0]; cniVersion and name are on top.
    plugin = doc
    plugins = doc.get("plugins")
    if plugins is not None:
        if not isinstance(plugins, list) or not plugins or not isinstance(plugins[0], dict):
            raise errors.InvalidConfig(
                '"plugins" of the multus configuration must be a non-empty list of objects'
            )
        plugin = dict(plugins[0])
        for key in ("cniVersion", "name"):
            if key in doc and key not in plugin:
                plugin[key] = doc[key]

    conf = MultusConf()
    conf.raw = doc
    conf.cni_version = _cni_version(doc if plugins is not None else plugin)
    # An empty name is taken as absent (Go Multus does not check it either): messages, logs and
    # the generated conf need a name to show.
    conf.name = _str(plugin, "name", "multus-cni-network") or "multus-cni-network"
    conf.plugin_type = _str(plugin, "type", "multus")
    conf.cluster_network = _str(plugin, "clusterNetwork", "")
    conf.default_networks = _str_list(plugin, "defaultNetworks")
    conf.delegates = _delegates(plugin)
    if not conf.cluster_network and not conf.delegates:
        raise errors.InvalidConfig(
            'the multus configuration needs "clusterNetwork" or at least one entry in "delegates"'
        )
    if conf.cluster_network:
        conf.delegates = []  # Multus ignores delegates when clusterNetwork is set
    conf.kubeconfig = _str(plugin, "kubeconfig", "")
    conf.conf_dir = _path(plugin, "confDir", DEFAULT_CONF_DIR)
    conf.cni_dir = _path(plugin, "cniDir", DEFAULT_CNI_DIR)
    conf.bin_dir = _path(plugin, "binDir", DEFAULT_BIN_DIR)
    conf.log_file = _str(plugin, "logFile", "")
    conf.log_level = _str(plugin, "logLevel", "panic").lower() or "panic"
    if conf.log_level not in LOG_LEVELS:
        raise errors.InvalidConfig(
            f'"logLevel" of the multus configuration is "{conf.log_level}"; '
            f"expected one of {', '.join(LOG_LEVELS)}"
        )
    conf.log_to_stderr = _bool(plugin, "logToStderr", True)
    conf.log_options = _log_options(plugin)
    conf.runtime_config = _object(plugin, "runtimeConfig")
    conf.capabilities = _capabilities(plugin)
    conf.readiness_indicator_file = _str(plugin, "readinessindicatorfile", "")
    conf.readiness_timeout = _seconds(plugin, "readinessTimeout", DEFAULT_READINESS_TIMEOUT)
    conf.namespace_isolation = _bool(plugin, "namespaceIsolation", False)
    global_ns = _str(plugin, "globalNamespaces", "")
    # Setting globalNamespaces replaces the implied "default" (Go Multus behaviour).
    conf.global_namespaces = (
        [ns.strip() for ns in global_ns.split(",") if ns.strip()]
        if global_ns
        else list(DEFAULT_GLOBAL_NAMESPACES)
    )
    if "systemNamespaces" in plugin:
        conf.system_namespaces = _str_list(plugin, "systemNamespaces")
    else:
        conf.system_namespaces = list(DEFAULT_SYSTEM_NAMESPACES)
    conf.multus_namespace = _str(plugin, "multusNamespace", DEFAULT_MULTUS_NAMESPACE) or (
        DEFAULT_MULTUS_NAMESPACE
    )
    conf.retry_delete_on_error = _bool(plugin, "retryDeleteOnError", False)
    conf.auxiliary_cni_chain_name = _str(plugin, "auxiliaryCNIChainName", "")
    if conf.auxiliary_cni_chain_name and "/" not in conf.cluster_network:
        raise errors.InvalidConfig(
            '"auxiliaryCNIChainName" needs "clusterNetwork" to be a file or directory path'
        )
    prev = plugin.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise errors.InvalidConfig('"prevResult" of the multus configuration must be an object')
    conf.prev_result = prev
    conf.valid_attachments = _valid_attachments(plugin)
    conf.daemon_socket_dir = _path(plugin, "daemonSocketDir", DEFAULT_SOCKET_DIR)
    conf.strict_capabilities = _bool(plugin, "strictCapabilities", False)
    conf.delegate_timeout = _seconds(plugin, "delegateTimeout", DEFAULT_DELEGATE_TIMEOUT)
    conf.manifests_dir = _str(plugin, "manifestsDir", "")
    conf.kubelet_root_dir = _path(plugin, "kubeletRootDir", DEFAULT_KUBELET_ROOT_DIR)
    conf.device_info_dir = _path(plugin, "deviceInfoDir", DEFAULT_DEVICE_INFO_DIR)
    return conf


def _cni_version(doc: Mapping[str, object]) -> str:
    version = doc.get("cniVersion", "")
    if not isinstance(version, str):
        raise errors.InvalidConfig('"cniVersion" of the multus configuration must be a string')
    if version == "":
        return "0.1.0"  # libcni's default for a conf without cniVersion
    if version not in KNOWN_CNI_VERSIONS:
        raise errors.IncompatibleVersion(
            f'"cniVersion" "{version}" of the multus configuration is not supported; '
            f"supported: {', '.join(KNOWN_CNI_VERSIONS)}"
        )
    return version


def _str(doc: Mapping[str, object], key: str, default: str) -> str:
    value = doc.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise errors.InvalidConfig(
            f'"{key}" of the multus configuration must be a string, not {jsonio.kind_of(value)}'
        )
    return value


def _path(doc: Mapping[str, object], key: str, default: str) -> str:
    value = _str(doc, key, default) or default
    if "\x00" in value:
        raise errors.InvalidConfig(f'"{key}" of the multus configuration contains a NUL byte')
    return value


def _bool(doc: Mapping[str, object], key: str, default: bool) -> bool:
    value = doc.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"  # libcni accepts "true"/"false" strings for its booleans
    raise errors.InvalidConfig(
        f'"{key}" of the multus configuration must be true or false, not {jsonio.kind_of(value)}'
    )


def _seconds(doc: Mapping[str, object], key: str, default: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise errors.InvalidConfig(
            f'"{key}" of the multus configuration must be a number of seconds in (0, 3600]'
        )
    return float(value)


def _str_list(doc: Mapping[str, object], key: str) -> list[str]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise errors.InvalidConfig(f'"{key}" of the multus configuration must be a list of non-empty strings')
    return list(value)


def _object(doc: Mapping[str, object], key: str) -> dict[str, object]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidConfig(
            f'"{key}" of the multus configuration must be an object, not {jsonio.kind_of(value)}'
        )
    return dict(value)


def _delegates(doc: Mapping[str, object]) -> list[dict[str, object]]:
    value = doc.get("delegates")
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.InvalidConfig(
            '"delegates" of the multus configuration must be a list of CNI configurations'
        )
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise errors.InvalidConfig(f"delegate {index} of the multus configuration must be a JSON object")
        if "type" not in item and "plugins" not in item:
            raise errors.InvalidConfig(
                f'delegate {index} of the multus configuration has neither "type" nor "plugins"'
            )
    return [dict(item) for item in value]


def _capabilities(doc: Mapping[str, object]) -> dict[str, bool]:
    value = _object(doc, "capabilities")
    for key, enabled in value.items():
        if not isinstance(enabled, bool):
            raise errors.InvalidConfig(
                f'capability "{key}" of the multus configuration must be true or false'
            )
    return {key: bool(enabled) for key, enabled in value.items()}


def _log_options(doc: Mapping[str, object]) -> LogOptions:
    value = _object(doc, "logOptions")
    options = LogOptions()
    for key, attr in (("maxAge", "max_age"), ("maxSize", "max_size"), ("maxBackups", "max_backups")):
        if key in value:
            number = value[key]
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise errors.InvalidConfig(
                    f'"logOptions.{key}" of the multus configuration must be a whole number >= 0'
                )
            setattr(options, attr, number)
    if "compress" in value:
        compress = value["compress"]
        if not isinstance(compress, bool):
            raise errors.InvalidConfig(
                '"logOptions.compress" of the multus configuration must be true or false'
            )
        options.compress = compress
    return options


def _valid_attachments(doc: Mapping[str, object]) -> list[dict[str, object]] | None:
    value = doc.get("cni.dev/valid-attachments", doc.get("cni.dev/attachments"))
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise errors.InvalidConfig(
            '"cni.dev/valid-attachments" must be a list of {"containerID","ifname"} objects'
        )
    return [dict(item) for item in value]
