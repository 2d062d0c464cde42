"""libcni's result cache (``cniCacheV1``): ``<cacheDir>/results/<network>-<containerID>-<ifname>``.

Files are interchangeable with libcni-based tools (containerd, CRI-O, cnitool, Go Multus): same
path, same JSON fields, ``config`` as base64 of the network configuration bytes. Unlike libcni the
writes are atomic (``pymultus.fileio``: temp file, rename; 0600 in 0700; why without fsync: see
``write``), and every identifier is validated before it becomes part of a path. A corrupt or
truncated file reads as None (the caller decides, e.g. DEL proceeds without prevResult); it
never raises.
"""

from __future__ import annotations

import binascii
import posix

from pymultus import errors, fileio, jsonio, paths
from pymultus.cni import spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

KIND_V1 = "cniCacheV1"
RESULTS_DIR = "results"


class CachedAttachment:
    """One cached ADD: what libcni needs to DEL/CHECK/GC the attachment later."""

    __slots__ = (
        "capability_args",
        "cni_args",
        "config",
        "container_id",
        "ifname",
        "legacy",
        "netns",
        "network_name",
        "result",
    )

    def __init__(
        self,
        *,
        network_name: str,
        container_id: str,
        ifname: str,
        netns: str = "",
        config: bytes = b"",
        cni_args: list[tuple[str, str]] | None = None,
        capability_args: dict[str, object] | None = None,
        result: dict[str, object] | None = None,
        legacy: bool = False,
    ) -> None:
        self.network_name = network_name
        self.container_id = container_id
        self.ifname = ifname
        self.netns = netns
        self.config = config
        self.cni_args = cni_args if cni_args is not None else []
        self.capability_args = capability_args if capability_args is not None else {}
        self.result = result
        self.legacy = legacy  # read from the pre-cniCacheV1 form (a bare result)

    def to_json(self) -> dict[str, object]:
        """The libcni ``cachedInfo`` document (field names and omitempty as in Go)."""
        doc: dict[str, object] = {
            "kind": KIND_V1,
            "containerId": self.container_id,
            "config": binascii.b2a_base64(self.config, newline=False).decode("ascii"),
            "ifName": self.ifname,
            "networkName": self.network_name,
        }
        if self.netns:
            doc["netns"] = self.netns
        if self.cni_args:
            doc["cniArgs"] = [[key, value] for key, value in self.cni_args]
        if self.capability_args:
            doc["capabilityArgs"] = self.capability_args
        if self.result is not None:
            doc["result"] = self.result
        return doc

    def __repr__(self) -> str:
        return (
            f"CachedAttachment({self.network_name!r}, container_id={self.container_id!r}, "
            f"ifname={self.ifname!r}, netns={self.netns!r})"
        )


def result_path(cache_dir: str, network: str, container_id: str, ifname: str) -> str:
    """The cache file of one attachment; the ids are validated first (no ``../`` in a path).

    libcni's name when it fits in NAME_MAX (where libcni itself would fail), else a shortened
    name with a hash of the whole (``fileio.bounded_name``): very long container IDs work too.
    """
    spec.validate_network_name(network)
    spec.validate_container_id(container_id)
    spec.validate_ifname(ifname)
    return paths.join(cache_dir, RESULTS_DIR, fileio.bounded_name(f"{network}-{container_id}-{ifname}"))


def write(cache_dir: str, entry: CachedAttachment) -> None:
    path = result_path(cache_dir, entry.network_name, entry.container_id, entry.ifname)
    try:
        # A missing cache dir is created private; an existing one (/var/lib/cni) is left alone.
        paths.makedirs(cache_dir, 0o700)
        # Temp file and rename, no fsync (libcni syncs nothing either): a reader or a killed
        # writer never sees a torn entry, and what a power loss can do needs no fsync to be
        # safe. It can lose the rename (an fsync of the content before it would not prevent
        # that) or, without the fsync, leave the name with empty or partial content; both read
        # as "no entry" (``read``: a missing file is None, an undecodable one is None and is
        # reported), and "no entry" after a power loss is harmless: every pod netns is gone
        # with it, the delegate list (``pymultus.store.delegates``, written and fsync'd before
        # the first delegate ran) still names every attachment, so DEL runs each delegate,
        # without prevResult (which host-local, static, bridge, macvlan... do not need to
        # release what survives a reboot: leases are keyed by container ID and ifname).
        # Saves one journal commit per network per ADD (~0.4-0.6 ms here, more on busy disks).
        fileio.write_atomically(path, jsonio.dumpb(entry.to_json()), sync_data=False)
    except OSError as exc:
        raise errors.IOFailure(f"cannot write the CNI result cache {path}: {exc.strerror}") from exc


