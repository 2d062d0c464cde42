"""The plugin side: dispatch, VERSION negotiation, errors as CNI error objects, exit codes."""

from __future__ import annotations

import io
import json

import pytest

from pymultus.cni import skel
from pymultus.cni.request import CniRequest
from pymultus.errors import (
    DelegateFailed,
    DelegateTimeout,
    InvalidConfig,
    MultusError,
    NetworkNotFound,
    error_from_cni,
)

ADD_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc",
    "CNI_NETNS": "/var/run/netns/x",
    "CNI_IFNAME": "eth0",
}


def _serve(env: dict[str, str], stdin: bytes, handlers: dict[str, skel.Handler] | None = None, **kw: object):  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    seen: list[CniRequest] = []

    def add(request: CniRequest) -> dict[str, object]:
        seen.append(request)
        return {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}

    code = skel.serve(
        handlers if handlers is not None else {"ADD": add}, env=env, stdin=stdin, stdout=out, **kw
    )  # type: ignore[arg-type]
    text = out.getvalue().decode()
    return code, (json.loads(text) if text else None), seen


def test_add_is_dispatched_and_its_result_printed() -> None:
    code, printed, seen = _serve(ADD_ENV, b'{"cniVersion":"1.0.0","name":"n","type":"t"}')
    assert code == 0 and printed == {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
    assert seen[0].container_id == "abc" and seen[0].config.startswith(b"{")


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        (b'{"cniVersion":"0.3.1"}', "0.3.1"),
        (b'{"cniVersion":"1.1.0"}', "1.1.0"),
        (b"", "1.1.0"),
        (b"{}", "1.1.0"),
    ],
)
def test_version_answers_in_the_requested_version(stdin: bytes, expected: str) -> None:
    code, printed, _ = _serve({"CNI_COMMAND": "VERSION"}, stdin)
    assert code == 0
    assert printed == {
        "cniVersion": expected,
        "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }


def test_version_refuses_an_unsupported_version_with_code_1() -> None:
    code, printed, _ = _serve(
        {"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"1.0.0"}', supported_versions=("0.4.0",)
    )
    assert code == 1 and printed["code"] == 1 and "1.0.0" in printed["msg"]


def test_version_with_a_restricted_plugin_answers_its_highest() -> None:
    code, printed, _ = _serve({"CNI_COMMAND": "VERSION"}, b"", supported_versions=("0.3.1", "0.4.0"))
    assert code == 0 and printed == {"cniVersion": "0.4.0", "supportedVersions": ["0.3.1", "0.4.0"]}


@pytest.mark.parametrize(
    ("env", "stdin", "code", "fragment"),
    [
        ({}, b"{}", 4, "CNI_COMMAND"),
        ({**ADD_ENV, "CNI_COMMAND": "FOO"}, b"{}", 4, "FOO"),
        ({k: v for k, v in ADD_ENV.items() if k != "CNI_NETNS"}, b"{}", 4, "CNI_NETNS"),
        ({**ADD_ENV, "CNI_CONTAINERID": "../x"}, b"{}", 4, "CNI_CONTAINERID"),
        (ADD_ENV, b"{not json", 6, "not valid JSON"),
        (ADD_ENV, b'{"cniVersion":"9.9.9"}', 1, "9.9.9"),
        ({**ADD_ENV, "CNI_COMMAND": "CHECK"}, b'{"cniVersion":"0.3.1"}', 1, "CHECK"),
        ({"CNI_COMMAND": "GC"}, b'{"cniVersion":"1.0.0"}', 1, "GC"),
        ({"CNI_COMMAND": "STATUS"}, b'{"cniVersion":"1.0.0"}', 1, "STATUS"),
        ({**ADD_ENV, "CNI_COMMAND": "CHECK"}, b'{"cniVersion":"1.0.0"}', 4, "CHECK"),
    ],
)
def test_bad_requests_print_a_cni_error_and_exit_1(
    env: dict[str, str], stdin: bytes, code: int, fragment: str
) -> None:
    exit_code, printed, seen = _serve(env, stdin)
    assert exit_code == 1 and not seen
    assert printed["code"] == code and fragment in printed["msg"]
    assert set(printed) <= {"cniVersion", "code", "msg", "details"}


def test_handler_errors_keep_their_code_and_details() -> None:
    def add(request: CniRequest) -> dict[str, object]:
        raise NetworkNotFound('network "x" not found', details="pod default/web")

    code, printed, _ = _serve(ADD_ENV, b'{"cniVersion":"0.4.0"}', {"ADD": add})
    assert code == 1
    assert printed == {
        "cniVersion": "0.4.0",
        "code": 7,
        "msg": 'network "x" not found',
        "details": "pod default/web",
    }


def test_unexpected_exceptions_become_999_without_traceback() -> None:
    def add(request: CniRequest) -> dict[str, object]:
        raise KeyError("boom")

    code, printed, _ = _serve(ADD_ENV, b'{"cniVersion":"1.0.0"}', {"ADD": add})
    assert code == 1 and printed == {"cniVersion": "1.0.0", "code": 999, "msg": "'boom'"}


def test_commands_without_output_and_missing_gc_status_handlers_succeed() -> None:
    code, printed, _ = _serve(
        {**ADD_ENV, "CNI_COMMAND": "DEL"}, b'{"cniVersion":"1.0.0"}', {"DEL": lambda r: None}
    )
    assert code == 0 and printed is None
    code, printed, _ = _serve({"CNI_COMMAND": "STATUS"}, b'{"cniVersion":"1.1.0"}', {})
    assert code == 0 and printed is None


def test_about_is_printed_when_run_by_hand() -> None:
    err = io.BytesIO()
    out = io.BytesIO()
    assert skel.serve({}, env={}, stdin=b"", stdout=out, stderr=err, about="pymultus test plugin") == 0
    assert b"pymultus test plugin" in err.getvalue() and b"1.1.0" in err.getvalue() and out.getvalue() == b""


@pytest.mark.parametrize(
    "error",
    [
        InvalidConfig("bad conf", details="file x"),
        DelegateTimeout("plugin 'x' hung"),
        DelegateFailed("plugin says no", code=142, details="stderr: nope"),
        MultusError("internal"),
    ],
)
def test_errors_round_trip_through_their_cni_form(error: MultusError) -> None:
    wire = json.loads(json.dumps(error.to_cni_error("1.0.0")))
    back = error_from_cni(wire, fallback_msg="unused")
    assert (back.code, back.msg, back.details) == (error.code, error.msg, error.details)
