"""Device-information files of the NPWG Device Information Spec (reference §15, §19.4).

Two kinds of file under ``<base>/devinfo`` (base ``/var/run/k8s.cni.cncf.io``):

* ``dp/<resourceName>-<deviceID>-device.json``, written by the device plugin (``/`` → ``-`` in
  both parts, as NADC's ``getDPDeviceInfoPath``), read here;
* ``cni/<ns-nad>-<containerID>_<ifName>``, one per attachment with a device ID (``/`` → ``-``, as
  Multus's ``delegateRuntimeConfig`` + NADC's ``GetCNIDeviceInfoPath``). It is handed to the
  delegate as ``runtimeConfig.CNIDeviceInfoFile``, filled before ADD from the device plugin's
  file, read after ADD into the network-status ``device-info``, removed on DEL.

Differences from NADC/Multus, all without changing paths or content consumers see: the copy is
atomic (temp file, rename) and replaces a stale file left by an earlier ADD of the same
container instead of failing with "already exists"; the device plugin's bytes are copied as they
are (after checking they hold a JSON object) rather than re-encoded through Go's ``DeviceInfo``
struct, which would drop fields newer than the struct.

Multus treats every device-info failure as non-fatal (logged, the attachment goes on without
``device-info``); callers should do the same with :class:`DeviceInfoError`. Invalid identifiers
in a path are errors of their own (``InvalidEnvironment`` / ``InvalidConfig``), raised before
anything touches the disk.
"""

from __future__ import annotations

from pymultus import errors, fileio, jsonio, paths
from pymultus.cni.spec import validate_container_id, validate_ifname
from pymultus.errors import MultusError

DEFAULT_BASE_DIR = "/var/run/k8s.cni.cncf.io"
FILE_MODE = 0o444  # as NADC's saveDeviceInfo: readers only, the owner replaces it by rename


class DeviceInfoError(errors.IOFailure):
    """A device-info file cannot be read, decoded or written (Multus logs these and goes on)."""


def cni_file_path(base_dir: str, network_name: str, container_id: str, ifname: str) -> str:
    """``<base>/devinfo/cni/<network_name with / → ->-<containerID>_<ifName>``."""
    validate_container_id(container_id)
    validate_ifname(ifname)
    _check_part(network_name, "network name")
    # NADC's name; shortened with a hash when too long (only pymultus and the delegate, which is
    # handed the path, use it), so a long container ID works.
    filename = fileio.bounded_name(f"{network_name}-{container_id}_{ifname}".replace("/", "-"))
    return paths.join(base_dir, "devinfo", "cni", filename)


def dp_file_path(base_dir: str, resource_name: str, device_id: str) -> str:
    """``<base>/devinfo/dp/<resourceName>-<deviceID>-device.json`` with ``/`` → ``-`` in both."""
    _check_part(resource_name, "resource name")
    _check_part(device_id, "device ID")
    filename = f"{resource_name.replace('/', '-')}-{device_id.replace('/', '-')}-device.json"
    _check_length(filename, f"resource name {resource_name!r} with device ID {device_id!r}")
    return paths.join(base_dir, "devinfo", "dp", filename)


def copy_from_device_plugin(base_dir: str, resource_name: str, device_id: str, dest: str) -> bool:
    """Copy the device plugin's file for ``device_id`` to ``dest`` (mode 0444, atomically).

    Returns False when the device plugin wrote no file (many do not); :class:`DeviceInfoError`
    when it is unreadable, not a JSON object, or ``dest`` cannot be written.
    """
    source = dp_file_path(base_dir, resource_name, device_id)
    data = _read(source)
    if data is None:
        return False
    _decode(data, f"the device plugin's device-info file {source}")
    try:
        # The devinfo dirs are shared with device plugins and CNI plugins: leave an existing
        # directory's mode alone, create a missing one world-readable like the files.
        fileio.write_atomically(dest, data, mode=FILE_MODE, dir_mode=None)
    except OSError as exc:
        raise DeviceInfoError(
            f"cannot write the device-info file {dest}: {exc.strerror}", details=f"source={source}"
        ) from exc
    return True


def load(path: str) -> dict[str, object] | None:
    """The device-info object in ``path`` (for network-status ``device-info``); None if missing."""
    data = _read(path)
    if data is None:
        return None
    return _decode(data, f"the device-info file {path}")


def remove(path: str) -> bool:
    """Delete a CNI device-info file; returns whether there was one (a repeated DEL is fine)."""
    try:
        return fileio.remove_durably(path)
    except OSError as exc:
        raise DeviceInfoError(f"cannot remove the device-info file {path}: {exc.strerror}") from exc


def _read(path: str) -> bytes | None:
    try:
        return fileio.read_file(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeviceInfoError(f"cannot read the device-info file {path}: {exc.strerror}") from exc


def _decode(data: bytes, what: str) -> dict[str, object]:
    try:
        return jsonio.loads_object(data, what=what)
    except MultusError as exc:
        raise DeviceInfoError(exc.msg) from exc


def _check_part(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise errors.InvalidConfig(f"the {what} of a device-info file is empty")
    if "\x00" in value:
        raise errors.InvalidConfig(f"the {what} {value!r} of a device-info file contains a NUL byte")


def _check_length(filename: str, what: str) -> None:
    if len(filename.encode("utf-8", "surrogateescape")) > fileio.NAME_MAX:
        raise errors.InvalidConfig(
            f"the device-info file name for {what} is longer than {fileio.NAME_MAX} bytes"
        )
