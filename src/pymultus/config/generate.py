"""Generate ``00-multus.conf[list]``: the Multus conf that wraps the node's primary CNI conf.

Used by ``pymultus install`` (thin mode, ``type: multus``) and by the daemon's
``multusConfigFile: auto`` (thick mode, ``type: multus-shim``). Pure functions plus one atomic
file write; no Kubernetes. Behaviour follows reference §2.5/§2.6 with these deliberate choices:

* the primary is the lexically first ``.conf``/``.conflist``/``.json`` file (the extensions libcni
  and so the runtime consider), skipping names that start with ``00-multus`` **and** any file whose
  plugin type is ``multus``/``multus-shim``, so a stale Multus conf under another name is never
  wrapped (multus#1108). A file that cannot be parsed is *not* skipped: it is what the runtime
  would pick, so the caller gets a clear error from :func:`build_multus_conf` and retries, rather
  than silently wrapping a different network;
* ``clusterNetwork`` names the primary by path (both modes), so the plugin always reads the
  current primary rather than a copy frozen into our conf;
* the conf is a ``.conflist`` for cniVersion >= 1.0.0 and a ``.conf`` otherwise, as Go Multus does.

Not on the CNI hot path, but the package is, so heavy modules are imported inside functions.
"""

from __future__ import annotations

import os

from pymultus import errors, fileio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

OWN_PREFIX = "00-multus"
OWN_NAMES = ("00-multus.conf", "00-multus.conflist")
OWN_TYPES = ("multus", "multus-shim")
CONF_EXTENSIONS = (".conf", ".conflist", ".json")
DEFAULT_NETWORK_NAME = "multus-cni-network"
LOG_LEVELS = ("debug", "verbose", "error", "panic")

# Keys copied from ``options`` into the generated conf, with the JSON type each must have.
# Generator-only keys (multusConfigFile, multusAutoconfigDir, multusMasterCNI, cniConfigDir,
# socketDir, chrootDir, metricsPort, ...) are not plugin settings and are never copied.
_PASS_THROUGH: dict[str, tuple[type, ...]] = {
    "kubeconfig": (str,),
    "daemonSocketDir": (str,),
    "confDir": (str,),
    "cniDir": (str,),
    "binDir": (str,),
    "logFile": (str,),
    "logLevel": (str,),
    "logToStderr": (bool,),
    "logOptions": (dict,),
    "namespaceIsolation": (bool,),
    "globalNamespaces": (str,),
    "multusNamespace": (str,),
    "systemNamespaces": (list,),
    "defaultNetworks": (list,),
    "auxiliaryCNIChainName": (str,),
    "readinessindicatorfile": (str,),
    "retryDeleteOnError": (bool,),
    "strictCapabilities": (bool,),
}
# The thick daemon watches the readiness file itself (reference §9), so, like Go Multus, the
# generated shim conf does not carry it and requests never wait on it.
_SHIM_DROPPED = ("readinessindicatorfile",)


def find_primary_conf(
    conf_dir: str, *, master_name: str | None = None, own_names: Iterable[str] = OWN_NAMES
) -> str | None:
    """The path of the primary CNI conf in ``conf_dir``, or None when there is none (yet).

    ``master_name`` pins the file name (``--multus-master-cni-file-name`` / ``multusMasterCNI``,
    the workaround for boot-order races, multus#1499); pinning one of our own files is an error.
    """
    own = tuple(own_names)
    if master_name:
        if "/" in master_name or master_name in (".", ".."):
            raise errors.InvalidConfig(
                f"master CNI file name {master_name!r} must be a file name, not a path"
            )
        if master_name in own or master_name.startswith(OWN_PREFIX):
            raise errors.InvalidConfig(f"master CNI file name {master_name!r} is pymultus's own conf")
        path = os.path.join(conf_dir, master_name)
        return path if os.path.isfile(path) else None
    try:
        names = sorted(os.listdir(conf_dir))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise errors.InvalidConfig(f"cannot list the CNI conf directory {conf_dir}: {exc.strerror}") from exc
    for name in names:
        if not name.endswith(CONF_EXTENSIONS) or name in own or name.startswith(OWN_PREFIX):
            continue
        path = os.path.join(conf_dir, name)
        if not os.path.isfile(path) or is_multus_conf(path):
            continue
        return path
    return None


