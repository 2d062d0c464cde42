"""Crash-safe file writes and bounded file reads shared by every cache and file of pymultus.

A reader sees either the old content or the new one, never a truncated file: write a temp file
in the same directory, fsync it, rename it over the target, fsync the directory.

Every file pymultus reads goes through :func:`read_file`: a regular file of bounded size, or a
clear error. Without it, a configuration or cache path that names ``/dev/zero`` (or a symlink to
it) grows the process until the kernel kills it, and a FIFO hangs it.
"""

from __future__ import annotations

import posix
from _thread import get_ident

from pymultus import errors, paths

# The default cap of read_file: far above any configuration, cache entry, kubeconfig or manifest
# file (a Kubernetes object is at most ~1.5 MiB), far below what hurts a node.
READ_LIMIT = 8 << 20
NAME_MAX = 255  # bytes in one path component (Linux NAME_MAX)
_TMP_STEM_MAX = 128  # characters of the target's name kept in a temp file's name

# What read_file calls the file types it refuses (``st_mode`` type bits, see pymultus.paths).
_FILE_TYPES = {
    paths.S_IFDIR: "a directory",
    paths.S_IFCHR: "a character device",
    paths.S_IFBLK: "a block device",
    paths.S_IFIFO: "a FIFO",
    paths.S_IFSOCK: "a socket",
}


def read_file(path: str, *, limit: int = READ_LIMIT, follow_symlinks: bool = True) -> bytes:
    """The content of the regular file ``path``, at most ``limit`` bytes.

    Opened with O_NONBLOCK (a FIFO cannot hang the open) and, when ``follow_symlinks`` is False,
    O_NOFOLLOW (for files only pymultus writes, e.g. caches: a symlink there is never ours); the
    type and size are checked on the open descriptor, and at most ``limit + 1`` bytes are read
    (a file that grows while it is read is refused too). Raises ``FileNotFoundError`` and other
    ``OSError`` as ``open`` would, and :class:`pymultus.errors.UnreadableFile` for a file refused here.
    """
    flags = posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NONBLOCK | (0 if follow_symlinks else posix.O_NOFOLLOW)
    try:
        fd = posix.open(path, flags)
    except OSError as exc:
        if not follow_symlinks and paths.islink(path):
            raise errors.UnreadableFile(path, "is a symbolic link, not a regular file") from exc
        raise
    try:
        file_type = posix.fstat(fd).st_mode & paths.S_IFMT
        if file_type != paths.S_IFREG:
            kind = _FILE_TYPES.get(file_type, "not a regular file")
            raise errors.UnreadableFile(path, f"is {kind}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = posix.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise errors.UnreadableFile(path, f"is larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        posix.close(fd)


def bounded_name(name: str) -> str:
    """``name`` as one path component: itself when it fits in NAME_MAX bytes (so the names Go
    Multus and libcni use stay the same), else a prefix and a SHA-256 of the whole name — the
    same name always maps to the same file, and two names to different files."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= NAME_MAX:
        return name
    import hashlib

    digest = hashlib.sha256(raw).hexdigest()
    prefix = raw[: NAME_MAX - len(digest) - 1].decode("utf-8", "ignore")
    return f"{prefix}-{digest}"


def ensure_private_dir(path: str, mode: int = 0o700) -> None:
    """Create ``path`` (and parents) if missing; tighten its mode to ``mode`` when we own it."""
    paths.makedirs(path, mode)
    if posix.stat(path).st_mode & 0o777 != mode:
        posix.chmod(path, mode)


def write_atomically(
    path: str,
    data: bytes,
    *,
    mode: int = 0o600,
    dir_mode: int | None = 0o700,
    sync_dir: bool = True,
    sync_data: bool = True,
) -> bool:
    """Replace ``path`` with ``data`` atomically; returns False when the content was already equal.

    ``dir_mode`` is applied to a directory we create (None: leave an existing directory alone and
    create a missing one with 0755, as for the CNI conf and bin dirs).

    ``sync_dir=False`` skips the directory fsync after the rename (one journal commit, 0.5-9 ms
    on these disks). The data is still fsync'd before the rename, so a name that survives a
    crash always has complete content; only the rename itself may be lost, i.e. the file may be
    missing (or still the old version) after a power loss. Callers that pass False say why that
    is acceptable for their file.

    ``sync_data=False`` (implies no directory fsync) skips the fsync of the content too: the
    rename still keeps readers and killed writers from ever seeing a torn file, but after a
    power loss the name may hold an empty or partial file. Only for a file whose readers treat
    such content exactly like a missing file, and which may go missing anyway.
    """
    try:
        # Bounded by the new content: a longer (or endless) file is different anyway.
        if read_file(path, limit=len(data)) == data and posix.stat(path).st_mode & 0o777 == mode:
            return False
    except OSError:
        pass
    directory = paths.dirname(path) or "."
    if dir_mode is None:
        paths.makedirs(directory, 0o755)
    else:
        ensure_private_dir(directory, dir_mode)
    # Unique per process and thread: the daemon writes from a pool of threads. The target's name
    # is cut so that the temp name fits in NAME_MAX even when the target's name does.
    stem = paths.basename(path)[:_TMP_STEM_MAX]
    tmp = paths.join(directory, f".{stem}.{posix.getpid()}.{get_ident()}.tmp")
    fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, mode)
    try:
        posix.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = posix.write(fd, view)
            view = view[written:]
        if sync_data:
            posix.fsync(fd)
    except BaseException:
        posix.close(fd)
        _unlink_quietly(tmp)
        raise
    posix.close(fd)
    try:
        posix.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if sync_dir and sync_data:
        fsync_dir(directory)
    return True


def fsync_dir(directory: str) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    try:
        fd = posix.open(directory, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError:
        return
    try:
        posix.fsync(fd)
    except OSError:
        pass
    finally:
        posix.close(fd)


def remove_durably(path: str) -> bool:
    """Unlink ``path`` if it exists; returns whether something was removed."""
    try:
        posix.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(paths.dirname(path) or ".")
    return True


def remove_orphaned_temps(directory: str) -> int:
    """Remove the temp files ``write_atomically`` left in ``directory`` when its process was
    killed mid-write (``.<name>.<pid>.<thread>.tmp`` whose pid no longer exists); returns how
    many. A live pid's temp file is kept: it may still be written (or the pid was reused).
    Costs a directory listing: call it only when a writer is known to have been killed."""
    try:
        names = posix.listdir(directory)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        parts = name[: -len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
            continue
        if paths.exists(f"/proc/{parts[1]}"):
            continue
        try:
            posix.unlink(paths.join(directory, name))
        except OSError:
            continue
        removed += 1
    return removed


def _unlink_quietly(path: str) -> None:
    try:
        posix.unlink(path)
    except OSError:
        pass
