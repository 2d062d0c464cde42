"""Issue 14 parity item: the generated conf's ``daemonSocketDir`` defaults to the daemon's own
``socketDir``, so a daemon on a non-default socket dir is reached by the shim without configuring
the same directory twice (Go Multus leaves the key out and its shim looks in /run/multus/)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.integration.test_shim_daemon import make_node
from tests.support.daemon import run_shim
from tests.support.netns import delete_host_link, netns, unique_name

pytestmark = pytest.mark.netns


def test_shim_finds_a_daemon_on_its_own_socket_dir_without_daemon_socket_dir(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node", 1)
    del node.daemon.config["daemonSocketDir"]
    try:
        node.daemon.start(wait="readyz")
        generated = json.loads(node.conf())
        assert generated["daemonSocketDir"] == node.daemon.socket_dir != "/run/multus/"
        with netns() as ns:
            env = node.env(ns, unique_name("cid"))
            code, result, err = run_shim(node.shim, "ADD", node.conf(), env=env)
            assert code == 0, (result, err)
            assert "eth0" in ns.links()
            code, result, err = run_shim(node.shim, "DEL", node.conf(), env=env)
            assert code == 0, (result, err)
    finally:
        node.daemon.stop()
        for bridge in node.bridges:
            delete_host_link(bridge)
        shutil.rmtree(os.path.dirname(node.daemon.socket_dir.rstrip("/")), ignore_errors=True)
