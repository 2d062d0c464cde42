"""Per-node client certificates for the thick daemon (Go Multus's ``perNodeCertificate``).

Instead of the DaemonSet's shared service-account token, the daemon authenticates as
``system:multus:<node>`` (group ``system:multus``) with a client certificate of its own:

1. a P-256 key is made on the node (:mod:`pymultus.kube.x509`) and kept with its certificate in
   ``<certDir>/multus-client-current.pem`` (0600, in a 0700 directory, replaced atomically);
2. a CertificateSigningRequest (``certificates.k8s.io/v1``, signer
   ``kubernetes.io/kube-apiserver-client``, usages ``digital signature`` + ``client auth``,
   ``expirationSeconds`` = ``certDuration``) is created with the bootstrap kubeconfig's
   credentials — or, for a renewal, with the current certificate — and watched by name until the
   approver (``pymultus cert-approver``) has approved it and the signer has issued the
   certificate;
3. all API calls use that certificate; at 80% of its life a new one is requested in the
   background and swapped in: requests in flight finish on their connections, new connections
   use the new certificate, idle ones are closed.

It never falls back to other credentials: bootstrap credentials that authenticate nobody
(anonymous) are refused at once, and a request that is denied, fails or is not answered within
``approval_timeout`` (Go Multus: 2 minutes) is a clear error, which stops the daemon at start.
A certificate still valid in ``certDir`` (more than 20% of its life left) is used after a
restart without a new request.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable

from pymultus import errors, fileio, jsonio
from pymultus.errors import KubeGone, MultusError
from pymultus.kube import x509
from pymultus.kube.auth import Credentials
from pymultus.kube.client import KubeClient

log = logging.getLogger("pymultus.kube.certs")

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
SIGNER = "kubernetes.io/kube-apiserver-client"
GROUP = "system:multus"
USER_PREFIX = "system:multus:"
USAGES = ("digital signature", "client auth")
CURRENT = "multus-client-current.pem"
RENEW_AT = 0.8  # of the certificate's life
APPROVAL_TIMEOUT = 120.0  # seconds, as Go Multus
MIN_DURATION = 600.0  # seconds: kube-apiserver's minimum spec.expirationSeconds
RETRY_DELAY = 5.0  # seconds between failed renewals (the old certificate is still valid)
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class CertificateNotIssued(errors.TryAgainLater):
    """The CSR was denied, failed, or not answered in time."""


def parse_duration(text: str, what: str = "certDuration") -> float:
    """A Go duration (``10m``, ``1h30m``, ``90s``) in seconds; InvalidConfig naming ``what``."""
    rest, total = text.strip(), 0.0
    if not rest:
        raise errors.InvalidConfig(f"{what} is empty; expected a duration such as 10m or 1h")
    while rest:
        digits = len(rest) - len(rest.lstrip("0123456789."))
        unit = rest[digits:]
        unit = next((u for u in ("ns", "us", "µs", "ms", "s", "m", "h") if unit.startswith(u)), "")
        if not digits or not unit:
            raise errors.InvalidConfig(f"{what} {text!r} is not a duration such as 10m or 1h")
        try:
            total += float(rest[:digits]) * _UNITS[unit]
        except ValueError:
            raise errors.InvalidConfig(f"{what} {text!r} is not a duration such as 10m or 1h") from None
        rest = rest[digits + len(unit) :]
    return total


class CertCredentials(Credentials):
    """Credentials whose client certificate file is replaced under them: :meth:`reload` makes the
    next new connection use the new one (existing connections keep theirs)."""

    __slots__ = ()

    def reload(self) -> None:
        self._ssl_context = self._build_ssl_context()


class NodeCertificates:
    """Obtains, stores and rotates the node's client certificate; see the module doc."""

    def __init__(
        self,
        node: str,
        cert_dir: str,
        bootstrap: Credentials,
        duration: float,
        *,
        approval_timeout: float = APPROVAL_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not node:
            raise errors.InvalidConfig(
                "perNodeCertificate needs the node name (MULTUS_NODE_NAME or --node-name)"
            )
        if not cert_dir:
            raise errors.InvalidConfig("perNodeCertificate.certDir is empty; it names where the key is kept")
        if bootstrap.authorization() is None and not (
            bootstrap.client_cert_file or bootstrap.client_cert_data
        ):
            raise errors.InvalidConfig(
                f"perNodeCertificate.bootstrapKubeconfig {bootstrap.source} has no credentials; "
                "refusing to request a certificate as an anonymous user"
            )
        if duration < MIN_DURATION:
            raise errors.InvalidConfig(
                f"perNodeCertificate.certDuration is {duration:g} s; the API server refuses less than "
                f"{MIN_DURATION:g} s (10m) for a certificate signing request"
            )
        self.node = node
        self.user = USER_PREFIX + node
        self.path = os.path.join(cert_dir, CURRENT)
        self.bootstrap = bootstrap
        self.duration = duration
        self.approval_timeout = approval_timeout
        self.clock = clock
        self.credentials = CertCredentials(
            bootstrap.server,
            ca_file=bootstrap.ca_file,
            ca_data=bootstrap.ca_data,
            insecure=bootstrap.insecure,
            tls_server_name=bootstrap.tls_server_name,
            client_cert_file=self.path,
            client_key_file=self.path,
            source=f"per-node certificate {self.path}",
        )
        self.not_before = self.not_after = 0.0
        self.issued = 0  # certificates obtained by this process (not read from disk)
        self._clients: list[KubeClient] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- start, use, stop -----------------------------------------------------------------------

    def start(self) -> CertCredentials:
        """A usable certificate (from disk, else a new one: blocks until issued), then the
        background rotation. Raises when none can be had."""
        if not self._load_current():
            self._obtain(self.bootstrap)
        self._thread = threading.Thread(target=self._rotate_loop, name="node-certificate", daemon=True)
        self._thread.start()
        return self.credentials

    def register(self, client: KubeClient) -> KubeClient:
        """Close ``client``'s idle connections on each rotation (it must use :attr:`credentials`)."""
        self._clients.append(client)
        return client

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def renew_at(self) -> float:
        return self.not_before + RENEW_AT * (self.not_after - self.not_before)

    # -- internals ------------------------------------------------------------------------------

    def _load_current(self) -> bool:
        try:
            data = fileio.read_file(self.path)
            not_before, not_after = x509.certificate_validity(data)
            x509.EcKey.from_pem(data)
        except (OSError, MultusError):
            return False
        if self.clock() >= not_before + RENEW_AT * (not_after - not_before):
            return False
        self.not_before, self.not_after = not_before, not_after
        self.credentials.reload()
        log.info("using the per-node certificate %s (valid until %s)", self.path, _iso(not_after))
        return True

    def _obtain(self, credentials: Credentials) -> None:
        key = x509.EcKey()
        request = x509.certificate_request(key, [(x509.OID_O, GROUP), (x509.OID_CN, self.user)])
        client = KubeClient(credentials)
        try:
            certificate = self._request(client, request)
        finally:
            client.close()
        not_before, not_after = x509.certificate_validity(certificate)
        fileio.write_atomically(self.path, key.to_pem() + certificate, mode=0o600, dir_mode=0o700)
        self.not_before, self.not_after = not_before, not_after
        self.issued += 1
        self.credentials.reload()
        for api in self._clients:
            api.close()  # idle connections only: the next requests handshake with the new certificate
        log.info("obtained the per-node certificate for %s, valid until %s", self.user, _iso(not_after))

    def _request(self, client: KubeClient, request: bytes) -> bytes:
        name = f"pymultus-{self.node}-{secrets.token_hex(4)}"[:253]
        body = {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {
                "request": base64.b64encode(request).decode("ascii"),
                "signerName": SIGNER,
                "expirationSeconds": int(self.duration),
                "usages": list(USAGES),
            },
        }
        client.request("POST", CSR_PATH, body=jsonio.dumpb(body))
        deadline = time.monotonic() + self.approval_timeout
        while True:
            # GET, then watch from its resourceVersion: nothing between the two is missed, and an
            # expired watch (410) or one that ended just starts the next round.
            csr = client.request("GET", f"{CSR_PATH}/{name}")
            certificate = _issued(csr, name)
            if certificate:
                return certificate
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                raise CertificateNotIssued(
                    f"the certificate signing request {name} for {self.user} was not approved and signed "
                    f"within {self.approval_timeout:g} s; is pymultus cert-approver running?",
                    details=f"signer {SIGNER}",
                )
            rv = _text(_mapping(csr.get("metadata")).get("resourceVersion")) or None
            try:
                stream = client.watch(
                    CSR_PATH,
                    rv,
                    max(1, math.ceil(min(left, 60))),
                    params={"fieldSelector": f"metadata.name={name}"},
                )
                try:
                    for kind, obj in stream:
                        if kind in ("ADDED", "MODIFIED") and _issued(obj, name):
                            break
                        if time.monotonic() >= deadline:
                            break
                finally:
                    stream.close()
            except KubeGone:
                continue

    def _rotate_loop(self) -> None:
        while not self._stop.is_set():
            wait = self.renew_at() - self.clock()
            if wait > 0:
                self._stop.wait(min(wait, 3600))
                continue
            current = self.credentials if self.clock() < self.not_after else self.bootstrap
            try:
                self._obtain(current)
            except MultusError as exc:
                log.error("renewing the per-node certificate failed (retrying in %g s): %s", RETRY_DELAY, exc)
                self._stop.wait(RETRY_DELAY)


def _issued(csr: dict[str, object], name: str) -> bytes:
    """The issued certificate (PEM) of ``csr``; raises when it was denied or failed."""
    status = _mapping(csr.get("status"))
    conditions = status.get("conditions")
    for condition in conditions if isinstance(conditions, list) else []:
        failed = isinstance(condition, dict) and condition.get("type") in ("Denied", "Failed")
        if failed and condition.get("status", "True") == "True":
            raise CertificateNotIssued(
                f"the certificate signing request {name} was {str(condition['type']).lower()}: "
                f"{condition.get('reason', '')} {condition.get('message', '')}".rstrip()
            )
    certificate = status.get("certificate")
    if not isinstance(certificate, str) or not certificate:
        return b""
    try:
        return base64.b64decode(certificate, validate=True)
    except ValueError:
        raise CertificateNotIssued(f"the certificate of {name} is not valid base64") from None


def _mapping(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
