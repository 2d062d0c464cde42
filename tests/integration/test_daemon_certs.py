"""The real daemon with ``perNodeCertificate``: it obtains its own client certificate (approved by
the real ``pymultus cert-approver``, signed by the fake API's signer), serves pods with it, rotates
it (short lives in tests), and refuses to run on anonymous credentials or without approval."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymultus.kube.api_calls import API_CALLS, APPROVER_API_CALLS
from tests.fakeapi import FakeApiServer
from tests.integration.test_shim_daemon import Node, make_node
from tests.support.daemon import REPO_SRC, run_shim
from tests.support.netns import delete_host_link, netns, unique_name
from tests.support.waiting import wait_until

pytestmark = pytest.mark.netns

BOOTSTRAP = "system:serviceaccount:kube-system:pymultus"
NODE_USER = "system:multus:node1"


class Rig:
    def __init__(self, tmp: Path, api: FakeApiServer, **cert_keys: object) -> None:
        self.api = api
        api.add_token("bootstrap", BOOTSTRAP, allowed=frozenset(API_CALLS))
        api.add_user(NODE_USER, groups=["system:multus"], allowed=frozenset(API_CALLS))
        rights = {*APPROVER_API_CALLS, ("approve", "certificates.k8s.io", "signers")}
        api.add_token("approver", "system:serviceaccount:kube-system:pymultus-cert-approver", allowed=rights)
        self.bootstrap = api.write_kubeconfig(tmp / "bootstrap", token="bootstrap")
        self.cert_dir = tmp / "certs"
        cert = {
            "enabled": True,
            "bootstrapKubeconfig": str(self.bootstrap),
            "certDir": str(self.cert_dir),
            **cert_keys,
        }
        self.node: Node = make_node(tmp / "node", 1, perNodeCertificate=cert)
        self.node.daemon.env["MULTUS_NODE_NAME"] = "node1"
        self.approver: subprocess.Popen[str] | None = None
        self.approver_kc = api.write_kubeconfig(tmp / "approver", token="approver")

    def start_approver(self) -> None:
        self.approver = subprocess.Popen(
            [sys.executable, "-m", "pymultus", "cert-approver", "--kubeconfig", str(self.approver_kc)],
            env={**os.environ, "PYTHONPATH": REPO_SRC},
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def close(self) -> None:
        self.node.daemon.stop()
        if self.approver is not None:
            self.approver.send_signal(signal.SIGTERM)
            self.approver.wait(20)
        for bridge in self.node.bridges:
            delete_host_link(bridge)
        shutil.rmtree(os.path.dirname(self.node.daemon.socket_dir.rstrip("/")), ignore_errors=True)

    def csrs(self) -> list[str]:
        return [
            r.user for r in self.api.requests if r.method == "POST" and "certificatesigningrequests" in r.path
        ]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApiServer]:
    with FakeApiServer(tmp_path / "api") as server:
        yield server


def test_daemon_obtains_uses_and_rotates_its_node_certificate(tmp_path: Path, api: FakeApiServer) -> None:
    api.csr_signing_duration = 5  # the signer caps the life: renewal every 4 s
    rig = Rig(tmp_path, api)
    rig.start_approver()
    try:
        rig.node.daemon.start(wait="readyz", timeout=60)
        key_file = rig.cert_dir / "multus-client-current.pem"
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        watchers = {r.user for r in api.requests if r.path == "/api/v1/pods"}
        assert watchers == {NODE_USER}, (
            "the caches are filled with the node's certificate, not the bootstrap token"
        )
        wait_until(lambda: len(rig.csrs()) >= 3, "two renewals")
        assert rig.csrs()[:3] == [BOOTSTRAP, NODE_USER, NODE_USER]
        # Still serving after the rotations: a pod gets its interfaces.
        api.create_pod("default", "after-rotation")
        with netns() as ns:
            env = rig.node.env(ns, unique_name("cid"), "after-rotation")
            code, result, err = run_shim(rig.node.shim, "ADD", rig.node.conf(), env=env)
            assert code == 0, (result, err, rig.node.daemon.output()[-3000:])
            assert run_shim(rig.node.shim, "DEL", rig.node.conf(), env=env)[0] == 0
        status_writers = {r.user for r in api.requests if r.path.endswith("/pods/after-rotation/status")}
        assert status_writers == {NODE_USER}
    finally:
        rig.close()


def test_daemon_refuses_anonymous_bootstrap_credentials(tmp_path: Path, api: FakeApiServer) -> None:
    rig = Rig(tmp_path, api)
    anonymous = tmp_path / "anonymous"
    anonymous.write_text(rig.bootstrap.read_text().replace('"tokenFile"', '"unused"'))
    rig.node.daemon.config["perNodeCertificate"]["bootstrapKubeconfig"] = str(anonymous)  # type: ignore[index]
    try:
        rig.node.daemon.start(wait="")
        assert rig.node.daemon.proc is not None
        assert rig.node.daemon.proc.wait(30) != 0
        output = rig.node.daemon.output()
        assert "has no credentials; refusing to request a certificate as an anonymous user" in output
        assert not [r for r in api.requests if r.user == "system:anonymous"]
    finally:
        rig.close()


def test_daemon_stops_with_a_clear_error_when_no_approval_comes(tmp_path: Path, api: FakeApiServer) -> None:
    rig = Rig(tmp_path, api, approvalTimeout=2)  # and no approver runs
    try:
        rig.node.daemon.start(wait="")
        assert rig.node.daemon.proc is not None
        assert rig.node.daemon.proc.wait(30) != 0
        output = rig.node.daemon.output()
        assert "was not approved and signed within 2 s; is pymultus cert-approver running?" in output
        assert {r.user for r in api.requests} == {BOOTSTRAP}, "nothing else was tried"
    finally:
        rig.close()
