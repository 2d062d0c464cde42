"""Running a network's plugin chain like libcni's ``CNIConfig`` (CNI spec 1.1 §3 "Execution").

* ADD runs the plugins in order, each one's result is the next one's ``prevResult``; the first
  error stops the chain (the runtime then calls DEL); the final result is cached.
* DEL runs them in reverse, with the cached result as ``prevResult`` for confs >= 0.4.0; the cache
  entry is removed once every plugin succeeded (kept on error so a retried DEL still has it).
* CHECK (>= 0.4.0, unless ``disableCheck``) runs them in order with the cached result.
* GC synthesises DEL for cached attachments of the network missing from the valid list, then
  sends GC (>= 1.1.0, unless ``disableGC``) to every plugin, continuing on errors.
* STATUS (>= 1.1.0) asks every plugin, stopping at the first error.

Each plugin gets ``name``, ``cniVersion``, ``runtimeConfig`` (the capability args it declares),
``prevResult`` and, when the runtime gives them, ``args``; its ``capabilities`` key is not passed
on (CNI spec 1.1 §3: "capabilities must not be passed on"; libcni leaves it in).
"""

from __future__ import annotations

from pymultus import errors, jsonio
from pymultus.cni import cache, spec
from pymultus.cni.invoke import find_plugin
from pymultus.cni.request import format_cni_args
from pymultus.cni.result import Result
from pymultus.errors import MultusError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pymultus.cni.invoke import PluginExecutor
    from pymultus.cni.netconf import NetworkConfig

DEFAULT_CACHE_DIR = "/var/lib/cni"


class RuntimeConf:
    """Per-attachment runtime data (libcni's ``RuntimeConf``)."""

    __slots__ = ("args", "cache_dir", "capability_args", "container_id", "ifname", "netns", "plugin_args")

    def __init__(
        self,
        *,
        container_id: str,
        ifname: str,
        netns: str = "",
        args: list[tuple[str, str]] | None = None,
        capability_args: dict[str, object] | None = None,
        cache_dir: str = "",
        plugin_args: dict[str, object] | None = None,
    ) -> None:
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args = args if args is not None else []  # CNI_ARGS pairs
        self.capability_args = capability_args if capability_args is not None else {}
        self.cache_dir = cache_dir  # overrides CNIConfig's cache dir when set
        self.plugin_args = plugin_args  # injected as the "args" key (CONVENTIONS.md)

    def replace(self, **changes: object) -> RuntimeConf:
        """A copy with some fields changed."""
        values = {slot: getattr(self, slot) for slot in RuntimeConf.__slots__}
        values.update(changes)
        return RuntimeConf(**values)

    def __repr__(self) -> str:
        return f"RuntimeConf({self.container_id!r}, ifname={self.ifname!r}, netns={self.netns!r})"


