"""The network selection annotations: comma and JSON forms, valid and invalid (reference §3.1-§3.3)."""

from __future__ import annotations

import json

import pytest

from pymultus.errors import INVALID_NETWORK_CONFIG, InvalidAnnotation
from pymultus.kube.annotations import NetworkSelection, parse_default_network, parse_networks

POD_NS = "pods"


def sel(name: str, namespace: str = POD_NS, **kw: object) -> dict[str, object]:
    return NetworkSelection(name, namespace, **kw).to_json()  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Comma form

COMMA_VALID = [
    ("net-a", [sel("net-a")]),
    ("net-a,net-b", [sel("net-a"), sel("net-b")]),
    ("net-a, net-a", [sel("net-a"), sel("net-a")]),  # the same NAD twice = two attachments
    ("other/net-a", [sel("net-a", "other")]),
    ("net-a@eth7", [sel("net-a", interface="eth7")]),
    ("other/net-a@eth7", [sel("net-a", "other", interface="eth7")]),
    ("  other / net-a @ eth7  ,net-b", [sel("net-a", "other", interface="eth7"), sel("net-b")]),
    ("macvlan.conf", [sel("macvlan.conf")]),  # NAD names are DNS-1123 subdomains
    ("/net-a", [sel("net-a")]),  # empty namespace = the pod's, as in Multus
    ("net-a@", [sel("net-a")]),  # empty ifname = not requested, as in Multus
    ("a1-b2", [sel("a1-b2")]),
    ("ns/net@i" + "x" * 14, [sel("net", "ns", interface="i" + "x" * 14)]),
    ("", []),
    ("   ", []),
]


@pytest.mark.parametrize(("value", "expected"), COMMA_VALID)
def test_comma_form_valid(value: str, expected: list[dict[str, object]]) -> None:
    assert [n.to_json() for n in parse_networks(value, pod_namespace=POD_NS)] == expected


def test_comma_form_keeps_item_as_raw() -> None:
    (first, second) = parse_networks(" ns/a@x , b", pod_namespace=POD_NS)
    assert first.raw == "ns/a@x"
    assert second.raw == "b"
    assert first.default_route is None
    assert first.ips == []


COMMA_INVALID = [
    ("foo@bar@baz", 1, 'network 1 of k8s.v1.cni.cncf.io/networks ("foo@bar@baz"): more than one "@"'),
    ("ok,foo@bar@baz", 2, 'network 2 of k8s.v1.cni.cncf.io/networks ("foo@bar@baz"): more than one "@"'),
    ("a/b/c", 1, 'more than one "/"'),
    ("a,,b", 2, "empty network name"),
    ("a,", 2, "empty network name"),
    ("ns/", 1, "the network name is empty"),
    ("ns/@eth1", 1, "the network name is empty"),
    ("Net-A", 1, "network name 'Net-A' is not a valid object name"),
    ("net_a", 1, "network name 'net_a' is not a valid object name"),
    ("-net", 1, "network name '-net' is not a valid object name"),
    ("net-", 1, "network name 'net-' is not a valid object name"),
    ("a..b", 1, "network name 'a..b' is not a valid object name"),
    ("Other/net", 1, "namespace 'Other' is not a DNS-1123 label"),
    ("my.ns/net", 1, "namespace 'my.ns' is not a DNS-1123 label"),
    ("n" * 64 + "/net", 1, "is longer than 63 characters"),
    ("x" * 254, 1, "is longer than 253 characters"),
    ("net@" + "e" * 16, 1, "is longer than 15 bytes"),
    ("net@eth:1", 1, "must not contain '/', ':' or whitespace"),
    ("net@eth 1", 1, "must not contain '/', ':' or whitespace"),
    ("net@..", 1, '"." and ".." are reserved'),
]


