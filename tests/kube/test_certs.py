"""Per-node client certificates: pymultus.kube.x509 checked by OpenSSL, and the CSR flow of
pymultus.kube.certs against the fake API server (approval, signing, use, rotation, refusals)."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymultus import errors
from pymultus.kube import x509
from pymultus.kube.auth import load_kubeconfig
from pymultus.kube.certs import (
    CSR_PATH,
    CURRENT,
    CertificateNotIssued,
    NodeCertificates,
    parse_duration,
)
from pymultus.kube.client import KubeClient
from tests.fakeapi import csr
from tests.fakeapi.server import FakeApiServer
from tests.support.waiting import wait_until

BOOTSTRAP = "system:serviceaccount:kube-system:pymultus"
CSR_GROUP = "certificates.k8s.io"
BOOTSTRAP_RIGHTS = {
    ("create", CSR_GROUP, "certificatesigningrequests"),
    ("get", CSR_GROUP, "certificatesigningrequests"),
    ("watch", CSR_GROUP, "certificatesigningrequests"),
}
NODE_RIGHTS = {*BOOTSTRAP_RIGHTS, ("get", "", "pods")}


# -- x509 ------------------------------------------------------------------------------------------


def test_key_and_request_are_what_openssl_and_ssl_accept(tmp_path: Path) -> None:
    key = x509.EcKey()
    request = x509.certificate_request(
        key, [(x509.OID_O, "system:multus"), (x509.OID_CN, "system:multus:n1")]
    )
    (tmp_path / "r.csr").write_bytes(request)
    (tmp_path / "k.pem").write_bytes(key.to_pem())
    verified = subprocess.run(
        ["openssl", "req", "-in", "r.csr", "-verify", "-noout", "-subject", "-nameopt", "RFC2253"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "verify OK" in verified.stdout + verified.stderr
    assert "subject=CN=system:multus:n1,O=system:multus" in verified.stdout
    assert x509.request_subject(request) == [(x509.OID_O, "system:multus"), (x509.OID_CN, "system:multus:n1")]
    subprocess.run(
        ["openssl", "x509", "-req", "-in", "r.csr", "-signkey", "k.pem", "-out", "c.pem", "-days", "2"],
        cwd=tmp_path, capture_output=True, check=True,
    )  # fmt: skip
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    start, end = x509.certificate_validity((tmp_path / "c.pem").read_bytes())
    assert end - start == 2 * 86400
    dates = subprocess.run(
        ["openssl", "x509", "-in", "c.pem", "-noout", "-enddate"],
        check=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    ).stdout
    assert time.strftime("%b %e %H:%M:%S %Y GMT", time.gmtime(end)) in dates
    # Signatures are deterministic (RFC 6979): the same key signs the same request identically.
    assert x509.certificate_request(key, [(x509.OID_CN, "x")]) == x509.certificate_request(
        key, [(x509.OID_CN, "x")]
    )


def test_openssl_pkcs8_key_is_read(tmp_path: Path) -> None:
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "k.pem"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    key = x509.EcKey.from_pem((tmp_path / "k.pem").read_bytes())
    public = subprocess.run(
        ["openssl", "ec", "-in", "k.pem", "-pubout", "-outform", "DER"],
        cwd=tmp_path,
        capture_output=True,
        check=True,
    ).stdout
    assert public.endswith(key.public)


BAD_PEMS = [
    b"",
    b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",  # an empty SEQUENCE
]


@pytest.mark.parametrize("data", BAD_PEMS)
def test_unreadable_certificates_are_decoding_errors(data: bytes) -> None:
    with pytest.raises(errors.DecodingError):
        x509.certificate_validity(data)


@pytest.mark.parametrize(
    ("text", "seconds"), [("10m", 600), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("500ms", 0.5)]
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "m", "10d", "1h-5m"])
def test_bad_durations_name_the_key(text: str) -> None:
    with pytest.raises(errors.InvalidConfig, match="certDuration"):
        parse_duration(text)


# -- the CSR flow ------------------------------------------------------------------------------------


class Cluster:
    """The fake API with a signer, the bootstrap identity, and an approver thread (optional)."""

    def __init__(self, api: FakeApiServer, tmp: Path, *, signing: float = 600) -> None:
        self.api = api
        self.tmp = tmp
        api.csr_signing_duration = signing
        api.add_token("bootstrap", BOOTSTRAP, allowed=BOOTSTRAP_RIGHTS)
        api.add_user("system:multus:node1", groups=["system:multus"], allowed=NODE_RIGHTS)
        self.bootstrap = load_kubeconfig(str(api.write_kubeconfig(tmp / "bootstrap", token="bootstrap")))
        self.admin = KubeClient(load_kubeconfig(str(api.write_kubeconfig(tmp / "admin"))))
        self.stop = threading.Event()
        self.decisions: list[str] = []
        self.threads: list[threading.Thread] = []

    def approve_all(self, condition: str = "Approved") -> None:
        """Approve (or deny) every pending CSR, as an approver would, until stopped."""

        def loop() -> None:
            while not self.stop.is_set():
                items, _rv = self.admin.list(CSR_PATH)
                for item in items:
                    if item.get("status"):
                        continue
                    name = item["metadata"]["name"]  # type: ignore[index]
                    item["status"] = {"conditions": [{"type": condition, "status": "True", "reason": "Test"}]}
                    self.admin.request("PUT", f"{CSR_PATH}/{name}/approval", body=json.dumps(item).encode())
                    self.decisions.append(str(name))
                self.stop.wait(0.05)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self.threads.append(thread)

    def certs(self, **kw: object) -> NodeCertificates:
        return NodeCertificates("node1", str(self.tmp / "certs"), self.bootstrap, 600, **kw)  # type: ignore[arg-type]

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)
        self.admin.close()


@pytest.fixture
def cluster(fake_api: FakeApiServer, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(fake_api, tmp_path)
    try:
        yield c
    finally:
        c.close()


def test_certificate_is_obtained_kept_private_and_used(cluster: Cluster) -> None:
    cluster.approve_all()
    certs = cluster.certs()
    try:
        credentials = certs.start()
        client = certs.register(KubeClient(credentials))
        cluster.api.create_pod("default", "p1")
        client.get_pod("default", "p1")
        client.close()
    finally:
        certs.stop()
    path = Path(certs.path)
    assert path.name == CURRENT
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    (stored,) = cluster.api.store.snapshot(csr.CSRS, None)[0]
    spec = stored["spec"]
    assert spec["signerName"] == "kubernetes.io/kube-apiserver-client"  # type: ignore[index]
    assert spec["usages"] == ["digital signature", "client auth"]  # type: ignore[index]
    assert spec["expirationSeconds"] == 600 and spec["username"] == BOOTSTRAP  # type: ignore[index]
    pod_gets = [r.user for r in cluster.api.requests if r.path == "/api/v1/namespaces/default/pods/p1"]
    assert pod_gets == ["system:multus:node1"]
    # A restart with the certificate still valid asks for no new one.
    again = cluster.certs()
    try:
        again.start()
        assert again.issued == 0 and len(cluster.decisions) == 1
    finally:
        again.stop()


def test_no_approval_is_a_clear_error_and_no_credentials_are_used(cluster: Cluster) -> None:
    certs = cluster.certs(approval_timeout=1.0)
    with pytest.raises(CertificateNotIssued, match="was not approved and signed within 1 s") as caught:
        certs.start()
    assert caught.value.code == errors.TRY_AGAIN_LATER
    assert not Path(certs.path).exists()


def test_denied_request_is_a_clear_error(cluster: Cluster) -> None:
    cluster.approve_all("Denied")
    with pytest.raises(CertificateNotIssued, match=r"pymultus-node1-\w+ was denied: Test"):
        cluster.certs().start()


def test_anonymous_bootstrap_is_refused_before_any_request(cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig = json.loads(
        Path(cluster.api.write_kubeconfig(tmp_path / "anon", token_file=False)).read_text()
    )
    kubeconfig["users"][0]["user"] = {}
    (tmp_path / "anon").write_text(json.dumps(kubeconfig))
    cluster.api.reset_requests()
    with pytest.raises(
        errors.InvalidConfig,
        match="has no credentials; refusing to request a certificate as an anonymous user",
    ):
        NodeCertificates("node1", str(tmp_path / "c"), load_kubeconfig(str(tmp_path / "anon")), 600)
    assert cluster.api.requests == []


def test_durations_below_the_api_minimum_are_refused(cluster: Cluster) -> None:
    with pytest.raises(errors.InvalidConfig, match="refuses less than 600 s"):
        NodeCertificates("node1", str(cluster.tmp / "c"), cluster.bootstrap, 300)


def test_rotation_at_80_percent_swaps_the_certificate_without_failing_requests(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    cluster = Cluster(fake_api, tmp_path, signing=4)  # the signer caps the life at 4 s
    cluster.approve_all()
    certs = cluster.certs()
    fake_api.create_pod("default", "p1")
    failures: list[Exception] = []
    stop = threading.Event()
    try:
        client = certs.register(KubeClient(certs.start()))
        first = Path(certs.path).read_bytes()
        assert certs.not_after - certs.not_before == 4
        assert certs.renew_at() == certs.not_before + 3.2

        def traffic() -> None:  # requests all along: none may fail across the swap
            while not stop.is_set():
                try:
                    client.get_pod("default", "p1")
                except Exception as exc:  # collected and asserted below
                    failures.append(exc)

        worker = threading.Thread(target=traffic, daemon=True)
        worker.start()
        wait_until(lambda: certs.issued >= 3, what="two renewals after the first certificate")
        stop.set()
        worker.join(10)
        client.close()
    finally:
        certs.stop()
        cluster.close()
    assert failures == []
    assert Path(certs.path).read_bytes() != first
    assert len(cluster.decisions) == 3
    renewals = [r.user for r in fake_api.requests if r.method == "POST" and r.path == CSR_PATH]
    assert renewals == [BOOTSTRAP, "system:multus:node1", "system:multus:node1"], (
        "renewed with its own certificate"
    )
    assert os.path.exists(certs.path)
