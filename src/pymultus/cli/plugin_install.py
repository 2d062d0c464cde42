"""``pymultus install-plugin``: put ``multus`` and ``multus-shim`` launchers into a CNI bin dir.

The launchers run this installation's interpreter and package (``multus`` from a code archive of
the package's compiled modules, written next to it: :mod:`pymultus.install.codearchive`); for nodes
without a suitable Python, ``pymultus install`` ships a self-contained form instead.
"""

from __future__ import annotations

import argparse
import os

from pymultus.install.codearchive import ARCHIVE_NAME
from pymultus.install.launcher import ENTRY_POINTS, default_python, default_sys_path, write_launcher


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "install-plugin",
        help="write the multus and multus-shim launchers into a CNI bin dir",
        description="Write the multus (thin) and multus-shim (thick) launchers into a CNI bin dir.",
    )
    parser.add_argument("--bin-dir", default="/opt/cni/bin", help="CNI bin dir (default: %(default)s)")
    parser.add_argument("--python", default=None, help="interpreter the launchers run (default: this one)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    python = args.python or default_python()
    sys_path = default_sys_path()
    for name, module in ENTRY_POINTS.items():
        path = os.path.join(args.bin_dir, name)
        # Both executables' modules come from one code archive (pymultus.install.codearchive).
        archive = os.path.join(args.bin_dir, ARCHIVE_NAME)
        changed = write_launcher(path, entry_module=module, python=python, sys_path=sys_path, archive=archive)
        print(f"{'installed' if changed else 'unchanged'} {path}")
    return 0
