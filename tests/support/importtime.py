"""The real ``multus`` run under ``python -X importtime``, to see which modules a request imports."""

from __future__ import annotations

import sys

from tests.support.node import Node


def importtime_wrapper(sim: Node) -> str:
    """``multus`` run under ``python -X importtime``: its stderr lists every module imported.
    A plain launcher (modules from the source tree: the code archive's loader is not timed)."""
    from pymultus.install.launcher import default_python, default_sys_path, write_launcher

    plain = sim.bin_dir / "multus-plain"
    write_launcher(
        str(plain), entry_module="pymultus.cli.thin", python=default_python(), sys_path=default_sys_path()
    )
    wrapper = sim.bin_dir / "multus-importtime"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -IS -X importtime "{plain}"\n')
    wrapper.chmod(0o755)
    return wrapper.name


def imported(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
