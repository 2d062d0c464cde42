"""Fuzz: the network selection annotations (``k8s.v1.cni.cncf.io/networks``, default-network).

Any user who can create a pod sets these, so every value must end in a list of selections or an
InvalidAnnotation (code 7) — and a parsed selection must survive the round trip through the JSON
form we cache and log.
"""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from pymultus import errors, jsonio
from pymultus.kube import annotations
from pymultus.kube.annotations import NetworkSelection, parse_default_network, parse_networks
from tests.fuzz import strategies as fs
from tests.fuzz.invariants import outcome

CODE_7 = {errors.INVALID_NETWORK_CONFIG}

ifnames = st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True)
ips = st.one_of(
    st.ip_addresses().map(str),
    st.builds(lambda ip, prefix: f"{ip}/{prefix}", st.ip_addresses(v=4), st.integers(0, 32)),
    st.builds(lambda ip, prefix: f"{ip}/{prefix}", st.ip_addresses(v=6), st.integers(0, 128)),
)
macs = st.binary(min_size=6, max_size=6).map(lambda raw: ":".join(f"{b:02x}" for b in raw))

valid_elements = st.fixed_dictionaries(
    {"name": fs.names},
    optional={
        "namespace": fs.names,
        "interface": ifnames,
        "ips": st.lists(ips, max_size=3),
        "mac": macs,
        "cni-args": st.dictionaries(fs.names, st.one_of(fs.names, st.integers()), max_size=2),
        "portMappings": st.lists(
            st.fixed_dictionaries(
                {"hostPort": st.integers(0, 65535), "containerPort": st.integers(0, 65535)}
            ),
            max_size=2,
        ),
        "bandwidth": st.fixed_dictionaries({"ingressRate": st.integers(0, 2**40)}),
        "default-route": st.lists(st.ip_addresses().map(str), max_size=2),
        "deviceID": fs.tricky_text,
    },
)
# The keys the parser reads, plus two spelled in another case (it folds case like Go's JSON decoder).
ELEMENT_KEYS = [*annotations.SELECTION_KEYS, "NAME", "Interface"]

comma_items = st.one_of(
    fs.names,
    st.builds(lambda ns, n: f"{ns}/{n}", fs.names, fs.names),
    st.builds(lambda n, i: f"{n}@{i}", fs.names, ifnames),
    st.builds(lambda ns, n, i: f" {ns} / {n} @ {i} ", fs.names, fs.names, ifnames),
    fs.text_values,
)
comma_form = st.lists(comma_items, min_size=1, max_size=4).map(",".join)
json_form = st.lists(
    st.one_of(valid_elements, fs.mutated_documents(valid_elements, ELEMENT_KEYS), fs.json_values), max_size=3
).map(lambda doc: json.dumps(doc, allow_nan=False))
annotation_values = st.one_of(
    comma_form,
    json_form,
    fs.json_bytes(st.lists(valid_elements, max_size=2)).map(lambda raw: raw.decode("utf-8", "replace")),
    fs.text_values,
    fs.deep_values.map(json.dumps),
)


def _round_trips(selection: NetworkSelection, namespace: str) -> None:
    """The cached JSON form of a selection parses back to the same selection."""
    again = parse_networks(jsonio.dumps([selection.to_json()]), pod_namespace=namespace)
    assert again == [selection]


@given(annotation_values, fs.names)
# Found by this property: a lone surrogate in an interface name (UnicodeEncodeError), a prefix
# length of 5000 digits (int() limit), a number that overflows to infinity (not encodable again).
@example('[{"name":"x","interface":"\\ud800"}]', "default")
@example('[{"name":"x","ips":["10.0.0.1/' + "1" * 5000 + '"]}]', "default")
@example('[{"name":"x","portMappings":[{"hostPort":1e400}]}]', "default")
def test_networks_annotation(value: str, namespace: str) -> None:
    got = outcome(lambda: parse_networks(value, pod_namespace=namespace), CODE_7)
    if isinstance(got, list):
        for selection in got:
            assert selection.namespace and selection.name
            _round_trips(selection, namespace)


@given(annotation_values, fs.names)
def test_default_network_annotation(value: str, namespace: str) -> None:
    got = outcome(lambda: parse_default_network(value, default_namespace=namespace), CODE_7)
    if isinstance(got, NetworkSelection):
        _round_trips(got, namespace)


@given(st.lists(valid_elements, min_size=1, max_size=3), fs.names)
def test_valid_selections_parse_as_written(elements: list[dict[str, object]], namespace: str) -> None:
    got = outcome(lambda: parse_networks(json.dumps(elements), pod_namespace=namespace), CODE_7)
    assert isinstance(got, list), got
    for element, selection in zip(elements, got, strict=True):
        assert selection.name == element["name"]
        assert selection.namespace == element.get("namespace", namespace)
        assert selection.interface == element.get("interface")
        assert selection.ips == element.get("ips", [])
