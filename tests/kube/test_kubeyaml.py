"""kube.kubeyaml: the kubeconfig YAML subset read without PyYAML.

The contract: whatever ``load`` returns is exactly what ``yaml.safe_load`` returns for the same
bytes; anything else is None (the caller then asks PyYAML). Checked on the kubeconfigs real
installers write (which must be accepted), on generated documents in every PyYAML dump style,
and on mutations of a real kubeconfig (any accepted mutation must read as PyYAML reads it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymultus.kube import kubeyaml
from pymultus.kube.auth import load_kubeconfig, parse_kubeconfig
from tests.support.isolated import run_isolated

SRC = Path(__file__).resolve().parents[2] / "src"

# Go Multus's thin installer (images/entrypoint.sh / the generate-kubeconfig script), as written.
GO_MULTUS_THIN = """\
# Kubeconfig file for Multus CNI plugin.
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://[10.96.0.1]:443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=
users:
- name: multus
  user:
    token: "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJ4In0.c2ln"
contexts:
- name: multus-context
  context:
    cluster: local
    user: multus
current-context: multus-context
"""

# Go Multus's thick/thin-entrypoint template: indented sequences, preferences {}, insecure flag.
GO_MULTUS_ENTRYPOINT = """\
apiVersion: v1
clusters:
  - cluster:
      insecure-skip-tls-verify: true
      server: https://10.96.0.1:443
    name: local
contexts:
  - context:
      cluster: local
      user: multus
    name: multus-context
current-context: multus-context
kind: Config
preferences: {}
users:
  - name: multus
    user:
      token: eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJ4In0.c2ln
"""

# kubeadm's admin.conf shape: client certificate data, empty preferences, a context namespace.
KUBEADM = """\
---
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t
    server: https://192.168.1.10:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    namespace: kube-system   # comment after a value
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes

current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t
    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQ==
"""

# File paths, a token file, a quoted port-like name, an explicit null, single quotes.
FILES = """\
apiVersion: v1
kind: Config
clusters:
- name: 'c1'
  cluster:
    server: "https://api.example.com:6443/prefix"
    certificate-authority: /etc/cni/net.d/multus.d/ca.crt
    tls-server-name: api.internal
    proxy-url:
users:
- name: u
  user:
    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
    username: ~
    password: null
contexts:
- name: ctx
  context:
    cluster: c1
    user: u
current-context: ctx
"""

REAL = {
    "go-multus-thin": GO_MULTUS_THIN,
    "go-multus-entrypoint": GO_MULTUS_ENTRYPOINT,
    "kubeadm": KUBEADM,
    "files-quotes-nulls": FILES,
}


@pytest.mark.parametrize("text", list(REAL.values()), ids=list(REAL))
def test_real_installers_kubeconfigs_are_read_without_pyyaml_as_pyyaml_reads_them(text: str) -> None:
    doc = kubeyaml.load(text.encode())
    assert doc is not None
    assert doc == yaml.safe_load(text)


def test_pyyaml_dumps_of_kubeconfigs_are_read() -> None:
    doc = yaml.safe_load(KUBEADM)
    styles: list[dict[str, object]] = [{}, {"sort_keys": False}, {"indent": 4}, {"explicit_start": True}]
    for options in styles:
        text: str = yaml.safe_dump(doc, **options)  # type: ignore[call-overload]
        assert kubeyaml.load(text.encode()) == doc, options


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: true\nb: no\nc: ~\nd:\ne: 0\nf: 6443\ng: x#y\n", {"a": True, "b": False, "c": None, "d": None}),
        ("a: 'it''s'\nb: \"q\\\"\\\\\"\n", {"a": "it's", "b": 'q"\\'}),
        ("a:\n- - x\n  - y\n-\n- z\n", {"a": [["x", "y"], None, "z"]}),
        ("a: https://[fd00::1]:443/x,y{z}\n", {"a": "https://[fd00::1]:443/x,y{z}"}),
    ],
)
def test_values_resolve_as_yaml_1_1(text: str, expected: dict[str, object]) -> None:
    doc = kubeyaml.load(text.encode())
    assert doc == yaml.safe_load(text)
    assert doc is not None and all(doc[key] == value for key, value in expected.items())


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",  # anchors and aliases
        "a: !!str 1\n",  # tags
        "a: |\n  line\n",  # block scalars
        "a: >\n  line\n",
        "a: {b: 1}\n",  # flow collections other than {} and []
        "a: [1]\n",
        "a: plain\n  continued\n",  # multi-line scalars
        'a: "open\n  close"\n',
        "a: 1.5\n",  # numbers other than decimal ints, timestamps, octal
        "a: 2001-12-14\n",
        "a: 0755\n",
        "a: -1\n",
        "a: 1\na: 2\n",  # duplicate keys
        "a: 1\n---\nb: 2\n",  # several documents
        "%YAML 1.1\n---\na: 1\n",
        "a:\tb\n",  # tabs, CRs, non-ASCII
        "a: b\r\n",
        "a: caf\xc3\xa9\n",
        "? a\n: b\n",  # complex keys, quoted keys, non-string keys
        '"a": b\n',
        "1: b\n",
        "yes: b\n",
        'a: "\\n"\n',  # escapes other than \\ and \"
        "- a\n",  # not a mapping
        "",
        "a: b: c\n",  # errors are PyYAML's to report
        "a: b\n c: d\n",
        "a: 'x'y\n",
    ],
)
def test_everything_else_is_left_to_pyyaml(text: str) -> None:
    assert kubeyaml.load(text.encode("utf-8")) is None


def test_nesting_beyond_the_limit_is_left_to_pyyaml() -> None:
    deep = "".join(" " * (2 * level) + f"k{level}:\n" for level in range(kubeyaml.MAX_DEPTH + 2))
    assert kubeyaml.load(deep.encode()) is None
    shallow = "".join(" " * (2 * level) + f"k{level}:\n" for level in range(kubeyaml.MAX_DEPTH - 1))
    assert kubeyaml.load(shallow.encode()) == yaml.safe_load(shallow)


def test_a_kubeconfig_outside_the_subset_still_loads_through_pyyaml(tmp_path: Path) -> None:
    text = GO_MULTUS_THIN.replace("name: local", "name: &c local").replace("cluster: local", "cluster: *c")
    assert kubeyaml.load(text.encode()) is None
    creds = parse_kubeconfig(text.encode(), path=str(tmp_path / "kubeconfig"))
    assert (creds.host, creds.port) == ("10.96.0.1", 443)


def test_the_go_multus_kubeconfig_loads_in_a_process_without_pyyaml(tmp_path: Path) -> None:
    """The thin plugin's view: ``python -IS`` with only the package on the path (no PyYAML)."""
    path = tmp_path / "multus.kubeconfig"
    path.write_text(GO_MULTUS_THIN)
    code = (
        f"import sys; sys.path[:0] = [{str(SRC)!r}]\n"
        "from pymultus.kube.auth import load_kubeconfig\n"
        f"c = load_kubeconfig({str(path)!r})\n"
        "print(c.host, c.port, c.token[:5], 'yaml' in sys.modules)\n"
    )
    out = run_isolated(code)
    assert out.split() == ["10.96.0.1", "443", "eyJhb", "False"]
    assert load_kubeconfig(str(path)).token == yaml.safe_load(GO_MULTUS_THIN)["users"][0]["user"]["token"]


