"""pymultus cert-approver: which CSRs it approves or denies (a table), the controller against the
fake API server with exactly its RBAC, events, and the real ``pymultus cert-approver`` process
serving a daemon's certificate request."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pymultus.kube import x509
from pymultus.kube.api_calls import APPROVER_API_CALLS, classify
from pymultus.kube.auth import load_kubeconfig
from pymultus.kube.certs import CSR_PATH, NodeCertificates
from pymultus.kube.client import KubeClient
from pymultus.kube.csr_approver import Approver, review
from tests.deploy import manifests as m
from tests.fakeapi import csr
from tests.fakeapi.server import FakeApiServer
from tests.fakeapi.store import EVENTS
from tests.support.waiting import wait_until

BOOTSTRAP = "system:serviceaccount:kube-system:pymultus"
APPROVER = "system:serviceaccount:kube-system:pymultus-cert-approver"
SRC = str(Path(__file__).resolve().parents[2] / "src")
KEY = x509.EcKey()


def request(*subject: tuple[str, str]) -> str:
    return base64.b64encode(x509.certificate_request(KEY, list(subject))).decode()


NODE_SUBJECT = ((x509.OID_O, "system:multus"), (x509.OID_CN, "system:multus:node-a"))


def csr_obj(
    *,
    subject: tuple[tuple[str, str], ...] = NODE_SUBJECT,
    username: str = BOOTSTRAP,
    usages: tuple[str, ...] = ("digital signature", "client auth"),
    signer: str = "kubernetes.io/kube-apiserver-client",
    extra: dict[str, list[str]] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "request": request(*subject),
        "signerName": signer,
        "usages": list(usages),
        "username": username,
    }
    if extra:
        spec["extra"] = extra
    return {"metadata": {"name": "c1"}, "spec": spec, "status": status or {}}


@pytest.mark.parametrize(
    ("kw", "approved"),
    [
        ({}, True),
        ({"username": "system:multus:node-a"}, True),  # a renewal by the node itself
        ({"usages": ("client auth",)}, True),
        ({"usages": ("client auth", "key encipherment")}, True),
        ({"extra": {"authentication.kubernetes.io/node-name": ["node-a"]}}, True),
        ({"username": "system:multus:node-b"}, False),  # another node asking for node-a
        ({"username": "system:serviceaccount:default:intruder"}, False),
        ({"extra": {"authentication.kubernetes.io/node-name": ["node-b"]}}, False),  # token of node-b
        ({"usages": ("digital signature",)}, False),
        ({"usages": ("client auth", "server auth")}, False),
        ({"subject": ((x509.OID_CN, "system:multus:node-a"),)}, False),  # no O
        ({"subject": ((x509.OID_O, "system:masters"), (x509.OID_CN, "system:multus:node-a"))}, False),
        ({"subject": (*NODE_SUBJECT, (x509.OID_O, "system:masters"))}, False),
        ({"subject": ((x509.OID_O, "system:multus"), (x509.OID_CN, "system:multus:Node_A"))}, False),
    ],
)
def test_review(kw: dict[str, Any], approved: bool) -> None:
    decision = review(csr_obj(**kw), {BOOTSTRAP})
    assert decision is not None
    assert decision.approve is approved, decision.message


@pytest.mark.parametrize(
    "kw",
    [
        {"signer": "kubernetes.io/kubelet-serving"},
        {"subject": ((x509.OID_O, "system:nodes"), (x509.OID_CN, "system:node:node-a"))},  # the kubelet's
        {"status": {"conditions": [{"type": "Approved", "status": "True"}]}},  # decided already
    ],
)
def test_requests_that_are_not_ours_are_left_alone(kw: dict[str, Any]) -> None:
    assert review(csr_obj(**kw), {BOOTSTRAP}) is None


class Env:
    def __init__(self, api: FakeApiServer, tmp: Path) -> None:
        self.api = api
        rights = set(APPROVER_API_CALLS) | {("approve", "certificates.k8s.io", "signers")}
        api.add_token("approver", APPROVER, allowed=rights)
        api.add_token("node-b", "system:serviceaccount:default:intruder", allowed=None)
        self.approver_kc = api.write_kubeconfig(tmp / "approver", token="approver")
        self.admin = KubeClient(load_kubeconfig(str(api.write_kubeconfig(tmp / "admin"))))

    def submit(self, name: str, subject: tuple[tuple[str, str], ...], token: str | None = None) -> None:
        body = {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": request(*subject), "signerName": "kubernetes.io/kube-apiserver-client",
                     "expirationSeconds": 600, "usages": ["client auth"]},
        }  # fmt: skip
        client = self.admin
        if token:
            client = KubeClient(
                load_kubeconfig(str(self.api.write_kubeconfig(Path(self.api.workdir) / token, token=token)))
            )
        client.request("POST", CSR_PATH, body=json.dumps(body).encode())
        if token:
            client.close()

    def condition(self, name: str) -> str:
        obj = self.api.store.get(csr.CSRS, "", name)
        assert obj is not None
        conditions = obj["status"].get("conditions") or []  # type: ignore[union-attr]
        return str(conditions[0]["type"]) if conditions else ""


@pytest.fixture
def env(fake_api: FakeApiServer, tmp_path: Path) -> Iterator[Env]:
    e = Env(fake_api, tmp_path)
    try:
        yield e
    finally:
        e.admin.close()


def test_controller_decides_listed_and_watched_requests_with_events_and_exactly_its_rbac(env: Env) -> None:
    fake_api = env.api
    env.submit("before", NODE_SUBJECT)  # pending before the approver starts: from the LIST
    env.submit("kubelet", ((x509.OID_O, "system:nodes"), (x509.OID_CN, "system:node:n")))
    client = KubeClient(load_kubeconfig(str(env.approver_kc)))
    approver = Approver(client, {"system:serviceaccount:kube-system:pymultus", "admin"}, watch_timeout=2)
    thread = threading.Thread(target=approver.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: env.condition("before") == "Approved", "the listed request approved")
        env.submit("intruder", NODE_SUBJECT, token="node-b")  # from the WATCH
        wait_until(lambda: env.condition("intruder") == "Denied", "the watched request denied")
    finally:
        approver.stop()
        thread.join(10)
        client.close()
    assert env.condition("kubelet") == "", "another signer's request is left alone"
    assert sorted(approver.decided) == [("before", True), ("intruder", False)]
    events = {
        e["involvedObject"]["name"]: e  # type: ignore[index]
        for e in fake_api.store.snapshot(EVENTS, "default")[0]
    }
    assert (events["before"]["reason"], events["before"]["type"]) == ("CSRApproved", "Normal")
    assert (events["intruder"]["reason"], events["intruder"]["type"]) == ("CSRDenied", "Warning")
    assert (
        "system:serviceaccount:default:intruder may not request a certificate for system:multus:node-a"
        in str(events["intruder"]["message"])
    )
    seen = {classify(r.method, r.path, r.query) for r in fake_api.requests if r.user == APPROVER}
    assert seen == set(APPROVER_API_CALLS)


def test_approver_cluster_role_grants_exactly_its_calls() -> None:
    docs = m.render("cert-approver")
    (role,) = m.find(docs, "ClusterRole", "pymultus-cert-approver")
    granted = set()
    for rule in role["rules"]:
        if rule["resources"] == ["signers"]:
            assert rule["resourceNames"] == ["kubernetes.io/kube-apiserver-client"]
            assert (rule["apiGroups"], rule["verbs"]) == (["certificates.k8s.io"], ["approve"])
            continue
        granted |= {(v, g, r) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == set(APPROVER_API_CALLS)
    (deployment,) = m.find(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["pymultus", "cert-approver"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "pymultus-cert-approver"
    assert container["securityContext"]["runAsNonRoot"] is True


def test_the_real_approver_process_serves_a_daemon_certificate(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    env = Env(fake_api, tmp_path)
    fake_api.csr_signing_duration = 600
    fake_api.add_token("bootstrap", BOOTSTRAP, allowed=None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pymultus", "cert-approver", "--kubeconfig", str(env.approver_kc)],
        env={**os.environ, "PYTHONPATH": SRC},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        bootstrap = load_kubeconfig(str(fake_api.write_kubeconfig(tmp_path / "bootstrap", token="bootstrap")))
        certs = NodeCertificates("node-a", str(tmp_path / "certs"), bootstrap, 600, approval_timeout=30)
        try:
            certs.start()
        finally:
            certs.stop()
        assert certs.issued == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
        env.admin.close()
    assert proc.returncode == 0, err
    assert "approved pymultus-node-a-" in err
