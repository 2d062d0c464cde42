"""``pymultus install`` and ``pymultus uninstall``: their command lines, logging and signals.

What they do lives in :mod:`pymultus.install` (``install.node``: the install and its watch loop;
``install.check``: uninstall and the readiness check).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from pymultus.errors import MultusError

log = logging.getLogger("pymultus.install")

LOG_LEVELS = ("debug", "verbose", "error", "panic")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pymultus.install.kubeconfig import DEFAULT_SERVICE_ACCOUNT_DIR

    p = subparsers.add_parser(
        "install",
        help="install the multus/multus-shim executables (and the thin-mode conf) on this node",
        description=(__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--mode",
        choices=("thin", "thick"),
        default="thin",
        help="thin: write the conf and kubeconfig too; thick: executables only (the daemon writes the conf)",
    )
    p.add_argument(
        "--cni-bin-dir", dest="bin_dir", default="/host/opt/cni/bin", help="CNI bin dir (as mounted)"
    )
    p.add_argument(
        "--cni-bin-dir-host",
        default="",
        help="the bin dir's path on the host (default: --cni-bin-dir without a leading /host)",
    )
    p.add_argument(
        "--cni-conf-dir",
        dest="conf_dir",
        default="/host/etc/cni/net.d",
        help="CNI conf dir (as mounted): 00-multus.conf[list] and multus.d/ go here",
    )
    p.add_argument(
        "--cni-conf-dir-host",
        default="",
        help="the conf dir's path on the host (default: --cni-conf-dir without a leading /host)",
    )
    p.add_argument(
        "--cni-version",
        default="",
        help="cniVersion of the generated conf; must equal the "
        "primary's unless --force-cni-version (default: the primary's)",
    )
    p.add_argument(
        "--force-cni-version",
        action="store_true",
        help="use --cni-version even when it differs "
        "from the primary's (the primary file is never rewritten, unlike Go Multus)",
    )
    p.add_argument(
        "--multus-conf-file",
        default="auto",
        help="'auto' to generate 00-multus.conf[list] "
        "from the primary CNI conf, or the path of a conf file to copy into the conf dir",
    )
    p.add_argument(
        "--multus-master-cni-file-name",
        dest="master_name",
        default="",
        help="pin the primary CNI conf file name (default: the lexically first that is not ours)",
    )
    p.add_argument(
        "--multus-kubeconfig-file-host",
        dest="kubeconfig_host",
        default="/etc/cni/net.d/multus.d/multus.kubeconfig",
        help="the kubeconfig's path on the host, written into the conf",
    )
    p.add_argument(
        "--multus-cni-conf-dir",
        default="",
        help="confDir of the generated conf (on-disk "
        "network confs); unset: the plugin's default /etc/cni/multus/net.d",
    )
    p.add_argument("--multus-log-level", choices=("", *LOG_LEVELS), default="", help="logLevel of the conf")
    p.add_argument("--multus-log-file", default="", help="logFile of the conf")
    p.add_argument(
        "--multus-log-to-stderr",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="logToStderr of the conf",
    )
    p.add_argument("--namespace-isolation", action="store_true", help="namespaceIsolation of the conf")
    p.add_argument("--global-namespaces", default="", help="globalNamespaces of the conf (comma list)")
    p.add_argument("--readiness-indicator-file", default="", help="readinessindicatorfile of the conf")
    p.add_argument("--additional-bin-dir", default="", help="binDir of the conf (searched before CNI_PATH)")
    p.add_argument("--override-network-name", action="store_true", help="name the conf after the primary")
    p.add_argument("--skip-tls-verify", action="store_true", help="kubeconfig without the CA (testing only)")
    p.add_argument(
        "--node-name",
        default=os.environ.get("MULTUS_NODE_NAME", ""),
        help="thin: the Node the kubeconfig's token is bound to (a TokenRequest that outlives this "
        "pod); empty: this pod's own token, which stops working when the pod is deleted "
        "(default: $MULTUS_NODE_NAME)",
    )
    p.add_argument(
        "--service-account-dir",
        default=DEFAULT_SERVICE_ACCOUNT_DIR,
        help="where the pod's token and ca.crt are mounted",
    )
    p.add_argument(
        "--primary-wait",
        type=float,
        default=120.0,
        help="seconds to wait for the primary CNI conf to appear before giving up (0: do not wait)",
    )
    p.add_argument(
        "--skip-binary-copy",
        "--skip-multus-binary-copy",
        dest="skip_binary_copy",
        action="store_true",
        help="do not install the executables",
    )
    p.add_argument(
        "--watch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep running: refresh the kubeconfig and the conf when their sources change "
        "(default: on in thin mode)",
    )
    p.add_argument("--skip-config-watch", dest="watch", action="store_false", help="same as --no-watch")
    p.add_argument("--watch-interval", type=float, default=1.0, help="seconds between checks")
    p.add_argument(
        "--cleanup-config-on-exit",
        action="store_true",
        help="remove the generated conf and kubeconfig when the watch stops",
    )
    p.add_argument(
        "--python",
        default="bundled",
        help="'bundled': a self-contained interpreter "
        "(needs only glibc on the host); 'host:/path/to/python3' (>= 3.11, on the host); "
        "'auto': bundled when patchelf or a prebuilt bundle is available, else this interpreter",
    )
    p.add_argument(
        "--bundle-source",
        default=os.environ.get("PYMULTUS_BUNDLE_DIR", ""),
        help="a bundle made by --build-bundle, copied instead of building one now "
        "(default: $PYMULTUS_BUNDLE_DIR)",
    )
    p.add_argument(
        "--build-bundle",
        default="",
        metavar="DIR",
        help="only build the self-contained bundle into DIR (e.g. in an image build) and exit",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="install nothing: exit 0 only if what this command line installs is in place "
        "(the thin DaemonSet's readiness probe: the same arguments plus --check)",
    )
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="the installer's own log level",
    )
    p.set_defaults(handler=install_main)

    u = subparsers.add_parser(
        "uninstall",
        help="remove exactly what `pymultus install` installed (files changed since are kept)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # Defaults: the paths the manifests mount (deploy/uninstall runs this on every node).
    u.add_argument(
        "--cni-bin-dir",
        dest="bin_dir",
        default="/opt/cni/bin",
        help="the CNI bin dir given to install (holds the install record)",
    )
    u.add_argument(
        "--cni-conf-dir",
        dest="conf_dir",
        default="/etc/cni/net.d",
        help="the CNI conf dir: a 00-multus.conf[list] naming multus or multus-shim (the thick "
        "daemon writes it, unrecorded) is removed once no such executable is left in the bin dir",
    )
    u.add_argument(
        "--wait",
        action="store_true",
        help="then keep running until SIGTERM (the uninstall DaemonSet's container: its pods are "
        "Ready once every node is clean)",
    )
    u.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    u.set_defaults(handler=uninstall_main)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )


def install_main(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        if args.build_bundle:
            from pymultus.install.bundle import build_bundle

            bundle = build_bundle(args.build_bundle)
            log.info(
                "built bundle %s (%d MiB, needs glibc >= %s)",
                bundle.path,
                bundle.size >> 20,
                bundle.min_glibc,
            )
            return 0
        from pymultus.install.node import InstallOptions, run_install

        opts = InstallOptions(args)
        if args.check:
            from pymultus.install.check import check_installed

            return check_installed(opts)
        stop = threading.Event()
        stop_on_signals(stop)
        return run_install(opts, dict(os.environ), stop)
    except MultusError as exc:
        log.error("%s", exc)
        return 1


def stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def uninstall_main(args: argparse.Namespace) -> int:
    from pymultus.install.check import uninstall

    setup_logging(args.log_level)
    uninstall(args.bin_dir, args.conf_dir)
    if args.wait:  # the uninstall DaemonSet idles until it is deleted
        stop = threading.Event()
        stop_on_signals(stop)
        stop.wait()
    return 0
