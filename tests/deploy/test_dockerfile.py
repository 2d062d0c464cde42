"""The Dockerfile's structure, checked without a build (tests/image builds and runs it): stages
and their base image, no downloads outside the package registries' clients, a non-root default
user, the entry point, and the hook that builds the host bundle."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from tests.deploy.manifests import ROOT

DOCKERFILE = ROOT / "Dockerfile"
BASE_IMAGE = "debian:bookworm-slim"


class Instruction:
    __slots__ = ("args", "keyword", "line")

    def __init__(self, keyword: str, args: str, line: int) -> None:
        self.keyword = keyword
        self.args = args
        self.line = line


def parse(path: Path = DOCKERFILE) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        text = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def stages(instructions: list[Instruction]) -> list[tuple[str, str, list[Instruction]]]:
    """(base image, stage name or "", instructions) per FROM."""
    result: list[tuple[str, str, list[Instruction]]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            result.append((words[0], name, []))
        elif result:
            result[-1][2].append(ins)
    return result


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    args: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            key, _, value = ins.args.partition("=")
            args[key] = value
    return args


def bundle_hook_command() -> list[str]:
    """The `pymultus ...` command of the bundle stage (the installer's hook)."""
    (bundle,) = [s for s in stages(parse()) if s[1] == "bundle"]
    runs = [shlex.split(i.args) for i in bundle[2] if i.keyword == "RUN" and "pymultus" in i.args]
    assert len(runs) == 1, "the bundle stage must run exactly one pymultus command"
    argv = runs[0]
    assert argv[0] == "/opt/pymultus/venv/bin/pymultus"
    return ["pymultus", *argv[1:]]


def test_no_syntax_directive_so_no_builder_fetches_a_frontend_image() -> None:
    # Under BuildKit a `# syntax=` line pulls a frontend image from Docker Hub before the build;
    # without it BuildKit uses its built-in frontend and the classic builder works the same.
    first = DOCKERFILE.read_text().splitlines()[0].replace(" ", "").lower()
    assert not first.startswith("#syntax="), first


def test_every_stage_builds_on_the_debian_base() -> None:
    instructions = parse()
    assert global_args(instructions) == {"BASE_IMAGE": BASE_IMAGE}
    found = stages(instructions)
    assert [name for _, name, _ in found] == ["python", "builder", "bundle", ""]
    assert [base for base, _, _ in found] == ["${BASE_IMAGE}", "python", "builder", "${BASE_IMAGE}"]


def test_extra_ca_certificates_are_trusted_in_the_build_stages_only() -> None:
    (python,) = [s for s in stages(parse()) if s[1] == "python"]
    assert [i.args for i in python[2] if i.keyword == "ARG"] == ['EXTRA_CA_CERTS=""']
    assert "update-ca-certificates" in " ".join(i.args for i in python[2] if i.keyword == "RUN")
    # The final stage starts from the base again, so the build's extra CAs never ship.
    final = stages(parse())[-1]
    assert final[0] == "${BASE_IMAGE}"
    assert "EXTRA_CA_CERTS" not in " ".join(i.args for i in final[2])


def test_nothing_is_downloaded_outside_the_package_registries() -> None:
    for ins in parse():
        lowered = ins.args.lower()
        for tool in ("curl", "wget", "git clone", "http://", "https://"):
            assert tool not in lowered, f"line {ins.line}: {ins.keyword} uses {tool!r}"
        assert ins.keyword != "ADD", f"line {ins.line}: use COPY (ADD can fetch URLs and unpack archives)"
        if "apt-get install" in ins.args:
            assert "--no-install-recommends" in ins.args, f"line {ins.line}"
            assert "rm -rf /var/lib/apt/lists/*" in ins.args, f"line {ins.line}: apt lists left in the layer"


def test_the_wheel_is_built_from_the_source_tree_and_installed_into_a_venv() -> None:
    (builder,) = [s for s in stages(parse()) if s[1] == "builder"]
    runs = " ".join(i.args for i in builder[2] if i.keyword == "RUN")
    assert "pip wheel --no-deps --wheel-dir /wheels ." in runs
    assert "python -m venv /opt/pymultus/venv" in runs
    assert "pip install /wheels/pymultus-*.whl" in runs
    copies = [i.args for i in builder[2] if i.keyword == "COPY"]
    assert copies == [". ."]


def test_final_stage_copies_built_artefacts_and_runs_as_non_root() -> None:
    found = stages(parse())
    names = {name for _, name, _ in found if name}
    final = found[-1][2]
    copies = [i.args.split() for i in final if i.keyword == "COPY"]
    for words in copies:
        assert words[0].startswith("--from="), f"the final stage copies from the build context: {words}"
        assert words[0].removeprefix("--from=") in names
    assert {tuple(w[1:]) for w in copies} == {
        ("/opt/pymultus/venv", "/opt/pymultus/venv"),
        ("/opt/pymultus/bundle", "/opt/pymultus/bundle"),
    }
    users = [i.args for i in final if i.keyword == "USER"]
    assert users == ["65532:65532"], "the image's default user must be non-root"
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "PATH=/opt/pymultus/venv/bin:$PATH" in env
    assert "PYMULTUS_BUNDLE_DIR=/opt/pymultus/bundle" in env


def test_entry_point_is_the_pymultus_command_in_exec_form() -> None:
    final = stages(parse())[-1][2]
    (entrypoint,) = [i.args for i in final if i.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["pymultus"]  # exec form: signals reach the daemon directly
    (cmd,) = [i.args for i in final if i.keyword == "CMD"]
    assert json.loads(cmd) == ["--help"]


def test_bundle_hook_builds_into_the_directory_the_final_stage_copies() -> None:
    argv = bundle_hook_command()
    assert argv[:3] == ["pymultus", "install", "--build-bundle"]
    assert argv[3] == "/opt/pymultus/bundle"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "**/__pycache__", "tests"} <= ignored
    # What the wheel needs must stay in.
    assert not ignored & {"src", "pyproject.toml", "README.md"}
