"""Fuzz: the ``network-status`` annotation, written from delegate results and read back.

What we write (Go ``json.MarshalIndent`` format, built by hand) must be JSON that reads back as the
same entries, whatever the delegate's result held; what we read (any value a user or another
controller put on the pod) is a list of objects or an InvalidAnnotation (code 7).
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pymultus import errors
from pymultus.cni.result import Result
from pymultus.kube.netstatus import decode_status, encode_status, status_entries
from tests.fuzz import strategies as fs
from tests.fuzz.invariants import outcome
from tests.fuzz.test_results import VERSIONS, results

CODE_7 = {errors.INVALID_NETWORK_CONFIG}

# Device-info files are JSON written by device plugins; their strings are kept as written.
plain_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
device_info = st.one_of(
    st.none(),
    st.recursive(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=False, allow_infinity=False),
            plain_text,
        ),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(plain_text, inner, max_size=3)),
        max_leaves=8,
    ).map(lambda value: {"type": "pci", "extra": value}),
)


def _as_emitted(pair: tuple[Result, str]) -> object:
    """A delegate's answer: the Result itself, or its decoded JSON in some version."""
    result, version = pair
    try:
        return json.loads(json.dumps(result.to_version(version)))
    except errors.IncompatibleVersion:
        return result


delegate_results = st.one_of(results, st.tuples(results, st.sampled_from(VERSIONS)).map(_as_emitted))


@given(delegate_results, fs.names, st.sampled_from(["eth0", "net1"]), st.booleans(), device_info)
def test_written_status_reads_back(
    result: object, network: str, ifname: str, is_default: bool, device: dict[str, object] | None
) -> None:
    entries = status_entries(
        network_name=network, ifname=ifname, result=result, is_default=is_default, device_info=device
    )
    value = encode_status(entries)
    assert outcome(lambda: decode_status(value), CODE_7) == entries


@given(fs.json_bytes(st.lists(fs.json_values, max_size=3)).map(lambda raw: raw.decode("utf-8", "replace")))
def test_any_status_value(value: str) -> None:
    got = outcome(lambda: decode_status(value), CODE_7)
    if isinstance(got, list):
        assert all(isinstance(entry, dict) for entry in got)
