"""Daemon logging: logfmt-style lines carrying the request's pod and container ID.

Every line logged while a worker handles a request (by any module, including the engine) gets
``command=… pod=<ns>/<name> containerID=…`` from a thread-local context, so the lines of one pod's
ADD can be grepped together even when 32 requests run at once.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator

_context = threading.local()

# Multus log levels → logging levels.
LEVELS = {
    "debug": logging.DEBUG,
    "verbose": logging.INFO,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
}


@contextlib.contextmanager
def request_context(command: str, pod: str, container_id: str) -> Iterator[None]:
    previous = getattr(_context, "fields", "")
    fields = f"command={command or '-'}"
    if pod:
        fields += f" pod={pod}"
    if container_id:
        fields += f" containerID={container_id}"
    _context.fields = fields
    try:
        yield
    finally:
        _context.fields = previous


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(_context, "fields", "")
        record.ctx = f" {fields}" if fields else ""
        return True


def configure(*, level: str, log_file: str, to_stderr: bool) -> None:
    """Set up the root logger once; without a file or stderr, errors still go to stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter(
        "%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r%(ctx)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    handlers: list[logging.Handler] = []
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    if to_stderr or not log_file:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_ContextFilter())
        root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.ERROR))
