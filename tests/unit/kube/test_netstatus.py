"""network-status entries and encoding in Multus's format (reference §3.5)."""

from __future__ import annotations

import json

import pytest

from pymultus.errors import InvalidAnnotation
from pymultus.kube.netstatus import decode_status, encode_status, status_entries

NETNS = "/var/run/netns/pod"


def build(result: dict[str, object], *, default: bool = False, device_info: dict[str, object] | None = None):
    return status_entries(
        network_name="ns/net-a", ifname="net1", result=result, is_default=default, device_info=device_info
    )


BRIDGE_RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
        {"name": "veth1234", "mac": "bb:bb:bb:bb:bb:bb"},
        {"name": "net1", "mac": "0a:58:0a:01:01:05", "mtu": 1450, "sandbox": NETNS},
    ],
    "ips": [{"address": "10.1.1.5/24", "gateway": "10.1.1.1", "interface": 2}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.1.1"}, {"dst": "10.9.0.0/16", "gw": "10.1.1.1"}],
    "dns": {"nameservers": ["10.96.0.10"], "domain": "cluster.local", "search": ["svc.cluster.local"]},
}


def test_bridge_result_one_sandbox_interface() -> None:
    (entry,) = build(BRIDGE_RESULT)
    assert entry == {
        "name": "ns/net-a",
        "interface": "net1",
        "ips": ["10.1.1.5"],
        "mac": "0a:58:0a:01:01:05",
        "mtu": 1450,
        "default": False,
        "dns": {"nameservers": ["10.96.0.10"], "domain": "cluster.local", "search": ["svc.cluster.local"]},
        "gateway": ["10.1.1.1"],
        "default-route": ["10.1.1.1"],
    }
    # Multus's key order, extras last.
    assert list(entry) == [
        "name",
        "interface",
        "ips",
        "mac",
        "mtu",
        "default",
        "dns",
        "gateway",
        "default-route",
    ]


def test_single_interface_dual_stack_default_with_device_info() -> None:
    result = {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": NETNS}],
        "ips": [
            {"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0},
            {"address": "FD00:0:0:0::2/64", "interface": 0},
        ],
        "routes": [{"dst": "::/0", "gw": "fd00::1"}, {"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
    }
    dev = {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:04:00.5"}}
    (entry,) = build(result, default=True, device_info=dev)
    assert entry["ips"] == ["10.0.0.2", "fd00::2"]  # no prefix, Go's canonical IPv6 form
    assert entry["default"] is True
    assert entry["dns"] == {}
    assert entry["device-info"] == dev
    assert entry["gateway"] == ["fd00::1", "10.0.0.1"]
    assert "mtu" not in entry


def test_single_host_side_interface_gives_entry_without_interface() -> None:
    # CreateNetworkStatus: the only interface has no sandbox -> no interface/mac, IPs still listed.
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "host0", "mac": "aa:aa:aa:aa:aa:aa"}],
        "ips": [{"address": "10.0.0.2/24"}],
    }
    (entry,) = build(result)
    assert entry == {"name": "ns/net-a", "ips": ["10.0.0.2"], "default": False, "dns": {}}


def test_two_sandbox_interfaces() -> None:
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "host-side"},
            {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": NETNS},
            {"name": "net1-b", "mac": "02:00:00:00:00:02", "sandbox": NETNS, "mtu": 9000},
        ],
        "ips": [
            {"address": "10.0.0.2/24", "interface": 1},
            {"address": "10.0.1.2/24", "gateway": "10.0.1.1", "interface": 2},
            {"address": "10.0.9.9/24", "interface": 0},  # host-side: dropped, as Multus
            {"address": "10.0.2.2/24"},  # no index: goes to the last entry, as Multus
        ],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.1.1"}],
        "dns": {"nameservers": ["1.1.1.1"]},
    }
    first, second = build(result, default=True)
    assert first["interface"] == "net1"
    assert first["ips"] == ["10.0.0.2"]
    assert first["default"] is False
    assert second["interface"] == "net1-b"
    assert second["ips"] == ["10.0.1.2", "10.0.2.2"]
    assert second["mtu"] == 9000
    assert second["default"] is True  # owns the gateway IP
    # Gateways and DNS are the result's, on every entry.
    assert first["gateway"] == second["gateway"] == ["10.0.1.1"]
    assert first["dns"] == second["dns"] == {"nameservers": ["1.1.1.1"]}


def test_two_sandbox_interfaces_default_falls_back_to_first() -> None:
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "a", "sandbox": NETNS}, {"name": "b", "sandbox": NETNS}],
        "ips": [{"address": "10.0.0.2/24", "interface": 1}],
    }
    first, second = build(result, default=True)
    assert (first["default"], second["default"]) == (True, False)
    # Not the cluster network: nothing is default.
    assert [e["default"] for e in build(result)] == [False, False]


def test_gateway_on_host_side_interface_still_marks_a_default() -> None:
    # Multus marks nothing here; we keep the cluster network's entry default (NPWG §5.2).
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "host"}, {"name": "a", "sandbox": NETNS}, {"name": "b", "sandbox": NETNS}],
        "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
    }
    assert [e["default"] for e in build(result, default=True)] == [True, False]


