"""Fuzz: the CNI environment (``CNI_*`` variables, ``CNI_ARGS``) as the runtime or a shim sends it.

In thick mode the environment arrives as JSON strings in the ``/cni`` body, so it can hold what a
real process environment cannot (NUL, lone surrogates). A request that validates must be one whose
values can be handed to a delegate as its environment; everything else is code 4.
"""

from __future__ import annotations

import os

from hypothesis import example, given
from hypothesis import strategies as st

from pymultus import errors
from pymultus.cni.request import CniRequest, format_cni_args, parse_cni_args
from tests.fuzz import strategies as fs
from tests.fuzz.invariants import outcome

CODE_4 = {errors.INVALID_ENVIRONMENT}

commands = st.one_of(st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"]), fs.text_values)
container_ids = st.one_of(st.text("0123456789abcdef", min_size=1, max_size=64), fs.text_values)
ifnames = st.one_of(st.sampled_from(["eth0", "net1", "a" * 15, "a" * 16, ".", ".."]), fs.text_values)
pairs = st.one_of(
    st.tuples(st.sampled_from(["K8S_POD_NAME", "K8S_POD_NAMESPACE", "IgnoreUnknown", "IP", "MAC"]), fs.names),
    st.tuples(fs.tricky_text, fs.tricky_text),
)
cni_args = st.one_of(
    st.lists(pairs, max_size=4).map(lambda items: ";".join(f"{k}={v}" for k, v in items)), fs.text_values
)
environments = st.fixed_dictionaries(
    {},
    optional={
        "CNI_COMMAND": commands,
        "CNI_CONTAINERID": container_ids,
        "CNI_NETNS": st.one_of(st.just("/var/run/netns/pod"), fs.text_values),
        "CNI_IFNAME": ifnames,
        "CNI_ARGS": cni_args,
        "CNI_PATH": st.one_of(st.just("/opt/cni/bin:/usr/lib/cni"), fs.text_values),
    },
)


def _usable_as_process_env(value: str) -> None:
    assert "\x00" not in value, value
    os.fsencode(value)  # raises for what execve could not be given


@given(environments, st.binary(max_size=32))
# Found by this property (a /cni body can carry them): a lone surrogate in CNI_IFNAME crashed the
# interface-name check; a NUL in CNI_NETNS was accepted and failed later, at the delegate's exec.
@example({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "\ud800"}, b"")
@example({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0", "CNI_NETNS": "/x\x00"}, b"")
def test_cni_environment(env: dict[str, str], stdin: bytes) -> None:
    got = outcome(lambda: CniRequest.from_env(env, stdin), CODE_4)
    if isinstance(got, CniRequest):
        for value in (got.command, got.container_id, got.netns, got.ifname, got.args_raw, *got.path):
            _usable_as_process_env(value)
        for key, value in got.args:
            _usable_as_process_env(key)
            _usable_as_process_env(value)


@given(cni_args)
def test_cni_args_round_trip(raw: str) -> None:
    got = outcome(lambda: parse_cni_args(raw), CODE_4)
    if isinstance(got, list):
        assert parse_cni_args(format_cni_args(got)) == got
