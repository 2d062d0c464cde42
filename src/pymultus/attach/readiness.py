"""Wait for the default network's readiness-indicator file (reference §9)."""

from __future__ import annotations

import os
import time

from pymultus import errors

POLL_INTERVAL = 0.25


def wait_for_default_network(path: str, timeout: float, *, sleep: object = None) -> None:
    """Return once ``path`` exists; :class:`DefaultNetworkNotReady` (code 11) after ``timeout`` s."""
    if not path:
        return
    pause = sleep if callable(sleep) else time.sleep
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            raise errors.DefaultNetworkNotReady(
                f"the default network is not ready: {path} did not appear within {timeout:g} s",
                details="have you checked that your default network is ready? (readinessindicatorfile)",
            )
        pause(POLL_INTERVAL)
