"""CertificateSigningRequests (``certificates.k8s.io/v1``) for the fake API server.

Faithful to the recordings (tests/data/k8s-wire, cases 40 to 46, wire facts 18, 19, 21): the
server fills ``spec.username``/``uid``/``groups`` from the requester and answers ``"status":{}``;
CSR objects carry no ``managedFields`` and no ``generation``; approval is a PUT of the whole
object to ``.../approval`` whose conditions get ``lastUpdateTime``/``lastTransitionTime``; besides
RBAC on ``certificatesigningrequests/approval`` it needs ``approve`` on ``certificates.k8s.io``
``signers`` (checked by an admission plugin: its 403 has no ``X-Content-Type-Options``).
``spec.expirationSeconds`` below 600 is refused (422) as kube-apiserver does.

Like the anchor cluster, no signer runs unless a test sets ``FakeApiServer.csr_signing_duration``
(kube-controller-manager's ``--cluster-signing-duration``): then an approved request for
``kubernetes.io/kube-apiserver-client`` gets ``status.certificate``, signed by the fake's CA (which
the server trusts for client certificates), valid for min(expirationSeconds, that duration) — so
tests can rotate certificates in seconds while the client asks for the API's minimum.
"""

from __future__ import annotations

import base64
import copy
import secrets
import time
import uuid
from typing import TYPE_CHECKING

from pymultus.kube import x509
from tests.fakeapi.store import Resource, now_rfc3339

if TYPE_CHECKING:
    from tests.fakeapi.server import FakeApiServer, Info, User

Obj = dict[str, object]

GROUP = "certificates.k8s.io"
CSRS = Resource(GROUP, "certificatesigningrequests", "CertificateSigningRequest", False, False)
RESOURCES = {(CSRS.group, CSRS.plural): CSRS}
SUBRESOURCES = ("approval", "status")
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
SPEC_ORDER = ("request", "signerName", "expirationSeconds", "usages", "username", "uid", "groups", "extra")
CONDITION_ORDER = ("type", "status", "reason", "message", "lastUpdateTime", "lastTransitionTime")
OID_EXT_KEY_USAGE = "2.5.29.37"
OID_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"


def _ordered(obj: Obj, order: tuple[str, ...]) -> Obj:
    out = {k: obj[k] for k in order if k in obj}
    out.update((k, v) for k, v in obj.items() if k not in out)
    return out


def _dict(value: object) -> Obj:
    return value if isinstance(value, dict) else {}


def _invalid(name: str, field: str, detail: str, reason: str = "FieldValueInvalid") -> Exception:
    from tests.fakeapi.server import ApiStatus

    return ApiStatus(
        422,
        "Invalid",
        f'{CSRS.kind}.{GROUP} "{name}" is invalid: {field}: {detail}',
        {
            "name": name,
            "group": GROUP,
            "kind": CSRS.kind,
            "causes": [{"reason": reason, "message": detail, "field": field}],
        },
    )


def create(obj: Obj, user: User) -> Obj:
    """The CSR as stored: validated, requester identity filled in, empty status (wire fact 18)."""
    meta = dict(_dict(obj.get("metadata")))
    name = str(meta.get("name", ""))
    spec = dict(_dict(obj.get("spec")))
    try:
        x509.request_subject(base64.b64decode(str(spec.get("request", "")), validate=True))
    except (ValueError, x509.X509Error):
        raise _invalid(
            name, "spec.request", "Invalid value: []byte{...}: PEM block type must be CERTIFICATE REQUEST"
        ) from None
    if not spec.get("signerName"):
        raise _invalid(name, "spec.signerName", "Required value", "FieldValueRequired")
    seconds = spec.get("expirationSeconds")
    if seconds is not None and (not isinstance(seconds, int) or seconds < 600):
        raise _invalid(
            name,
            "spec.expirationSeconds",
            f"Invalid value: {seconds}: may not specify a duration less than 600 seconds (10 minutes)",
        )
    spec["username"] = user.name
    spec["uid"] = user.name  # the fake's users are their own uid (the recording's token file did the same)
    spec["groups"] = [*user.groups, "system:authenticated"]
    meta.pop("managedFields", None)
    meta = {
        k: meta[k]
        for k in ("name", "uid", "resourceVersion", "creationTimestamp", "labels", "annotations")
        if k in meta
    }
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("resourceVersion", "")
    meta.setdefault("creationTimestamp", now_rfc3339())
    return {
        "kind": CSRS.kind,
        "apiVersion": CSRS.api_version,
        "metadata": meta,
        "spec": _ordered(spec, SPEC_ORDER),
        "status": {},
    }