class CNIConfig:
    """Runs network configurations against plugins found on ``search_path``. Thread-safe."""

    __slots__ = ("cache_dir", "executor", "search_path")

    def __init__(
        self, *, search_path: Sequence[str], executor: PluginExecutor, cache_dir: str = DEFAULT_CACHE_DIR
    ) -> None:
        self.search_path = tuple(search_path)
        self.executor = executor
        self.cache_dir = cache_dir

    # ------------------------------------------------------------------ the verbs

    def add_network_list(self, net: NetworkConfig, rt: RuntimeConf) -> Result:
        """ADD; the result is cached (``cache.write``) before it is returned."""
        _validate(net, rt, need_netns=True)
        paths = self._find_all(net)
        result: Result | None = None
        for plugin, path in zip(net.plugins, paths, strict=True):
            answer = self._exec(spec.ADD, net, plugin, path, rt=rt, prev=result)
            result = _parse_result(answer, net, plugin)
        assert result is not None  # a network has at least one plugin
        entry = cache.CachedAttachment(
            network_name=net.name,
            container_id=rt.container_id,
            ifname=rt.ifname,
            netns=rt.netns,
            config=net.to_bytes(),
            cni_args=list(rt.args),
            capability_args=dict(rt.capability_args),
            result=result.to_version(net.cni_version),
        )
        cache.write(self._cache_dir(rt), entry)
        return result

    def check_network_list(self, net: NetworkConfig, rt: RuntimeConf) -> None:
        if not spec.version_at_least(net.cni_version, "0.4.0"):
            raise errors.IncompatibleVersion(
                f"configuration version {net.cni_version!r} of network {net.name!r} does not support CHECK"
            )
        if net.disable_check:
            return
        _validate(net, rt, need_netns=True)
        paths = self._find_all(net)
        cached = self.get_cached_result(net, rt, strict=True)
        for plugin, path in zip(net.plugins, paths, strict=True):
            self._exec(spec.CHECK, net, plugin, path, rt=rt, prev=cached)

    def del_network_list(self, net: NetworkConfig, rt: RuntimeConf) -> None:
        _validate(net, rt, need_netns=False)
        paths = self._find_all(net)
        cache_dir = self._cache_dir(rt)
        try:
            entry = cache.read(cache_dir, net.name, rt.container_id, rt.ifname)
        except errors.IOFailure:
            entry = None  # unreadable: DEL goes on without it (Multus #948/#1087)
        if entry is not None and not rt.capability_args and entry.capability_args:
            # Deliberate difference from libcni: a caller that gives no capability args gets the
            # ADD's, so portmap/bandwidth can undo what they did (libcni's GC does the same).
            rt = rt.replace(capability_args=entry.capability_args)
        cached: Result | None = None
        # The cached result became DEL's prevResult in CNI 0.4.0.
        if entry is not None and entry.result is not None and spec.version_at_least(net.cni_version, "0.4.0"):
            try:
                cached = Result.parse(entry.result, net.cni_version)
            except (errors.DecodingError, errors.IncompatibleVersion):
                cache.remove(cache_dir, net.name, rt.container_id, rt.ifname)
        for plugin, path in zip(reversed(net.plugins), reversed(paths), strict=True):
            self._exec(spec.DEL, net, plugin, path, rt=rt, prev=cached)
        cache.remove(cache_dir, net.name, rt.container_id, rt.ifname)

    def gc_network_list(self, net: NetworkConfig, valid: list[dict[str, str]] | None) -> None:
        """``valid`` is the runtime's ``cni.dev/valid-attachments`` ({containerID, ifname});
        None means the runtime gave no list (libcni then injects no attachment keys)."""
        if net.disable_gc:
            return
        spec.validate_network_name(net.name)
        failures: list[MultusError] = []
        keep = {(item.get("containerID"), item.get("ifname")) for item in valid or ()}
        try:
            cached = cache.list_attachments(self.cache_dir, net.name)
        except errors.IOFailure as exc:
            failures.append(exc)
            cached = []
        for entry in cached:
            if (entry.container_id, entry.ifname) in keep:
                continue
            stale = RuntimeConf(
                container_id=entry.container_id,
                netns=entry.netns,
                ifname=entry.ifname,
                args=entry.cni_args,
                capability_args=entry.capability_args,
            )
            try:
                self.del_network_list(net, stale)
            except MultusError as exc:
                exc.details = _join(f"stale attachment {entry.container_id}/{entry.ifname}", exc.details)
                failures.append(exc)
        if spec.version_at_least(net.cni_version, "1.1.0"):
            extra: dict[str, object] = {}
            if valid is not None:
                extra[spec.VALID_ATTACHMENTS_KEY] = valid
                extra[spec.LEGACY_ATTACHMENTS_KEY] = valid
            for plugin in net.plugins:
                try:
                    path = self._find(plugin)
                    self._exec(spec.GC, net, plugin, path, rt=None, prev=None, extra=extra)
                except MultusError as exc:
                    failures.append(exc)
        if failures:
            raise _combine(failures, f"GC of network {net.name!r}")

    def get_status_network_list(self, net: NetworkConfig) -> None:
        if not spec.version_at_least(net.cni_version, "1.1.0"):
            return
        for plugin in net.plugins:
            path = self._find(plugin)
            self._exec(spec.STATUS, net, plugin, path, rt=None, prev=None)

    # ------------------------------------------------------------------ the cache

    def get_cached_result(
        self, net: NetworkConfig, rt: RuntimeConf, *, strict: bool = False
    ) -> Result | None:
        """The cached final ADD result, or None. With ``strict`` an unusable result raises
        (DecodingError/IncompatibleVersion) instead of reading as None."""
        entry = cache.read(self._cache_dir(rt), net.name, rt.container_id, rt.ifname)
        if entry is None or entry.result is None:
            return None
        try:
            return Result.parse(entry.result, net.cni_version)
        except (errors.DecodingError, errors.IncompatibleVersion):
            if strict:
                raise
            return None

    def rewrite_cached_result(self, net: NetworkConfig, rt: RuntimeConf, result: Result) -> None:
        """Replace the cached result, keeping the rest of the entry (or creating one)."""
        cache_dir = self._cache_dir(rt)
        entry = cache.read(cache_dir, net.name, rt.container_id, rt.ifname)
        if entry is None or entry.legacy:
            entry = cache.CachedAttachment(
                network_name=net.name,
                container_id=rt.container_id,
                ifname=rt.ifname,
                netns=rt.netns,
                config=net.to_bytes(),
                cni_args=list(rt.args),
                capability_args=dict(rt.capability_args),
            )
        entry.result = result.to_version(net.cni_version)
        cache.write(cache_dir, entry)

    # ------------------------------------------------------------------ internals

    def _cache_dir(self, rt: RuntimeConf) -> str:
        return rt.cache_dir or self.cache_dir

    def _find_all(self, net: NetworkConfig) -> list[str]:
        # Every binary is located before the first one runs: a missing plugin changes nothing.
        return [self._find(plugin) for plugin in net.plugins]

    def _find(self, plugin: Mapping[str, object]) -> str:
        return find_plugin(str(plugin.get("type", "")), self.search_path, root=self.executor.chroot)

    def _exec(
        self,
        command: str,
        net: NetworkConfig,
        plugin: dict[str, object],
        path: str,
        *,
        rt: RuntimeConf | None,
        prev: Result | None,
        extra: dict[str, object] | None = None,
    ) -> bytes:
        conf = build_plugin_config(net, plugin, prev, rt)
        if extra:
            conf.update(extra)
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": rt.container_id if rt else "",
            "CNI_NETNS": rt.netns if rt else "",
            "CNI_IFNAME": rt.ifname if rt else "",
            "CNI_ARGS": format_cni_args(rt.args) if rt else "",
            "CNI_PATH": ":".join(self.search_path),
        }
        try:
            return self.executor.run(path, env, jsonio.dumpb(conf))
        except MultusError as exc:
            context = f"network {net.name!r} plugin {plugin.get('type')!r} ({command})"
            exc.details = _join(context, exc.details)
            raise


