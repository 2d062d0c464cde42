"""Test-wide configuration: the netns marker needs root and the real CNI plugins."""

from __future__ import annotations

import pytest

from tests.support.kube import fake_api, fake_api_pki, kube_env
from tests.support.netns import PLUGIN_DIR, is_root

# The Kubernetes fixtures (fake API server, or a real cluster with PYMULTUS_TEST_KUBECONFIG).
__all__ = ["fake_api", "fake_api_pki", "kube_env"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Integration tests need root and /usr/lib/cni (scripts/setup.sh installs the plugins).
    # CI runs as root with the plugins installed, so this skip never hides a failure there.
    missing = None
    if not is_root():
        missing = "needs root for network namespaces"
    elif not (PLUGIN_DIR / "bridge").exists():
        missing = f"needs the CNI plugins in {PLUGIN_DIR} (run scripts/setup.sh)"
    if missing is None:
        return
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=missing))
