"""Code run in a fresh ``python -I -S`` process, as the CNI executables run: what a module imports
(or leaves unimported) there is what the hot path pays."""

from __future__ import annotations

import subprocess
import sys


def run_isolated(code: str) -> str:
    """Run ``code`` under ``python -I -S`` (it puts the package on ``sys.path`` itself); its stdout."""
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
