"""Every `pymultus ...` command line the manifests and the Dockerfile run must be accepted by the
real command-line parser, so a renamed sub-command or flag breaks the test suite, not a cluster."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from tests.deploy import manifests as m
from tests.deploy.test_dockerfile import bundle_hook_command


def _commands() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for overlay in ("thin", "thick"):
        spec = m.pod_spec(overlay)
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            found.append((f"{overlay}/{c['name']}", c["command"]))
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in c:
                    found.append((f"{overlay}/{c['name']}/{probe}", c[probe]["exec"]["command"]))
    found.append(("Dockerfile/bundle", bundle_hook_command()))
    return found


COMMANDS = _commands()


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def test_the_manifests_use_the_expected_sub_commands() -> None:
    used = {argv[1] for _, argv in COMMANDS}
    assert used == {"install", "daemon", "healthcheck"}


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_is_accepted_by_the_pymultus_parser(where: str, argv: list[str]) -> None:
    from pymultus.cli.main import build_parser

    assert argv[0].endswith("pymultus"), f"{where}: {argv}"
    parser = build_parser()
    available = _subcommands(parser)
    assert argv[1] in available, (
        f"{where} runs `pymultus {argv[1]}`, which this build does not have (it has {sorted(available)})"
    )
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv[1:])
    except SystemExit as exc:  # argparse reports bad flags by exiting
        pytest.fail(f"{where}: `{' '.join(argv)}` is rejected: {stderr.getvalue().strip()} (exit {exc.code})")
    assert callable(args.handler)
