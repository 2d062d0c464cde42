"""Structured input generators for the fuzz suite.

Random bytes alone rarely get past a JSON decoder, so most inputs start from a *valid* document
and damage it: a known key gets a value of the wrong type, is removed or duplicated, an unknown
key appears, strings carry NULs, lone surrogates, line separators or 64 KiB of text, numbers are
huge (beyond Python's 4300-digit int limit) or overflow to infinity (``1e400``), containers nest
deeper than the decoders allow, and the encoded text is truncated or has bytes flipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from hypothesis import strategies as st

# Characters that have broken parsers before: NUL and control characters, lone surrogates (valid
# as JSON escapes, not encodable as UTF-8), Unicode line separators, non-ASCII letters and digits
# (``str.isdigit`` is true for "²" and "٣"), the annotation separators.
TRICKY_CHARS = [
    "\x00",
    "\x01",
    "\t",
    "\n",
    "\r",
    "\x7f",
    "\x85",
    "\xa0",
    "\u2028",
    "\u2029",
    "\ud800",
    "\udc80",
    "\udfff",
    "é",
    "²",
    "٣",
    "\U0001f600",
    "\ufeff",
    "/",
    "@",
    ",",
    ";",
    "=",
    ":",
    ".",
    "-",
    "_",
    "[",
    "{",
    '"',
    "\\",
    " ",
]

# Pieces that mean something to some parser.
# "9" * 4400 is past Python's int-from-string limit (4300 digits): int() of it raises ValueError.
TRICKY_WORDS = [
    "..",
    "a/b",
    "net@eth0",
    "\r\n\r\n",
    "K=V",
    "0.0.0.0/",
    "::1/",
    "1.0.",
    "true",
    "%00",
    "../..",
    "9" * 4400,
]

_chars = st.one_of(st.characters(), st.sampled_from(TRICKY_CHARS))
tricky_text = st.lists(
    st.one_of(st.text(_chars, max_size=12), st.sampled_from(TRICKY_WORDS)), max_size=4
).map("".join)
"""Short strings, often with the characters and pieces above."""

huge_text = st.builds(
    lambda unit, n: unit * n,
    st.sampled_from(["a", "0", "/", "é", "\x00"]),
    st.sampled_from([256, 4097, 65536]),
)
"""A long run of one character (past name and path limits)."""

names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
"""Valid DNS-1123 labels (pod, namespace and network names)."""

text_values = st.one_of(tricky_text, names, huge_text)

huge_ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**4000]),  # 4001 digits: encodable
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    huge_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    text_values,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text_values, inner, max_size=4)),
    max_leaves=8,
)
"""Any JSON value (often a wrong type where a document expects a particular one)."""


def nested(depth: int, leaf: object = 0) -> object:
    """``depth`` levels of alternating lists and objects around ``leaf``."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


deep_values = st.builds(nested, st.sampled_from([100, 255, 256, 257, 600]))
"""Values nested around the decoders' depth limit (256) and beyond (``EDGE_DOCUMENTS`` go further:
the encoder used here recurses)."""


def mutated_documents(
    valid: st.SearchStrategy[dict[str, object]], keys: Sequence[str]
) -> st.SearchStrategy[dict[str, object]]:
    """``valid`` documents with a few of ``keys`` (and unknown keys) set to arbitrary values or
    removed."""

    @st.composite
    def mutate(draw: st.DrawFn) -> dict[str, object]:
        doc = dict(draw(valid))
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            key = draw(st.one_of(st.sampled_from(list(keys)), text_values))
            action = draw(st.sampled_from(["set", "set", "set", "deep", "delete"]))
            if action == "delete":
                doc.pop(key, None)
            elif action == "deep":
                doc[key] = draw(deep_values)
            else:
                doc[key] = draw(st.one_of(json_values, text_values))
        return doc

    return mutate()


def _encode(doc: object, ascii_only: bool) -> bytes:
    # Lone surrogates survive as "\udXXX" escapes with ensure_ascii, and become invalid UTF-8
    # (surrogatepass) without it: both are inputs a runtime could hand us.
    text = json.dumps(doc, ensure_ascii=ascii_only, allow_nan=False)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` truncated, with bytes flipped, inserted or deleted."""
    out = bytearray(data)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        action = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        position = draw(st.integers(min_value=0, max_value=len(out)))
        if action == "truncate":
            del out[position:]
        elif action == "insert":
            out[position:position] = draw(
                st.sampled_from([b"\x00", b"\xff", b"{", b"]", b'"', b"1e400", b"\\u"])
            )
        elif out and position < len(out):
            if action == "flip":
                out[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
            else:
                del out[position]
    return bytes(out)


EDGE_DOCUMENTS = [
    b"",
    b" ",
    b"null",
    b"[]",
    b"{}",
    b'"{}"',
    b"1e400",
    b'{"a":1e400}',
    b'{"a":-1e400}',
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":' + b"9" * 5000 + b"}",
    b'{"a":1}{"b":2}',
    b'{"a":1,"a":"x"}',
    b"\xef\xbb\xbf{}",
    b"\xff\xfe{\x00}\x00",
    b'{"a":"\\ud800"}',
    b'{"a":"\\u0000"}',
    b"[" * 100000,
    b"[" * 300 + b"]" * 300,
    b'{"a":' * 300 + b"1" + b"}" * 300,
]


# By index, so that Hypothesis's reports show a short strategy rather than 100 KB of brackets.
edge_documents = st.sampled_from(range(len(EDGE_DOCUMENTS))).map(EDGE_DOCUMENTS.__getitem__)


def json_bytes(documents: st.SearchStrategy[object]) -> st.SearchStrategy[bytes]:
    """Encoded ``documents``, plus damaged encodings, raw bytes and literal edge cases."""
    encoded = st.builds(_encode, documents, st.booleans())
    return st.one_of(
        encoded,
        encoded,
        encoded.flatmap(damaged),
        st.binary(max_size=64),
        edge_documents,
        st.builds(_encode, deep_values, st.just(True)),
    )


def documents(valid: st.SearchStrategy[dict[str, object]], keys: Sequence[str]) -> st.SearchStrategy[bytes]:
    """The standard input mix for a JSON document parser: valid, mutated, damaged, raw."""
    return json_bytes(st.one_of(valid, mutated_documents(valid, keys), mutated_documents(valid, keys)))
