"""The multus-shim fast path (built-in modules only) agrees with the general path it bypasses."""

from __future__ import annotations

import json

import pytest

from pymultus import errors, jsonio
from pymultus.cli import shim
from pymultus.daemon import wire


def _reference_socket_dir(conf: bytes) -> str:
    """What the general path (run) uses: the top-level string, "" when absent or not a string."""
    value = jsonio.loads_object(conf).get("daemonSocketDir")
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(
    "doc",
    [
        {"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus-shim"},
        {"type": "multus-shim", "daemonSocketDir": "/run/multus/sock/"},
        {"daemonSocketDir": "/a/", "delegates": [{"daemonSocketDir": "/nested/"}]},
        {"delegates": [{"daemonSocketDir": "/nested/"}], "x": {"daemonSocketDir": "/deeper/"}},
        {"name": "daemonSocketDir", "other": ["daemonSocketDir", {"daemonSocketDir": "/n/"}]},
        {"daemonSocketDir": None},
        {"daemonSocketDir": 5, "after": "x"},
        {"daemonSocketDir": {"daemonSocketDir": "/inner/"}},
        {"daemonSocketDir": ""},
        {"daemonSocketDir": "/run/ünïcode/"},
        {"a": "}]{[", "daemonSocketDir": "/brackets-in-strings/", "b": "[[[{"},
        {"clusterNetwork": {"plugins": [{"type": "bridge", "ipam": {}}]}, "daemonSocketDir": "/x/"},
    ],
)
@pytest.mark.parametrize("indent", [None, 2])
def test_socket_dir_scan_matches_the_json_parser(doc: dict[str, object], indent: int | None) -> None:
    conf = json.dumps(doc, indent=indent, ensure_ascii=False).encode()
    assert shim._socket_dir(conf) == _reference_socket_dir(conf)


def test_socket_dir_duplicate_keys_last_wins_like_json() -> None:
    conf = b'{"daemonSocketDir": "/first/", "daemonSocketDir" : "/second/"}'
    assert shim._socket_dir(conf) == _reference_socket_dir(conf) == "/second/"


@pytest.mark.parametrize(
    "conf",
    [
        b'{"daemonSocketDir": "/a\\"b/"}',  # any backslash: the full parser decides
        b'{"daemonSocket\\u0044ir": "/escaped-key/"}',
        b'["daemonSocketDir"]',  # not an object
        b"",
        b'{"daemonSocketDir": "/unterminated}',
    ],
)
def test_socket_dir_scan_defers_when_it_cannot_tell(conf: bytes) -> None:
    assert shim._socket_dir(conf) is None


def test_request_body_is_what_wire_encodes() -> None:
    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p", "PATH": "/usr/bin:/bin"}
    stdin = b'{"cniVersion":"1.0.0","name":"n","type":"multus-shim"}'
    raw = {key.encode(): value.encode() for key, value in env.items()}
    body = shim._request_body(raw, stdin)
    assert body is not None
    assert json.loads(body) == json.loads(wire.encode_request(env, stdin))
    assert wire.decode_request(body) == (env, stdin, {})


@pytest.mark.parametrize("value", ["é", 'a"b', "a\\b", "tab\there", "\x7f"])
def test_request_body_defers_values_that_need_escaping(value: str) -> None:
    raw = {b"CNI_COMMAND": b"ADD", b"X": value.encode("utf-8")}
    assert shim._request_body(raw, b"{}") is None


def test_constants_match_the_modules_the_fast_path_does_not_import() -> None:
    assert (
        jsonio.dumpb({"cniVersion": "1.1.0", "supportedVersions": list(shim.SUPPORTED_VERSIONS)})
        == shim._VERSION_REPLY
    )
    assert shim._SHIM_HEADER == wire.SHIM_HEADER
    assert wire.NOT_READY_HEADER.lower().encode() == shim._NOT_READY_HEADER
    assert (shim._INTERNAL, shim._INVALID_ENVIRONMENT, shim._TRY_AGAIN_LATER) == (
        errors.INTERNAL,
        errors.INVALID_ENVIRONMENT,
        errors.TRY_AGAIN_LATER,
    )


def test_response_headers_are_parsed() -> None:
    data = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\nPymultus-Not-Ready: 1\r\n\r\n{}"
    assert wire.parse_response_headers(data) == (
        400,
        b"{}",
        {"content-length": "2", "pymultus-not-ready": "1"},
    )
