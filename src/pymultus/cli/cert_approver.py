"""``pymultus cert-approver``: approves the per-node client certificates of pymultus daemons
(logic in ``pymultus.kube.csr_approver``); runs as its own Deployment (deploy/cert-approver)."""

from __future__ import annotations

import argparse
import sys

DEFAULT_BOOTSTRAP_USER = "system:serviceaccount:kube-system:pymultus"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cert-approver",
        help="approve the per-node client certificates (CSRs) of pymultus daemons",
        description="Watch CertificateSigningRequests for kubernetes.io/kube-apiserver-client and "
        "approve exactly those of pymultus node identities (CN system:multus:<node>, O system:multus, "
        "client auth, requested by a bootstrap user or the node itself); deny the other requests for "
        "such identities; leave all other requests alone. Runs until SIGTERM.",
    )
    parser.add_argument(
        "--kubeconfig",
        default="",
        metavar="PATH",
        help="kubeconfig (default: the in-cluster service account)",
    )
    parser.add_argument(
        "--bootstrap-user",
        action="append",
        metavar="USER",
        help=f"a user that may request node certificates (repeatable; default: {DEFAULT_BOOTSTRAP_USER})",
    )
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import os
    import signal

    from pymultus.errors import MultusError
    from pymultus.kube import auth
    from pymultus.kube.client import KubeClient
    from pymultus.kube.csr_approver import COMPONENT, Approver

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        credentials = (
            auth.load_kubeconfig(args.kubeconfig) if args.kubeconfig else auth.load_in_cluster(os.environ)
        )
    except MultusError as exc:
        print(f"pymultus cert-approver: {exc.msg}", file=sys.stderr)
        return 1
    client = KubeClient(credentials, user_agent=COMPONENT)
    approver = Approver(client, args.bootstrap_user or [DEFAULT_BOOTSTRAP_USER])

    def on_signal(signum: int, _frame: object) -> None:
        approver.stop()
        raise SystemExit(0)  # interrupts a blocked watch read at once

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger("pymultus.cli.cert_approver").info(
        "approving pymultus node certificates requested by %s", ", ".join(sorted(approver.bootstrap_users))
    )
    try:
        approver.run()
    finally:
        client.close()
    return 0