def test_zero_interfaces_gives_minimal_entry() -> None:
    # e.g. a 0.3.1 IPAM-style result, or a passthrough plugin: NPWG §5.1.1 minimal map.
    result = {
        "cniVersion": "0.3.1",
        "ips": [{"version": "4", "address": "10.0.0.7/16", "gateway": "10.0.0.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
    }
    (entry,) = build(result, default=True)
    assert entry == {
        "name": "ns/net-a",
        "interface": "net1",
        "ips": ["10.0.0.7"],
        "default": True,
        "dns": {},
        "gateway": ["10.0.0.1"],
        "default-route": ["10.0.0.1"],
    }
    (bare,) = build({"cniVersion": "1.0.0"})
    assert bare == {"name": "ns/net-a", "interface": "net1", "default": False, "dns": {}}


def test_legacy_020_result() -> None:
    result = {
        "cniVersion": "0.2.0",
        "ip4": {
            "ip": "10.1.0.5/16",
            "gateway": "10.1.0.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
        },
        "ip6": {"ip": "fd00::5/64"},
        "dns": {"nameservers": ["10.1.0.1"]},
    }
    (entry,) = build(result)
    assert entry["ips"] == ["10.1.0.5", "fd00::5"]
    assert entry["gateway"] == ["10.1.0.1"]
    assert entry["dns"] == {"nameservers": ["10.1.0.1"]}


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ([{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}], ["10.0.0.1"]),
        ([{"dst": "::/0", "gw": "FD00:0::1"}], ["fd00::1"]),
        ([{"dst": "0.0.0.0/0"}], []),  # no gateway: skipped (Go would write "<nil>")
        ([{"dst": "10.0.0.0/8", "gw": "10.0.0.1"}], []),
        ([{"dst": "0.0.0.0/0", "gw": "::ffff:10.0.0.1"}], ["10.0.0.1"]),  # Go prints mapped as v4
        ([{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}, {"dst": "::/0", "gw": "fe80::1"}], ["10.0.0.1", "fe80::1"]),
    ],
)
def test_gateways(routes: list[dict[str, object]], expected: list[str]) -> None:
    result = {"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": NETNS}], "routes": routes}
    (entry,) = build(result)
    assert entry.get("gateway", []) == expected


@pytest.mark.parametrize(
    ("address", "printed"),
    [
        ("2001:db8:0:0:1:0:0:1/64", "2001:db8::1:0:0:1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001/64", "2001:db8::1"),
        ("2001:db8:0:1:1:1:1:1/64", "2001:db8:0:1:1:1:1:1"),  # a single zero group is not compressed
        ("::/0", "::"),
        ("::1/128", "::1"),
        ("1::/64", "1::"),
        ("::ffff:192.0.2.1/120", "192.0.2.1"),
        ("192.0.2.1/24", "192.0.2.1"),
    ],
)
def test_ip_formatting_matches_go(address: str, printed: str) -> None:
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "n", "sandbox": NETNS}],
        "ips": [{"address": address}],
    }
    assert build(result)[0]["ips"] == [printed]


# ---------------------------------------------------------------------------------------------
# Encoding

MULTUS_DOC_EXAMPLE = """[{
    "name": "cbr0",
    "ips": [
        "10.244.1.73"
    ],
    "default": true,
    "dns": {}
},{
    "name": "macvlan-conf",
    "interface": "net1",
    "ips": [
        "192.168.1.205"
    ],
    "mac": "86:1d:96:ff:55:0d",
    "dns": {}
}]"""


def test_encode_is_byte_identical_to_multus() -> None:
    entries = [
        {"name": "cbr0", "ips": ["10.244.1.73"], "default": True, "dns": {}},
        {
            "name": "macvlan-conf",
            "interface": "net1",
            "ips": ["192.168.1.205"],
            "mac": "86:1d:96:ff:55:0d",
            "dns": {},
        },
    ]
    assert encode_status(entries) == MULTUS_DOC_EXAMPLE


def test_encode_nested_and_escaping() -> None:
    entries = [
        {
            "name": 'a<b>&"c"\n',
            "dns": {"nameservers": ["1.1.1.1", "é"]},
            "device-info": {"n": 1, "f": 2.0, "x": None, "e": []},
        }
    ]
    assert encode_status(entries) == (
        "[{\n"
        '    "name": "a\\u003cb\\u003e\\u0026\\"c\\"\\n",\n'
        '    "dns": {\n'
        '        "nameservers": [\n'
        '            "1.1.1.1",\n'
        '            "é"\n'
        "        ]\n"
        "    },\n"
        '    "device-info": {\n'
        '        "n": 1,\n'
        '        "f": 2,\n'
        '        "x": null,\n'
        '        "e": []\n'
        "    }\n"
        "}]"
    )
    assert encode_status([]) == "[]"


def test_round_trip() -> None:
    entries = build(BRIDGE_RESULT, default=True) + build({"cniVersion": "1.0.0"})
    value = encode_status(entries)
    assert json.loads(value) == entries
    assert decode_status(value) == entries


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("{}", "must be a JSON list of objects"), ("[1]", "must be a JSON list"), ("[", "not valid JSON")],
)
def test_decode_invalid(value: str, fragment: str) -> None:
    with pytest.raises(InvalidAnnotation, match=fragment):
        decode_status(value)


def test_result_object_is_converted_first() -> None:
    # A pymultus.cni.result.Result (of any version) gives the same entries as its 1.x JSON.
    from pymultus.cni.result import Result

    assert build(Result.parse(BRIDGE_RESULT)) == build(BRIDGE_RESULT)  # type: ignore[arg-type]
    legacy = Result.parse(
        {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1"}, "dns": {}}
    )
    (entry,) = build(legacy)  # type: ignore[arg-type]
    assert entry["ips"] == ["10.1.0.5"]