@pytest.mark.parametrize(("value", "position", "fragment"), COMMA_INVALID)
def test_comma_form_invalid(value: str, position: int, fragment: str) -> None:
    with pytest.raises(InvalidAnnotation) as info:
        parse_networks(value, pod_namespace=POD_NS)
    assert info.value.code == INVALID_NETWORK_CONFIG
    assert fragment in info.value.msg
    assert info.value.msg.startswith(f"network {position} of k8s.v1.cni.cncf.io/networks (")
    assert "\n" not in info.value.msg


# ---------------------------------------------------------------------------------------------
# JSON form


def test_json_every_key() -> None:
    element = {
        "name": "sriov-net",
        "namespace": "infra",
        "interface": "data0",
        "ips": ["10.1.1.21/24", "fd00::21/64", "10.1.1.22"],
        "mac": "c2:b0:57:49:47:f1",
        "infiniband-guid": "c2:11:22:33:44:55:66:77",
        "cni-args": {"foo": "bar", "n": 1},
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "10.0.0.1"}],
        "bandwidth": {"ingressRate": 1000, "ingressBurst": 2000, "egressRate": 3000, "egressBurst": 4000},
        "default-route": ["10.1.1.254", "fd00::1"],
        "deviceID": "0000:04:00.5",
        "example.com/extra": {"kept": True},
    }
    (net,) = parse_networks(json.dumps([element]), pod_namespace=POD_NS)
    assert net.name == "sriov-net"
    assert net.namespace == "infra"
    assert net.interface == "data0"
    assert net.ips == ["10.1.1.21/24", "fd00::21/64", "10.1.1.22"]
    assert net.mac == "c2:b0:57:49:47:f1"
    assert net.infiniband_guid == "c2:11:22:33:44:55:66:77"
    assert net.cni_args == {"foo": "bar", "n": 1}
    assert net.port_mappings == element["portMappings"]
    assert net.bandwidth == element["bandwidth"]
    assert net.default_route == ["10.1.1.254", "fd00::1"]
    assert net.device_id == "0000:04:00.5"
    assert net.ipam_claim_reference is None
    assert net.raw == element  # unknown reverse-DNS keys stay available
    assert net.to_json()["default-route"] == ["10.1.1.254", "fd00::1"]


JSON_VALID = [
    ('[{"name":"a"}]', [sel("a")]),
    ("[]", []),
    ('  [ {"name": "a"}, {"name": "a", "namespace": "x"} ]', [sel("a"), sel("a", "x")]),
    ('[{"name":"a","namespace":""}]', [sel("a")]),  # "" = the pod's namespace, as Go omitempty
    ('[{"name":"a","interfaceRequest":"old0"}]', [sel("a", interface="old0")]),  # pre-3.2 key
    ('[{"name":"a","interface":"new0","interfaceRequest":"old0"}]', [sel("a", interface="new0")]),
    ('[{"Name":"a","Interface":"x0"}]', [sel("a", interface="x0")]),  # Go's case-insensitive keys
    ('[{"name":"a","mac":null,"ips":null,"default-route":null}]', [sel("a")]),
    ('[{"name":"a","default-route":[]}]', [sel("a", default_route=[])]),
    ('[{"name":"a","ips":[]}]', [sel("a")]),
    ('[{"name":"a","mac":"02-00-5E-10-00-01"}]', [sel("a", mac="02-00-5E-10-00-01")]),
    ('[{"name":"a","mac":"0200.5e10.0001"}]', [sel("a", mac="0200.5e10.0001")]),
    (
        '[{"name":"a","infiniband-guid":"' + ":".join(["00"] * 20) + '"}]',
        [sel("a", infiniband_guid=":".join(["00"] * 20))],
    ),
    ('[{"name":"a","ipam-claim-reference":"claim-1"}]', [sel("a", ipam_claim_reference="claim-1")]),
    ('[{"name":"a","ips":["::1/128","0.0.0.0/0"]}]', [sel("a", ips=["::1/128", "0.0.0.0/0"])]),
    ('[{"name":"a","portMappings":[{"hostPort":0,"containerPort":65535}]}]', None),
]


