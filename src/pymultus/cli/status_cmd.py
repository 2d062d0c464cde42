"""``pymultus status [NAMESPACE/]POD``: the pod's attachments (logic in ``pymultus.ops.status``)."""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pymultus.ops.status import PodStatus

COLUMNS = ("INTERFACE", "NETWORK", "PLUGIN", "IPS", "MAC", "DEFAULT-ROUTE", "SINCE")


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the node's Multus conf is (shared by status and doctor)."""
    parser.add_argument(
        "--conf-dir", default="/etc/cni/net.d", help="the runtime's CNI conf dir (default: %(default)s)"
    )
    parser.add_argument(
        "--multus-conf", default="", metavar="PATH", help="the Multus conf (default: 00-multus.conf[list])"
    )
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="a pod's attachments from its network-status and this node's caches",
        description="Show a pod's interfaces from its network-status annotation and from this "
        "node's caches, and flag what differs. Exit code 1 when something differs.",
    )
    parser.add_argument("pod", metavar="[NAMESPACE/]POD")
    add_node_arguments(parser)
    parser.add_argument("--no-netns", action="store_true", help="do not look inside the pod's netns")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os

    from pymultus.errors import MultusError
    from pymultus.ops import node
    from pymultus.ops.status import pod_status

    namespace, _, name = args.pod.rpartition("/")
    try:
        path = args.multus_conf or node.find_multus_conf(args.conf_dir)
        if not path:
            print(f"pymultus status: no Multus conf in {args.conf_dir} (use --multus-conf)", file=sys.stderr)
            return 2
        conf = node.load_multus_conf(path)
        source = node.pod_source(conf, os.environ)
    except MultusError as exc:
        print(f"pymultus status: {exc.msg}", file=sys.stderr)
        return 2
    status = pod_status(conf, namespace or "default", name, source, check_netns=not args.no_netns)
    if args.output == "json":
        from pymultus import jsonio

        print(jsonio.dumps(status.to_json()))
    else:
        print_table(status)
    return 0 if status.consistent else 1


def print_table(status: PodStatus) -> None:
    print(f"pod {status.namespace}/{status.name}")
    rows = [
        (
            row.interface,
            row.network or "-",
            row.plugin or "-",
            ",".join(row.ips) or "-",
            row.mac or "-",
            ",".join(row.gateways) or "-",
            row.since or "-",
        )
        for row in status.rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *rows, strict=False)]
    for line in (COLUMNS, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    if not status.rows:
        print("(no interfaces in network-status or in this node's caches)")
    for problem in status.problems:
        print(f"! {problem}")
    for row in status.rows:
        for note in row.notes:
            print(f"! {row.interface}: {note}")
