"""Device Information Spec files: naming, copy from the device plugin, load, remove."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pymultus.errors import InvalidConfig, InvalidEnvironment
from pymultus.store import deviceinfo
from pymultus.store.deviceinfo import DeviceInfoError

CID = "3f1c0e9a7b2d"
DEVINFO = {
    "type": "pci",
    "version": "1.1.0",
    "pci": {"pci-address": "0000:af:02.1", "pf-pci-address": "0000:af:00.0", "rdma-device": "mlx5_3"},
    "extra-from-a-newer-plugin": [1, 2],
}


def dp_file(base: Path, name: str, payload: object | str) -> Path:
    path = base / "devinfo" / "dp" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


# --- naming ---------------------------------------------------------------------------------------


def test_cni_file_path_like_multus() -> None:
    assert (
        deviceinfo.cni_file_path(deviceinfo.DEFAULT_BASE_DIR, "team-a/sriov-net", CID, "net1")
        == f"/var/run/k8s.cni.cncf.io/devinfo/cni/team-a-sriov-net-{CID}_net1"
    )


def test_dp_file_path_like_nadc() -> None:
    assert (
        deviceinfo.dp_file_path("/b", "intel.com/sriov_netdevice", "0000:af:02.1")
        == "/b/devinfo/dp/intel.com-sriov_netdevice-0000:af:02.1-device.json"
    )
    # Slashes in the device ID too (e.g. vhost-user socket paths used as IDs).
    assert deviceinfo.dp_file_path("/b", "r", "a/b") == "/b/devinfo/dp/r-a-b-device.json"


@pytest.mark.parametrize(
    ("args", "error", "fragment"),
    [
        (("ns/n", "../etc", "net1"), InvalidEnvironment, "CNI_CONTAINERID '../etc' is invalid"),
        (("ns/n", "", "net1"), InvalidEnvironment, "CNI_CONTAINERID is empty"),
        (("ns/n", CID, "a/b"), InvalidEnvironment, "CNI_IFNAME 'a/b' contains"),
        (("ns/n", CID, "x" * 16), InvalidEnvironment, "longer than 15 bytes"),
        (("", CID, "net1"), InvalidConfig, "network name of a device-info file is empty"),
        (("ns/\x00", CID, "net1"), InvalidConfig, "contains a NUL byte"),
    ],
)
def test_cni_file_path_rejects_bad_ids(
    args: tuple[str, str, str], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as info:
        deviceinfo.cni_file_path("/base", *args)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("resource", "device", "fragment"),
    [
        ("", "d", "resource name of a device-info file is empty"),
        ("r", "", "device ID"),
        ("r", "d\x00", "NUL"),
    ],
)
def test_dp_file_path_rejects_bad_ids(resource: str, device: str, fragment: str) -> None:
    with pytest.raises(InvalidConfig, match=fragment):
        deviceinfo.dp_file_path("/base", resource, device)


# --- copy -----------------------------------------------------------------------------------------


def test_copy_from_device_plugin(tmp_path: Path) -> None:
    raw = json.dumps(DEVINFO, indent=2)  # the plugin's own bytes are kept, not re-encoded
    dp_file(tmp_path, "intel.com-vf-0000:af:02.1-device.json", raw)
    dest = deviceinfo.cni_file_path(str(tmp_path), "ns/net", CID, "net1")
    assert deviceinfo.copy_from_device_plugin(str(tmp_path), "intel.com/vf", "0000:af:02.1", dest)
    assert Path(dest).read_text() == raw
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o444
    assert os.listdir(os.path.dirname(dest)) == [os.path.basename(dest)]  # no temp file left
    assert deviceinfo.load(dest) == DEVINFO


def test_copy_replaces_a_stale_file(tmp_path: Path) -> None:
    # An earlier ADD of the same container left its file (NADC would refuse: "already exists").
    dp_file(tmp_path, "r-d-device.json", DEVINFO)
    dest = Path(deviceinfo.cni_file_path(str(tmp_path), "ns/net", CID, "net1"))
    dest.parent.mkdir(parents=True)
    dest.write_text('{"stale": true}')
    dest.chmod(0o444)
    assert deviceinfo.copy_from_device_plugin(str(tmp_path), "r", "d", str(dest))
    assert deviceinfo.load(str(dest)) == DEVINFO
    assert stat.S_IMODE(dest.stat().st_mode) == 0o444


def test_copy_leaves_an_existing_directory_mode_alone(tmp_path: Path) -> None:
    dp_file(tmp_path, "r-d-device.json", DEVINFO)
    cni_dir = tmp_path / "devinfo" / "cni"
    cni_dir.mkdir(parents=True)
    cni_dir.chmod(0o711)
    dest = deviceinfo.cni_file_path(str(tmp_path), "ns/net", CID, "net1")
    deviceinfo.copy_from_device_plugin(str(tmp_path), "r", "d", dest)
    assert stat.S_IMODE(cni_dir.stat().st_mode) == 0o711


def test_copy_without_device_plugin_file_does_nothing(tmp_path: Path) -> None:
    dest = deviceinfo.cni_file_path(str(tmp_path), "ns/net", CID, "net1")
    assert deviceinfo.copy_from_device_plugin(str(tmp_path), "r", "d", dest) is False
    assert not (tmp_path / "devinfo" / "cni").exists()


@pytest.mark.parametrize(
    ("content", "fragment"), [("{", "is not valid JSON"), ("[1]", "must be a JSON object")]
)
def test_copy_of_a_malformed_device_plugin_file(tmp_path: Path, content: str, fragment: str) -> None:
    source = dp_file(tmp_path, "r-d-device.json", content)
    dest = deviceinfo.cni_file_path(str(tmp_path), "ns/net", CID, "net1")
    with pytest.raises(DeviceInfoError) as info:
        deviceinfo.copy_from_device_plugin(str(tmp_path), "r", "d", dest)
    assert fragment in str(info.value)
    assert str(source) in str(info.value)
    assert info.value.code == 5
    assert not os.path.exists(dest)


def test_copy_to_an_unwritable_place(tmp_path: Path) -> None:
    dp_file(tmp_path, "r-d-device.json", DEVINFO)
    blocker = tmp_path / "devinfo" / "cni"
    blocker.write_text("a file where the directory should be")
    dest = str(blocker / f"ns-net-{CID}_net1")
    with pytest.raises(DeviceInfoError, match="cannot write the device-info file"):
        deviceinfo.copy_from_device_plugin(str(tmp_path), "r", "d", dest)


# --- load / remove --------------------------------------------------------------------------------


def test_load_missing_is_none(tmp_path: Path) -> None:
    assert deviceinfo.load(str(tmp_path / "nothing")) is None


def test_load_malformed_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("")
    with pytest.raises(DeviceInfoError, match=r"the device-info file .*/f is empty"):
        deviceinfo.load(str(path))


def test_load_unreadable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DeviceInfoError, match="cannot read the device-info file"):
        deviceinfo.load(str(tmp_path))  # a directory


def test_remove_is_idempotent(tmp_path: Path) -> None:
    dp_file(tmp_path, "r-d-device.json", DEVINFO)
    dest = deviceinfo.cni_file_path(str(tmp_path), "ns/net", CID, "net1")
    deviceinfo.copy_from_device_plugin(str(tmp_path), "r", "d", dest)
    assert deviceinfo.remove(dest) is True
    assert not os.path.exists(dest)
    assert deviceinfo.remove(dest) is False
    assert (tmp_path / "devinfo" / "dp" / "r-d-device.json").exists()  # the plugin's file stays


def test_remove_failure_is_reported(tmp_path: Path) -> None:
    target = tmp_path / "dir"
    (target / "child").mkdir(parents=True)
    with pytest.raises(DeviceInfoError, match="cannot remove the device-info file"):
        deviceinfo.remove(str(target))
