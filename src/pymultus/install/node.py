"""``pymultus install``: put pymultus on a node (the DaemonSet's entry point; ``cli.installer``
parses the command line into :class:`InstallOptions`). It

1. installs the CNI executables ``multus`` and ``multus-shim`` into the CNI bin dir: by default a
   self-contained bundle (interpreter + stdlib + pymultus, no Python needed on the host, see
   ``install.bundle``) in a versioned directory ``pymultus-<version>-<digest>/``, then the two
   ``#!`` launchers, each written to a temp file and renamed over the old one — a running call
   keeps its old files (no "text file busy", multus#1221) and the next call uses the new ones;
2. in thin mode writes ``multus.d/multus.kubeconfig`` (0600, dir 0700) from the pod's service
   account and ``00-multus.conf[list]`` wrapping the primary CNI conf, waiting for the primary to
   appear (bounded);
3. with ``--watch`` (the default in thin mode) polls every second and rewrites the kubeconfig
   when the token or CA changes and the conf when the primary changes *or a different file now
   sorts first* (Go Multus keeps its first choice: multus#1499); until ``stop`` is set;
4. records everything in ``<cni-bin-dir>/.pymultus-install.json`` for ``uninstall``.

The thin-mode files are written by ``install.conf``, the token by ``install.kubeconfig``;
``uninstall`` and ``install --check`` (readiness) live in ``install.check``.

Paths: the installer normally runs in a pod with the host's dirs mounted under ``/host``, but the
launchers and the generated conf are read *on the host*. ``--cni-bin-dir-host`` and
``--cni-conf-dir-host`` give the host's view; by default a leading ``/host`` is stripped.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pymultus.errors import InvalidConfig, InvalidEnvironment, MultusError

if TYPE_CHECKING:
    from pymultus.install.state import InstallState

log = logging.getLogger("pymultus.install")

STAGING_PREFIX = ".pymultus-staging-"
KEEP_BUNDLES = 2  # the current one and its predecessor, which in-flight calls may still be using
ARCHIVE_FILE = "multus.code"  # the executables' code archive, in the runtime directory


class InstallOptions:
    """The parsed command line of ``pymultus install``, host paths resolved."""

    __slots__ = (
        "additional_bin_dir",
        "bin_dir",
        "bin_dir_host",
        "build_bundle",
        "bundle_source",
        "cleanup_config_on_exit",
        "cni_version",
        "conf_dir",
        "conf_dir_host",
        "force_cni_version",
        "global_namespaces",
        "kubeconfig_host",
        "master_name",
        "mode",
        "multus_cni_conf_dir",
        "multus_conf_file",
        "multus_log_file",
        "multus_log_level",
        "multus_log_to_stderr",
        "namespace_isolation",
        "node_name",
        "override_network_name",
        "primary_wait",
        "python",
        "readiness_indicator_file",
        "service_account_dir",
        "skip_binary_copy",
        "skip_tls_verify",
        "watch",
        "watch_interval",
    )

    def __init__(self, args: argparse.Namespace) -> None:
        for name in self.__slots__:
            if name not in ("bin_dir_host", "conf_dir_host"):
                setattr(self, name, getattr(args, name))
        self.bin_dir_host = args.cni_bin_dir_host or _host_view(args.bin_dir)
        self.conf_dir_host = args.cni_conf_dir_host or _host_view(args.conf_dir)
        self.watch = args.mode == "thin" if args.watch is None else args.watch

    mode: str
    bin_dir: str
    bin_dir_host: str
    conf_dir: str
    conf_dir_host: str
    cni_version: str
    multus_conf_file: str
    kubeconfig_host: str
    master_name: str
    skip_binary_copy: bool
    watch: bool
    watch_interval: float
    python: str
    bundle_source: str
    build_bundle: str
    namespace_isolation: bool
    global_namespaces: str
    readiness_indicator_file: str
    additional_bin_dir: str
    cleanup_config_on_exit: bool
    multus_log_level: str
    multus_log_file: str
    multus_log_to_stderr: bool
    multus_cni_conf_dir: str
    override_network_name: bool
    force_cni_version: bool
    skip_tls_verify: bool
    node_name: str
    service_account_dir: str
    primary_wait: float


def _host_view(path: str) -> str:
    """The host's path for a path under the conventional ``/host`` mount of the DaemonSet."""
    if path == "/host" or path.startswith("/host/"):
        return path[len("/host") :] or "/"
    return path


