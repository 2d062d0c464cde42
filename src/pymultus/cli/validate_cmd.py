"""``pymultus validate FILE...``: offline checks of NADs, pods and confs (``pymultus.ops.validate``)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check NetworkAttachmentDefinitions, pod manifests and Multus confs offline",
        description="Check files offline with the plugin's own parsers: NADs (spec.config), pods "
        "and pod templates (networks and default-network annotations), Multus and CNI confs. "
        "Exit code 1 when any problem is found.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pymultus.ops.validate import validate_files

    reports = validate_files(args.files)
    failed = any(report.problems for report in reports)
    if args.output == "json":
        from pymultus import jsonio

        print(jsonio.dumps({"files": [report.to_json() for report in reports], "valid": not failed}))
        return 1 if failed else 0
    for report in reports:
        for problem in report.problems:
            print(f"{problem.file}: {problem.obj}: {problem.field}: {problem.message}")
        if not report.problems:
            print(f"{report.path}: OK ({'; '.join(report.checked)})")
    return 1 if failed else 0
