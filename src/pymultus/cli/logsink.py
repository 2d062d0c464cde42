"""The CNI executables' log sink: logfmt lines (``pymultus.logfmt``) to ``logFile`` and/or stderr.

The ``logging`` package costs start-up time, so this is a plain function. Levels follow Go Multus
(``panic`` < ``error`` < ``verbose`` < ``debug``, see ``pymultus.logfmt``); the engine asks
``Deps.log_level`` before it builds a line, so a level that is off costs nothing here either.

``logFile`` is rotated like Go Multus's lumberjack settings (``logOptions``): past ``maxSize``
MB the file becomes ``<file>.1`` (older ones shift up to ``maxBackups``, gzip-compressed when
``compress``), and backups older than ``maxAge`` days are removed. Rotation is checked only
when a line is written, so a quiet plugin pays nothing.
"""

from __future__ import annotations

import posix
import sys
import time

from pymultus import logfmt, paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from pymultus.config.multus import LogOptions

_MB = 1024 * 1024
_DAY = 86400.0


def make_logger(
    *, level: str, log_file: str, to_stderr: bool, component: str, options: LogOptions | None = None
) -> Callable[[str, str], None]:
    configured = logfmt.threshold(level)

    def log(message_level: str, message: str) -> None:
        if not logfmt.enabled(message_level, configured):
            return
        line = logfmt.line(message_level, component, posix.getpid(), message, time.time())
        if to_stderr:
            sys.stderr.write(line)
        if log_file:
            write_line(log_file, line.encode("utf-8", "replace"), options)

    return log


def write_line(path: str, data: bytes, options: LogOptions | None) -> None:
    """Append ``data`` to ``path``, rotating first when it has grown past ``maxSize``."""
    try:
        if options is not None and options.max_size > 0:
            try:
                if posix.stat(path).st_size + len(data) > options.max_size * _MB:
                    rotate(path, options)
            except FileNotFoundError:
                pass
        # O_NONBLOCK: a FIFO in logFile's place (no reader) must not hang every ADD and DEL; the
        # open then fails with ENXIO, or a full pipe drops the line (EAGAIN), both ignored.
        flags = (
            posix.O_WRONLY
            | posix.O_APPEND
            | posix.O_CREAT
            | posix.O_CLOEXEC
            | posix.O_NONBLOCK
            | posix.O_NOCTTY
        )
        fd = posix.open(path, flags, 0o600)
    except OSError:
        return  # logging must never fail the CNI request
    try:
        posix.write(fd, data)
    except OSError:
        pass
    finally:
        posix.close(fd)


def rotate(path: str, options: LogOptions) -> None:
    """Shift ``path`` to ``path.1`` (and older backups up), honouring maxBackups and maxAge."""
    suffix = ".gz" if options.compress else ""
    keep = max(options.max_backups, 0)
    if keep == 0:
        posix.unlink(path)
        return
    for index in range(keep, 0, -1):
        for ext in (".gz", ""):
            older = f"{path}.{index}{ext}"
            if paths.exists(older):
                if index == keep:
                    posix.unlink(older)
                else:
                    posix.replace(older, f"{path}.{index + 1}{ext}")
    rotated = f"{path}.1"
    posix.replace(path, rotated)
    if suffix:
        _compress(rotated)
    if options.max_age > 0:
        cutoff = time.time() - options.max_age * _DAY
        for index in range(1, keep + 1):
            for ext in (".gz", ""):
                backup = f"{path}.{index}{ext}"
                try:
                    if posix.stat(backup).st_mtime < cutoff:
                        posix.unlink(backup)
                except FileNotFoundError:
                    pass


def _compress(path: str) -> None:
    import gzip
    import shutil

    with open(path, "rb") as source, gzip.open(f"{path}.gz", "wb") as target:
        shutil.copyfileobj(source, target)
    posix.unlink(path)
