"""Result conversion between every pair of CNI versions, with the exact shape expected per pair.

The expected documents are written out by hand (not computed by the code under test). A source
document of each version is the richest that version can express; what survives a conversion is
what both versions can express, following libcni's converters (see pymultus.cni.result).
"""

from __future__ import annotations

import pytest

from pymultus.cni.result import DNS, Interface, IPConfig, Result, Route, convert, is_error_object
from pymultus.cni.spec import SUPPORTED_VERSIONS
from pymultus.errors import DecodingError, IncompatibleVersion

LEGACY = ("0.1.0", "0.2.0")
V04 = ("0.3.0", "0.3.1", "0.4.0")
V1X = ("1.0.0", "1.1.0")

DNS_DOC = {
    "nameservers": ["10.1.0.53"],
    "domain": "example.test",
    "search": ["a.test"],
    "options": ["ndots:2"],
}

# The richest 1.x result: 1.1 interface and route fields, two IPv4 and one IPv6 address.
FULL_1X = {
    "interfaces": [
        {"name": "br0", "mac": "00:11:22:33:44:55", "mtu": 9000},
        {
            "name": "eth0",
            "mac": "99:88:77:66:55:44",
            "mtu": 1400,
            "sandbox": "/var/run/netns/blue",
            "socketPath": "/run/vhost.sock",
            "pciID": "0000:04:00.5",
        },
    ],
    "ips": [
        {"interface": 1, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
        {"interface": 1, "address": "10.2.0.5/24"},
        {"interface": 1, "address": "fd00::5/64", "gateway": "fd00::1"},
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0",
            "gw": "10.1.0.1",
            "mtu": 1300,
            "advmss": 1260,
            "priority": 10,
            "table": 100,
            "scope": 0,
        },
        {"dst": "::/0", "gw": "fd00::1", "priority": 5},
        {"dst": "10.3.0.0/16"},
    ],
    "dns": DNS_DOC,
}

# The same in 0.3.x/0.4.0: "version" added, the 1.1 fields gone.
FULL_04 = {
    "interfaces": [
        {"name": "br0", "mac": "00:11:22:33:44:55"},
        {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"},
    ],
    "ips": [
        {"version": "4", "interface": 1, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
        {"version": "4", "interface": 1, "address": "10.2.0.5/24"},
        {"version": "6", "interface": 1, "address": "fd00::5/64", "gateway": "fd00::1"},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "10.1.0.1"},
        {"dst": "::/0", "gw": "fd00::1"},
        {"dst": "10.3.0.0/16"},
    ],
    "dns": DNS_DOC,
}

# 0.4.0-only content (what a 0.4.0 source carries) read as 1.x: "version" dropped, nothing added.
FROM_04_IN_1X = {
    "interfaces": FULL_04["interfaces"],
    "ips": [
        {"interface": 1, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
        {"interface": 1, "address": "10.2.0.5/24"},
        {"interface": 1, "address": "fd00::5/64", "gateway": "fd00::1"},
    ],
    "routes": FULL_04["routes"],
    "dns": DNS_DOC,
}

# 0.1/0.2: only the first IPv4 and first IPv6 address; routes sorted under their family.
FULL_LEGACY = {
    "ip4": {
        "ip": "10.1.0.5/24",
        "gateway": "10.1.0.1",
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "10.3.0.0/16"}],
    },
    "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
    "dns": DNS_DOC,
}

# A legacy source read as 0.4.0 / 1.x: no interfaces, no interface index, routes v4 then v6.
FROM_LEGACY_IN_04 = {
    "ips": [
        {"version": "4", "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
        {"version": "6", "address": "fd00::5/64", "gateway": "fd00::1"},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "10.1.0.1"},
        {"dst": "10.3.0.0/16"},
        {"dst": "::/0", "gw": "fd00::1"},
    ],
    "dns": DNS_DOC,
}
FROM_LEGACY_IN_1X = {
    "ips": [
        {"address": "10.1.0.5/24", "gateway": "10.1.0.1"},
        {"address": "fd00::5/64", "gateway": "fd00::1"},
    ],
    "routes": FROM_LEGACY_IN_04["routes"],
    "dns": DNS_DOC,
}


def _family(version: str) -> str:
    return "legacy" if version in LEGACY else "04" if version in V04 else "1x"


SOURCE = {"legacy": FULL_LEGACY, "04": FULL_04, "1x": FULL_1X}
EXPECTED = {
    ("legacy", "legacy"): FULL_LEGACY,
    ("legacy", "04"): FROM_LEGACY_IN_04,
    ("legacy", "1x"): FROM_LEGACY_IN_1X,
    ("04", "legacy"): FULL_LEGACY,
    ("04", "04"): FULL_04,
    ("04", "1x"): FROM_04_IN_1X,
    ("1x", "legacy"): FULL_LEGACY,
    ("1x", "04"): FULL_04,
    ("1x", "1x"): FULL_1X,  # 1.0.0 <-> 1.1.0 is lossless (one Go type in libcni)
}
PAIRS = [(src, dst) for src in SUPPORTED_VERSIONS for dst in SUPPORTED_VERSIONS]


