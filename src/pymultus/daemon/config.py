"""The thick daemon's configuration (``daemon-config.json``, reference §2.3), validated.

Go Multus reads the same file three times: as the daemon's own settings, as the generator's
options for the auto-generated ``00-multus.conf``, and as raw JSON whose top-level keys override
every incoming request conf (``overrideCNIConfigWithServerConfig``). :class:`DaemonConfig` keeps all
three views: typed attributes for the daemon, :meth:`generator_options` for the generated conf and
:meth:`request_overrides` for the per-request merge.

Every error is an :class:`~pymultus.errors.InvalidConfig` naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NoReturn

from pymultus import jsonio
from pymultus.errors import InvalidConfig, MultusError
from pymultus.fileio import read_file

DEFAULT_SOCKET_DIR = "/run/multus/"
DEFAULT_CNI_CONFIG_DIR = "/etc/cni/net.d"
SOCKET_NAME = "multus.sock"
LOG_LEVELS = ("debug", "verbose", "error", "panic")
KNOWN_CNI_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
DEFAULT_QUEUE_LIMIT = 256
DEFAULT_DELEGATE_TIMEOUT = 120.0
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
DEFAULT_READINESS_WAIT = 45.0
MAX_CONNECTION_LIMIT_DEFAULT = 32
MAX_SOCKET_PATH = 107  # sockaddr_un.sun_path is 108 bytes with the terminating NUL

# Keys only the daemon (or the generator) reads. Go Multus copies them over each request conf
# too; the Multus netconf parser ignores unknown keys, so copying them is harmless — we still
# strip the ones that would change a request's meaning in ways Go Multus does not
# (readinessindicatorfile: the daemon gates /readyz on it instead, like Go's
# ignoreReadinessIndicator in auto mode).
_STRIPPED_FROM_OVERRIDES = ("readinessindicatorfile",)

# Keys copied from the daemon config into the generated shim conf (reference §2.3, §2.6).
GENERATOR_PASSTHROUGH_KEYS = (
    "binDir",
    "cniDir",
    "confDir",
    "capabilities",
    "logFile",
    "logLevel",
    "logToStderr",
    "logOptions",
    "namespaceIsolation",
    "globalNamespaces",
    "systemNamespaces",
    "multusNamespace",
    "auxiliaryCNIChainName",
    "clusterNetwork",
    "defaultNetworks",
    "daemonSocketDir",
    "retryDeleteOnError",
    "strictCapabilities",
    "delegateTimeout",
)


def default_connection_limit() -> int:
    """Twice the CPUs, at least 4, at most 32: delegates mostly wait on subprocesses and the
    kernel, so a little over-subscription keeps CPUs busy while bounding memory (Multus #1346)."""
    cpus = os.cpu_count() or 1
    return max(4, min(2 * cpus, MAX_CONNECTION_LIMIT_DEFAULT))


class PerNodeCertificate:
    __slots__ = ("approval_timeout", "bootstrap_kubeconfig", "cert_dir", "cert_duration", "enabled")

    def __init__(
        self,
        enabled: bool,
        bootstrap_kubeconfig: str,
        cert_dir: str,
        cert_duration: str,
        approval_timeout: float = 120.0,
    ) -> None:
        self.enabled = enabled
        self.bootstrap_kubeconfig = bootstrap_kubeconfig
        self.cert_dir = cert_dir
        self.cert_duration = cert_duration
        self.approval_timeout = approval_timeout  # pymultus: how long to wait for the certificate


class DaemonConfig:
    """Typed, validated view of ``daemon-config.json``; ``raw`` keeps the whole document."""

    __slots__ = (
        "chroot_dir",
        "cni_config_dir",
        "cni_version",
        "connection_limit",
        "daemon_socket_dir",
        "delegate_timeout",
        "dynamic_networks",
        "enable_pprof",
        "force_cni_version",
        "kubeconfig",
        "log_file",
        "log_level",
        "log_to_stderr",
        "metrics_address",
        "metrics_port",
        "multus_autoconfig_dir",
        "multus_config_file",
        "multus_master_cni",
        "override_network_name",
        "per_node_certificate",
        "queue_limit",
        "raw",
        "readiness_indicator_file",
        "readiness_wait",
        "shutdown_timeout",
        "socket_dir",
        "source",
    )

    socket_dir: str
    chroot_dir: str
    metrics_port: int | None
    metrics_address: str
    enable_pprof: bool
    connection_limit: int
    queue_limit: int
    per_node_certificate: PerNodeCertificate
    log_file: str
    log_level: str
    log_to_stderr: bool
    cni_version: str
    multus_config_file: str
    multus_autoconfig_dir: str
    multus_master_cni: str
    cni_config_dir: str
    force_cni_version: bool
    override_network_name: bool
    daemon_socket_dir: str
    readiness_indicator_file: str
    readiness_wait: float
    delegate_timeout: float
    dynamic_networks: bool
    shutdown_timeout: float
    kubeconfig: str
    raw: dict[str, object]
    source: str

    @property
    def socket_path(self) -> str:
        return os.path.join(self.socket_dir, SOCKET_NAME)

    @property
    def auto(self) -> bool:
        return self.multus_config_file == "auto"

    def request_overrides(self) -> dict[str, object]:
        """The keys copied over every request conf (Go's ``overrideCNIConfigWithServerConfig``)."""
        return {key: value for key, value in self.raw.items() if key not in _STRIPPED_FROM_OVERRIDES}

    def generator_options(self) -> dict[str, object]:
        """The keys copied into the generated ``00-multus.conf`` (reference §2.3, §2.6)."""
        options = {key: self.raw[key] for key in GENERATOR_PASSTHROUGH_KEYS if key in self.raw}
        if self.cni_version:
            options["cniVersion"] = self.cni_version
        if self.override_network_name:
            options["overrideNetworkName"] = True
        return options


def load_daemon_config(path: str) -> DaemonConfig:
    """Read and validate ``path``; a missing or unreadable file is an InvalidConfig naming it."""
    try:
        data = read_file(path)
    except OSError as exc:
        raise InvalidConfig(
            f"cannot read the daemon configuration {path}: {exc.strerror or exc}", details=path
        ) from exc
    return parse_daemon_config(data, source=path)


def parse_daemon_config(data: bytes, *, source: str = "<daemon-config>") -> DaemonConfig:
    try:
        doc = jsonio.loads_object(data, what=f"the daemon configuration {source}")
    except MultusError as exc:
        raise InvalidConfig(exc.msg, details=source) from exc
    reader = _Reader(doc, source)
    conf = DaemonConfig()
    conf.raw = doc
    conf.source = source
    conf.socket_dir = reader.path("socketDir", DEFAULT_SOCKET_DIR)
    if len(os.fsencode(conf.socket_path)) > MAX_SOCKET_PATH:
        reader.fail("socketDir", f"is too long: the socket path must fit in {MAX_SOCKET_PATH} bytes")
    conf.chroot_dir = reader.path("chrootDir", "")
    conf.metrics_port = reader.port("metricsPort")
    conf.metrics_address = reader.string("metricsAddress", "")
    conf.enable_pprof = reader.boolean("enablePprof", False)
    conf.connection_limit = reader.positive_int("connectionLimit", default_connection_limit())
    conf.queue_limit = reader.positive_int("requestQueueLimit", DEFAULT_QUEUE_LIMIT)
    conf.per_node_certificate = _per_node_certificate(reader)
    conf.log_file = reader.path("logFile", "")
    conf.log_level = reader.string("logLevel", "error").lower() or "error"
    if conf.log_level not in LOG_LEVELS:
        reader.fail("logLevel", f'is "{conf.log_level}"; expected one of {", ".join(LOG_LEVELS)}')
    conf.log_to_stderr = reader.boolean("logToStderr", False)
    conf.cni_version = reader.string("cniVersion", "")
    if conf.cni_version and conf.cni_version not in KNOWN_CNI_VERSIONS:
        reader.fail("cniVersion", f'"{conf.cni_version}" is not one of {", ".join(KNOWN_CNI_VERSIONS)}')
    conf.multus_config_file = reader.string("multusConfigFile", "auto") or "auto"
    conf.cni_config_dir = reader.path("cniConfigDir", DEFAULT_CNI_CONFIG_DIR)
    # Multus has no default; the reference deployment sets it to the conf dir, and so do we.
    conf.multus_autoconfig_dir = reader.path("multusAutoconfigDir", conf.cni_config_dir)
    conf.multus_master_cni = reader.string("multusMasterCNI", "")
    if "/" in conf.multus_master_cni:
        reader.fail("multusMasterCNI", "must be a file name in multusAutoconfigDir, not a path")
    conf.force_cni_version = reader.boolean("forceCNIVersion", False)
    conf.override_network_name = reader.boolean("overrideNetworkName", False)
    conf.daemon_socket_dir = reader.path("daemonSocketDir", "")
    conf.readiness_indicator_file = reader.path("readinessindicatorfile", "")
    conf.readiness_wait = reader.seconds("readinessWait", DEFAULT_READINESS_WAIT)
    conf.delegate_timeout = reader.seconds("delegateTimeout", DEFAULT_DELEGATE_TIMEOUT)
    conf.shutdown_timeout = reader.seconds("shutdownTimeout", DEFAULT_SHUTDOWN_TIMEOUT)
    conf.kubeconfig = reader.path("kubeconfig", "")
    # Hot-plug (docs/hotplug.md): reconcile running pods when their networks annotation changes.
    conf.dynamic_networks = reader.boolean("dynamicNetworks", False)
    if conf.auto and not conf.cni_version:
        reader.fail("cniVersion", 'is required when "multusConfigFile" is "auto"')
    for key in ("capabilities", "logOptions"):
        reader.optional_object(key)
    for key in ("binDir", "cniDir", "confDir", "clusterNetwork", "globalNamespaces", "multusNamespace"):
        reader.string(key, "")
    for key in ("namespaceIsolation", "retryDeleteOnError", "strictCapabilities"):
        reader.boolean(key, False)
    return conf


def _per_node_certificate(reader: _Reader) -> PerNodeCertificate:
    value = reader.optional_object("perNodeCertificate")
    sub = _Reader(value, reader.source, prefix="perNodeCertificate.")
    cert = PerNodeCertificate(
        enabled=sub.boolean("enabled", False),
        bootstrap_kubeconfig=sub.path("bootstrapKubeconfig", ""),
        cert_dir=sub.path("certDir", ""),
        cert_duration=sub.string("certDuration", "10m"),
        approval_timeout=sub.seconds("approvalTimeout", 120.0),
    )
    if cert.enabled:
        # pymultus.kube.certs: checked here so a bad value stops the daemon before it starts.
        if not cert.cert_dir:  # bootstrapKubeconfig may be empty: the in-cluster service account
            sub.fail("certDir", "is needed when perNodeCertificate is enabled")
        from pymultus.kube.certs import MIN_DURATION, parse_duration

        try:
            seconds = parse_duration(cert.cert_duration)
        except InvalidConfig as exc:
            sub.fail("certDuration", f"is not a duration: {exc.msg}")
        if seconds < MIN_DURATION:
            sub.fail("certDuration", f'is "{cert.cert_duration}"; the API server refuses less than 10m')
    return cert


class _Reader:
    """Typed getters that raise InvalidConfig naming the key and the file."""

    def __init__(self, doc: Mapping[str, object], source: str, prefix: str = "") -> None:
        self.doc = doc
        self.source = source
        self.prefix = prefix

    def fail(self, key: str, problem: str) -> NoReturn:
        raise InvalidConfig(
            f'"{self.prefix}{key}" of the daemon configuration {problem}', details=self.source
        )

    def string(self, key: str, default: str) -> str:
        value = self.doc.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {jsonio.kind_of(value)}")
        return value

    def path(self, key: str, default: str) -> str:
        value = self.string(key, default) or default
        if "\x00" in value:
            self.fail(key, "contains a NUL byte")
        try:
            os.fsencode(value)
        except UnicodeEncodeError:  # a lone surrogate from a "\ud800" JSON escape
            self.fail(key, "is not a valid file name (it holds a lone surrogate)")
        if value and not value.startswith("/"):
            self.fail(key, f'must be an absolute path, not "{value}"')
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.doc.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.fail(key, f"must be true or false, not {jsonio.kind_of(value)}")

    def positive_int(self, key: str, default: int) -> int:
        value = self.doc.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(key, f"must be a whole number > 0, not {_shown(value)}")
        return value

    def port(self, key: str) -> int | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            self.fail(key, f"must be a TCP port number in 1..65535, not {_shown(value)}")
        return value

    def seconds(self, key: str, default: float) -> float:
        value = self.doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
            self.fail(key, "must be a number of seconds in (0, 3600]")
        return float(value)

    def optional_object(self, key: str) -> dict[str, object]:
        value = self.doc.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be an object, not {jsonio.kind_of(value)}")
        return dict(value)


def _shown(value: object) -> str:
    """A decoded JSON value for a message: short, and never failing (``jsonio.dumps`` raises for
    an overflowed number such as 1e400)."""
    text = (
        repr(value)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else jsonio.kind_of(value)
    )
    return text if len(text) <= 40 else text[:37] + "..."
