"""Fixtures of the integration tests: a simulated node and a pod network namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.netns import Netns, netns
from tests.support.node import Node, node


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Node]:
    """A node: CNI bin dir with the real launchers, conf/cache/IPAM dirs; bridges removed after."""
    with node(tmp_path) as simulated:
        yield simulated


@pytest.fixture
def pod_ns() -> Iterator[Netns]:
    """The pod's network namespace, deleted after the test whatever happens."""
    with netns("pmt") as ns:
        yield ns
