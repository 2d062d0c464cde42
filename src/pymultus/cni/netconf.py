"""Network configurations: single-plugin ``.conf`` and ``.conflist``, one model for both.

Like libcni's ``ConfListFromConf``, a single conf becomes a list of one plugin; ``is_list`` records
the original form so ``to_bytes`` gives it back. Plugin dicts are kept as decoded, so unknown keys
(calico's ``kubeconfig``, ...) survive a load/save round trip.
"""

from __future__ import annotations

import posix

from pymultus import errors, fileio, jsonio, paths
from pymultus.cni import spec

CONF_EXTENSIONS = (".conf", ".conflist", ".json")
_TRUE_STRINGS = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_FALSE_STRINGS = frozenset(("0", "f", "F", "FALSE", "false", "False"))


class NetworkConfig:
    """A network: its name, the selected cniVersion, and the plugin chain (raw dicts)."""

    __slots__ = (
        "cni_version",
        "disable_check",
        "disable_gc",
        "is_list",
        "load_only_inlined_plugins",
        "name",
        "plugins",
        "raw",
        "source",
    )

    def __init__(
        self,
        *,
        name: str,
        cni_version: str,
        plugins: list[dict[str, object]],
        raw: dict[str, object],
        is_list: bool,
        disable_check: bool = False,
        disable_gc: bool = False,
        load_only_inlined_plugins: bool = False,
        source: str | None = None,
    ) -> None:
        self.name = name
        self.cni_version = cni_version
        self.plugins = plugins
        self.raw = raw
        self.is_list = is_list
        self.disable_check = disable_check
        self.disable_gc = disable_gc
        self.load_only_inlined_plugins = load_only_inlined_plugins
        self.source = source

    def to_bytes(self) -> bytes:
        """The document in its original form (conf or conflist), compact JSON, unknown keys kept."""
        if self.is_list:
            doc = dict(self.raw)
            doc["plugins"] = self.plugins
            return jsonio.dumpb(doc)
        return jsonio.dumpb(self.plugins[0])

    def capabilities(self) -> set[str]:
        """The capabilities any plugin of the chain declares as true."""
        found: set[str] = set()
        for plugin in self.plugins:
            caps = plugin.get("capabilities")
            if isinstance(caps, dict):
                found.update(key for key, enabled in caps.items() if enabled is True)
        return found

    def plugin_types(self) -> list[str]:
        return [str(plugin.get("type", "")) for plugin in self.plugins]

    def with_name(self, name: str) -> NetworkConfig:
        """A copy named ``name`` (Multus names a NAD's network after the NAD when it has no name)."""
        spec.validate_network_name(name)
        if self.is_list:
            raw = dict(self.raw)
            raw["name"] = name
            plugins = self.plugins
        else:
            raw = dict(self.plugins[0])
            raw["name"] = name
            plugins = [raw]
        return self._replace(name=name, raw=raw, plugins=plugins)

    def with_cni_version(self, version: str) -> NetworkConfig:
        if not spec.is_supported(version):
            raise errors.IncompatibleVersion(f"CNI version {version!r} is not supported")
        if self.is_list:
            raw = dict(self.raw)
            raw["cniVersion"] = version
            plugins = self.plugins
        else:
            raw = dict(self.plugins[0])
            raw["cniVersion"] = version
            plugins = [raw]
        return self._replace(cni_version=version, raw=raw, plugins=plugins)

    def _replace(self, **changes: object) -> NetworkConfig:
        copy = NetworkConfig.__new__(NetworkConfig)
        for slot in NetworkConfig.__slots__:
            setattr(copy, slot, changes.get(slot, getattr(self, slot)))
        return copy

    def __repr__(self) -> str:
        kind = "conflist" if self.is_list else "conf"
        return f"NetworkConfig({kind} {self.name!r} {self.cni_version} plugins={self.plugin_types()})"


def load_bytes(data: bytes, *, source: str | None = None) -> NetworkConfig:
    """Decode a conf or conflist: a top-level ``plugins`` key makes a list, else a plugin conf."""
    what = f"network configuration {source}" if source else "network configuration"
    doc = jsonio.loads_object(data, what=what)
    return _from_document(doc, source=source, allow_empty=False)


def _from_document(doc: dict[str, object], *, source: str | None, allow_empty: bool) -> NetworkConfig:
    where = f" in {source}" if source else ""
    name = doc.get("name", "")
    if not isinstance(name, str):
        raise errors.InvalidConfig(f"network configuration field 'name' must be a string{where}")
    if name:
        spec.validate_network_name(name)
    version = _select_version(doc, where)
    disable_check = _flag(doc, "disableCheck", where)
    disable_gc = _flag(doc, "disableGC", where)
    only_inlined = _flag(doc, "loadOnlyInlinedPlugins", where)
    if "plugins" in doc:
        raw_plugins = doc["plugins"]
        if not isinstance(raw_plugins, list):
            raise errors.InvalidConfig(f"network configuration field 'plugins' must be a list{where}")
        if not raw_plugins and not allow_empty:
            raise errors.InvalidConfig(f"network configuration list {name!r} has no plugins{where}")
        plugins = [_check_plugin(plugin, index, where) for index, plugin in enumerate(raw_plugins)]
        return NetworkConfig(
            name=name,
            cni_version=version,
            plugins=plugins,
            raw=doc,
            is_list=True,
            disable_check=disable_check,
            disable_gc=disable_gc,
            load_only_inlined_plugins=only_inlined,
            source=source,
        )
    _check_plugin(doc, None, where)
    return NetworkConfig(
        name=name,
        cni_version=version,
        plugins=[doc],
        raw=doc,
        is_list=False,
        disable_check=disable_check,
        disable_gc=disable_gc,
        load_only_inlined_plugins=only_inlined,
        source=source,
    )


def _select_version(doc: dict[str, object], where: str) -> str:
    """cniVersion, or the highest supported entry of cniVersions (CNI spec 1.1 §"Configuration")."""
    version = doc.get("cniVersion")
    if version is not None and not isinstance(version, str):
        raise errors.InvalidConfig(f"network configuration field 'cniVersion' must be a string{where}")
    versions = doc.get("cniVersions")
    if versions is not None:
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise errors.InvalidConfig(
                f"network configuration field 'cniVersions' must be a list of strings{where}"
            )
        candidates = list(versions) + ([version] if version else [])
        best = spec.highest_supported(candidates)
        if best is None:
            raise errors.IncompatibleVersion(
                f"none of the configuration's CNI versions {candidates} is supported{where}",
                details=f"supported: {', '.join(spec.SUPPORTED_VERSIONS)}",
            )
        return best
    if not version:
        return spec.DEFAULT_CONFIG_VERSION
    if not spec.is_supported(version):
        raise errors.IncompatibleVersion(
            f"CNI version {version!r} of the network configuration is not supported{where}",
            details=f"supported: {', '.join(spec.SUPPORTED_VERSIONS)}",
        )
    return version


def _flag(doc: dict[str, object], key: str, where: str) -> bool:
    """A boolean, or a "true"/"false" string as libcni accepts (strconv.ParseBool)."""
    value = doc.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in _TRUE_STRINGS:
            return True
        if value in _FALSE_STRINGS:
            return False
    raise errors.InvalidConfig(f"network configuration field {key!r} must be a boolean, not {value!r}{where}")


def _check_plugin(plugin: object, index: int | None, where: str) -> dict[str, object]:
    label = "network configuration" if index is None else f"plugin {index} of the network configuration"
    if not isinstance(plugin, dict):
        raise errors.InvalidConfig(f"{label} must be a JSON object{where}")
    plugin_type = plugin.get("type")
    if not isinstance(plugin_type, str) or not plugin_type:
        raise errors.InvalidConfig(f"{label} has no 'type'{where}")
    caps = plugin.get("capabilities")
    if caps is not None and not isinstance(caps, dict):
        raise errors.InvalidConfig(f"{label} field 'capabilities' must be an object{where}")
    return plugin


def read_file(path: str) -> bytes:
    try:
        return fileio.read_file(path)
    except OSError as exc:
        raise errors.IOFailure(f"cannot read network configuration {path}: {exc.strerror}") from exc


def load_file(path: str) -> NetworkConfig:
    """Load one file; a list gets ``<dir>/<name>/*.conf`` plugins appended (libcni) unless
    ``loadOnlyInlinedPlugins`` is set."""
    doc = jsonio.loads_object(read_file(path), what=f"network configuration {path}")
    net = _from_document(doc, source=path, allow_empty="plugins" in doc)
    if net.is_list and not net.load_only_inlined_plugins and net.name:
        net.plugins = net.plugins + _subdirectory_plugins(paths.join(paths.dirname(path), net.name))
    if not net.plugins:
        raise errors.InvalidConfig(f"network configuration list {net.name!r} has no plugins in {path}")
    return net


def _subdirectory_plugins(directory: str) -> list[dict[str, object]]:
    try:
        names = sorted(entry for entry in posix.listdir(directory) if entry.endswith(".conf"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise errors.IOFailure(f"cannot list plugin directory {directory}: {exc.strerror}") from exc
    plugins: list[dict[str, object]] = []
    for entry in names:
        path = paths.join(directory, entry)
        if not paths.isfile(path):
            continue
        plugin = jsonio.loads_object(read_file(path), what=f"plugin configuration {path}")
        plugins.append(_check_plugin(plugin, None, f" in {path}"))
    return plugins


def conf_files(directory: str, extensions: tuple[str, ...] = CONF_EXTENSIONS) -> list[str]:
    """Configuration files of ``directory`` in lexical order (a missing directory has none)."""
    try:
        names = sorted(posix.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise errors.IOFailure(
            f"cannot list network configuration directory {directory}: {exc.strerror}"
        ) from exc
    return [
        paths.join(directory, name)
        for name in names
        if name.endswith(extensions) and paths.isfile(paths.join(directory, name))
    ]


def load_by_name(
    directory: str, name: str, *, skipped: list[tuple[str, str]] | None = None
) -> NetworkConfig | None:
    """The first configuration of ``directory`` whose name is ``name``, or None.

    Files that cannot be loaded are skipped (one broken file must not hide every other network);
    they are appended to ``skipped`` as ``(path, message)`` when the caller wants to report them.
    """
    for path in conf_files(directory):
        try:
            net = load_file(path)
        except (
            errors.InvalidConfig,
            errors.IncompatibleVersion,
            errors.IOFailure,
            errors.JSONDecodeError,
        ) as exc:
            if _declares_name(path, name):
                raise  # the network asked for exists but is invalid: say why, not "not found"
            if skipped is not None:
                skipped.append((path, str(exc)))
            continue
        if net.name == name:
            return net
    return None


def _declares_name(path: str, name: str) -> bool:
    try:
        doc = jsonio.loads(read_file(path))
    except (errors.IOFailure, errors.JSONDecodeError):
        return False
    return isinstance(doc, dict) and doc.get("name") == name
