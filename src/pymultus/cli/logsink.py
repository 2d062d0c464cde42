"""A tiny logger for the CNI executables: the ``logging`` package costs start-up time.

Levels follow Go Multus (``panic`` < ``error`` < ``verbose`` < ``debug``); a line is written
when its level is at or below the configured one. Warnings show from ``error`` up, because they
report things an operator must fix (e.g. an undeclared capability).

``logFile`` is rotated like Go Multus's lumberjack settings (``logOptions``): past ``maxSize``
MB the file becomes ``<file>.1`` (older ones shift up to ``maxBackups``, gzip-compressed when
``compress``), and backups older than ``maxAge`` days are removed. Rotation is checked only
when a line is written, so a quiet plugin pays nothing.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from pymultus.config.multus import LogOptions

_CONFIGURED = {"panic": 0, "error": 1, "verbose": 2, "debug": 3}
_MESSAGE = {"panic": 0, "error": 1, "warning": 1, "info": 2, "verbose": 2, "debug": 3}
_MB = 1024 * 1024
_DAY = 86400.0


def make_logger(
    *, level: str, log_file: str, to_stderr: bool, component: str, options: LogOptions | None = None
) -> Callable[[str, str], None]:
    threshold = _CONFIGURED.get(level, 0)

    def log(message_level: str, message: str) -> None:
        if _MESSAGE.get(message_level, 1) > threshold:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = f"{stamp} [{message_level}] {component}[{os.getpid()}]: {message}\n"
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
                if os.stat(path).st_size + len(data) > options.max_size * _MB:
                    rotate(path, options)
            except FileNotFoundError:
                pass
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return  # logging must never fail the CNI request
    try:
        os.write(fd, data)
    except OSError:
        pass
    finally:
        os.close(fd)


def rotate(path: str, options: LogOptions) -> None:
    """Shift ``path`` to ``path.1`` (and older backups up), honouring maxBackups and maxAge."""
    suffix = ".gz" if options.compress else ""
    keep = max(options.max_backups, 0)
    if keep == 0:
        os.unlink(path)
        return
    for index in range(keep, 0, -1):
        for ext in (".gz", ""):
            older = f"{path}.{index}{ext}"
            if os.path.exists(older):
                if index == keep:
                    os.unlink(older)
                else:
                    os.replace(older, f"{path}.{index + 1}{ext}")
    rotated = f"{path}.1"
    os.replace(path, rotated)
    if suffix:
        _compress(rotated)
    if options.max_age > 0:
        cutoff = time.time() - options.max_age * _DAY
        for index in range(1, keep + 1):
            for ext in (".gz", ""):
                backup = f"{path}.{index}{ext}"
                try:
                    if os.stat(backup).st_mtime < cutoff:
                        os.unlink(backup)
                except FileNotFoundError:
                    pass


def _compress(path: str) -> None:
    import gzip
    import shutil

    with open(path, "rb") as source, gzip.open(f"{path}.gz", "wb") as target:
        shutil.copyfileobj(source, target)
    os.unlink(path)
