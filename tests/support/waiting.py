"""Waiting in tests for what a daemon, the kernel or a container does in the background."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    check: Callable[[], object], what: str = "the condition", timeout: float = 30.0, interval: float = 0.05
) -> None:
    """Poll ``check`` until it is true; AssertionError naming ``what`` after ``timeout`` seconds.
    Only a bound: no test asserts how long it took."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
