"""Fuzz: the manifest directory of the no-Kubernetes mode (``manifestsDir``).

Whoever can write a file there decides what the loader reads: YAML with tags, anchors, odd
scalars (``.inf``, 5000-digit integers, sets), several documents, ``kind: List`` with odd items, or
JSON. Loading ends in the objects or an InvalidConfig (code 7) naming the file; the second load
(from the parsed cache) sees the same objects as the first.
"""

from __future__ import annotations

import json
import os
import tempfile

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from pymultus import errors
from pymultus.kube.manifests import ManifestPodSource
from tests.fuzz import strategies as fs
from tests.fuzz.invariants import outcome

CODE_7 = {errors.INVALID_NETWORK_CONFIG}

metadata = st.fixed_dictionaries(
    {"name": st.one_of(fs.names, fs.json_values)},
    optional={
        "namespace": st.one_of(fs.names, fs.json_values),
        "uid": fs.text_values,
        "annotations": st.dictionaries(fs.text_values, fs.text_values, max_size=2),
    },
)
pods = st.fixed_dictionaries({"apiVersion": st.just("v1"), "kind": st.just("Pod"), "metadata": metadata})
nads = st.fixed_dictionaries(
    {
        "apiVersion": st.just("k8s.cni.cncf.io/v1"),
        "kind": st.just("NetworkAttachmentDefinition"),
        "metadata": metadata,
    },
    optional={
        "spec": st.fixed_dictionaries({}, optional={"config": st.one_of(fs.text_values, fs.json_values)})
    },
)
OBJECT_KEYS = ["apiVersion", "kind", "metadata", "spec", "items"]
objects = st.one_of(pods, nads, fs.mutated_documents(st.one_of(pods, nads), OBJECT_KEYS))
lists = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["List", "PodList"]),
        "items": st.one_of(st.lists(objects, max_size=3), fs.json_values),
    }
)

# YAML that a generator of Python values does not produce.
YAML_SNIPPETS = [
    "a: .inf\n",
    "a: -.inf\n",
    "a: .nan\n",
    "a: " + "9" * 5000 + "\n",
    "a: 0x" + "f" * 5000 + "\n",
    "a: !!set {1, b}\n",
    "a: !!set {x, y}\n",
    "a: !!binary aGVsbG8=\n",
    "a: !!python/object:os.system x\n",
    "a: !!timestamp 2001-12-14\n",
    "a: 2001-12-14t21:59:43.10-05:00\n",
    "? [a, b]\n: c\n",
    "a: &x [1]\nb: *x\n",
    "a: *undefined\n",
    "a: 1\na: 2\n",
    "\ta: 1\n",
    "a: '\x00'\n",
    'a: "\\0\\ud800"\n',
    "--- 1\n--- [a]\n",
    "kind: List\nitems: 5\n",
    "kind: List\nitems: {a: 1}\n",
    "kind: List\nitems: [1, 2]\n",
    "kind: PodList\nitems: abc\n",
    "kind: Pod\nmetadata: {name: p, namespace: [x]}\n",
    "kind: Pod\nmetadata: {name: {a: 1}}\n",
    "kind: NetworkAttachmentDefinition\nmetadata: {name: n}\nspec: 5\n",
    "a: 1.5e400\n",
    "a: 1_000\n",
    "a: 0o17\n",
    "a: 1:20\n",
    "{a: [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}\n",
    "%YAML 1.1\n---\na: 1\n",
    "%TAG ! tag:yaml.org,2002:\n---\na: !str 1\n",
    "a: <<\n",
    "<<: {kind: Pod}\n",
]


@st.composite
def manifest_files(draw: st.DrawFn) -> tuple[str, bytes]:
    form = draw(st.sampled_from(["yaml", "yaml", "json", "snippet", "bytes"]))
    docs = draw(st.lists(st.one_of(objects, lists), min_size=1, max_size=3))
    if form == "json":
        return "m.json", draw(fs.json_bytes(st.just(docs[0])))
    if form == "snippet":
        parts = draw(st.lists(st.sampled_from(YAML_SNIPPETS), min_size=1, max_size=3))
        return "m.yaml", "---\n".join(parts).encode("utf-8", "surrogatepass")
    if form == "bytes":
        return "m.yml", draw(st.binary(max_size=64))
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    try:
        text = yaml.dump_all(docs, Dumper=dumper, allow_unicode=draw(st.booleans()))
    except UnicodeEncodeError:  # the C emitter cannot write a lone surrogate: the Python one escapes it
        text = yaml.dump_all(docs, Dumper=yaml.SafeDumper, allow_unicode=False)
    data = text.encode("utf-8", "surrogatepass")
    return "m.yaml", draw(st.one_of(st.just(data), fs.damaged(data)))


def _load(directory: str) -> tuple[object, object] | errors.MultusError:
    source = ManifestPodSource(directory)
    pod = source.get_pod("default", "p", uid=None)
    return pod, source.get_network_attachment("default", "n")


@given(st.lists(manifest_files(), min_size=1, max_size=3))
# Found by this property: TypeError for List items that are not a list and for a set of mixed
# types, ValueError for an integer of 5000 digits (Python's int-from-string limit) and for .inf
# (the parsed cache cannot encode it).
@example([("m.yaml", b"kind: List\nitems: 5\n")])
@example([("m.yaml", b"kind: Pod\nmetadata: {name: p}\na: .inf\n")])
@example([("m.yaml", b"a: !!set {1, b}\n")])
@example([("m.yaml", b"a: " + b"9" * 5000 + b"\n")])
def test_manifest_directory(files: list[tuple[str, bytes]]) -> None:
    with tempfile.TemporaryDirectory(prefix="pymultus-fuzz-") as directory:
        for index, (name, data) in enumerate(files):
            with open(os.path.join(directory, f"{index}-{name}"), "wb") as handle:
                handle.write(data)
        first = outcome(lambda: _load(directory), CODE_7)
        second = outcome(lambda: _load(directory), CODE_7)  # from status/.manifests-cache.json
        if isinstance(first, errors.MultusError):
            assert isinstance(second, errors.MultusError) and second.msg == first.msg
        else:
            assert json.dumps(second, sort_keys=True) == json.dumps(first, sort_keys=True)
