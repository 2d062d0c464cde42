"""The one log format of pymultus: logfmt lines, shared by the CNI executables and the daemon.

    ts=2026-12-06T03:12:45.120Z level=verbose component=multus pid=4711 msg="attachment added" \
pod=default/web containerID=0f3a9c1b2d4e command=ADD network=default/alpha ifname=net1 \
plugin=bridge ips=10.1.1.5/24 result=ok ms=11.8

* ``ts`` is UTC with milliseconds; ``level`` is Multus's level name (``error``, ``warning``,
  ``verbose``, ``debug``; ``panic``); then ``component`` (``multus``, ``multus-shim``,
  ``daemon``), ``pid``, ``msg`` and the fields of the event.
* A value is written bare when it is non-empty and has no space, ``=``, ``"`` or control
  character; otherwise in double quotes with ``\\``, ``"``, newline, CR and tab escaped, so one
  event is always one line.

Log functions (``Deps.log``) take ``(level, message)`` where ``message`` is either plain text or
a *fragment* made by :func:`fragment` (it starts with ``msg=``); sinks write a fragment as is.

Levels: a line is written when its level is at or below the configured one (Go Multus):
``panic`` < ``error`` (= ``warning``) < ``verbose`` (= ``info``) < ``debug``. Warnings show from
``error`` up: they report what an operator must act on.

On the CNI hot path: this module imports nothing, and callers test :func:`enabled` before they
build a line, so a level that is off costs one dict lookup.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# Configured level -> threshold, and message level -> its rank (written when rank <= threshold).
THRESHOLDS = {"panic": 0, "error": 1, "verbose": 2, "debug": 3}
RANKS = {"panic": 0, "error": 1, "warning": 1, "info": 2, "verbose": 2, "debug": 3}
SHORT_ID = 12  # container IDs in lines, like `crictl ps` and `docker ps` print them
REDACTED = "[redacted]"
# Conf keys whose values never reach a log line (matched case-insensitively, as substrings).
SECRET_KEYS = ("token", "password", "passwd", "secret", "credential", "apikey", "api_key", "-data")


def threshold(level: str) -> int:
    return THRESHOLDS.get(level, 0)


def enabled(level: str, configured: int) -> bool:
    return RANKS.get(level, 1) <= configured


def quote(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and not any(ch in ' ="\\' or ch < " " for ch in text):
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def fragment(message: str, fields: Iterable[tuple[str, object]] = ()) -> str:
    """``msg="..." key=value ...``; fields whose value is None or "" are left out."""
    parts = [f"msg={quote(message)}"]
    parts.extend(f"{key}={quote(value)}" for key, value in fields if value is not None and value != "")
    return " ".join(parts)


def line(level: str, component: str, pid: int, message: str, now: float) -> str:
    """One complete line; ``message`` is a fragment or plain text."""
    body = message if message.startswith("msg=") else f"msg={quote(message)}"
    return f"ts={timestamp(now)} level={level} component={component} pid={pid} {body}\n"


def timestamp(now: float) -> str:
    import time

    seconds = int(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((now - seconds) * 1000):03d}Z"


def redact(value: object) -> object:
    """A copy of a conf document with the values of secret-looking keys replaced."""
    if isinstance(value, dict):
        return {
            key: REDACTED if _secret(key) and not isinstance(item, dict | list) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _secret(key: object) -> bool:
    lowered = str(key).lower()
    return any(marker in lowered for marker in SECRET_KEYS)
