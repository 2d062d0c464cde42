"""A small, bounded record of containers whose DEL completed: ``<cniDir>/deleted/<containerID>``.

Why: containerd sends DEL up to three times per pod (StopPodSandbox with the netns,
StopPodSandbox again and RemovePodSandbox without it), and runtimes retry DEL. After the first
DEL removed the delegate list and the result caches, a later DEL found no record at all and fell
back to re-resolving the pod's networks (in a cluster: GET pod + GET per NAD) and re-running
every delegate's DEL, with a warning. With this record it answers at once and quietly.

One empty file per container rather than one shared list: concurrent DELs of different pods
never rewrite the same file, so none is lost. Bounded: when :func:`mark` finds more than
:data:`LIMIT` entries it removes the oldest (by mtime) down to three quarters of it, so the
directory stays small and pruning is rare (one ``scandir`` per mark, ~0.1 ms at the limit).
A container ID is never reused by CRI runtimes; another caller that reuses one is still safe:
a DEL consults this record only when the container has neither a delegate list nor a result
cache, i.e. when no ADD of it left anything to undo.

Losing the record (a full disk, a read-only cniDir, pruning) only brings back the old, costly
behaviour: the best-effort re-resolution, which always succeeds.
"""

from __future__ import annotations

import posix

from pymultus import fileio, paths
from pymultus.cni.spec import validate_container_id

DELETED_DIR = "deleted"
LIMIT = 1024


def entry_path(cni_dir: str, container_id: str) -> str:
    validate_container_id(container_id)
    return paths.join(cni_dir, DELETED_DIR, fileio.bounded_name(container_id))


def was_deleted(cni_dir: str, container_id: str) -> bool:
    """Whether a DEL of ``container_id`` completed recently (one ``lstat``)."""
    return paths.lexists(entry_path(cni_dir, container_id))


def mark(cni_dir: str, container_id: str) -> bool:
    """Record that the DEL of ``container_id`` completed; False when it cannot be recorded (the
    next DEL then takes the best-effort path, as without this record)."""
    path = entry_path(cni_dir, container_id)
    directory = paths.dirname(path)
    try:
        try:
            fd = posix.open(path, posix.O_WRONLY | posix.O_CREAT | posix.O_NOFOLLOW | posix.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            fileio.ensure_private_dir(directory)
            fd = posix.open(path, posix.O_WRONLY | posix.O_CREAT | posix.O_NOFOLLOW | posix.O_CLOEXEC, 0o600)
        posix.close(fd)
        prune(directory, LIMIT)
    except OSError:
        return False
    return True


def prune(directory: str, limit: int) -> int:
    """Keep at most ``limit`` entries: past it, remove the oldest down to ``limit * 3 // 4``.
    Returns how many were removed."""
    with posix.scandir(directory) as scan:
        entries = list(scan)
    if len(entries) <= limit:
        return 0
    aged = []
    for entry in entries:
        try:
            aged.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.path))
        except OSError:
            continue  # removed meanwhile by another DEL's pruning
    aged.sort()
    removed = 0
    for _, path in aged[: len(aged) - limit * 3 // 4]:
        try:
            posix.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed
