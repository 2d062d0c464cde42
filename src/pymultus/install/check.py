"""``pymultus uninstall`` and ``pymultus install --check`` (the thin DaemonSet's readiness).

uninstall removes what the install record lists (``install.state``), and a ``00-multus.conf[list]``
the thick daemon wrote once no multus executable is left for it. ``--check`` says whether this
pod's install is complete.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymultus.install.node import InstallOptions

log = logging.getLogger("pymultus.install")


def uninstall(bin_dir: str, conf_dir: str) -> None:
    """Remove what the install record of ``bin_dir`` lists, and our conf once nothing serves it."""
    from pymultus.install.state import InstallState

    state = InstallState.load(bin_dir)
    if state.exists:
        for path in state.uninstall():
            log.warning("kept %s", path)
        log.info("pymultus uninstalled from %s", bin_dir)
    else:
        log.info("no pymultus install record in %s", bin_dir)
    _remove_orphaned_confs(conf_dir, bin_dir)


def _remove_orphaned_confs(conf_dir: str, bin_dir: str) -> None:
    """Remove our 00-multus.conf[list] when the executable it names is gone: left in place, it
    would fail every new pod on the node instead of letting it start on the cluster network."""
    from pymultus import fileio
    from pymultus.config.generate import OWN_NAMES, OWN_TYPES, is_multus_conf

    if any(os.path.exists(os.path.join(bin_dir, name)) for name in OWN_TYPES):
        return  # some multus executable (maybe another installation's) still serves the conf
    for name in OWN_NAMES:
        path = os.path.join(conf_dir, name)
        if is_multus_conf(path) and fileio.remove_durably(path):
            log.info("removed %s: the executable it names is gone", path)


def check_installed(opts: InstallOptions) -> int:
    """Whether the executables, the bundle and (thin) the conf and kubeconfig are in place, with
    the content this installer recorded: the thin DaemonSet is Ready only then, so that no pod is
    created on the node in the gap where it would silently get only the cluster network."""
    from pymultus.config.generate import OWN_NAMES
    from pymultus.install.bundle import BUNDLE_MARKER
    from pymultus.install.launcher import ENTRY_POINTS
    from pymultus.install.node import package_version
    from pymultus.install.state import InstallState

    state = InstallState.load(opts.bin_dir)
    missing: list[str] = []
    if not state.exists:
        missing.append(state.path)
    if state.exists and state.version != package_version():
        # An upgrade: the previous version's files are in place, this one's not yet.
        missing.append(f"pymultus {package_version()} (installed: {state.version or 'unknown'})")
    if state.exists and not opts.skip_binary_copy:
        if opts.bundle_source and opts.python == "bundled" and state.bundles:
            from pymultus.install.bundle import read_bundle

            wanted = read_bundle(opts.bundle_source).dir_name
            if os.path.basename(state.bundles[-1]) != wanted:
                missing.append(f"the runtime {wanted} (installed: {os.path.basename(state.bundles[-1])})")
        for name in ENTRY_POINTS:
            path = os.path.join(opts.bin_dir, name)
            if not (state.owns(path) and os.access(path, os.X_OK)):
                missing.append(path)
        if not state.bundles or not os.path.isfile(os.path.join(state.bundles[-1], BUNDLE_MARKER)):
            missing.append(f"the runtime {state.bundles[-1] if state.bundles else 'pymultus-*'}")
    if state.exists and opts.mode == "thin":
        kubeconfig = os.path.join(opts.conf_dir, "multus.d", "multus.kubeconfig")
        if not state.owns(kubeconfig):
            missing.append(kubeconfig)
        names = OWN_NAMES if opts.multus_conf_file == "auto" else (os.path.basename(opts.multus_conf_file),)
        confs = [os.path.join(opts.conf_dir, name) for name in names]
        if not any(state.owns(conf) for conf in confs):
            missing.append(" or ".join(confs))
    if missing:
        log.error("pymultus is not installed yet: missing or changed: %s", ", ".join(missing))
        return 1
    return 0