@pytest.mark.parametrize(("source_version", "target_version"), PAIRS, ids=[f"{s}->{d}" for s, d in PAIRS])
def test_every_version_pair_converts_to_the_expected_shape(source_version: str, target_version: str) -> None:
    source = {"cniVersion": source_version, **SOURCE[_family(source_version)]}
    expected = {"cniVersion": target_version, **EXPECTED[(_family(source_version), _family(target_version))]}

    converted = Result.parse(source).to_version(target_version)

    assert converted == expected
    assert list(converted) == list(expected)  # libcni's key order: cniVersion first, dns last


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_each_version_round_trips_its_own_richest_document(version: str) -> None:
    source = {"cniVersion": version, **SOURCE[_family(version)]}
    assert Result.parse(source).to_version(version) == source


def test_down_conversion_drops_the_1_1_fields_and_keeps_the_rest() -> None:
    result = Result.parse({"cniVersion": "1.1.0", **FULL_1X})
    down = result.to_version("0.4.0")
    assert "mtu" not in str(down["interfaces"]) and "socketPath" not in str(down) and "pciID" not in str(down)
    assert all(set(route) <= {"dst", "gw"} for route in down["routes"])  # type: ignore[union-attr]
    assert Result.parse(down) != result
    assert Result.parse(result.to_version("1.0.0")) == result


def test_legacy_conversion_without_any_address_is_refused_like_libcni() -> None:
    result = Result(interfaces=[Interface("lo")])
    with pytest.raises(IncompatibleVersion, match="without IP addresses") as info:
        result.to_version("0.2.0")
    assert info.value.code == 1


def test_legacy_conversion_drops_routes_of_a_family_without_an_address() -> None:
    result = Result(ips=[IPConfig("10.0.0.2/24")], routes=[Route("10.9.0.0/16"), Route("fd00:9::/64")])
    assert result.to_version("0.1.0") == {
        "cniVersion": "0.1.0",
        "ip4": {"ip": "10.0.0.2/24", "routes": [{"dst": "10.9.0.0/16"}]},
        "dns": {},
    }


def test_a_result_without_cni_version_takes_the_configuration_version() -> None:
    result = Result.parse({"ips": [{"version": "4", "address": "10.0.0.2/24", "interface": 0}]}, "0.4.0")
    assert result.ips == [IPConfig("10.0.0.2/24", None, 0)]


def test_an_empty_result_emits_only_version_and_dns() -> None:
    assert Result.empty().to_version("1.0.0") == {"cniVersion": "1.0.0", "dns": {}}


@pytest.mark.parametrize("version", ["0.5.0", "2.0.0", "1.1", "junk"])
def test_an_unknown_result_version_is_an_incompatible_version_error(version: str) -> None:
    with pytest.raises(IncompatibleVersion) as info:
        Result.parse({"cniVersion": version})
    assert info.value.code == 1
    with pytest.raises(IncompatibleVersion):
        Result.empty().to_version(version)


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"cniVersion": "1.0.0", "ips": "10.0.0.1/24"}, "ips"),
        ({"cniVersion": "1.0.0", "ips": [{"gateway": "10.0.0.1"}]}, "ips[0].address"),
        ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]}, "ips[0].address"),
        ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/8", "interface": -1}]}, "ips[0].interface"),
        ({"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "mtu": "9000"}]}, "interfaces[0].mtu"),
        ({"cniVersion": "1.1.0", "routes": [{"gw": "10.0.0.1"}]}, "routes[0].dst"),
        ({"cniVersion": "0.2.0", "ip4": {"gateway": "10.0.0.1"}}, "ip4.ip"),
        ({"cniVersion": "1.0.0", "dns": {"nameservers": "10.0.0.53"}}, "dns.nameservers"),
        ({"cniVersion": 1}, "cniVersion"),
        ({}, "cniVersion"),
    ],
)
def test_a_malformed_result_is_a_decoding_error_naming_the_field(
    document: dict[str, object], field: str
) -> None:
    with pytest.raises(DecodingError, match=field.replace("[", r"\[").replace("]", r"\]")) as info:
        Result.parse(document)
    assert info.value.code == 6


def test_copy_is_deep_and_equal() -> None:
    result = Result.parse({"cniVersion": "1.1.0", **FULL_1X})
    clone = result.copy()
    assert clone == result
    clone.routes[0].table = 7
    clone.dns.nameservers.append("10.0.0.9")
    assert clone != result and result.routes[0].table == 100 and result.dns.nameservers == ["10.1.0.53"]


def test_model_objects_compare_by_value() -> None:
    assert DNS(["1.1.1.1"]) == DNS(["1.1.1.1"])
    assert Route("0.0.0.0/0", "10.0.0.1", table=0) != Route("0.0.0.0/0", "10.0.0.1")
    assert IPConfig("10.0.0.1/8").version == "4" and IPConfig("fd00::1/64").version == "6"


def test_convert_and_error_objects() -> None:
    assert convert({"ip4": {"ip": "10.0.0.2/24"}}, "1.0.0", assume_version="0.2.0") == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.0.0.2/24"}],
        "dns": {},
    }
    assert is_error_object({"cniVersion": "1.0.0", "code": 7, "msg": "bad"})
    assert not is_error_object({"cniVersion": "1.0.0", "ips": []})
