"""The Multus netconf: every key of reference §2.1, defaults, and clear errors."""

from __future__ import annotations

import json

import pytest

from pymultus.config.multus import parse_multus_conf
from pymultus.errors import DecodingError, IncompatibleVersion, InvalidConfig


def conf(**keys: object) -> bytes:
    base: dict[str, object] = {"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus"}
    base.update(keys)
    return json.dumps(base).encode()


def test_defaults_match_go_multus() -> None:
    parsed = parse_multus_conf(conf(clusterNetwork="cbr0"))
    assert parsed.conf_dir == "/etc/cni/multus/net.d"
    assert parsed.cni_dir == "/var/lib/cni/multus"
    assert parsed.bin_dir == "/opt/cni/bin"
    assert parsed.log_level == "panic" and parsed.log_to_stderr is True and parsed.log_file == ""
    assert parsed.system_namespaces == ["kube-system"]
    assert parsed.global_namespaces == ["default"]
    assert parsed.multus_namespace == "kube-system"
    assert parsed.namespace_isolation is False and parsed.retry_delete_on_error is False
    assert parsed.readiness_indicator_file == "" and parsed.readiness_timeout == 45.0
    assert parsed.strict_capabilities is False
    assert parsed.log_options.max_age == 5 and parsed.log_options.compress is True


def test_every_key_is_read() -> None:
    parsed = parse_multus_conf(
        conf(
            clusterNetwork="/etc/cni/net.d/10-flannel.conflist",
            defaultNetworks=["sidecar"],
            kubeconfig="/etc/cni/net.d/multus.d/multus.kubeconfig",
            confDir="/c",
            cniDir="/d",
            binDir="/b",
            logFile="/var/log/multus.log",
            logLevel="debug",
            logToStderr=False,
            logOptions={"maxAge": 1, "maxSize": 2, "maxBackups": 3, "compress": False},
            runtimeConfig={"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]},
            capabilities={"portMappings": True},
            readinessindicatorfile="/run/ready",
            namespaceIsolation=True,
            globalNamespaces="shared,default",
            systemNamespaces=["kube-system", "infra"],
            multusNamespace="networking",
            retryDeleteOnError=True,
            auxiliaryCNIChainName="aux",
            strictCapabilities=True,
            delegateTimeout=30,
        )
    )
    assert parsed.cluster_network.endswith("10-flannel.conflist")
    assert parsed.default_networks == ["sidecar"]
    assert parsed.kubeconfig.endswith("multus.kubeconfig")
    assert (parsed.conf_dir, parsed.cni_dir, parsed.bin_dir) == ("/c", "/d", "/b")
    assert parsed.log_level == "debug" and parsed.log_to_stderr is False
    assert (parsed.log_options.max_age, parsed.log_options.max_size, parsed.log_options.max_backups) == (
        1,
        2,
        3,
    )
    assert parsed.runtime_config["portMappings"]
    assert parsed.capabilities == {"portMappings": True}
    assert parsed.global_namespaces == ["shared", "default"]
    assert parsed.system_namespaces == ["kube-system", "infra"]
    assert parsed.multus_namespace == "networking"
    assert parsed.retry_delete_on_error and parsed.namespace_isolation and parsed.strict_capabilities
    assert parsed.auxiliary_cni_chain_name == "aux"
    assert parsed.delegate_timeout == 30.0


def test_cluster_network_wins_over_delegates() -> None:
    parsed = parse_multus_conf(conf(clusterNetwork="cbr0", delegates=[{"type": "bridge"}]))
    assert parsed.delegates == []


def test_conflist_form_reads_the_multus_plugin() -> None:
    data = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "multus-cni-network",
            "plugins": [{"type": "multus", "clusterNetwork": "x"}],
        }
    ).encode()
    parsed = parse_multus_conf(data)
    assert parsed.cluster_network == "x" and parsed.cni_version == "1.0.0"


def test_daemon_overrides_replace_request_keys() -> None:
    parsed = parse_multus_conf(conf(clusterNetwork="a", cniDir="/request"), overrides={"cniDir": "/daemon"})
    assert parsed.cni_dir == "/daemon"


@pytest.mark.parametrize(
    ("keys", "error", "named"),
    [
        ({}, InvalidConfig, "clusterNetwork"),
        ({"clusterNetwork": 5}, InvalidConfig, '"clusterNetwork"'),
        ({"clusterNetwork": "a", "logLevel": "loud"}, InvalidConfig, "loud"),
        ({"clusterNetwork": "a", "namespaceIsolation": "maybe"}, InvalidConfig, "namespaceIsolation"),
        ({"clusterNetwork": "a", "defaultNetworks": "x"}, InvalidConfig, "defaultNetworks"),
        ({"delegates": [5]}, InvalidConfig, "delegate 0"),
        ({"delegates": [{"name": "x"}]}, InvalidConfig, "neither"),
        ({"clusterNetwork": "a", "capabilities": {"ips": "yes"}}, InvalidConfig, "ips"),
        ({"clusterNetwork": "a", "cniVersion": "9.9.9"}, IncompatibleVersion, "9.9.9"),
        ({"clusterNetwork": "a", "delegateTimeout": 0}, InvalidConfig, "delegateTimeout"),
        ({"clusterNetwork": "cbr0", "auxiliaryCNIChainName": "aux"}, InvalidConfig, "auxiliaryCNIChainName"),
        ({"clusterNetwork": "a", "logOptions": {"maxAge": -1}}, InvalidConfig, "maxAge"),
    ],
)
def test_invalid_values_name_the_key(keys: dict[str, object], error: type[Exception], named: str) -> None:
    with pytest.raises(error) as caught:
        parse_multus_conf(conf(**keys))
    assert named in str(caught.value)


def test_malformed_json_is_a_decoding_error() -> None:
    with pytest.raises(DecodingError):
        parse_multus_conf(b"{not json")
