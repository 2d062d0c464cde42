"""Network configuration parsing: conf and conflist, versions, flags, directories, losslessness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pymultus.cni import netconf
from pymultus.errors import DecodingError, IncompatibleVersion, InvalidConfig

CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "mynet",
    "plugins": [
        {"type": "bridge", "bridge": "br0", "ipam": {"type": "host-local"}, "x-vendor": {"keep": [1, 2]}},
        {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
    ],
    "x-top-level": "kept",
}


def _load(doc: object) -> netconf.NetworkConfig:
    return netconf.load_bytes(json.dumps(doc).encode())


def test_conflist_is_a_list_with_every_key_kept() -> None:
    net = _load(CONFLIST)
    assert net.is_list and net.name == "mynet" and net.cni_version == "1.0.0"
    assert net.plugin_types() == ["bridge", "portmap"]
    assert json.loads(net.to_bytes()) == CONFLIST
    assert net.capabilities() == {"portMappings"}


def test_single_conf_becomes_a_list_of_one_and_keeps_its_form() -> None:
    conf = {"cniVersion": "0.4.0", "name": "single", "type": "macvlan", "master": "eth9", "custom": {"a": 1}}
    net = _load(conf)
    assert not net.is_list and net.plugins == [conf] and net.cni_version == "0.4.0"
    assert json.loads(net.to_bytes()) == conf


def test_cni_versions_picks_the_highest_supported_one() -> None:
    net = _load({**CONFLIST, "cniVersion": "0.4.0", "cniVersions": ["0.3.1", "1.0.0", "7.0.0"]})
    assert net.cni_version == "1.0.0"


def test_cni_versions_with_nothing_supported_is_incompatible() -> None:
    with pytest.raises(IncompatibleVersion) as info:
        _load({**CONFLIST, "cniVersion": "", "cniVersions": ["7.0.0"]})
    assert info.value.code == 1


@pytest.mark.parametrize("version", ["0.5.0", "1.2.0", "2.0.0", "garbage"])
def test_an_unknown_cni_version_is_incompatible(version: str) -> None:
    with pytest.raises(IncompatibleVersion, match=version) as info:
        _load({**CONFLIST, "cniVersion": version})
    assert info.value.code == 1


def test_a_missing_cni_version_means_0_1_0() -> None:
    assert _load({"name": "n", "type": "bridge"}).cni_version == "0.1.0"


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), ("true", True), ("false", False), ("1", True)]
)
def test_disable_check_accepts_booleans_and_their_strings(value: object, expected: bool) -> None:
    assert _load({**CONFLIST, "disableCheck": value}).disable_check is expected


def test_flags() -> None:
    net = _load({**CONFLIST, "disableGC": True, "loadOnlyInlinedPlugins": True})
    assert net.disable_gc and net.load_only_inlined_plugins and not net.disable_check


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({**CONFLIST, "disableCheck": "maybe"}, "disableCheck"),
        ({**CONFLIST, "disableGC": 1}, "disableGC"),
        ({**CONFLIST, "plugins": {}}, "plugins"),
        ({**CONFLIST, "plugins": []}, "no plugins"),
        ({**CONFLIST, "plugins": [{"bridge": "br0"}]}, "plugin 0.*type"),
        ({**CONFLIST, "plugins": [{"type": "bridge"}, "x"]}, "plugin 1"),
        ({**CONFLIST, "plugins": [{"type": "bridge", "capabilities": ["ips"]}]}, "capabilities"),
        ({**CONFLIST, "name": 7}, "name"),
        ({**CONFLIST, "name": "../etc"}, "network name"),
        ({**CONFLIST, "cniVersion": 1.0}, "cniVersion"),
        ({**CONFLIST, "cniVersions": "1.0.0"}, "cniVersions"),
        ({"name": "n", "cniVersion": "1.0.0"}, "type"),
        ({"name": "n", "type": ""}, "type"),
    ],
)
def test_invalid_content_is_invalid_config_naming_the_field(doc: object, field: str) -> None:
    with pytest.raises(InvalidConfig, match=field) as info:
        _load(doc)
    assert info.value.code == 7


@pytest.mark.parametrize("data", [b"", b"{", b"[1]", b'{"name": "a"} x', b"\xff\xfe", b"null"])
def test_undecodable_bytes_are_a_decoding_error(data: bytes) -> None:
    with pytest.raises(DecodingError) as info:
        netconf.load_bytes(data)
    assert info.value.code == 6


def test_with_name_and_version_copy_without_touching_the_original() -> None:
    net = _load({"cniVersion": "0.4.0", "type": "bridge"})
    named = net.with_name("nad-net").with_cni_version("1.0.0")
    assert named.name == "nad-net" and named.cni_version == "1.0.0"
    assert json.loads(named.to_bytes()) == {"cniVersion": "1.0.0", "type": "bridge", "name": "nad-net"}
    assert net.name == "" and net.cni_version == "0.4.0"
    with pytest.raises(InvalidConfig):
        net.with_name("a/b")


def test_directory_loading_in_lexical_order(tmp_path: Path) -> None:
    (tmp_path / "20-b.conflist").write_text(json.dumps({**CONFLIST, "name": "b"}))
    (tmp_path / "10-a.conf").write_text(json.dumps({"cniVersion": "1.0.0", "name": "a", "type": "bridge"}))
    (tmp_path / "30-c.json").write_text(json.dumps({"cniVersion": "1.0.0", "name": "c", "type": "ptp"}))
    (tmp_path / "05-broken.conf").write_text("{not json")
    (tmp_path / "ignored.txt").write_text("{}")
    (tmp_path / "40-dir.conf").mkdir()
    files = netconf.conf_files(str(tmp_path))
    assert [Path(f).name for f in files] == ["05-broken.conf", "10-a.conf", "20-b.conflist", "30-c.json"]
    skipped: list[tuple[str, str]] = []
    found = netconf.load_by_name(str(tmp_path), "b", skipped=skipped)
    assert found is not None and found.is_list and found.source == str(tmp_path / "20-b.conflist")
    assert [Path(path).name for path, _ in skipped] == ["05-broken.conf"]
    assert netconf.load_by_name(str(tmp_path), "nope") is None
    assert netconf.conf_files(str(tmp_path / "missing")) == []


def test_conflist_gets_sub_directory_plugins_unless_only_inlined(tmp_path: Path) -> None:
    (tmp_path / "mynet").mkdir()
    (tmp_path / "mynet" / "20-tuning.conf").write_text(json.dumps({"type": "tuning"}))
    (tmp_path / "mynet" / "10-firewall.conf").write_text(json.dumps({"type": "firewall"}))
    (tmp_path / "mynet" / "notes.txt").write_text("x")
    (tmp_path / "a.conflist").write_text(json.dumps(CONFLIST))
    (tmp_path / "b.conflist").write_text(json.dumps({**CONFLIST, "loadOnlyInlinedPlugins": True}))
    assert netconf.load_file(str(tmp_path / "a.conflist")).plugin_types() == [
        "bridge",
        "portmap",
        "firewall",
        "tuning",
    ]
    assert netconf.load_file(str(tmp_path / "b.conflist")).plugin_types() == ["bridge", "portmap"]


def test_an_empty_inline_list_may_be_completed_from_the_sub_directory(tmp_path: Path) -> None:
    (tmp_path / "mynet").mkdir()
    (tmp_path / "mynet" / "a.conf").write_text(json.dumps({"type": "bridge"}))
    (tmp_path / "x.conflist").write_text(json.dumps({**CONFLIST, "plugins": []}))
    (tmp_path / "y.conflist").write_text(json.dumps({**CONFLIST, "name": "other", "plugins": []}))
    assert netconf.load_file(str(tmp_path / "x.conflist")).plugin_types() == ["bridge"]
    with pytest.raises(InvalidConfig, match="no plugins"):
        netconf.load_file(str(tmp_path / "y.conflist"))


def test_an_unreadable_file_is_an_io_failure(tmp_path: Path) -> None:
    with pytest.raises(Exception) as info:
        netconf.load_file(str(tmp_path / "missing.conf"))
    assert getattr(info.value, "code", None) == 5
