"""``pymultus doctor``: node checks, each PASS, WARN or FAIL with one line saying why.

The checks look where the plugin looks: the runtime's conf dir, then the Multus conf found there
(its cniDir, binDir, kubeconfig, daemonSocketDir). A check that needs the Multus conf is not run
without one (the ``multus-conf`` FAIL says why). The Kubernetes checks are in ``doctor_kube``,
the kernel probe in ``kernel``.

Exit code (cli): 0 when nothing failed, 1 when a check failed (``--strict``: warnings too).
"""

from __future__ import annotations

import os

from pymultus.config.generate import find_primary_conf
from pymultus.errors import MultusError
from pymultus.ops import node
from pymultus.store import delegates as store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pymultus.config.multus import MultusConf

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


class Check:
    __slots__ = ("message", "name", "status")

    def __init__(self, name: str, status: str, message: str) -> None:
        self.name = name
        self.status = status
        # One line per check, whatever a parser's message looks like (YAML errors span lines).
        self.message = " ".join(message.split())

    def to_json(self) -> dict[str, object]:
        return {"check": self.name, "status": self.status, "message": self.message}


class Options:
    """Where to look; the defaults are a real node's paths. ``clock`` is the local wall time."""

    __slots__ = ("clock", "conf_dir", "env", "multus_conf", "probe_kernel")

    def __init__(
        self,
        *,
        conf_dir: str = node.RUNTIME_CONF_DIR,
        multus_conf: str = "",
        env: Mapping[str, str] | None = None,
        probe_kernel: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.conf_dir = conf_dir
        self.multus_conf = multus_conf
        self.env = dict(env or {})
        self.probe_kernel = probe_kernel
        self.clock = clock or time.time


def run(options: Options) -> list[Check]:
    checks = [_conf_dir(options.conf_dir)]
    conf, check = _multus_conf(options)
    checks.append(check)
    if conf is None:
        return checks
    records = node.cached_records(conf.cni_dir)
    types = plugin_types_in_use(conf, options.conf_dir, records)
    defined = _nad_types(conf, options.env)
    checks.append(_plugins(conf, types, defined))
    from pymultus.ops import doctor_kube

    checks.extend(doctor_kube.checks(conf, options.env, options.clock))
    if conf.plugin_type == "multus-shim":
        checks.append(_daemon_socket(conf.daemon_socket_dir))
    checks.append(_caches(conf.cni_dir, records))
    if options.probe_kernel:
        from pymultus.ops.kernel import kernel_check

        checks.append(kernel_check(types, defined))
    return checks


def exit_code(checks: list[Check], *, strict: bool = False) -> int:
    failing = (FAIL, WARN) if strict else (FAIL,)
    return 1 if any(check.status in failing for check in checks) else 0


def _conf_dir(conf_dir: str) -> Check:
    if not os.path.isdir(conf_dir):
        return Check("conf-dir", FAIL, f"CNI conf dir {conf_dir} does not exist")
    try:
        primary = find_primary_conf(conf_dir)
    except MultusError as exc:
        return Check("conf-dir", FAIL, exc.msg)
    if primary is None:
        return Check(
            "conf-dir", FAIL, f"no primary CNI conf in {conf_dir}: the cluster network is not installed yet"
        )
    return Check("conf-dir", PASS, f"{conf_dir}: primary CNI conf {os.path.basename(primary)}")


def _multus_conf(options: Options) -> tuple[MultusConf | None, Check]:
    path = options.multus_conf or node.find_multus_conf(options.conf_dir)
    if not path:
        return None, Check("multus-conf", FAIL, f"no 00-multus.conf(list) in {options.conf_dir}")
    try:
        conf = node.load_multus_conf(path)
    except MultusError as exc:
        return None, Check("multus-conf", FAIL, exc.msg)
    if not options.multus_conf:
        first = node.conf_paths(options.conf_dir)[0]
        if first != path:
            return conf, Check(
                "multus-conf",
                FAIL,
                f"{os.path.basename(first)} sorts before {os.path.basename(path)}: "
                "the runtime uses it and pymultus is bypassed",
            )
    order = "" if options.multus_conf else " and first in order"
    return conf, Check("multus-conf", PASS, f"{path} is valid ({conf.plugin_type}){order}")


def plugin_types_in_use(
    conf: MultusConf, conf_dir: str, records: list[tuple[str, dict[str, object] | None, str]]
) -> dict[str, str]:
    """Plugin (and IPAM) type -> where it is used: the cluster network, the configured
    delegates, and the networks of every attachment cached on this node (the NADs in use)."""
    used: dict[str, str] = {}
    for plugin in _cluster_plugins(conf, conf_dir):
        _note(used, plugin, "the cluster network")
    for delegate in conf.delegates:
        for plugin in node.plugins_of(delegate):
            _note(used, plugin, "a configured delegate")
    for container_id, record, _ in records:
        for delegate in store.delegate_items(record or {}):
            for plugin in node.plugins_of(delegate.get("conf")):
                _note(used, plugin, f"network {delegate.get('name')} of container {container_id[:12]}")
    return used


def _note(used: dict[str, str], plugin: Mapping[str, object], where: str) -> None:
    for kind in (plugin.get("type"), _ipam_type(plugin)):
        if isinstance(kind, str) and kind and kind not in used:
            used[kind] = where


def _ipam_type(plugin: Mapping[str, object]) -> object:
    ipam = plugin.get("ipam")
    return ipam.get("type") if isinstance(ipam, dict) else None


def _cluster_plugins(conf: MultusConf, conf_dir: str) -> list[dict[str, object]]:
    from pymultus.cni import netconf

    reference = conf.cluster_network
    if not reference:
        return []
    try:
        if "/" in reference and os.path.isfile(reference):
            return netconf.load_file(reference).plugins
        for directory in (conf.conf_dir, conf_dir):  # Multus's confDir first, as the plugin
            found = netconf.load_by_name(directory, reference)
            if found is not None:
                return found.plugins
    except MultusError:
        pass  # the plugin reports a broken cluster network itself; here only types matter
    return []


def _nad_types(conf: MultusConf, env: Mapping[str, str]) -> dict[str, str]:
    """Plugin (and IPAM) type -> the first NAD defined (cluster or manifestsDir) that needs it."""
    needed: dict[str, str] = {}
    try:
        nads = node.defined_nads(conf, env)
    except MultusError:
        return needed  # the kubeconfig and api checks say why
    for label, nad in nads:
        for plugin in node.nad_plugins(nad):
            _note(needed, plugin, f"NAD {label}")
    return needed


def _plugins(conf: MultusConf, used: Mapping[str, str], defined: Mapping[str, str]) -> Check:
    """FAIL for a plugin that attachments on this node use; WARN for one that only a defined NAD
    names (a node pool may lack it on purpose, e.g. SR-IOV): pods using that NAD fail here."""
    missing: list[str] = []
    unused: list[str] = []
    for kind, where in sorted({**defined, **used}.items()):
        problem = _binary_problem(conf.bin_dir, kind)
        if problem:
            (missing if kind in used else unused).append(f"{problem} (used by {where})")
    if missing:
        return Check("plugins", FAIL, "; ".join(missing + unused))
    if unused:
        return Check("plugins", WARN, "; ".join(unused) + ": pods attached to it fail on this node")
    needed = sorted({**defined, **used})
    return Check(
        "plugins", PASS, f"{len(needed)} plugin(s) needed, all in {conf.bin_dir}: {', '.join(needed)}"
    )


def _binary_problem(bin_dir: str, kind: str) -> str:
    path = os.path.join(bin_dir, kind)
    if not os.path.isfile(path):
        return f"{kind} is not in {bin_dir}"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable"
    return ""


def _daemon_socket(socket_dir: str) -> Check:
    import socket

    path = os.path.join(socket_dir, "multus.sock")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(path)
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: pymultus\r\nConnection: close\r\n\r\n")
            head = sock.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
    except OSError as exc:
        return Check("daemon", FAIL, f"the daemon socket {path} does not answer: {exc.strerror or exc}")
    if head.split(" ")[1:2] == ["200"]:
        return Check("daemon", PASS, f"{path} is ready")
    return Check("daemon", FAIL, f"the daemon at {path} is not ready: {head or 'no answer'}")


def _caches(cni_dir: str, records: list[tuple[str, dict[str, object] | None, str]]) -> Check:
    from pymultus.netns.ops import netns_exists

    orphans, unreadable = [], []
    for container_id, record, problem in records:
        if record is None:
            unreadable.append(f"{container_id[:12]} ({problem})")
            continue
        netns = record.get("netns")
        if isinstance(netns, str) and netns and not netns_exists(netns):
            namespace, name = node.record_pod(record)
            orphans.append(f"{container_id[:12]} ({namespace}/{name}, {netns})")
    problems = []
    if orphans:
        problems.append(
            f"{len(orphans)} cached container(s) whose netns is gone: {', '.join(orphans[:5])}"
            + (" ..." if len(orphans) > 5 else "")
            + "; their IPs stay allocated until the runtime's DEL or GC runs"
        )
    if unreadable:
        problems.append(f"{len(unreadable)} unreadable delegate cache(s): {', '.join(unreadable[:5])}")
    if problems:
        return Check("caches", WARN, "; ".join(problems))
    return Check("caches", PASS, f"{len(records)} cached container(s) in {cni_dir}, none orphaned")
