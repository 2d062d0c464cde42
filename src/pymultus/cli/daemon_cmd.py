"""``pymultus daemon`` (thick mode) and ``pymultus healthcheck`` (the DaemonSet's exec probes)."""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_CONFIG = "/etc/cni/net.d/multus.d/daemon-config.json"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    daemon = subparsers.add_parser(
        "daemon",
        help="run the thick-mode node daemon serving multus-shim",
        description="Run the pymultus node daemon (thick mode). Needs root.",
    )
    daemon.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"daemon config file (default {DEFAULT_CONFIG})"
    )
    daemon.add_argument("--node-name", default=None, help="this node's name (default: $MULTUS_NODE_NAME)")
    daemon.set_defaults(handler=run_daemon)

    health = subparsers.add_parser(
        "healthcheck",
        help="probe a running daemon's /healthz (or /readyz) over its socket",
        description="Exit 0 when the daemon answers 200; for liveness/readiness exec probes.",
    )
    health.add_argument("--socket-dir", default="/run/multus/", help="the daemon's socketDir")
    health.add_argument("--ready", action="store_true", help="probe /readyz instead of /healthz")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    health.set_defaults(handler=run_healthcheck)


def run_daemon(args: argparse.Namespace) -> int:
    from pymultus.daemon import logs
    from pymultus.daemon.app import Daemon
    from pymultus.daemon.config import load_daemon_config
    from pymultus.errors import MultusError

    if os.geteuid() != 0:
        print(
            "pymultus daemon must run as root: it creates network interfaces in pod namespaces "
            f"and owns the socket directory (running as uid {os.geteuid()})",
            file=sys.stderr,
        )
        return 1
    try:
        config = load_daemon_config(args.config)
    except MultusError as exc:
        print(f"pymultus daemon: {exc}", file=sys.stderr)
        return 1
    logs.configure(level=config.log_level, log_file=config.log_file, to_stderr=config.log_to_stderr)
    node_name = args.node_name or os.environ.get("MULTUS_NODE_NAME", "")
    daemon = Daemon(config, node_name=node_name, env=dict(os.environ))
    try:
        daemon.start()
    except (MultusError, OSError) as exc:
        print(f"pymultus daemon: cannot start: {exc}", file=sys.stderr)
        daemon.shutdown()
        return 1
    return daemon.run_until_signal()


def run_healthcheck(args: argparse.Namespace) -> int:
    from pymultus.daemon import wire
    from pymultus.daemon.config import SOCKET_NAME

    path = wire.PATH_READYZ if args.ready else wire.PATH_HEALTHZ
    socket_path = os.path.join(args.socket_dir, SOCKET_NAME)
    try:
        status, body = wire.http_request(socket_path, "GET", path, timeout=args.timeout)
    except (OSError, ConnectionError) as exc:
        print(f"{socket_path}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"{path}: HTTP {status}: {body.decode('utf-8', 'replace').strip()}", file=sys.stderr)
        return 1
    return 0