@pytest.mark.parametrize(("value", "expected"), JSON_VALID)
def test_json_form_valid(value: str, expected: list[dict[str, object]] | None) -> None:
    got = [n.to_json() for n in parse_networks(value, pod_namespace=POD_NS)]
    if expected is not None:
        assert got == expected
    else:
        assert got[0]["portMappings"] == [{"hostPort": 0, "containerPort": 65535}]


JSON_INVALID = [
    ('{"name":"a"}', "must be a list of network selection objects, not an object"),
    ('"a"', "must be a list of network selection objects, not a string"),
    ("[", "is not valid JSON"),
    ('[{"name":"a"},]', "is not valid JSON"),
    ('[{"name":"a"}, null]', "network 2 of k8s.v1.cni.cncf.io/networks must be a JSON object, not null"),
    ('["a"]', "network 1 of k8s.v1.cni.cncf.io/networks must be a JSON object, not a string"),
    ("[{}]", 'network 1 of k8s.v1.cni.cncf.io/networks ({}): "name" is missing'),
    ('[{"name":""}]', '"name" is empty'),
    ('[{"name":5}]', '"name" must be a string, not a number'),
    ('[{"name":"A"}]', "network name 'A' is not a valid object name"),
    ('[{"name":"a","namespace":"N"}]', "namespace 'N' is not a DNS-1123 label"),
    ('[{"name":"a","namespace":1}]', '"namespace" must be a string, not a number'),
    ('[{"name":"a","interface":"x/y"}]', "\"interface\" 'x/y' must not contain"),
    ('[{"name":"a","interface":"abcdefghijklmnop"}]', "is longer than 15 bytes"),
    ('[{"name":"a","ips":"10.0.0.1"}]', '"ips" must be a list of strings, not a string'),
    ('[{"name":"a","ips":[1]}]', '"ips" must be a list of strings; found a number'),
    ('[{"name":"a","ips":["10.0.0.300"]}]', "\"ips\" entry '10.0.0.300' is not an IP address or CIDR"),
    ('[{"name":"a","ips":["10.0.0.1/33"]}]', "has a prefix length above 32"),
    ('[{"name":"a","ips":["fd00::1/129"]}]', "has a prefix length above 128"),
    ('[{"name":"a","ips":["10.0.0.1/255.255.255.0"]}]', "is not an IP address or CIDR"),
    ('[{"name":"a","ips":["fe80::1%eth0"]}]', "is not an IP address or CIDR"),
    ('[{"name":"a","ips":["010.0.0.1"]}]', "is not an IP address or CIDR"),
    ('[{"name":"a","ips":[""]}]', "is not an IP address or CIDR"),
    ('[{"name":"a","mac":"zz:b0:57:49:47:f1"}]', "\"mac\" 'zz:b0:57:49:47:f1' is not a valid MAC address"),
    ('[{"name":"a","mac":"c2:b0:57:49:47"}]', "is not a valid MAC address"),
    ('[{"name":"a","mac":"c2:b0-57:49:47:f1"}]', "is not a valid MAC address"),
    ('[{"name":"a","mac":"c2:b0:57:49:47:f1:00"}]', "is not a valid MAC address"),
    ('[{"name":"a","mac":5}]', '"mac" must be a string, not a number'),
    ('[{"name":"a","infiniband-guid":"nope-nope-nope"}]', "is not a valid InfiniBand GUID"),
    ('[{"name":"a","cni-args":[1]}]', '"cni-args" must be an object, not a list'),
    ('[{"name":"a","portMappings":{}}]', '"portMappings" must be a list of objects, not an object'),
    ('[{"name":"a","portMappings":[1]}]', '"portMappings" entry 1 must be an object'),
    ('[{"name":"a","portMappings":[{"hostPort":"80"}]}]', '"hostPort" must be a port number 0-65535'),
    ('[{"name":"a","portMappings":[{"containerPort":70000}]}]', '"containerPort" must be a port number'),
    ('[{"name":"a","portMappings":[{"hostPort":true}]}]', '"hostPort" must be a port number'),
    ('[{"name":"a","portMappings":[{"protocol":6}]}]', '"protocol" must be a string'),
    ('[{"name":"a","bandwidth":[]}]', '"bandwidth" must be an object, not a list'),
    ('[{"name":"a","bandwidth":{"ingressRate":-1}}]', '"bandwidth" "ingressRate" must be a non-negative'),
    ('[{"name":"a","default-route":"10.0.0.1"}]', '"default-route" must be a list of strings'),
    ('[{"name":"a","default-route":["10.0.0.0/24"]}]', "\"default-route\" entry '10.0.0.0/24' is not an IP"),
    ('[{"name":"a","deviceID":1}]', '"deviceID" must be a string'),
    ('[{"name":"a","ipam-claim-reference":2}]', '"ipam-claim-reference" must be a string'),
    (
        '[{"name":"a","ips":["10.0.0.1"],"ipam-claim-reference":"c"}]',
        '"ipam-claim-reference" cannot be combined with "ips"',
    ),
]