def approve(info: Info, current: Obj, new: Obj, user: User) -> Obj:
    """PUT .../approval: the new conditions, after the CertificateApproval admission check."""
    from tests.fakeapi.server import ApiStatus

    signer = str(_dict(current.get("spec")).get("signerName", ""))
    if user.allowed is not None and ("approve", GROUP, "signers") not in user.allowed:
        refusal = ApiStatus(
            403,
            "Forbidden",
            f'{info.qualified} "{info.name}" is forbidden: user not permitted to approve requests with '
            f'signerName "{signer}"',
            info.details(),
        )
        refusal.admission = True
        raise refusal
    conditions = []
    now = now_rfc3339()
    for raw in _dict(new.get("status")).get("conditions") or []:  # type: ignore[attr-defined]
        condition = dict(_dict(raw))
        condition.setdefault("status", "True")
        condition.setdefault("lastUpdateTime", now)
        condition.setdefault("lastTransitionTime", now)
        conditions.append(_ordered(condition, CONDITION_ORDER))
    updated = copy.deepcopy(current)
    status = dict(_dict(updated.get("status")))
    status["conditions"] = conditions
    updated["status"] = status
    return updated


def approved(csr: Obj) -> bool:
    return any(
        _dict(c).get("type") == "Approved" and _dict(c).get("status") == "True"
        for c in _dict(csr.get("status")).get("conditions") or []  # type: ignore[attr-defined]
    )


def sign_if_due(api: FakeApiServer, name: str) -> None:
    """The signing controller's part, right after an approval (a separate MODIFIED event)."""
    duration = api.csr_signing_duration
    with api.store.cond:
        csr = api.store.get(CSRS, "", name)
        if csr is None or duration is None or not approved(csr):
            return
        spec = _dict(csr.get("spec"))
        status = _dict(csr.get("status"))
        if spec.get("signerName") != CLIENT_SIGNER or status.get("certificate"):
            return
        request = base64.b64decode(str(spec["request"]))
        seconds = min(float(spec.get("expirationSeconds") or 3600), duration)  # type: ignore[arg-type]
        certificate = issue(api, request, seconds)
        status = dict(status)
        status["certificate"] = base64.b64encode(certificate).decode()
        csr["status"] = status
        api.store.replace(CSRS, "", name, csr)


def issue(api: FakeApiServer, request_pem: bytes, seconds: float) -> bytes:
    """An X.509 client certificate for the request's subject and key, signed by the fake's CA."""
    ca_key = x509.EcKey.from_pem(api.pki.ca_key.read_bytes())
    _tag, ca_body, _end = x509.read_tlv(x509.unpem(api.pki.ca_pem, "CERTIFICATE"))
    ca_fields = x509.children(x509.children(ca_body)[0][1])
    ca_subject = ca_fields[5 if ca_fields[0][0] == 0xA0 else 4]
    _tag, req_body, _end = x509.read_tlv(x509.unpem(request_pem, "CERTIFICATE REQUEST"))
    info_fields = x509.children(x509.children(req_body)[0][1])
    subject, spki = info_fields[1], info_fields[2]
    now = time.time() - 1  # like the real signer's small backdate, so "now" is inside the validity
    algorithm = x509.seq(x509.der_oid(x509.OID_ECDSA_SHA256))
    eku = x509.seq(
        x509.der_oid(OID_EXT_KEY_USAGE), x509.tlv(x509.OCTET_STRING, x509.seq(x509.der_oid(OID_CLIENT_AUTH)))
    )
    tbs = x509.seq(
        x509.tlv(0xA0, x509.der_int(2)),
        x509.der_int(secrets.randbits(63)),
        algorithm,
        x509.tlv(ca_subject[0], ca_subject[1]),
        x509.seq(_utc(now), _utc(now + seconds)),
        x509.tlv(subject[0], subject[1]),
        x509.tlv(spki[0], spki[1]),
        x509.tlv(0xA3, x509.seq(eku)),
    )
    signature = x509.sign(ca_key.d, tbs)
    return x509.pem("CERTIFICATE", x509.seq(tbs, algorithm, x509.tlv(x509.BIT_STRING, b"\x00" + signature)))


def _utc(when: float) -> bytes:
    return x509.tlv(x509.UTC_TIME, time.strftime("%y%m%d%H%M%SZ", time.gmtime(when)).encode())


def bookmark(rv: int) -> Obj:
    """A CSR BOOKMARK (wire fact 19)."""
    return {
        "kind": CSRS.kind,
        "apiVersion": CSRS.api_version,
        "metadata": {"resourceVersion": str(rv)},
        "spec": {"request": None, "signerName": ""},
        "status": {},
    }
