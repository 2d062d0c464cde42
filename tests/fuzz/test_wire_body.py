"""Fuzz: the ``/cni`` and ``/delegate`` request body (Go Multus's ``api.Request`` JSON).

Any local process that can open the daemon socket sends these bytes. Each body decodes into
(env, stdin, interfaceAttributes) or fails with code 4 (no usable env) or 6 (not decodable).
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pymultus import errors
from pymultus.daemon import wire
from tests.fuzz import strategies as fs
from tests.fuzz.invariants import outcome

CODES = {errors.INVALID_ENVIRONMENT, errors.DECODING_FAILURE}

envs = st.dictionaries(
    st.one_of(
        st.sampled_from(["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"]),
        fs.tricky_text,
    ),
    fs.text_values,
    max_size=5,
)
attributes = st.one_of(
    st.none(), st.fixed_dictionaries({}, optional={"ips": st.lists(fs.names), "mac": fs.names})
)


def _body(env: dict[str, str], stdin: bytes, attrs: dict[str, object] | None) -> dict[str, object]:
    return json.loads(wire.encode_request({"CNI_COMMAND": "ADD", **env}, stdin, attrs))


bodies = st.builds(_body, envs, st.binary(max_size=64), attributes)
BODY_KEYS = ["env", "config", "interfaceAttributes", "Env", "CONFIG"]
config_strings = st.one_of(
    fs.text_values,
    st.sampled_from(["", "=", "====", "YQ", "YQ==", "YQ==YQ==", "Y Q = =", "\u00e9A==", "\x00"]),
)
body_with_odd_config = st.builds(lambda body, config: {**body, "config": config}, bodies, config_strings)


@given(st.one_of(fs.documents(bodies, BODY_KEYS), fs.json_bytes(body_with_odd_config)))
def test_request_body(data: bytes) -> None:
    got = outcome(lambda: wire.decode_request(data), CODES)
    if isinstance(got, tuple):
        env, stdin, attrs = got
        assert isinstance(env.get("CNI_COMMAND"), str)
        assert all(isinstance(value, str) for value in env.values())
        assert isinstance(stdin, bytes) and isinstance(attrs, dict)


env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
env_values = st.text(st.characters(exclude_characters="\x00"), max_size=40)


@given(st.dictionaries(env_names, env_values, max_size=4), st.binary(max_size=256), attributes)
def test_request_body_round_trip(env: dict[str, str], stdin: bytes, attrs: dict[str, object] | None) -> None:
    env = {**env, "CNI_COMMAND": "DEL"}
    got = outcome(lambda: wire.decode_request(wire.encode_request(env, stdin, attrs)), CODES)
    assert got == (env, stdin, attrs or {})
