"""The path and environment helpers of the CNI hot path, on the built-in ``posix`` module alone.

Why not ``os``: importing it costs ~4.6 M instructions (~1.4 ms) of each ``multus`` process — it
builds the ~25 abstract base classes of ``_collections_abc`` for ``os.environ`` and imports
``posixpath``, ``stat`` and ``genericpath`` — and the thin plugin starts twice per pod. Everything
else the hot path calls on ``os`` (``open``, ``stat``, ``posix_spawn``, ``O_*`` ...) is ``posix``'s
own function re-exported, so those modules call ``posix`` directly; this module has the few pieces
``os`` writes in Python, with the same results for the ``str`` paths used here (POSIX only).
Modules that are not on the CNI path (daemon, installer, operator tools) keep using ``os``.
"""

from __future__ import annotations

import posix
import sys

# The file-type bits of ``st_mode`` (POSIX values, as in the ``stat`` module, which every CNI
# process would otherwise import just for these: ~0.1 ms).
S_IFMT = 0o170000
S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFLNK = 0o120000
S_IFCHR = 0o020000
S_IFBLK = 0o060000
S_IFIFO = 0o010000
S_IFSOCK = 0o140000


def join(first: str, *rest: str) -> str:
    """``os.path.join``: an absolute component restarts the path."""
    path = first
    for part in rest:
        if part.startswith("/"):
            path = part
        elif not path or path.endswith("/"):
            path += part
        else:
            path += "/" + part
    return path


def dirname(path: str) -> str:
    """``os.path.dirname``: everything before the last slash (trailing slashes dropped unless
    it is all slashes)."""
    head = path[: path.rfind("/") + 1]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head


def basename(path: str) -> str:
    """``os.path.basename``: everything after the last slash."""
    return path[path.rfind("/") + 1 :]


def normpath(path: str) -> str:
    """``os.path.normpath``: ``.``, ``..`` and repeated slashes resolved textually."""
    if not path:
        return "."
    initial = 2 if path.startswith("//") and not path.startswith("///") else int(path.startswith("/"))
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != ".." or (not initial and not parts) or (parts and parts[-1] == ".."):
            parts.append(part)
        elif parts:
            parts.pop()
    return "/" * initial + "/".join(parts) or "."


def abspath(path: str) -> str:
    """``os.path.abspath``: relative to the working directory, normalised."""
    return normpath(path if path.startswith("/") else join(posix.getcwd(), path))


def _mode(path: str, *, follow: bool = True) -> int | None:
    try:
        return posix.stat(path, follow_symlinks=follow).st_mode & S_IFMT
    except (OSError, ValueError):
        return None


def exists(path: str) -> bool:
    """``os.path.exists``: the path (symlinks followed) can be stat'ed."""
    return _mode(path) is not None


def lexists(path: str) -> bool:
    """``os.path.lexists``: the path exists, a dangling symlink included."""
    return _mode(path, follow=False) is not None


def isdir(path: str) -> bool:
    return _mode(path) == S_IFDIR


def isfile(path: str) -> bool:
    return _mode(path) == S_IFREG


def islink(path: str) -> bool:
    return _mode(path, follow=False) == S_IFLNK


def makedirs(path: str, mode: int = 0o777) -> None:
    """``os.makedirs(path, mode, exist_ok=True)``: create ``path`` and its missing parents."""
    try:
        posix.mkdir(path, mode)
        return
    except FileExistsError:
        if isdir(path):
            return
        raise
    except FileNotFoundError:
        parent = dirname(path.rstrip("/"))
        if not parent or parent == path:
            raise
    makedirs(parent)  # like os.makedirs, ``mode`` is for the leaf only
    try:
        posix.mkdir(path, mode)
    except FileExistsError:
        if not isdir(path):
            raise


def environ() -> dict[str, str]:
    """The environment the process started with, decoded as ``os.environ`` decodes it (file-system
    encoding, undecodable bytes kept as surrogates, so they round-trip to the delegates
    unchanged). Unlike ``os.environ`` it does not see later ``putenv`` calls: entry points read it
    first thing."""
    encoding = sys.getfilesystemencoding()
    return {
        key.decode(encoding, "surrogateescape"): value.decode(encoding, "surrogateescape")
        for key, value in posix.environ.items()
    }