def build_plugin_config(
    net: NetworkConfig, plugin: dict[str, object], prev: Result | None, rt: RuntimeConf | None
) -> dict[str, object]:
    """The configuration one plugin receives on stdin (libcni's ``buildOneConfig``)."""
    conf = dict(plugin)
    capabilities = conf.pop("capabilities", None)
    conf["name"] = net.name
    conf["cniVersion"] = net.cni_version
    if prev is not None:
        conf["prevResult"] = prev.to_version(net.cni_version)
    if rt is not None:
        if isinstance(capabilities, dict) and rt.capability_args:
            runtime_config = {
                key: rt.capability_args[key]
                for key, enabled in capabilities.items()
                if enabled is True and key in rt.capability_args
            }
            if runtime_config:
                conf["runtimeConfig"] = runtime_config
        if rt.plugin_args is not None:
            conf["args"] = rt.plugin_args
    return conf


def _validate(net: NetworkConfig, rt: RuntimeConf, *, need_netns: bool) -> None:
    spec.validate_network_name(net.name)
    spec.validate_container_id(rt.container_id)
    spec.validate_ifname(rt.ifname)
    if need_netns and not rt.netns:
        raise errors.InvalidEnvironment("CNI_NETNS is empty or missing")


def _parse_result(answer: bytes, net: NetworkConfig, plugin: dict[str, object]) -> Result:
    name = plugin.get("type")
    try:
        return Result.parse(jsonio.loads_object(answer, what=f"result of plugin {name!r}"), net.cni_version)
    except (errors.DecodingError, errors.IncompatibleVersion) as exc:
        exc.details = _join(f"network {net.name!r} plugin {name!r} (ADD)", exc.details)
        raise


def _join(context: str, details: str) -> str:
    return f"{context}; {details}" if details else context


def _combine(failures: list[MultusError], what: str) -> MultusError:
    if len(failures) == 1:
        return failures[0]
    first = failures[0]
    return MultusError(
        f"{len(failures)} errors during {what}; the first: {first.msg}",
        code=first.code,
        details=" | ".join(f"[{err.code}] {err.msg} ({err.details})" for err in failures),
    )
