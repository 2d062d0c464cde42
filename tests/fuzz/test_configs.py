"""Fuzz: the configuration parsers — the Multus netconf (stdin of every CNI call, or the shim's
request merged with the daemon's keys), ``daemon-config.json`` and delegate confs/conflists.

A parsed configuration must also encode again: the engine re-serialises confs for delegates and
caches, so a value that decodes but cannot be encoded would fail later with 999.
"""

from __future__ import annotations

import os

from hypothesis import example, given
from hypothesis import strategies as st

from pymultus import errors, jsonio
from pymultus.cni import netconf
from pymultus.config.multus import MultusConf, parse_multus_conf
from pymultus.daemon.config import DaemonConfig, parse_daemon_config
from tests.fuzz import strategies as fs
from tests.fuzz.invariants import outcome

versions = st.sampled_from(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
paths = st.one_of(st.just("/etc/cni/net.d"), fs.names.map(lambda name: f"/tmp/{name}"), fs.tricky_text)
plugins = st.fixed_dictionaries(
    {"type": st.sampled_from(["bridge", "macvlan", "host-local", "tuning"])},
    optional={"name": fs.names, "cniVersion": versions, "capabilities": st.just({"ips": True})},
)

MULTUS_KEYS = [
    "cniVersion",
    "name",
    "type",
    "clusterNetwork",
    "defaultNetworks",
    "delegates",
    "kubeconfig",
    "confDir",
    "cniDir",
    "binDir",
    "logFile",
    "logLevel",
    "logToStderr",
    "logOptions",
    "runtimeConfig",
    "capabilities",
    "readinessindicatorfile",
    "readinessTimeout",
    "namespaceIsolation",
    "globalNamespaces",
    "systemNamespaces",
    "multusNamespace",
    "retryDeleteOnError",
    "auxiliaryCNIChainName",
    "prevResult",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
    "daemonSocketDir",
    "strictCapabilities",
    "delegateTimeout",
    "manifestsDir",
    "kubeletRootDir",
    "deviceInfoDir",
    "plugins",
]
multus_confs = st.fixed_dictionaries(
    {"cniVersion": versions, "name": fs.names, "type": st.sampled_from(["multus", "multus-shim"])},
    optional={
        "clusterNetwork": st.one_of(fs.names, paths),
        "delegates": st.lists(plugins, min_size=1, max_size=2),
        "defaultNetworks": st.lists(fs.names, max_size=2),
        "kubeconfig": paths,
        "cniDir": paths,
        "logLevel": st.sampled_from(["debug", "verbose", "error", "panic", "ERROR"]),
        "logOptions": st.fixed_dictionaries({"maxAge": st.integers(0, 10), "compress": st.booleans()}),
        "namespaceIsolation": st.sampled_from([True, False, "true", "false"]),
        "globalNamespaces": st.lists(fs.names, max_size=3).map(",".join),
        "delegateTimeout": st.floats(0.1, 3600),
        "capabilities": st.dictionaries(fs.names, st.booleans(), max_size=2),
    },
)
DAEMON_KEYS = [
    "socketDir",
    "chrootDir",
    "metricsPort",
    "metricsAddress",
    "enablePprof",
    "connectionLimit",
    "requestQueueLimit",
    "perNodeCertificate",
    "logFile",
    "logLevel",
    "logToStderr",
    "cniVersion",
    "multusConfigFile",
    "cniConfigDir",
    "multusAutoconfigDir",
    "multusMasterCNI",
    "forceCNIVersion",
    "overrideNetworkName",
    "daemonSocketDir",
    "readinessindicatorfile",
    "readinessWait",
    "delegateTimeout",
    "shutdownTimeout",
    "kubeconfig",
    "capabilities",
    "logOptions",
    "binDir",
    "cniDir",
    "confDir",
    "clusterNetwork",
    "globalNamespaces",
    "multusNamespace",
    "namespaceIsolation",
    "retryDeleteOnError",
    "strictCapabilities",
]
daemon_confs = st.fixed_dictionaries(
    {"cniVersion": versions},
    optional={
        "socketDir": paths,
        "multusConfigFile": st.sampled_from(["auto", "/etc/cni/multus.conf"]),
        "metricsPort": st.integers(1, 65535),
        "connectionLimit": st.integers(1, 64),
        "logLevel": st.sampled_from(["debug", "verbose", "error", "panic"]),
        "readinessWait": st.floats(0.1, 3600),
        "perNodeCertificate": st.fixed_dictionaries({"enabled": st.just(False)}),
        "multusMasterCNI": fs.names.map(lambda name: f"10-{name}.conflist"),
    },
)
conflists = st.fixed_dictionaries(
    {"cniVersion": versions, "name": fs.names, "plugins": st.lists(plugins, min_size=1, max_size=3)},
    optional={
        "disableCheck": st.sampled_from([True, "true", "0"]),
        "cniVersions": st.lists(versions, max_size=3),
    },
)
CONFLIST_KEYS = [
    "cniVersion",
    "cniVersions",
    "name",
    "plugins",
    "disableCheck",
    "disableGC",
    "loadOnlyInlinedPlugins",
    "type",
    "capabilities",
]


def _server_keys(doc: dict[str, object]) -> dict[str, object] | None:
    """The keys a daemon with this config copies over each request (None if it would not start)."""
    try:
        return parse_daemon_config(jsonio.dumpb(doc)).request_overrides()
    except errors.MultusError:
        return None


overrides = st.one_of(daemon_confs, fs.mutated_documents(daemon_confs, DAEMON_KEYS)).map(_server_keys)


@given(fs.documents(multus_confs, MULTUS_KEYS), overrides)
# 1e400 decodes to infinity, which no JSON encoder writes back: the delegate's stdin would fail.
@example(b'{"cniVersion":"1.0.0","name":"m","type":"multus","delegates":[{"type":"bridge","x":1e400}]}', None)
# Found by the long run: an empty "name" was kept as the conf's name.
@example(b'{"cniVersion":"0.1.0","name":"","type":"multus","clusterNetwork":"0"}', {"cniVersion": "0.1.0"})
def test_multus_conf(data: bytes, server_keys: dict[str, object] | None) -> None:
    got = outcome(lambda: parse_multus_conf(data, overrides=server_keys))
    if isinstance(got, MultusConf):
        assert got.cni_version and got.name
        jsonio.loads_object(got.to_bytes())
        for delegate in got.delegates:
            jsonio.dumpb(delegate)


@given(fs.documents(daemon_confs, DAEMON_KEYS))
# Found by this property: a socketDir too long for a unix socket address (the daemon then failed
# to start with a traceback) or holding a lone surrogate.
@example(b'{"cniVersion":"1.0.0","socketDir":"/' + b"a" * 200 + b'"}')
@example(b'{"cniVersion":"1.0.0","socketDir":"/\\ud800"}')
@example(b'{"cniVersion":"1.0.0","connectionLimit":1e400}')  # the message encoded the value as JSON
def test_daemon_config(data: bytes) -> None:
    got = outcome(lambda: parse_daemon_config(data), {errors.INVALID_NETWORK_CONFIG})
    if isinstance(got, DaemonConfig):
        assert got.socket_path.startswith("/")
        assert len(os.fsencode(got.socket_path)) < 108, "the socket path must fit in sun_path"
        for path in (
            got.log_file,
            got.cni_config_dir,
            got.multus_autoconfig_dir,
            got.kubeconfig,
            got.chroot_dir,
        ):
            os.fsencode(path)  # raises for what no file name can be
        jsonio.dumpb(got.request_overrides())
        jsonio.dumpb(got.generator_options())


@given(st.one_of(fs.documents(conflists, CONFLIST_KEYS), fs.documents(plugins, CONFLIST_KEYS)))
def test_network_config(data: bytes) -> None:
    got = outcome(lambda: netconf.load_bytes(data))
    if isinstance(got, netconf.NetworkConfig):
        assert got.plugins and got.cni_version
        again = netconf.load_bytes(got.to_bytes())
        assert (again.name, again.cni_version, again.plugins) == (got.name, got.cni_version, got.plugins)
