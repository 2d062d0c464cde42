"""Just enough X.509 for per-node client certificates, on the standard library only.

The daemon's image has Python's ``ssl`` (which loads keys and certificates but cannot make them)
and no ``openssl`` binary nor ``cryptography``; so this module makes a NIST P-256 key, signs a
PKCS#10 certificate request with ECDSA-SHA256 (RFC 6979 deterministic nonces, so no nonce can
repeat), and reads back what the daemon and the approver need: a certificate's validity period
and a request's subject. DER is written and read by the small helpers below.

The scalar multiplication is plain Python integer arithmetic and not constant-time: it runs once
per key (the public key) and once per request signature, in the daemon, so there is no stream of
timings for a local observer to collect. TLS itself is done by OpenSSL through ``ssl``.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import secrets

from pymultus import errors

# NIST P-256 (SEC 2, prime256v1).
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_P256 = "1.2.840.10045.3.1.7"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
OID_CN = "2.5.4.3"
OID_O = "2.5.4.10"

# DER tags.
INTEGER, BIT_STRING, OCTET_STRING, OID, UTF8, PRINTABLE = 0x02, 0x03, 0x04, 0x06, 0x0C, 0x13
UTC_TIME, GENERALIZED_TIME, SEQUENCE, SET = 0x17, 0x18, 0x30, 0x31

Point = tuple[int, int] | None  # None: the point at infinity


class X509Error(errors.DecodingError):
    """A key, request or certificate that cannot be read."""


# -- DER --------------------------------------------------------------------------------------------


def tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes((tag, n)) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + value


def der_int(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0 keeps it positive
    return tlv(INTEGER, raw)


def der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray((40 * parts[0] + parts[1],))
    for part in parts[2:]:
        chunk = [part & 0x7F]
        rest = part >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out.extend(reversed(chunk))
    return tlv(OID, bytes(out))


def seq(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def name(*pairs: tuple[str, str]) -> bytes:
    """An X.501 Name, one attribute per RDN, in the given order (UTF8String values)."""
    return seq(*(tlv(SET, seq(der_oid(oid), tlv(UTF8, value.encode()))) for oid, value in pairs))


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """(tag, value, next offset) of the element at ``offset``."""
    try:
        tag, first = data[offset], data[offset + 1]
        offset += 2
        if first & 0x80:
            count = first & 0x7F
            if not 0 < count <= 4:
                raise X509Error("DER length of an unsupported size")
            length = int.from_bytes(data[offset : offset + count], "big")
            offset += count
        else:
            length = first
    except IndexError:
        raise X509Error("DER element cut short") from None
    if offset + length > len(data):
        raise X509Error("DER element longer than its container")
    return tag, data[offset : offset + length], offset + length


def children(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, value) elements of a constructed value."""
    out, offset = [], 0
    while offset < len(data):
        tag, value, offset = read_tlv(data, offset)
        out.append((tag, value))
    return out


def read_oid(value: bytes) -> str:
    if not value:
        raise X509Error("empty OID")
    parts, acc = [value[0] // 40, value[0] % 40], 0
    for byte in value[1:]:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(acc)
            acc = 0
    return ".".join(map(str, parts))


def read_name(value: bytes) -> list[tuple[str, str]]:
    """The (OID, text) attributes of a Name, in order."""
    out = []
    for _tag, rdn in children(value):
        for _t, attribute in children(rdn):
            (_o, oid), (_s, text) = children(attribute)[:2]
            out.append((read_oid(oid), text.decode("utf-8", "replace")))
    return out


def pem(label: str, der: bytes) -> bytes:
    body = binascii.b2a_base64(der, newline=False)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label.encode(), b"\n".join(lines), label.encode())


def unpem(data: bytes, label: str) -> bytes:
    """The DER of the first ``label`` block of ``data``."""
    begin, end = b"-----BEGIN %s-----" % label.encode(), b"-----END %s-----" % label.encode()
    start = data.find(begin)
    stop = data.find(end, start)
    if start < 0 or stop < 0:
        raise X509Error(f"no {label} in the PEM data")
    try:
        return binascii.a2b_base64(data[start + len(begin) : stop])
    except binascii.Error as exc:
        raise X509Error(f"the {label} is not valid base64: {exc}") from None


# -- P-256 ECDSA ------------------------------------------------------------------------------------


def _add(p1: Point, p2: Point) -> Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None
        slope = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (slope * slope - x1 - x2) % P
    return x3, (slope * (x1 - x3) - y1) % P


def multiply(k: int, point: Point = G) -> Point:
    result: Point = None
    addend = point
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        k >>= 1
    return result


