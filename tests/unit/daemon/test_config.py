"""The daemon config: every key of reference §2.3, defaults, validation, overrides."""

from __future__ import annotations

import json

import pytest

from pymultus.daemon.config import default_connection_limit, parse_daemon_config
from pymultus.errors import InvalidConfig

PER_NODE: dict[str, object] = {"enabled": True}
PER_NODE_OK: dict[str, object] = {"enabled": True, "bootstrapKubeconfig": "/k", "certDir": "/c"}


def parse(doc: dict[str, object]):
    return parse_daemon_config(json.dumps(doc).encode(), source="test.json")


def test_defaults() -> None:
    conf = parse({"cniVersion": "0.3.1"})
    assert conf.socket_dir == "/run/multus/"
    assert conf.socket_path == "/run/multus/multus.sock"
    assert conf.chroot_dir == ""
    assert conf.metrics_port is None
    assert conf.connection_limit == default_connection_limit()
    assert 4 <= conf.connection_limit <= 32
    assert conf.multus_config_file == "auto" and conf.auto
    assert conf.cni_config_dir == "/etc/cni/net.d"
    assert conf.multus_autoconfig_dir == "/etc/cni/net.d"
    assert conf.shutdown_timeout == 10.0
    assert conf.log_level == "error" and not conf.log_to_stderr


def test_reference_deployment_config() -> None:
    conf = parse(
        {
            "chrootDir": "/hostroot",
            "cniVersion": "0.3.1",
            "logLevel": "verbose",
            "logToStderr": True,
            "cniConfigDir": "/host/etc/cni/net.d",
            "multusAutoconfigDir": "/host/etc/cni/net.d",
            "multusConfigFile": "auto",
            "socketDir": "/host/run/multus/",
        }
    )
    assert conf.chroot_dir == "/hostroot"
    assert conf.socket_path == "/host/run/multus/multus.sock"
    assert conf.log_level == "verbose" and conf.log_to_stderr


def test_every_daemon_key_is_read() -> None:
    conf = parse(
        {
            "cniVersion": "1.0.0",
            "metricsPort": 9091,
            "connectionLimit": 7,
            "logFile": "/var/log/multus.log",
            "multusMasterCNI": "10-calico.conflist",
            "forceCNIVersion": True,
            "overrideNetworkName": True,
            "daemonSocketDir": "/run/multus/",
            "readinessindicatorfile": "/run/ready",
            "enablePprof": False,
            "perNodeCertificate": {"enabled": False},
        }
    )
    assert conf.metrics_port == 9091
    assert conf.connection_limit == 7
    assert conf.log_file == "/var/log/multus.log"
    assert conf.multus_master_cni == "10-calico.conflist"
    assert conf.force_cni_version and conf.override_network_name
    assert conf.daemon_socket_dir == "/run/multus/"
    assert conf.readiness_indicator_file == "/run/ready"


def test_overrides_copy_every_key_but_the_readiness_file() -> None:
    conf = parse(
        {
            "cniVersion": "0.3.1",
            "binDir": "/opt/cni/bin",
            "namespaceIsolation": True,
            "readinessindicatorfile": "/r",
        }
    )
    overrides = conf.request_overrides()
    assert overrides["binDir"] == "/opt/cni/bin" and overrides["namespaceIsolation"] is True
    assert overrides["cniVersion"] == "0.3.1"
    assert "readinessindicatorfile" not in overrides


def test_generator_options() -> None:
    conf = parse({"cniVersion": "0.3.1", "binDir": "/b", "socketDir": "/s/", "capabilities": {"ips": True}})
    options = conf.generator_options()
    assert options == {"binDir": "/b", "capabilities": {"ips": True}, "cniVersion": "0.3.1"}


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"cniVersion": "0.3.1", "connectionLimit": 0}, "connectionLimit"),
        ({"cniVersion": "0.3.1", "connectionLimit": "4"}, "connectionLimit"),
        ({"cniVersion": "0.3.1", "metricsPort": 70000}, "metricsPort"),
        ({"cniVersion": "0.3.1", "socketDir": "relative/dir"}, "socketDir"),
        ({"cniVersion": "0.3.1", "logLevel": "loud"}, "logLevel"),
        ({"cniVersion": "9.9.9"}, "cniVersion"),
        ({}, "cniVersion"),  # required in auto mode
        ({"cniVersion": "0.3.1", "logToStderr": "maybe"}, "logToStderr"),
        ({"cniVersion": "0.3.1", "multusMasterCNI": "/etc/x.conf"}, "multusMasterCNI"),
        ({"cniVersion": "0.3.1", "perNodeCertificate": PER_NODE}, "perNodeCertificate.certDir"),
        (
            {"cniVersion": "0.3.1", "perNodeCertificate": {**PER_NODE_OK, "certDuration": "5m"}},
            "perNodeCertificate.certDuration",
        ),
        (
            {"cniVersion": "0.3.1", "perNodeCertificate": {**PER_NODE_OK, "certDuration": "soon"}},
            "perNodeCertificate.certDuration",
        ),
        ({"cniVersion": "0.3.1", "capabilities": []}, "capabilities"),
        ({"cniVersion": "0.3.1", "shutdownTimeout": 0}, "shutdownTimeout"),
    ],
)
def test_invalid_values_name_the_key(doc: dict[str, object], key: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        parse(doc)
    assert f'"{key}"' in info.value.msg
    assert info.value.details == "test.json"


def test_not_json() -> None:
    with pytest.raises(InvalidConfig, match="not valid JSON"):
        parse_daemon_config(b"{", source="x")


def test_user_conf_mode_needs_no_cni_version() -> None:
    conf = parse({"multusConfigFile": "/etc/cni/multus/00-multus.conf"})
    assert not conf.auto
