"""A tiny logger for the CNI executables: the ``logging`` package costs start-up time.

Levels follow Go Multus (``panic`` < ``error`` < ``verbose`` < ``debug``); a line is written
when its level is at or below the configured one. Warnings show from ``error`` up, because they
report things an operator must fix (e.g. an undeclared capability).
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_CONFIGURED = {"panic": 0, "error": 1, "verbose": 2, "debug": 3}
_MESSAGE = {"panic": 0, "error": 1, "warning": 1, "info": 2, "verbose": 2, "debug": 3}


def make_logger(*, level: str, log_file: str, to_stderr: bool, component: str) -> Callable[[str, str], None]:
    threshold = _CONFIGURED.get(level, 0)

    def log(message_level: str, message: str) -> None:
        if _MESSAGE.get(message_level, 1) > threshold:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = f"{stamp} [{message_level}] {component}[{os.getpid()}]: {message}\n"
        if to_stderr:
            sys.stderr.write(line)
        if log_file:
            try:
                fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                return  # logging must never fail the CNI request
            try:
                os.write(fd, line.encode("utf-8", "replace"))
            finally:
                os.close(fd)

    return log
