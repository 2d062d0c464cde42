"""The pure parts of ``pymultus doctor``: JWT expiry, token and clock-skew verdicts, exit codes,
and the kernel probe against what this kernel can really create."""

from __future__ import annotations

import base64
import json

import pytest

from pymultus.kube.auth import Credentials
from pymultus.ops import doctor, doctor_kube
from pymultus.ops.doctor import FAIL, PASS, WARN, Check
from pymultus.ops.kernel import kernel_check
from tests.support.netns import is_root, kernel_has

NOW = 1_800_000_000.0


def jwt(claims: dict[str, object]) -> str:
    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.sig"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (jwt({"exp": 1_700_000_000}), 1_700_000_000.0),
        (jwt({"exp": 1.5}), 1.5),
        (jwt({"sub": "x"}), None),
        (jwt({"exp": True}), None),
        (jwt({"exp": "soon"}), None),
        ("not-a-jwt", None),
        ("a.!!!.c", None),
        ("a.bm90IGpzb24.c", None),  # "not json"
    ],
)
def test_jwt_expiry(token: str, expected: float | None) -> None:
    assert doctor_kube.jwt_expiry(token) == expected


@pytest.mark.parametrize(
    ("exp", "status"),
    [(NOW - 1, FAIL), (NOW + 60, WARN), (NOW + 3600, PASS)],
)
def test_token_verdicts(exp: float, status: str) -> None:
    creds = Credentials("https://10.0.0.1:6443", token=jwt({"exp": exp}))
    assert doctor_kube.token_check(creds, NOW).status == status


def test_a_missing_token_file_fails() -> None:
    creds = Credentials("https://10.0.0.1:6443", token_file="/nonexistent/token")
    check = doctor_kube.token_check(creds, NOW)
    assert check.status == FAIL
    assert "/nonexistent/token" in check.message


@pytest.mark.parametrize(
    ("offset", "status", "text"),
    [
        (0.4, PASS, "local clock is 0 s ahead of the API server (within 10 s)"),
        (-15, WARN, "local clock is 15 s behind the API server"),
        (120, FAIL, "local clock is 120 s ahead of the API server"),
    ],
)
def test_clock_skew(offset: float, status: str, text: str) -> None:
    header = "Fri, 15 Jan 2027 08:00:00 GMT"
    server = 1_800_000_000.0  # that instant
    check = doctor_kube.skew_check(header, server + offset)
    assert (check.status, check.message) == (status, text)


def test_clock_skew_without_a_date_header_warns() -> None:
    assert doctor_kube.skew_check("", NOW).status == WARN


def test_exit_code() -> None:
    checks = [Check("a", PASS, ""), Check("b", WARN, "")]
    assert doctor.exit_code(checks) == 0
    assert doctor.exit_code(checks, strict=True) == 1
    assert doctor.exit_code([*checks, Check("c", FAIL, "")]) == 1


def test_kernel_check_without_special_link_types() -> None:
    assert kernel_check(["host-local", "tuning"]).status == PASS


@pytest.mark.netns
@pytest.mark.skipif(not is_root(), reason="the probe creates links in a namespace")
@pytest.mark.parametrize("kind", ["macvlan", "ipvlan", "vlan"])
def test_kernel_probe_agrees_with_the_kernel(kind: str) -> None:
    check = kernel_check([kind])
    if kernel_has(kind):
        assert check.status == PASS, check.message
    else:
        assert check.status == FAIL
        assert check.message.startswith(f"{kind}: the kernel refuses a {kind} link (")
