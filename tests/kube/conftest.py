"""Fixtures shared by the Kubernetes client tests."""

from __future__ import annotations

import pytest


class Sleeps:
    """An injectable sleep that records instead of waiting (retry/back-off without real time)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()
