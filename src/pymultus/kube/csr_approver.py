"""The approver of per-node client certificates (``pymultus cert-approver``).

It watches CertificateSigningRequests of signer ``kubernetes.io/kube-apiserver-client`` and
decides those whose subject claims a pymultus node identity (CN ``system:multus:<node>``); any
other request is left alone for other approvers. A request is **approved** only when all match:

* subject: exactly CN ``system:multus:<node>`` (a DNS subdomain) and O ``system:multus``, nothing
  else;
* usages: ``client auth``, optionally with ``digital signature`` and ``key encipherment``;
* requesting identity: one of the bootstrap users (the DaemonSet's service account) or the node's
  own certificate identity ``system:multus:<node>`` (a renewal); when the API server recorded the
  node of the requester's bound token (``extra["authentication.kubernetes.io/node-name"]``), it
  must be ``<node>`` — a node cannot ask for another node's identity;

otherwise it is **denied** with the reason. Each decision is a condition written through
``certificatesigningrequests/approval`` and an Event (``CSRApproved``, Normal; ``CSRDenied``,
Warning) on the request. The signer (kube-controller-manager) then issues the certificate.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping

from pymultus import jsonio
from pymultus.errors import KubeConflict, KubeError, KubeGone, KubeNotFound, MultusError
from pymultus.kube import x509
from pymultus.kube.certs import CSR_PATH, GROUP, SIGNER, USER_PREFIX
from pymultus.kube.client import KubeClient

log = logging.getLogger("pymultus.kube.csr_approver")

ALLOWED_USAGES = frozenset({"client auth", "digital signature", "key encipherment"})
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
COMPONENT = "pymultus-cert-approver"
EVENT_NAMESPACE = "default"  # where client-go records Events about cluster-scoped objects
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


class Decision:
    __slots__ = ("approve", "message", "reason")

    def __init__(self, approve: bool, reason: str, message: str) -> None:
        self.approve = approve
        self.reason = reason
        self.message = message


def review(csr: Mapping[str, object], bootstrap_users: Collection[str]) -> Decision | None:
    """The decision on one CSR; None when it is not ours to decide (or already decided)."""
    spec = _mapping(csr.get("spec"))
    if spec.get("signerName") != SIGNER or _mapping(csr.get("status")).get("conditions"):
        return None
    try:
        subject = x509.request_subject(base64.b64decode(str(spec.get("request", "")), validate=True))
    except (ValueError, MultusError):
        return None  # not readable: the API server validated it, so not a request we made
    common_names = [v for oid, v in subject if oid == x509.OID_CN]
    if not any(cn.startswith(USER_PREFIX) for cn in common_names):
        return None
    cn = common_names[0]
    node = cn[len(USER_PREFIX) :]
    if len(common_names) != 1 or sorted(subject) != sorted([(x509.OID_CN, cn), (x509.OID_O, GROUP)]):
        return _deny(f"the subject must be exactly CN={USER_PREFIX}<node>, O={GROUP}")
    if not node or not set(node) <= _LABEL_CHARS or len(node) > 253:
        return _deny(f"{node!r} is not a node name")
    usages = spec.get("usages")
    usages = {u for u in usages if isinstance(u, str)} if isinstance(usages, list) else set()
    if "client auth" not in usages or not usages <= ALLOWED_USAGES:
        return _deny(f"usages {sorted(usages)} must be client auth, optionally with {sorted(ALLOWED_USAGES)}")
    username = str(spec.get("username", ""))
    if username != cn and username not in bootstrap_users:
        return _deny(f"{username} may not request a certificate for {cn}")
    extra = _mapping(spec.get("extra")).get(NODE_NAME_EXTRA)
    if isinstance(extra, list) and extra and extra != [node]:
        return _deny(f"{username} runs on node {extra[0]}, not {node}")
    return Decision(True, "AutoApproved", f"pymultus node certificate for {cn} requested by {username}")


def _deny(message: str) -> Decision:
    return Decision(False, "NotAPymultusNodeCertificate", message)


class Approver:
    """Lists then watches the client-signer CSRs and decides each pending one once."""

    def __init__(
        self,
        client: KubeClient,
        bootstrap_users: Collection[str],
        *,
        watch_timeout: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.bootstrap_users = frozenset(bootstrap_users)
        self.watch_timeout = watch_timeout
        self.clock = clock
        self.stopping = threading.Event()
        self.decided: list[tuple[str, bool]] = []  # (CSR name, approved), for logs and tests

    def run(self) -> None:
        """Until :meth:`stop`; API failures are logged and retried after a pause."""
        selector = {"fieldSelector": f"spec.signerName={SIGNER}"}
        while not self.stopping.is_set():
            try:
                items, rv = self.client.list(CSR_PATH, selector)
                for item in items:
                    self.handle(item)
                while not self.stopping.is_set():
                    stream = self.client.watch(CSR_PATH, rv, self.watch_timeout, params=selector)
                    try:
                        for kind, obj in stream:
                            rv = _text(_mapping(obj.get("metadata")).get("resourceVersion")) or rv
                            if kind in ("ADDED", "MODIFIED"):
                                self.handle(obj)
                            if self.stopping.is_set():
                                break
                    finally:
                        stream.close()
            except KubeGone:
                continue  # the resourceVersion expired: list again
            except KubeError as exc:
                log.error("watching certificate signing requests failed: %s", exc)
                self.stopping.wait(2.0)

    def stop(self) -> None:
        self.stopping.set()

    def handle(self, csr: Mapping[str, object]) -> None:
        decision = review(csr, self.bootstrap_users)
        if decision is None:
            return
        meta = _mapping(csr.get("metadata"))
        name = _text(meta.get("name"))
        updated = dict(csr)
        condition = {
            "type": "Approved" if decision.approve else "Denied",
            "status": "True",
            "reason": decision.reason,
            "message": decision.message,
        }
        updated["status"] = {**_mapping(csr.get("status")), "conditions": [condition]}
        try:
            self.client.request("PUT", f"{CSR_PATH}/{name}/approval", body=jsonio.dumpb(updated))
        except (KubeConflict, KubeNotFound):
            return  # changed or gone meanwhile: the watch brings the new state
        self.decided.append((name, decision.approve))
        log.info("%s %s: %s", "approved" if decision.approve else "denied", name, decision.message)
        self._event(meta, decision)

    def _event(self, meta: Mapping[str, object], decision: Decision) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
        name = _text(meta.get("name"))
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{time.time_ns():x}", "namespace": EVENT_NAMESPACE},
            "involvedObject": {
                "kind": "CertificateSigningRequest",
                "name": name,
                "uid": _text(meta.get("uid")),
                "apiVersion": "certificates.k8s.io/v1",
                "resourceVersion": _text(meta.get("resourceVersion")),
            },
            "reason": "CSRApproved" if decision.approve else "CSRDenied",
            "message": decision.message,
            "source": {"component": COMPONENT},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": "Normal" if decision.approve else "Warning",
            "reportingComponent": COMPONENT,
        }
        try:
            self.client.create_event(EVENT_NAMESPACE, event)
        except KubeError as exc:
            log.warning("could not record the %s event of %s: %s", event["reason"], name, exc)


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