@pytest.mark.parametrize(("value", "fragment"), JSON_INVALID)
def test_json_form_invalid(value: str, fragment: str) -> None:
    with pytest.raises(InvalidAnnotation) as info:
        parse_networks(value, pod_namespace=POD_NS)
    assert info.value.code == INVALID_NETWORK_CONFIG
    assert fragment in info.value.msg
    assert "k8s.v1.cni.cncf.io/networks" in info.value.msg
    assert "\n" not in info.value.msg


def test_json_error_names_element_by_position_and_name() -> None:
    value = '[{"name":"good"},{"name":"bad-mac","mac":"xx"}]'
    with pytest.raises(InvalidAnnotation) as info:
        parse_networks(value, pod_namespace=POD_NS)
    assert info.value.msg == (
        'network 2 of k8s.v1.cni.cncf.io/networks (name "bad-mac"): "mac" \'xx\' is not a valid MAC address'
    )
    assert '"mac":"xx"' in info.value.details


def test_json_detected_by_quote_or_brace_anywhere() -> None:
    # Like Multus: any of [ { " makes it JSON; this is a broken JSON value, not a comma list.
    with pytest.raises(InvalidAnnotation, match="is not valid JSON"):
        parse_networks('net-a,"net-b"', pod_namespace=POD_NS)


# ---------------------------------------------------------------------------------------------
# v1.multus-cni.io/default-network


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("calico", sel("calico", "kube-system")),
        ("other/calico", sel("calico", "other")),
        (" calico ", sel("calico", "kube-system")),
        ('[{"name":"calico"}]', sel("calico", "kube-system")),
        ('[{"name":"calico","namespace":"net"}]', sel("calico", "net")),
    ],
)
def test_default_network_valid(value: str, expected: dict[str, object]) -> None:
    assert parse_default_network(value, default_namespace="kube-system").to_json() == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a,b", "v1.multus-cni.io/default-network must name exactly one network, got 2"),
        ("[]", "v1.multus-cni.io/default-network must name exactly one network, got none"),
        ("", "v1.multus-cni.io/default-network is empty"),
        ("a@b@c", 'network 1 of v1.multus-cni.io/default-network ("a@b@c"): more than one "@"'),
        ('{"name":"a"}', "must be a list of network selection objects"),
    ],
)
def test_default_network_invalid(value: str, fragment: str) -> None:
    with pytest.raises(InvalidAnnotation) as info:
        parse_default_network(value, default_namespace="kube-system")
    assert fragment in info.value.msg


def test_selection_equality_and_repr() -> None:
    a = parse_networks("ns/a@x", pod_namespace=POD_NS)[0]
    b = parse_networks('[{"name":"a","namespace":"ns","interface":"x"}]', pod_namespace=POD_NS)[0]
    assert a == b
    assert "ns" in repr(a)
