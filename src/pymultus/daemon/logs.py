"""Daemon logging: the logfmt lines of ``pymultus.logfmt``, through the ``logging`` package.

Every line logged while a worker handles a request (by any module) gets ``command=… pod=<ns>/<name>
containerID=…`` from a thread-local context, so the lines of one pod's ADD can be grepped
together even when 32 requests run at once. The engine's lines (``Deps.log``) arrive as logfmt
fragments that already name the pod, container and command; they are written as they are.
``logging``'s levels print as Multus's: ERROR ``error``, WARNING ``warning``, INFO ``verbose``,
DEBUG ``debug``, CRITICAL ``panic``; a traceback goes into one quoted ``stack`` field.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

from pymultus import logfmt

_context = threading.local()

# Multus log levels → logging levels.
LEVELS = {
    "debug": logging.DEBUG,
    "verbose": logging.INFO,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
}
_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "verbose",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "panic",
}


@contextlib.contextmanager
def request_context(command: str, pod: str, container_id: str) -> Iterator[None]:
    previous = getattr(_context, "fields", "")
    fields = f"command={logfmt.quote(command or '-')}"
    if pod:
        fields += f" pod={logfmt.quote(pod)}"
    if container_id:
        fields += f" containerID={logfmt.quote(container_id)}"
    _context.fields = fields
    try:
        yield
    finally:
        _context.fields = previous


class LogfmtFormatter(logging.Formatter):
    """One logfmt line per record (``component=daemon``), UTC timestamps."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not message.startswith("msg="):
            fields = [("logger", record.name)]
            message = logfmt.fragment(message, fields)
            context = getattr(_context, "fields", "")
            if context:
                message += f" {context}"
        if record.exc_info:
            message += f" stack={logfmt.quote(self.formatException(record.exc_info))}"
        level = _NAMES.get(record.levelno, record.levelname.lower())
        return logfmt.line(level, "daemon", os.getpid(), message, record.created).rstrip("\n")


def configure(*, level: str, log_file: str, to_stderr: bool) -> None:
    """Set up the root logger once; without a file or stderr, errors still go to stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handlers: list[logging.Handler] = []
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    if to_stderr or not log_file:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(LogfmtFormatter())
        root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.ERROR))