# -- generated and mutated documents -------------------------------------------------------------

_ALPHABET = st.characters(codec="ascii", exclude_characters="\t\r")
_WORD = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-"), min_size=1, max_size=8).filter(
    lambda word: word[0] != "-"
)
_URLISH = st.text(st.sampled_from("abcxyzABC0189./:-_[]=@%+,{}' \"#"), min_size=1, max_size=16)
_scalars = st.one_of(
    _WORD,
    _URLISH,
    st.text(_ALPHABET, max_size=12),
    st.sampled_from(["true", "no", "~", "null", "0", "0755", "1.5", "-1", "@x", "a: b", "x #y", "[1]", "'"]),
    st.booleans(),
    st.none(),
    st.integers(-5, 5000),
)
_keys = st.one_of(
    _WORD,
    _WORD,
    st.sampled_from(["yes", "1", "a b", "<<", "-k", "a:b", "x#"]),
    st.text(_ALPHABET, min_size=1, max_size=6),
)
_docs = st.dictionaries(
    _keys,
    st.recursive(
        _scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
        max_leaves=10,
    ),
    max_size=5,
)
# Kubeconfig-like: plain-word keys, mostly plain values (most of these are accepted).
_kubelike = st.dictionaries(
    _WORD,
    st.recursive(
        st.one_of(_WORD, _URLISH, st.booleans(), st.none(), st.integers(0, 5000)),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_WORD, inner, max_size=4),
        max_leaves=12,
    ),
    min_size=1,
    max_size=6,
)
_styles = st.fixed_dictionaries(
    {
        "sort_keys": st.booleans(),
        "indent": st.sampled_from([2, 3, 4]),
        "explicit_start": st.booleans(),
        "default_style": st.sampled_from([None, None, None, "'", '"']),
        "default_flow_style": st.sampled_from([False, False, None]),
    }
)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(doc=st.one_of(_docs, _kubelike), style=_styles)
def test_generated_documents_read_as_pyyaml_reads_them_or_not_at_all(
    doc: dict[object, object], style: dict[str, object]
) -> None:
    text = yaml.safe_dump(doc, **style)  # type: ignore[call-overload]
    got = kubeyaml.load(text.encode())
    if got is not None:
        assert got == yaml.safe_load(text)


_INTERESTING = [*"-:#'\" \n{}[]&*!|>%@`?,~0.\\", "\t", "- ", ": ", " #", "\n  ", "---\n", "yes"]


@settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    base=st.sampled_from(list(REAL.values())),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(_INTERESTING), st.integers(0, 3)),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_kubeconfigs_read_as_pyyaml_reads_them_or_not_at_all(
    base: str, edits: list[tuple[int, str, int]]
) -> None:
    text = base
    for position, insert, delete in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + delete :]
    got = kubeyaml.load(text.encode())
    if got is not None:
        assert got == yaml.safe_load(text)  # and PyYAML must not refuse what was accepted
