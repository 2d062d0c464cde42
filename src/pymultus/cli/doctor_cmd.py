"""``pymultus doctor``: node checks, PASS/WARN/FAIL each (logic in ``pymultus.ops.doctor``)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pymultus.cli.status_cmd import add_node_arguments

    parser = subparsers.add_parser(
        "doctor",
        help="check this node: confs, plugins, kubeconfig, API server, daemon, caches, kernel",
        description="Check this node. Exit code 1 when a check FAILs (with --strict, also on WARN).",
    )
    add_node_arguments(parser)
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument("--no-kernel-probe", action="store_true", help="skip the link-type probe")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os

    from pymultus.ops import doctor

    checks = doctor.run(
        doctor.Options(
            conf_dir=args.conf_dir,
            multus_conf=args.multus_conf,
            env=os.environ,
            probe_kernel=not args.no_kernel_probe,
        )
    )
    code = doctor.exit_code(checks, strict=args.strict)
    if args.output == "json":
        from pymultus import jsonio

        print(jsonio.dumps({"checks": [check.to_json() for check in checks], "exitCode": code}))
    else:
        width = max(len(check.name) for check in checks)
        for check in checks:
            print(f"{check.status}  {check.name.ljust(width)}  {check.message}")
    return code
