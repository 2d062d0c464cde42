"""Identifier validation, versions, CNI_ARGS and the per-command environment table."""

from __future__ import annotations

import pytest

from pymultus.cni import spec
from pymultus.cni.request import REQUIRED_ENV, CniRequest, format_cni_args, parse_cni_args
from pymultus.errors import IncompatibleVersion, InvalidConfig, InvalidEnvironment

FULL_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc123",
    "CNI_NETNS": "/var/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web-0",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}


@pytest.mark.parametrize("value", ["a", "0", "abc-DEF_1.2", "f" * 64, "cni-0123456789abcdef0123"])
def test_valid_container_ids(value: str) -> None:
    assert spec.validate_container_id(value) == value


@pytest.mark.parametrize(
    "value", ["", "-a", "_a", ".a", "../x", "a/b", "a b", "a:b", "é", "a\n", "..", "/abs"]
)
def test_invalid_container_ids_are_invalid_environment(value: str) -> None:
    with pytest.raises(InvalidEnvironment, match="CNI_CONTAINERID") as info:
        spec.validate_container_id(value)
    assert info.value.code == 4


@pytest.mark.parametrize("value", ["eth0", "net1", "a" * 15, "veth-x_1.2", "é" * 7])
def test_valid_ifnames(value: str) -> None:
    assert spec.validate_ifname(value) == value


@pytest.mark.parametrize("value", ["", ".", "..", "a" * 16, "é" * 8, "a/b", "a:b", "a b", "a\tb", "eth0\n"])
def test_invalid_ifnames_are_invalid_environment(value: str) -> None:
    with pytest.raises(InvalidEnvironment, match="CNI_IFNAME") as info:
        spec.validate_ifname(value)
    assert info.value.code == 4


@pytest.mark.parametrize("value", ["net", "my-net.v2_x", "0net"])
def test_valid_network_names(value: str) -> None:
    assert spec.validate_network_name(value) == value


@pytest.mark.parametrize("value", ["", "-net", "a/b", "../etc", "a b", "net:1"])
def test_invalid_network_names_are_invalid_config(value: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        spec.validate_network_name(value)
    assert info.value.code == 7


def test_versions() -> None:
    assert spec.parse_version("1.1.0") == (1, 1, 0)
    assert spec.parse_version("0.4") == (0, 4, 0)
    assert spec.version_at_least("1.0.0", "0.4.0") and not spec.version_at_least("0.3.1", "0.4.0")
    assert spec.is_supported("0.3.1") and not spec.is_supported("1.2.0")
    assert spec.highest_supported(["0.3.1", "1.0.0", "9.9.9"]) == "1.0.0"
    assert spec.SUPPORTED_VERSIONS[-1] == spec.CURRENT_VERSION
    for junk in ("", "1.x", "1.0.0.0", "v1", "-1.0"):
        with pytest.raises(IncompatibleVersion):
            spec.parse_version(junk)


@pytest.mark.parametrize(
    ("raw", "pairs"),
    [
        ("", []),
        ("IgnoreUnknown=1", [("IgnoreUnknown", "1")]),
        ("A=1;B=;C=x=y", [("A", "1"), ("B", ""), ("C", "x=y")]),
        ("A=1;", [("A", "1")]),
    ],
)
def test_cni_args_parse(raw: str, pairs: list[tuple[str, str]]) -> None:
    assert parse_cni_args(raw) == pairs


@pytest.mark.parametrize("raw", ["A", "=1", "A=1;B", " A=1"])
def test_malformed_cni_args_are_invalid_environment(raw: str) -> None:
    with pytest.raises(InvalidEnvironment, match="CNI_ARGS") as info:
        parse_cni_args(raw)
    assert info.value.code == 4


def test_cni_args_format_round_trips() -> None:
    pairs = [("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web-0")]
    assert parse_cni_args(format_cni_args(pairs)) == pairs


def test_request_from_full_env() -> None:
    request = CniRequest.from_env(FULL_ENV, b"{}")
    assert (request.command, request.container_id, request.netns, request.ifname) == (
        "ADD",
        "abc123",
        "/var/run/netns/x",
        "eth0",
    )
    assert request.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert request.arg("K8S_POD_NAME") == "web-0" and request.arg("missing") is None
    assert request.config == b"{}"


CASES = [
    (command, var) for command, required in REQUIRED_ENV.items() for var in required if var != "CNI_COMMAND"
]


@pytest.mark.parametrize(("command", "variable"), CASES, ids=[f"{c}-{v}" for c, v in CASES])
def test_each_command_requires_its_variables(command: str, variable: str) -> None:
    env = {**FULL_ENV, "CNI_COMMAND": command}
    del env[variable]
    with pytest.raises(InvalidEnvironment, match=variable) as info:
        CniRequest.from_env(env, b"")
    assert info.value.code == 4


@pytest.mark.parametrize("command", ["GC", "STATUS", "VERSION"])
def test_commands_without_a_container_need_only_the_command(command: str) -> None:
    request = CniRequest.from_env({"CNI_COMMAND": command}, b"")
    assert request.command == command and request.container_id == ""


def test_del_does_not_need_a_netns() -> None:
    env = {k: v for k, v in FULL_ENV.items() if k != "CNI_NETNS"}
    assert CniRequest.from_env({**env, "CNI_COMMAND": "DEL"}, b"").netns == ""


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"CNI_COMMAND": ""}, "CNI_COMMAND"),
        ({"CNI_COMMAND": "ATTACH"}, "CNI_COMMAND"),
        ({"CNI_CONTAINERID": "../x"}, "CNI_CONTAINERID"),
        ({"CNI_IFNAME": "this-name-is-too-long"}, "CNI_IFNAME"),
        ({"CNI_ARGS": "novalue"}, "CNI_ARGS"),
    ],
)
def test_invalid_variables_are_named(changes: dict[str, str], variable: str) -> None:
    with pytest.raises(InvalidEnvironment, match=variable) as info:
        CniRequest.from_env({**FULL_ENV, **changes}, b"")
    assert info.value.code == 4


def test_optional_variables_are_still_validated_when_given() -> None:
    with pytest.raises(InvalidEnvironment, match="CNI_CONTAINERID"):
        CniRequest.from_env({"CNI_COMMAND": "GC", "CNI_CONTAINERID": "a/b"}, b"")
