"""The per-container delegate list ("scratch cache"): ``<cniDir>/<containerID>``.

ADD saves the full list of attachments before the first delegate runs, so that DEL can undo
exactly what ADD set up even when the pod, its annotations or its NADs are gone by then.

Differences from Go Multus (DESIGN "Semantics we choose" 1): written crash-safely (temp file,
fsync, rename; 0600 in a 0700 dir) with a schema version; the container ID is validated before
it becomes a path; a corrupt file is reported as :class:`pymultus.errors.CorruptEntry` so DEL can
fall back to other sources instead of silently skipping the delegates (Multus #948, #1087). Go Multus's own
format (a JSON list of ``DelegateNetConf`` with base64 ``Bytes``) is still read, so pods added by
Go Multus before a migration are deleted correctly.
"""

from __future__ import annotations

import posix

from pymultus import errors, fileio, jsonio, paths
from pymultus.cni.spec import validate_container_id
from pymultus.errors import MultusError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

KIND = "pymultusDelegates"
SCHEMA_VERSION = 1


def entry_path(cni_dir: str, container_id: str) -> str:
    """The cache path of ``container_id``, validated so it cannot escape ``cni_dir``.

    The file is named after the container ID, as in Go Multus; an ID longer than NAME_MAX
    (255 bytes) gets a shortened name with a hash of the whole ID (``fileio.bounded_name``) —
    the document inside still holds the full ``containerId``.
    """
    validate_container_id(container_id)
    return paths.join(cni_dir, fileio.bounded_name(container_id))


def save(cni_dir: str, container_id: str, record: dict[str, object]) -> None:
    """Write ``record`` (an object with a ``delegates`` list) for ``container_id``.

    Temp file, fsync, rename — but no directory fsync (a journal commit, ~1 ms here and up to
    ~9 ms on busy disks, on every ADD). It is not needed for what the cache is for: the content
    is durable before the name appears, so the entry is never torn; a power loss can at worst
    lose the rename, and then (a) every pod network namespace is gone with it, (b) the on-disk
    state the delegates create afterwards (host-local's lease files, libcni's result cache) is
    metadata too, and ext4/xfs commit metadata operations in order, so it cannot survive while
    this earlier rename is lost, and (c) DEL treats a missing entry like Go Multus (result
    caches, then the configuration) anyway.
    """
    document = {"kind": KIND, "schemaVersion": SCHEMA_VERSION, "containerId": container_id, **record}
    path = entry_path(cni_dir, container_id)
    try:
        fileio.write_atomically(path, jsonio.dumpb(document), sync_dir=False)
    except OSError as exc:
        if paths.exists(cni_dir) and not paths.isdir(cni_dir):
            raise errors.InvalidConfig(
                f"cniDir {cni_dir} is not a directory", details=f"cniDir={cni_dir}"
            ) from None
        raise errors.IOFailure(
            f"cannot write the delegate cache {path}: {exc.strerror}", details=f"path={path}"
        ) from None


def load(cni_dir: str, container_id: str) -> dict[str, object] | None:
    """The saved record, None when there is none; :class:`pymultus.errors.CorruptEntry` when
    unreadable.

    The returned record always has ``delegates``: a list of objects in the pymultus form
    (``name``, ``ifname``, ``conf``, ``master``, ...). Go Multus entries are converted.
    """
    path = entry_path(cni_dir, container_id)
    try:
        # Only pymultus writes this file: a symlink, a FIFO or a device there is refused.
        data = fileio.read_file(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):  # no such file, or cniDir is not a directory
        return None
    except OSError as exc:
        raise errors.CorruptEntry(f"cannot read the delegate cache {path}: {exc.strerror}") from exc
    try:
        document = jsonio.loads(data, what=f"the delegate cache {path}")
    except MultusError as exc:
        raise errors.CorruptEntry(exc.msg, details=path) from exc
    if isinstance(document, list):
        return {"delegates": _from_go_multus(document, path), "legacy": True}
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise errors.CorruptEntry(f"the delegate cache {path} is not a pymultus or Multus cache file")
    if document.get("schemaVersion") != SCHEMA_VERSION:
        raise errors.CorruptEntry(
            f"the delegate cache {path} has schema version {document.get('schemaVersion')!r}, "
            f"this pymultus reads {SCHEMA_VERSION}"
        )
    delegates = document.get("delegates")
    if not isinstance(delegates, list) or not all(_valid_entry(item) for item in delegates):
        raise errors.CorruptEntry(f"the delegate cache {path} has an invalid delegate list")
    return document


def remove(cni_dir: str, container_id: str) -> bool:
    """Delete the entry; returns whether one existed.

    No directory fsync (as for libcni's result cache, ``pymultus.cni.cache.remove``): an entry
    that reappears after a power loss only means one more DEL of the same delegates, and DEL is
    idempotent (DESIGN item 2).

    Nothing to remove is not an error, whatever the reason: no file, a ``cniDir`` that is not a
    directory, a read-only ``cniDir`` without the file, or a directory in the entry's place
    (never ours: it is left alone). :class:`~pymultus.errors.IOFailure` when a file that is
    there cannot be removed.
    """
    path = entry_path(cni_dir, container_id)
    try:
        posix.unlink(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False
    except OSError as exc:
        # unlink on a read-only file system fails with EROFS before it looks the name up.
        if not paths.lexists(path):
            return False
        raise errors.IOFailure(
            f"cannot remove the delegate cache {path}: {exc.strerror}", details=f"path={path}"
        ) from None
    return True


def entry_names(cni_dir: str) -> list[str]:
    """File names of the delegate lists in ``cni_dir``, sorted (GC, hot-plug, the operator
    tools). A long container ID's file name is shortened: the full ID is the document's
    ``containerId``. No ``cniDir`` (or one that cannot be listed) holds none."""
    try:
        names = sorted(posix.listdir(cni_dir))
    except OSError:
        return []
    found = []
    for name in names:
        if name.startswith(".") or not paths.isfile(paths.join(cni_dir, name)):
            continue  # temp files, and the locks/, results/ and deleted/ directories
        try:
            validate_container_id(name)
        except MultusError:
            continue
        found.append(name)
    return found


def delegate_items(record: Mapping[str, object]) -> list[dict[str, object]]:
    """The delegate objects of a loaded record (anything else in the list is skipped)."""
    items = record.get("delegates")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _valid_entry(item: object) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and isinstance(item.get("ifname"), str)
        and isinstance(item.get("conf"), dict)
    )


def _from_go_multus(items: list[object], path: str) -> list[dict[str, object]]:
    import binascii

    delegates: list[dict[str, object]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("Bytes"), str):
            raise errors.CorruptEntry(f"entry {index} of the Multus delegate cache {path} has no conf bytes")
        try:
            raw = binascii.a2b_base64(str(item["Bytes"]))
            conf = jsonio.loads_object(raw, what=f"entry {index} of the Multus delegate cache {path}")
        except (binascii.Error, MultusError) as exc:
            message = f"entry {index} of the Multus delegate cache {path} is unreadable"
            raise errors.CorruptEntry(message) from exc
        ifname = item.get("ifnameRequest")
        delegates.append(
            {
                "name": str(item.get("Name") or conf.get("name") or ""),
                # Go Multus recomputes names positionally: master = runtime ifname, others net<idx>.
                "ifname": ifname if isinstance(ifname, str) and ifname else "",
                "conf": conf,
                "master": index == 0,
                "deviceID": item.get("deviceID") or "",
                "resourceName": item.get("resourceName") or "",
            }
        )
    return delegates