def is_multus_conf(path: str) -> bool:
    """Whether ``path`` holds a Multus conf (of any name); unreadable files are not ours."""
    try:
        data = fileio.read_file(path)
    except OSError:
        return False
    try:
        from pymultus import jsonio

        conf = jsonio.loads_object(data)
    except ValueError:
        return False
    return any(plugin.get("type") in OWN_TYPES for plugin in _plugins(conf))


def _plugins(conf: Mapping[str, object]) -> list[dict[str, object]]:
    plugins = conf.get("plugins")
    if isinstance(plugins, list):
        return [p for p in plugins if isinstance(p, dict)]
    return [dict(conf)]


def parse_version(version: str, *, what: str = "cniVersion") -> tuple[int, int, int]:
    """``"0.3.1"`` -> ``(0, 3, 1)``; a clear error naming ``what`` otherwise."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise errors.InvalidConfig(f"{what} {version!r} is not a version of the form MAJOR.MINOR.PATCH")
    return int(parts[0]), int(parts[1]), int(parts[2])


def load_primary(primary_path: str) -> dict[str, object]:
    """Read and check the primary conf: a JSON object with a cniVersion and a type or plugins."""
    try:
        data = fileio.read_file(primary_path)
    except OSError as exc:
        raise errors.InvalidConfig(
            f"cannot read the primary CNI conf {primary_path}: {exc.strerror}"
        ) from exc
    from pymultus import jsonio

    try:
        conf = jsonio.loads_object(data, what=f"primary CNI conf {primary_path}")
    except errors.JSONDecodeError as exc:
        raise errors.InvalidConfig(exc.msg) from exc
    version = conf.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise errors.InvalidConfig(f"primary CNI conf {primary_path} has no cniVersion")
    parse_version(version, what=f"cniVersion of {primary_path}")
    if "plugins" in conf:
        plugins = conf["plugins"]
        if not isinstance(plugins, list) or not plugins or not all(isinstance(p, dict) for p in plugins):
            raise errors.InvalidConfig(
                f"primary CNI conf {primary_path}: plugins must be a non-empty list of objects"
            )
    elif not isinstance(conf.get("type"), str) or not conf.get("type"):
        raise errors.InvalidConfig(f"primary CNI conf {primary_path} has neither a type nor a plugins list")
    if any(p.get("type") in OWN_TYPES for p in _plugins(conf)):
        raise errors.InvalidConfig(f"primary CNI conf {primary_path} is a Multus conf; refusing to wrap it")
    return conf


def primary_capabilities(conf: Mapping[str, object]) -> dict[str, bool]:
    """The union of the capabilities enabled by the primary conf's plugins (reference §2.6)."""
    caps: dict[str, bool] = {}
    for plugin in _plugins(conf):
        declared = plugin.get("capabilities")
        if isinstance(declared, dict):
            for key, value in declared.items():
                if value is True:
                    caps[key] = True
    return caps


