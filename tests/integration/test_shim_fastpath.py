"""multus-shim paths besides the common one: a daemon that is not ready yet, and requests the
fast path hands to the general path (an environment or conf that needs real JSON handling)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.integration.test_shim_daemon import Node, make_node
from tests.support.daemon import run_shim
from tests.support.netns import delete_host_link, netns, unique_name

pytestmark = pytest.mark.netns


def _stop(node: Node) -> None:
    node.daemon.stop()
    for bridge in node.bridges:
        delete_host_link(bridge)


def test_add_sent_to_a_daemon_that_is_not_ready_waits_and_is_sent_again(tmp_path: Path) -> None:
    indicator = tmp_path / "indicator"
    node = make_node(tmp_path / "n", 1, readinessindicatorfile=str(indicator))
    node.daemon.start(wait="healthz")
    try:
        cid = unique_name("cid")
        with netns() as ns:
            env = node.env(ns, cid)
            code, result, err = run_shim(
                node.shim, "ADD", node.conf(), env={**env, "PYMULTUS_SHIM_READY_TIMEOUT": "0.3"}
            )
            assert code == 1 and result is not None and result["code"] == 11, (result, err)
            assert "not ready" in str(result["msg"]) and "readiness indicator" in str(result["msg"])
            assert set(ns.links()) == {"lo"}  # nothing was attached

            outcome: dict[str, object] = {}
            thread = threading.Thread(
                target=lambda: outcome.update(
                    add=run_shim(
                        node.shim, "ADD", node.conf(), env={**env, "PYMULTUS_SHIM_READY_TIMEOUT": "30"}
                    )
                )
            )
            thread.start()
            time.sleep(0.5)
            assert "add" not in outcome  # still waiting for the daemon
            indicator.write_text("ready")
            thread.join(30)
            code, result, err = outcome["add"]  # type: ignore[misc]
            assert code == 0 and result is not None and result["cniVersion"] == "0.3.1", (result, err)
            assert "eth0" in ns.links()
            assert run_shim(node.shim, "DEL", node.conf(), env=env)[0] == 0
            assert set(ns.links()) == {"lo"}
    finally:
        _stop(node)


def test_environment_and_conf_that_need_json_escaping_take_the_general_path(tmp_path: Path) -> None:
    node = make_node(tmp_path / "n", 1)
    node.daemon.start(wait="readyz")
    try:
        conf = json.loads(node.conf())
        conf["comment"] = 'a "quoted" C:\\path'  # a backslash: the quick socket-dir scan defers
        data = json.dumps(conf).encode()
        cid = unique_name("cid")
        with netns() as ns:
            env = {**node.env(ns, cid), "X_NOTE": "café \t tab"}  # needs escaping in JSON
            code, result, err = run_shim(node.shim, "ADD", data, env=env)
            assert code == 0 and result is not None, (result, err)
            assert "eth0" in ns.links()
            code, result, err = run_shim(node.shim, "DEL", data, env=env)
            assert code == 0, (result, err)
            assert set(ns.links()) == {"lo"}
            assert node.cache_files(cid) == []
    finally:
        _stop(node)


def test_invalid_conf_is_reported_by_the_shim_as_before(tmp_path: Path) -> None:
    node = make_node(tmp_path / "n", 1)
    node.daemon.start(wait="readyz")
    try:
        with netns() as ns:
            env = node.env(ns, unique_name("cid"))
            # The last one names the daemon's socket, so it is sent there and rejected first.
            broken = node.conf().rstrip().rstrip(b"}") + b', "oops"}'
            for data in (b"{not json", b'{"daemonSocketDir": 1, oops}', broken):
                code, result, err = run_shim(node.shim, "ADD", data, env=env)
                assert code == 1 and result is not None, (result, err)
                assert result["code"] == 6 and "multus-shim network configuration" in str(result["msg"])
            assert set(ns.links()) == {"lo"}
    finally:
        _stop(node)
