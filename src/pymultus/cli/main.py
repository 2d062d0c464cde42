"""The ``pymultus`` command: one sub-command per module of ``pymultus.cli``.

Each sub-command module exposes ``register(subparsers)``, which adds its parser and sets
``handler`` to a function ``(args) -> int``. Sub-command modules import their heavy dependencies
inside the handler, so ``pymultus --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Module names under pymultus.cli, in the order --help lists them.
SUBCOMMAND_MODULES = (
    "cnitool",
    "plugin_install",
    "daemon_cmd",
    "installer",
    "status_cmd",
    "doctor_cmd",
    "validate_cmd",
    "cert_approver",
)
# Which module registers each sub-command: only that one is imported to run it.
SUBCOMMANDS = {
    "cni": "cnitool",
    "install-plugin": "plugin_install",
    "daemon": "daemon_cmd",
    "healthcheck": "daemon_cmd",
    "install": "installer",
    "uninstall": "installer",
    "status": "status_cmd",
    "doctor": "doctor_cmd",
    "validate": "validate_cmd",
    "cert-approver": "cert_approver",
}


def build_parser(modules: Sequence[str] = SUBCOMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pymultus",
        description="A Multus-compatible meta CNI plugin: several network interfaces per pod.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        try:
            module = importlib.import_module(f"pymultus.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pymultus.cli.{name}":
                raise
            continue  # that sub-command is not part of this build
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    module = SUBCOMMANDS.get(arguments[0]) if arguments else None
    args = build_parser((module,) if module else SUBCOMMAND_MODULES).parse_args(arguments)
    handler = args.handler
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