def read(
    cache_dir: str,
    network: str,
    container_id: str,
    ifname: str,
    *,
    on_corrupt: Callable[[str, str], None] | None = None,
) -> CachedAttachment | None:
    """The cached attachment, or None when there is none or it is unreadable as a cache entry.

    ``on_corrupt(path, reason)`` is told about a file that exists but cannot be used. I/O errors
    other than "no such file" (permissions, ...) raise IOFailure: they are not corruption.
    """
    path = result_path(cache_dir, network, container_id, ifname)
    try:
        data = fileio.read_file(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except errors.UnreadableFile as exc:  # a directory, device, FIFO, symlink or a huge file
        if on_corrupt is not None:
            on_corrupt(path, str(exc.strerror))
        return None
    except OSError as exc:
        raise errors.IOFailure(f"cannot read the CNI result cache {path}: {exc.strerror}") from exc
    entry, reason = _decode(data, network=network, container_id=container_id, ifname=ifname)
    if entry is None and on_corrupt is not None:
        on_corrupt(path, reason)
    return entry


def remove(cache_dir: str, network: str, container_id: str, ifname: str) -> bool:
    """Delete the entry; returns whether one existed."""
    path = result_path(cache_dir, network, container_id, ifname)
    try:
        # No directory fsync (~9 ms on these disks, every DEL): an entry that reappears after a
        # crash only means one more DEL, which is idempotent. Writes stay fully durable.
        posix.unlink(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False
    except OSError as exc:
        # unlink on a read-only file system fails with EROFS before it looks the name up.
        if not paths.lexists(path):
            return False
        raise errors.IOFailure(f"cannot remove the CNI result cache {path}: {exc.strerror}") from exc
    return True


def list_attachments(
    cache_dir: str,
    network: str | None = None,
    *,
    container_id: str | None = None,
    on_corrupt: Callable[[str, str], None] | None = None,
) -> list[CachedAttachment]:
    """Every readable cniCacheV1 entry (libcni's ``GetCachedAttachments``), optionally filtered.

    Unreadable files are skipped (one bad file never hides the others); with ``container_id``,
    ``on_corrupt(path, reason)`` is told about those whose name shows they are that container's.
    """
    directory = paths.join(cache_dir, RESULTS_DIR)
    try:
        names = sorted(posix.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise errors.IOFailure(f"cannot list the CNI result cache {directory}: {exc.strerror}") from exc
    found: list[CachedAttachment] = []
    for name in names:
        if name.startswith("."):
            continue  # temp files of an interrupted write
        if container_id is not None and f"-{container_id}-" not in name and len(name) < fileio.NAME_MAX:
            continue  # another container's (only a name shortened by bounded_name hides its ID)
        path = paths.join(directory, name)
        try:
            # Symlinks, FIFOs, devices and huge files are refused: /dev/zero or a FIFO here
            # would otherwise exhaust the memory of (or hang) every DEL that lists the cache.
            data = fileio.read_file(path, follow_symlinks=False)
        except OSError as exc:
            _report(on_corrupt, container_id, path, exc.strerror or str(exc))
            continue
        # With a network name, a legacy entry (a bare result) decodes as one and is skipped
        # below instead of being reported as corrupt.
        entry, reason = _decode(data, network=name)
        if entry is None:
            _report(on_corrupt, container_id, path, reason)
            continue
        if entry.legacy:
            continue  # a legacy entry does not say which network or container it belongs to
        if network is not None and entry.network_name != network:
            continue
        if container_id is not None and entry.container_id != container_id:
            continue
        found.append(entry)
    return found


def _report(
    on_corrupt: Callable[[str, str], None] | None, container_id: str | None, path: str, reason: str
) -> None:
    if on_corrupt is not None and container_id is not None and f"-{container_id}-" in paths.basename(path):
        on_corrupt(path, reason)


def _decode(
    data: bytes, *, network: str = "", container_id: str = "", ifname: str = ""
) -> tuple[CachedAttachment | None, str]:
    """(entry, "") or (None, reason)."""
    try:
        doc = jsonio.loads_object(data, what="CNI result cache entry")
    except errors.JSONDecodeError as exc:
        return None, str(exc)
    if doc.get("kind") != KIND_V1:
        # libcni's legacy form: the file is the result itself.
        if isinstance(doc.get("cniVersion"), str) and network:
            return CachedAttachment(
                network_name=network, container_id=container_id, ifname=ifname, result=doc, legacy=True
            ), ""
        return None, "neither a cniCacheV1 entry nor a legacy result"
    strings = {}
    for key in ("containerId", "ifName", "networkName"):
        value = doc.get(key)
        if not isinstance(value, str) or not value:
            return None, f"field {key} is missing or not a string"
        strings[key] = value
    netns = doc.get("netns", "")
    config = doc.get("config", "")
    cni_args = doc.get("cniArgs", [])
    capability_args = doc.get("capabilityArgs", {})
    result = doc.get("result")
    if not isinstance(netns, str) or not isinstance(config, str):
        return None, "field netns or config is not a string"
    try:
        config_bytes = binascii.a2b_base64(config, strict_mode=True) if config else b""
    except binascii.Error:
        return None, "field config is not valid base64"
    if not isinstance(cni_args, list) or not all(_is_pair(pair) for pair in cni_args):
        return None, "field cniArgs is not a list of [key, value] pairs"
    if not isinstance(capability_args, dict):
        return None, "field capabilityArgs is not an object"
    if result is not None and not isinstance(result, dict):
        return None, "field result is not an object"
    return CachedAttachment(
        network_name=strings["networkName"],
        container_id=strings["containerId"],
        ifname=strings["ifName"],
        netns=netns,
        config=config_bytes,
        cni_args=[(str(pair[0]), str(pair[1])) for pair in cni_args],
        capability_args=capability_args,
        result=result,
    ), ""


def _is_pair(pair: object) -> bool:
    return isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and isinstance(pair[1], str)