def build_multus_conf(
    primary_path: str,
    *,
    plugin_type: str,
    options: Mapping[str, object],
    cluster_network: str | None = None,
) -> tuple[str, bytes]:
    """``(file name, bytes)`` of the Multus conf wrapping ``primary_path``.

    ``plugin_type`` is ``"multus"`` (thin) or ``"multus-shim"`` (thick). ``options`` uses the
    Multus JSON key names: ``cniVersion`` (must equal the primary's unless ``forceCNIVersion``),
    ``overrideNetworkName``, ``capabilities`` (merged with the primary's) and the pass-through keys
    of reference §2.3 (kubeconfig, daemonSocketDir, binDir, cniDir, confDir, log*, namespace
    settings, auxiliaryCNIChainName, readinessindicatorfile, ...). Unknown keys are ignored. For
    ``multus-shim``, ``daemonSocketDir`` defaults to ``socketDir`` (the daemon's own) when given.
    ``cluster_network`` is the primary's path as the plugin will see it (the installer runs in a
    container where the host's ``/etc/cni/net.d`` is mounted elsewhere); default ``primary_path``.
    """
    if plugin_type not in OWN_TYPES:
        raise errors.InvalidConfig(f"plugin type {plugin_type!r} must be one of {', '.join(OWN_TYPES)}")
    primary = load_primary(primary_path)
    primary_version = str(primary["cniVersion"])
    version = primary_version
    wanted = options.get("cniVersion")
    force = options.get("forceCNIVersion", False)
    if not isinstance(force, bool):
        raise errors.InvalidConfig("forceCNIVersion must be a boolean")
    if wanted not in (None, ""):
        if not isinstance(wanted, str):
            raise errors.InvalidConfig("cniVersion must be a string")
        parse_version(wanted)
        if wanted != primary_version and not force:
            raise errors.InvalidConfig(
                f"cniVersion {wanted} differs from {primary_version} of the primary CNI conf "
                f"{primary_path}; set forceCNIVersion to use it anyway"
            )
        version = wanted

    name = DEFAULT_NETWORK_NAME
    override_name = options.get("overrideNetworkName", False)
    if not isinstance(override_name, bool):
        raise errors.InvalidConfig("overrideNetworkName must be a boolean")
    if override_name:
        primary_name = primary.get("name")
        if not isinstance(primary_name, str) or not primary_name:
            raise errors.InvalidConfig(f"overrideNetworkName is set but {primary_path} has no name")
        name = primary_name

    plugin: dict[str, object] = {"type": plugin_type}
    caps = primary_capabilities(primary)
    extra_caps = options.get("capabilities")
    if extra_caps is not None:
        if not isinstance(extra_caps, dict) or not all(isinstance(v, bool) for v in extra_caps.values()):
            raise errors.InvalidConfig("capabilities must be an object of booleans")
        caps.update({k: True for k, v in extra_caps.items() if v})
    if caps:
        plugin["capabilities"] = dict(sorted(caps.items()))
    for key, types in _PASS_THROUGH.items():
        value = options.get(key)
        if value is None or (plugin_type == "multus-shim" and key in _SHIM_DROPPED):
            continue
        if not isinstance(value, types):
            raise errors.InvalidConfig(f"{key} must be a {_type_name(types)}, not {type(value).__name__}")
        if value == "":
            continue  # an empty flag value means "not set", as in the Go entrypoint
        if key == "logLevel" and value not in LOG_LEVELS:
            raise errors.InvalidConfig(f"logLevel {value!r} must be one of {', '.join(LOG_LEVELS)}")
        plugin[key] = value
    if plugin_type == "multus-shim" and "daemonSocketDir" not in plugin:
        # The shim must look where the daemon listens: without this key it looks in /run/multus/
        # whatever the daemon's socketDir (a Go Multus gap).
        socket_dir = options.get("socketDir")
        if socket_dir is not None and not isinstance(socket_dir, str):
            raise errors.InvalidConfig(f"socketDir must be a string, not {type(socket_dir).__name__}")
        if socket_dir:
            plugin["daemonSocketDir"] = socket_dir
    plugin["clusterNetwork"] = cluster_network or primary_path

    if parse_version(version) >= (1, 0, 0):
        conf: dict[str, object] = {"cniVersion": version, "name": name, "plugins": [plugin]}
        file_name = "00-multus.conflist"
    else:
        conf = {"cniVersion": version, "name": name, **plugin}
        file_name = "00-multus.conf"
    import json

    return file_name, (json.dumps(conf, indent=2) + "\n").encode()


def _type_name(types: tuple[type, ...]) -> str:
    names = {bool: "boolean", str: "string", dict: "object", list: "list"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> bool:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a partial one.

    Temp file in the same directory (a dot name ending in ``.tmp``, which libcni ignores), fsync,
    chmod, rename, fsync of the directory; a missing directory is created 0755. Returns False
    (and touches nothing) when the file already has exactly this content and mode.
    """
    return fileio.write_atomically(path, data, mode=mode, dir_mode=None)