def _nonce(d: int, digest: bytes) -> int:
    """RFC 6979 §3.2 with HMAC-SHA256 (qlen = hlen = 256)."""
    x, h = d.to_bytes(32, "big"), (int.from_bytes(digest, "big") % N).to_bytes(32, "big")
    v, k = b"\x01" * 32, b"\x00" * 32
    k = hmac.new(k, v + b"\x00" + x + h, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    k = hmac.new(k, v + b"\x01" + x + h, hashlib.sha256).digest()
    v = hmac.new(k, v, hashlib.sha256).digest()
    while True:
        v = hmac.new(k, v, hashlib.sha256).digest()
        candidate = int.from_bytes(v, "big")
        if 0 < candidate < N:
            return candidate
        k = hmac.new(k, v + b"\x00", hashlib.sha256).digest()
        v = hmac.new(k, v, hashlib.sha256).digest()


def sign(d: int, message: bytes) -> bytes:
    """The DER ECDSA-SHA256 signature of ``message`` with private scalar ``d``."""
    digest = hashlib.sha256(message).digest()
    z = int.from_bytes(digest, "big")
    k = _nonce(d, digest)
    point = multiply(k)
    assert point is not None
    r = point[0] % N
    s = pow(k, -1, N) * (z + r * d) % N
    return seq(der_int(r), der_int(s))


class EcKey:
    """A P-256 private key."""

    __slots__ = ("d", "public")

    def __init__(self, d: int | None = None) -> None:
        self.d = d if d is not None else secrets.randbelow(N - 1) + 1
        point = multiply(self.d)
        assert point is not None
        self.public = b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")

    def to_pem(self) -> bytes:
        """SEC 1 ``EC PRIVATE KEY``, as ``ssl.SSLContext.load_cert_chain`` reads it."""
        der = seq(
            der_int(1),
            tlv(OCTET_STRING, self.d.to_bytes(32, "big")),
            tlv(0xA0, der_oid(OID_P256)),
            tlv(0xA1, tlv(BIT_STRING, b"\x00" + self.public)),
        )
        return pem("EC PRIVATE KEY", der)

    @classmethod
    def from_pem(cls, data: bytes) -> EcKey:
        """Read a SEC 1 ``EC PRIVATE KEY`` or a PKCS#8 ``PRIVATE KEY`` holding a P-256 key."""
        if b"-----BEGIN EC PRIVATE KEY-----" in data:
            der = unpem(data, "EC PRIVATE KEY")
        else:
            _tag, info, _end = read_tlv(unpem(data, "PRIVATE KEY"))
            parts = children(info)
            if len(parts) < 3 or OID_P256 not in [read_oid(v) for t, v in children(parts[1][1]) if t == OID]:
                raise X509Error("the private key is not a P-256 key")
            der = parts[2][1]
        _tag, body, _end = read_tlv(der)
        fields = children(body)
        if len(fields) < 2 or fields[1][0] != OCTET_STRING:
            raise X509Error("the EC private key has no private value")
        return cls(int.from_bytes(fields[1][1], "big"))

    def spki(self) -> bytes:
        """The SubjectPublicKeyInfo."""
        return seq(seq(der_oid(OID_EC_PUBLIC_KEY), der_oid(OID_P256)), tlv(BIT_STRING, b"\x00" + self.public))


def certificate_request(key: EcKey, subject: list[tuple[str, str]]) -> bytes:
    """A PKCS#10 request (PEM) for ``subject``, signed by ``key``; no attributes."""
    info = seq(der_int(0), name(*subject), key.spki(), tlv(0xA0, b""))
    signature = sign(key.d, info)
    der = seq(info, seq(der_oid(OID_ECDSA_SHA256)), tlv(BIT_STRING, b"\x00" + signature))
    return pem("CERTIFICATE REQUEST", der)


def request_subject(data: bytes) -> list[tuple[str, str]]:
    """The subject attributes of a PEM PKCS#10 request (its signature is the API server's to check)."""
    try:
        return _request_subject(data)
    except (ValueError, IndexError):  # a structure other than expected: unpacking failed
        raise X509Error("the certificate request is malformed") from None


def _request_subject(data: bytes) -> list[tuple[str, str]]:
    _tag, body, _end = read_tlv(unpem(data, "CERTIFICATE REQUEST"))
    (_t, info), *_rest = children(body)
    fields = children(info)
    if len(fields) < 3 or fields[1][0] != SEQUENCE:
        raise X509Error("the certificate request has no subject")
    return read_name(fields[1][1])


def certificate_validity(data: bytes) -> tuple[float, float]:
    """(notBefore, notAfter) of a PEM certificate, as Unix times."""
    try:
        return _certificate_validity(data)
    except (ValueError, IndexError):
        raise X509Error("the certificate is malformed") from None


def _certificate_validity(data: bytes) -> tuple[float, float]:
    _tag, body, _end = read_tlv(unpem(data, "CERTIFICATE"))
    (_t, tbs), *_rest = children(body)
    fields = children(tbs)
    if fields and fields[0][0] == 0xA0:  # explicit version
        fields = fields[1:]
    if len(fields) < 4 or fields[3][0] != SEQUENCE:
        raise X509Error("the certificate has no validity period")
    (t1, start), (t2, end) = children(fields[3][1])[:2]
    return _time(t1, start), _time(t2, end)


def _time(tag: int, value: bytes) -> float:
    import calendar

    text = value.decode("ascii", "replace")
    if tag == UTC_TIME and len(text) == 13:
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text
    elif tag != GENERALIZED_TIME or len(text) != 15:
        raise X509Error(f"unsupported certificate time {text!r}")
    try:
        fields = (
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
        )
    except ValueError:
        raise X509Error(f"unsupported certificate time {text!r}") from None
    return float(calendar.timegm((*fields, 0, 0, 0)))
