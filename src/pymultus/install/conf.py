"""The thin-mode files of ``pymultus install``: the host kubeconfig and ``00-multus.conf[list]``,
written when their sources change (the service account or Node-bound token, the CA, the primary
CNI conf). Every write goes through the install record, so ``uninstall`` removes exactly these."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pymultus.errors import InvalidConfig

if TYPE_CHECKING:
    from pymultus.install.kubeconfig import NodeTokenSource
    from pymultus.install.node import InstallOptions
    from pymultus.install.state import InstallState

log = logging.getLogger("pymultus.install")


class ConfWriter:
    """Writes the kubeconfig and the Multus conf when their sources change."""

    def __init__(self, opts: InstallOptions, env: Mapping[str, str], state: InstallState) -> None:
        self.opts = opts
        self.env = env
        self.state = state
        self.multus_d = os.path.join(opts.conf_dir, "multus.d")
        self.kubeconfig = os.path.join(self.multus_d, "multus.kubeconfig")
        self._last_error = ""
        self._last_primary: str | None = None
        self.tokens: NodeTokenSource | None = None
        if opts.node_name:
            from pymultus.install.kubeconfig import NodeTokenSource

            self.tokens = NodeTokenSource(env, opts.service_account_dir, opts.node_name)
        else:
            log.warning(
                "no --node-name (MULTUS_NODE_NAME): the kubeconfig gets this pod's own token, "
                "which stops working when this pod is deleted"
            )

    def write_kubeconfig(self) -> bool:
        from pymultus.install.kubeconfig import (
            ServiceAccount,
            build_kubeconfig,
            read_service_account,
            server_from_env,
        )

        sa = read_service_account(self.opts.service_account_dir)
        if self.tokens is not None:
            sa = ServiceAccount(self.tokens.current(sa.token), sa.ca)
        data = build_kubeconfig(
            server=server_from_env(self.env), sa=sa, skip_tls_verify=self.opts.skip_tls_verify
        )
        self.state.make_dirs(self.multus_d, 0o700)
        changed = self.state.write(self.kubeconfig, data, 0o600)
        if changed:
            log.info("wrote %s", self.kubeconfig)
        return changed

    def options(self) -> dict[str, object]:
        o = self.opts
        return {
            "cniVersion": o.cni_version,
            "forceCNIVersion": o.force_cni_version,
            "overrideNetworkName": o.override_network_name,
            "kubeconfig": o.kubeconfig_host,
            "confDir": o.multus_cni_conf_dir,
            "binDir": o.additional_bin_dir,
            "logFile": o.multus_log_file,
            "logLevel": o.multus_log_level,
            "logToStderr": o.multus_log_to_stderr,
            "namespaceIsolation": o.namespace_isolation or None,
            "globalNamespaces": o.global_namespaces,
            "readinessindicatorfile": o.readiness_indicator_file,
        }

    def write_conf(self, *, initial: bool = False) -> bool:
        """Regenerate the conf from the current primary; False when there is no primary (yet)."""
        from pymultus.config.generate import OWN_NAMES, build_multus_conf, find_primary_conf

        primary = find_primary_conf(self.opts.conf_dir, master_name=self.opts.master_name or None)
        if primary is None:
            if self._last_primary is not None or initial:
                log.warning(
                    "no primary CNI conf in %s; waiting (the current conf is kept)", self.opts.conf_dir
                )
                self._last_primary = None
            return False
        if primary != self._last_primary:
            log.info("primary CNI conf: %s", primary)
            self._last_primary = primary
        host_primary = os.path.join(self.opts.conf_dir_host, os.path.relpath(primary, self.opts.conf_dir))
        try:
            name, data = build_multus_conf(
                primary, plugin_type="multus", options=self.options(), cluster_network=host_primary
            )
        except InvalidConfig as exc:
            if str(exc) != self._last_error:
                log.error("%s; keeping the current conf", exc)
                self._last_error = str(exc)
            if initial:
                raise
            return False
        self._last_error = ""
        path = os.path.join(self.opts.conf_dir, name)
        changed = self.state.write(path, data, 0o644)
        if changed:
            log.info("wrote %s", path)
        # The other form of our file would shadow or duplicate this one (00-multus.conf sorts
        # before 00-multus.conflist): remove it when we wrote it, or when it is a stale Multus conf.
        for other in OWN_NAMES:
            other_path = os.path.join(self.opts.conf_dir, other)
            if other != name and os.path.exists(other_path) and self._removable(other_path):
                os.unlink(other_path)
                self.state.files.pop(other_path, None)
                log.info("removed %s (superseded by %s)", other_path, name)
                changed = True
        return changed or initial

    def _removable(self, path: str) -> bool:
        if self.state.owns(path):
            return True
        from pymultus.config.generate import is_multus_conf

        return is_multus_conf(path)

    def copy_user_conf(self) -> None:
        from pymultus.fileio import read_file

        data = read_file(self.opts.multus_conf_file)
        path = os.path.join(self.opts.conf_dir, os.path.basename(self.opts.multus_conf_file))
        self.state.write(path, data, 0o644)
        log.info("copied %s to %s", self.opts.multus_conf_file, path)

    def cleanup(self) -> None:
        from pymultus.config.generate import OWN_NAMES

        for path in (*(os.path.join(self.opts.conf_dir, n) for n in OWN_NAMES), self.kubeconfig):
            if self.state.remove(path):
                log.info("removed %s", path)