def run_install(opts: InstallOptions, env: Mapping[str, str], stop: threading.Event) -> int:
    """Install, then (with ``opts.watch``) keep the generated files current until ``stop``."""
    from pymultus.install.state import InstallState

    _validate(opts)
    state = InstallState.load(opts.bin_dir)
    state.version = package_version()
    state.make_dirs(opts.bin_dir, 0o755)
    if not opts.skip_binary_copy:
        install_executables(opts, state)
        state.save()
    if opts.mode == "thick":
        log.info("thick mode: executables installed; the daemon writes the conf")
        return 0

    from pymultus.install.conf import ConfWriter

    conf = ConfWriter(opts, env, state)
    conf.write_kubeconfig()
    if opts.multus_conf_file != "auto":
        conf.copy_user_conf()
    else:
        deadline = time.monotonic() + opts.primary_wait
        while not conf.write_conf(initial=True):
            if time.monotonic() >= deadline or stop.wait(min(1.0, max(opts.watch_interval, 0.05))):
                state.save()
                raise InvalidConfig(
                    f"no primary CNI conf appeared in {opts.conf_dir} within {opts.primary_wait:g} s"
                )
    state.save()
    log.info("pymultus installed (thin mode)")
    if not opts.watch:
        return 0
    log.info("watching the service account and %s every %g s", opts.conf_dir, opts.watch_interval)
    while not stop.wait(opts.watch_interval):
        try:
            changed = conf.write_kubeconfig()
            if opts.multus_conf_file == "auto":
                changed = conf.write_conf() or changed
            if changed:
                state.save()
        except MultusError as exc:
            log.error("%s", exc)
    if opts.cleanup_config_on_exit:
        conf.cleanup()
        state.save()
    return 0


def _validate(opts: InstallOptions) -> None:
    if opts.watch_interval <= 0:
        raise InvalidConfig(f"--watch-interval {opts.watch_interval} must be positive")
    if opts.primary_wait < 0:
        raise InvalidConfig(f"--primary-wait {opts.primary_wait} must not be negative")
    if opts.python not in ("bundled", "auto") and not opts.python.startswith("host:/"):
        raise InvalidConfig(f"--python {opts.python!r} must be bundled, auto or host:/absolute/path")
    for flag, path in (
        ("--cni-bin-dir-host", opts.bin_dir_host),
        ("--cni-conf-dir-host", opts.conf_dir_host),
    ):
        if not path.startswith("/"):
            raise InvalidConfig(f"{flag} {path!r} must be an absolute path")
    if opts.multus_conf_file != "auto" and not os.path.isfile(opts.multus_conf_file):
        raise InvalidConfig(f"--multus-conf-file {opts.multus_conf_file} is not a file")


# --- executables ---------------------------------------------------------------------------------


def install_executables(opts: InstallOptions, state: InstallState) -> str:
    """Install the runtime directory and the two launchers; returns the runtime directory."""
    python_spec = opts.python
    if python_spec == "auto":
        python_spec = (
            "bundled" if (opts.bundle_source or shutil.which("patchelf")) else f"host:{sys.executable}"
        )
    runtime = _install_runtime(opts, python_spec)
    runtime_host = os.path.join(opts.bin_dir_host, os.path.basename(runtime))
    if python_spec == "bundled":
        from pymultus.install.bundle import read_bundle

        bundle = read_bundle(runtime)
        python_host = os.path.join(runtime_host, bundle.python)
        _smoke_test(os.path.join(runtime, bundle.python), os.path.join(runtime, "site"))
    else:
        python_host = python_spec[len("host:") :]
    from pymultus.install import codearchive
    from pymultus.install.launcher import ENTRY_POINTS

    # The executables' compiled modules, inside the runtime directory: it is immutable (named by
    # its content's digest) and goes away with it. Built by this interpreter, so used only when
    # the launcher's Python has the same magic number (the bundled one always does).
    site_host = os.path.join(runtime_host, "site")
    archive_here = os.path.join(runtime, ARCHIVE_FILE)
    codearchive.build(archive_here, os.path.join(runtime, "site"), recorded_root=site_host)
    for name, module in ENTRY_POINTS.items():
        path = os.path.join(opts.bin_dir, name)
        archive = os.path.join(runtime_host, ARCHIVE_FILE)
        state.write(path, launcher_script(python_host, site_host, module, archive=archive), 0o755)
    # The launchers point at the new runtime now; keep its predecessor for calls still running.
    if runtime in state.bundles:
        state.bundles.remove(runtime)
    state.bundles.append(runtime)
    for old in state.bundles[:-KEEP_BUNDLES]:
        state.remove_bundle(old)
    log.info("installed %s into %s (runtime %s)", ", ".join(ENTRY_POINTS), opts.bin_dir, runtime)
    return runtime


