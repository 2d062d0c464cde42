"""The README's demo (the main job on the embedded default), run as `scripts/demo.sh` runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.netns


def test_the_demo_attaches_pings_and_leaves_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pymultus.cli.demo"], capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": OK") == 2, proc.stdout  # a ping over each secondary network
    assert "nothing left behind" in proc.stdout, proc.stdout
