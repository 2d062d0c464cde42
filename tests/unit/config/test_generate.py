"""The generated 00-multus.conf[list]: primary selection, contents, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pymultus.config.generate import build_multus_conf, find_primary_conf, write_atomically
from pymultus.errors import InvalidConfig

BRIDGE = {"cniVersion": "0.3.1", "name": "br", "type": "bridge", "capabilities": {"portMappings": True}}
CALICO = {
    "cniVersion": "1.0.0",
    "name": "k8s-pod-network",
    "plugins": [
        {"type": "calico", "capabilities": {"ips": True}},
        {"type": "portmap", "capabilities": {"portMappings": True, "bandwidth": False}},
    ],
}


def write(directory: Path, name: str, obj: object) -> Path:
    path = directory / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


# --- find_primary_conf ---------------------------------------------------------------------------


def test_no_directory_and_empty_directory_mean_no_primary(tmp_path: Path) -> None:
    assert find_primary_conf(str(tmp_path / "missing")) is None
    assert find_primary_conf(str(tmp_path)) is None


def test_lexically_first_conf_is_primary(tmp_path: Path) -> None:
    write(tmp_path, "20-b.conf", BRIDGE)
    write(tmp_path, "10-a.conflist", CALICO)
    write(tmp_path, "05-notes.txt", "not a conf")
    assert find_primary_conf(str(tmp_path)) == str(tmp_path / "10-a.conflist")


def test_json_extension_counts_because_libcni_loads_it(tmp_path: Path) -> None:
    write(tmp_path, "20-b.conf", BRIDGE)
    write(tmp_path, "15-c.json", BRIDGE)
    assert find_primary_conf(str(tmp_path)) == str(tmp_path / "15-c.json")


@pytest.mark.parametrize("own", ["00-multus.conf", "00-multus.conflist", "00-multus.conf.cilium_bak.conf"])
def test_our_own_file_names_are_never_primary(tmp_path: Path, own: str) -> None:
    write(tmp_path, own, BRIDGE)
    write(tmp_path, "10-flannel.conflist", CALICO)
    assert find_primary_conf(str(tmp_path)) == str(tmp_path / "10-flannel.conflist")


@pytest.mark.parametrize("kind", ["multus", "multus-shim"])
def test_a_multus_conf_under_another_name_is_never_wrapped(tmp_path: Path, kind: str) -> None:
    # multus#1108: an old thin conf renamed by another tool made Multus wrap itself.
    write(tmp_path, "01-old.conf", {"cniVersion": "0.3.1", "name": "m", "type": kind})
    write(tmp_path, "02-old.conflist", {"cniVersion": "1.0.0", "name": "m", "plugins": [{"type": kind}]})
    write(tmp_path, "10-bridge.conf", BRIDGE)
    assert find_primary_conf(str(tmp_path)) == str(tmp_path / "10-bridge.conf")


def test_unparsable_first_file_is_still_the_primary(tmp_path: Path) -> None:
    # The runtime would pick it too; wrapping the second file instead would attach the wrong network.
    write(tmp_path, "10-half-written.conf", '{"cniVersion": "0.3')
    write(tmp_path, "20-b.conf", BRIDGE)
    primary = find_primary_conf(str(tmp_path))
    assert primary == str(tmp_path / "10-half-written.conf")
    with pytest.raises(InvalidConfig, match=r"10-half-written\.conf"):
        build_multus_conf(primary, plugin_type="multus", options={})


def test_master_name_pins_the_primary(tmp_path: Path) -> None:
    write(tmp_path, "10-kube-ovn.conflist", CALICO)
    assert find_primary_conf(str(tmp_path), master_name="20-cilium.conf") is None
    write(tmp_path, "20-cilium.conf", BRIDGE)
    assert find_primary_conf(str(tmp_path), master_name="20-cilium.conf") == str(tmp_path / "20-cilium.conf")


@pytest.mark.parametrize("bad", ["00-multus.conf", "../etc/passwd", "a/b.conf"])
def test_master_name_must_be_a_foreign_file_name(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidConfig, match="master CNI file name"):
        find_primary_conf(str(tmp_path), master_name=bad)


# --- build_multus_conf ---------------------------------------------------------------------------


def test_thin_conf_for_an_old_cni_version(tmp_path: Path) -> None:
    primary = write(tmp_path, "10-bridge.conf", BRIDGE)
    name, data = build_multus_conf(
        str(primary),
        plugin_type="multus",
        options={
            "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
            "namespaceIsolation": True,
            "globalNamespaces": "default,infra",
            "logLevel": "verbose",
            "logToStderr": True,
            "readinessindicatorfile": "/run/ready",
            "binDir": "",  # empty flag value: not set
            "multusConfigFile": "auto",  # generator-only: never copied
        },
        cluster_network="/etc/cni/net.d/10-bridge.conf",
    )
    assert name == "00-multus.conf"
    conf = json.loads(data)
    assert conf == {
        "cniVersion": "0.3.1",
        "name": "multus-cni-network",
        "type": "multus",
        "capabilities": {"portMappings": True},
        "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
        "logLevel": "verbose",
        "logToStderr": True,
        "namespaceIsolation": True,
        "globalNamespaces": "default,infra",
        "readinessindicatorfile": "/run/ready",
        "clusterNetwork": "/etc/cni/net.d/10-bridge.conf",
    }


@pytest.mark.parametrize(
    ("version", "expected"), [("0.4.0", "00-multus.conf"), ("1.0.0", "00-multus.conflist")]
)
def test_conflist_form_from_cni_1_0_0(tmp_path: Path, version: str, expected: str) -> None:
    primary = write(tmp_path, "10-calico.conflist", {**CALICO, "cniVersion": version})
    name, data = build_multus_conf(
        str(primary), plugin_type="multus-shim", options={"daemonSocketDir": "/run/multus/"}
    )
    assert name == expected
    conf = json.loads(data)
    plugin = conf["plugins"][0] if expected.endswith("conflist") else conf
    assert conf["cniVersion"] == version
    assert plugin["type"] == "multus-shim"
    assert plugin["clusterNetwork"] == str(primary)
    assert plugin["daemonSocketDir"] == "/run/multus/"
    # The union of the enabled capabilities of every plugin of the primary conflist.
    assert plugin["capabilities"] == {"ips": True, "portMappings": True}


def test_shim_conf_drops_the_readiness_file_which_the_daemon_watches(tmp_path: Path) -> None:
    primary = write(tmp_path, "10-bridge.conf", BRIDGE)
    options = {"readinessindicatorfile": "/r"}
    _, data = build_multus_conf(str(primary), plugin_type="multus-shim", options=options)
    assert "readinessindicatorfile" not in json.loads(data)


def test_override_network_name_and_extra_capabilities(tmp_path: Path) -> None:
    primary = write(tmp_path, "10-bridge.conf", BRIDGE)
    _, data = build_multus_conf(
        str(primary),
        plugin_type="multus",
        options={"overrideNetworkName": True, "capabilities": {"mac": True, "ips": False}},
    )
    conf = json.loads(data)
    assert conf["name"] == "br"
    assert conf["capabilities"] == {"mac": True, "portMappings": True}


def test_cni_version_must_match_unless_forced(tmp_path: Path) -> None:
    primary = write(tmp_path, "10-bridge.conf", BRIDGE)
    with pytest.raises(InvalidConfig, match=r"cniVersion 1\.0\.0 differs from 0\.3\.1"):
        build_multus_conf(str(primary), plugin_type="multus", options={"cniVersion": "1.0.0"})
    name, data = build_multus_conf(
        str(primary), plugin_type="multus", options={"cniVersion": "1.0.0", "forceCNIVersion": True}
    )
    assert name == "00-multus.conflist"
    assert json.loads(data)["cniVersion"] == "1.0.0"
    # Go Multus rewrites the primary on disk when forced; we never touch it.
    assert json.loads(primary.read_text()) == BRIDGE


def test_output_is_deterministic(tmp_path: Path) -> None:
    primary = write(tmp_path, "10-calico.conflist", CALICO)
    first = build_multus_conf(str(primary), plugin_type="multus", options={"logLevel": "debug"})
    assert build_multus_conf(str(primary), plugin_type="multus", options={"logLevel": "debug"}) == first


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the primary CNI conf"),
        ("", "is empty"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"name": "x", "type": "bridge"}), "has no cniVersion"),
        (json.dumps({"cniVersion": "1.0", "type": "bridge"}), "MAJOR.MINOR.PATCH"),
        (json.dumps({"cniVersion": "0.3.1", "name": "x"}), "neither a type nor a plugins list"),
        (json.dumps({"cniVersion": "1.0.0", "plugins": []}), "plugins must be a non-empty list of objects"),
        (json.dumps({"cniVersion": "1.0.0", "plugins": [{"type": "multus"}]}), "is a Multus conf"),
    ],
)
def test_bad_primary_gives_a_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "10-bad.conf"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidConfig, match=message) as info:
        build_multus_conf(str(path), plugin_type="multus", options={})
    assert info.value.code == 7
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"logLevel": "loud"}, "logLevel 'loud' must be one of"),
        ({"namespaceIsolation": "yes"}, "namespaceIsolation must be a boolean"),
        ({"kubeconfig": 5}, "kubeconfig must be a string"),
        ({"capabilities": {"ips": "yes"}}, "capabilities must be an object of booleans"),
        ({"forceCNIVersion": 1}, "forceCNIVersion must be a boolean"),
        ({"overrideNetworkName": "true"}, "overrideNetworkName must be a boolean"),
    ],
)
def test_bad_options_give_a_clear_error(tmp_path: Path, options: dict[str, object], message: str) -> None:
    primary = write(tmp_path, "10-bridge.conf", BRIDGE)
    with pytest.raises(InvalidConfig, match=message):
        build_multus_conf(str(primary), plugin_type="multus", options=options)


def test_plugin_type_is_checked(tmp_path: Path) -> None:
    primary = write(tmp_path, "10-bridge.conf", BRIDGE)
    with pytest.raises(InvalidConfig, match="plugin type 'bridge'"):
        build_multus_conf(str(primary), plugin_type="bridge", options={})


# --- write_atomically ----------------------------------------------------------------------------


def test_write_atomically_reports_changes_and_sets_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "00-multus.conf"
    assert write_atomically(str(path), b"one", mode=0o600) is True
    assert path.read_bytes() == b"one"
    assert os.stat(path).st_mode & 0o777 == 0o600
    inode = os.stat(path).st_ino
    assert write_atomically(str(path), b"one", mode=0o600) is False
    assert os.stat(path).st_ino == inode  # unchanged content: the file is not even replaced
    assert write_atomically(str(path), b"one", mode=0o644) is True
    assert os.stat(path).st_mode & 0o777 == 0o644
    inode = os.stat(path).st_ino
    assert write_atomically(str(path), b"two", mode=0o644) is True
    assert path.read_bytes() == b"two"
    # Replaced by rename, never rewritten in place (a reader holding the old file keeps it intact).
    assert os.stat(path).st_ino != inode
    assert sorted(os.listdir(path.parent)) == ["00-multus.conf"]  # no temp file left behind


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"socketDir": "/run/pymultus/"}, "/run/pymultus/"),  # the daemon's own socketDir
        ({"socketDir": "/run/pymultus/", "daemonSocketDir": "/srv/sock/"}, "/srv/sock/"),  # set wins
        ({}, None),  # nothing known: the shim's default, /run/multus/
    ],
)
def test_shim_daemon_socket_dir_defaults_to_the_daemon_socket_dir(
    tmp_path: Path, options: dict[str, object], expected: str | None
) -> None:
    primary = write(tmp_path, "10-bridge.conf", BRIDGE)
    _, data = build_multus_conf(str(primary), plugin_type="multus-shim", options=options)
    assert json.loads(data).get("daemonSocketDir") == expected
    _, thin = build_multus_conf(str(primary), plugin_type="multus", options={"socketDir": "/run/pymultus/"})
    assert "daemonSocketDir" not in json.loads(thin)


def test_socket_dir_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    primary = write(tmp_path, "10-bridge.conf", BRIDGE)
    with pytest.raises(InvalidConfig, match="socketDir must be a string, not int"):
        build_multus_conf(str(primary), plugin_type="multus-shim", options={"socketDir": 3})