def launcher_script(python: str, site: str, module: str, *, archive: str | None = None) -> bytes:
    """A ``#!<python> -IS`` launcher (``pymultus.install.launcher``) running ``module``'s ``main``,
    with ``archive``: first loading the package's modules from that code archive."""
    from pymultus.install.launcher import launcher_text

    # The kernel reads at most 255 bytes of a #! line and splits its argument on whitespace.
    if len(python) + len(" -IS") > 255:
        raise InvalidConfig(f"interpreter path {python} is too long for a #! line (kernel limit 255)")
    if any(c.isspace() for c in python):
        raise InvalidConfig(f"interpreter path {python!r} cannot contain whitespace in a #! line")
    try:
        return launcher_text(module, python=python, sys_path=[site], archive=archive).encode()
    except ValueError as exc:
        raise InvalidConfig(str(exc)) from exc


def package_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("pymultus")


def _install_runtime(opts: InstallOptions, python_spec: str) -> str:
    """Put the bundle (or, for a host Python, the packages) into ``pymultus-<ver>-<digest>/``."""
    from pymultus.install.bundle import BUNDLE_MARKER, build_bundle, copy_packages, read_bundle

    staging = os.path.join(opts.bin_dir, f"{STAGING_PREFIX}{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    for leftover in os.listdir(opts.bin_dir):
        # A staging dir of an installer that was killed half-way: never referenced by a launcher.
        if leftover.startswith(STAGING_PREFIX):
            shutil.rmtree(os.path.join(opts.bin_dir, leftover), ignore_errors=True)
    try:
        if python_spec == "bundled":
            if opts.bundle_source:
                read_bundle(opts.bundle_source)  # fail early on something that is not a bundle
                shutil.copytree(opts.bundle_source, staging, symlinks=True)
            else:
                build_bundle(staging)
            name = read_bundle(staging).dir_name
        else:
            digest = copy_packages(os.path.join(staging, "site"))
            name = f"pymultus-{package_version()}-{digest[:12]}-site"
            import json

            marker = {
                "schema": 1,
                "pymultus": package_version(),
                "python": "host",
                "interpreter": python_spec[5:],
                "minGlibc": "",
                "digest": digest,
                "size": 0,
            }
            with open(os.path.join(staging, BUNDLE_MARKER), "w") as f:
                f.write(json.dumps(marker, indent=2) + "\n")
        target = os.path.join(opts.bin_dir, name)
        if os.path.isfile(os.path.join(target, BUNDLE_MARKER)):
            # Same name = same content digest: already installed (maybe in use right now).
            shutil.rmtree(staging)
            return target
        if os.path.exists(target):
            raise InvalidEnvironment(f"{target} exists but is not a pymultus bundle; remove it by hand")
        os.rename(staging, target)
        from pymultus import fileio

        fileio.fsync_dir(opts.bin_dir)
        return target
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _smoke_test(python: str, site: str) -> None:
    """Import both entry points with the new runtime before any launcher points at it."""
    code = f"import sys; sys.path.insert(0, {site!r}); import pymultus.errors, pymultus.jsonio"
    proc = subprocess.run([python, "-IS", "-c", code], capture_output=True, text=True, env={}, check=False)
    if proc.returncode != 0:
        raise InvalidEnvironment(
            f"the installed runtime {python} does not start: {proc.stderr.strip()[-500:]}"
        )
