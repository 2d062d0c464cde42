"""The YAML subset kubeconfigs are written in, read without PyYAML.

Why: importing PyYAML costs ~18 ms of a thin ``multus`` ADD (it pulls in ``re`` and its own
dozens of modules), and a YAML kubeconfig is what Go Multus's installer writes, so it is what a
migrating node has. Kubeconfigs are a small, known shape: block mappings and sequences, plain or
quoted strings, a few booleans. This reader handles exactly that and answers ``None`` for
anything else, and the caller then asks PyYAML; so it never has to be a YAML parser, only a
correct one for what it accepts: every document it returns is the one ``yaml.safe_load`` returns
for the same bytes (tests/kube/test_kubeyaml.py checks this on real installers' kubeconfigs and
on generated and mutated ones).

Accepted: ASCII without tabs or CRs; ``#`` comments; an optional leading ``---``; block mappings
whose keys are plain words; block sequences (also "compact", at the key's indentation); values
that are double-quoted strings (escapes ``\\\\`` and ``\\"`` only), single-quoted strings, ``{}``,
``[]``, and plain scalars that YAML 1.1 resolves unambiguously: strings not starting with a digit,
sign, dot or indicator, ``true``/``false`` (and the other YAML 1.1 boolean words), ``null``/``~``/empty,
and decimal integers. Everything else — anchors, aliases, tags, block scalars, flow collections,
multi-line scalars, other numbers, timestamps, duplicate keys, several documents, nesting deeper
than :data:`MAX_DEPTH` — is left to PyYAML.

Hot path: standard library only, no imports at all.
"""

from __future__ import annotations

MAX_DEPTH = 16  # a kubeconfig nests 4 deep; deeper documents go to PyYAML (and its limits)

_TRUE = frozenset(("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"))
_FALSE = frozenset(("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"))
_NULL = frozenset(("~", "null", "Null", "NULL"))
# First characters PyYAML resolves to something other than a string (numbers, timestamps, merge
# and value keys) or that start another construct (indicators): those plain scalars are not ours.
_NOT_A_PLAIN_STRING = frozenset("+-.0123456789<=?:,[]{}#&*!|>%@`'\"")


class _Outside(Exception):
    """The text uses YAML outside the subset: PyYAML decides."""


def load(data: bytes) -> dict[str, object] | None:
    """The document of a kubeconfig-shaped YAML text, or None when PyYAML must read it."""
    if not data.isascii():
        return None
    lines: list[tuple[int, str]] = []
    for raw in data.decode("ascii").split("\n"):
        content = raw.lstrip(" ")
        if not content or content[0] == "#":
            continue
        if not content.isprintable():  # tabs, CRs and other control characters
            return None
        indent = len(raw) - len(content)
        content = content.rstrip(" ")
        if indent == 0 and content.startswith(("---", "...", "%")):
            if content != "---" or lines:  # only a bare start marker before the document
                return None
            continue
        lines.append((indent, content))
    if not lines or lines[0][0] != 0:
        return None
    reader = _Reader(lines)
    try:
        doc = reader.block(0, 0)
    except _Outside:
        return None
    if reader.pos != len(lines) or not isinstance(doc, dict):
        return None
    return doc


class _Reader:
    __slots__ = ("lines", "pos")

    def __init__(self, lines: list[tuple[int, str]]) -> None:
        self.lines = lines
        self.pos = 0

    def block(self, indent: int, depth: int) -> object:
        """The mapping or sequence whose first line (at ``indent``) is the current one."""
        if depth > MAX_DEPTH:
            raise _Outside
        if _is_entry(self.lines[self.pos][1]):
            return self.sequence(indent, depth)
        return self.mapping(indent, depth)

    def mapping(self, indent: int, depth: int) -> dict[str, object]:
        result: dict[str, object] = {}
        lines = self.lines
        while self.pos < len(lines):
            line_indent, content = lines[self.pos]
            if line_indent < indent or (line_indent == indent and _is_entry(content)):
                break  # the end of this mapping (a misplaced "- " is the caller's to refuse)
            if line_indent > indent:
                raise _Outside
            pair = _split_key(content)
            if pair is None or pair[0] in result:
                raise _Outside
            key, rest = pair
            self.pos += 1
            result[key] = self.value(rest, indent, depth, compact=True)
        return result

    def sequence(self, indent: int, depth: int) -> list[object]:
        items: list[object] = []
        lines = self.lines
        while self.pos < len(lines):
            line_indent, content = lines[self.pos]
            if line_indent < indent or not _is_entry(content):
                break
            if line_indent > indent:
                raise _Outside
            rest = content[1:].lstrip(" ")
            column = indent + len(content) - len(rest)
            if rest and rest[0] != "#" and (_is_entry(rest) or _split_key(rest) is not None):
                # "- key: value" / "- - item": a block that starts at the item's column.
                lines[self.pos] = (column, rest)
                items.append(self.block(column, depth + 1))
            else:
                self.pos += 1
                items.append(self.value(rest, indent, depth, compact=False))
        return items

    def value(self, rest: str, indent: int, depth: int, *, compact: bool) -> object:
        """The value after ``key:`` or ``-`` on a line at ``indent`` (the next lines if empty)."""
        lines = self.lines
        following = lines[self.pos] if self.pos < len(lines) else None
        if rest and rest[0] != "#":
            if following is not None and following[0] > indent:
                raise _Outside  # a multi-line scalar (or an error): PyYAML's
            return _scalar(rest)
        if following is None:
            return None
        if following[0] > indent:
            return self.block(following[0], depth + 1)
        if compact and following[0] == indent and _is_entry(following[1]):
            return self.sequence(indent, depth + 1)  # "key:\n- item" at the key's indentation
        return None


def _is_entry(content: str) -> bool:
    return content == "-" or content.startswith("- ")


def _split_key(content: str) -> tuple[str, str] | None:
    """``key: rest`` -> (key, rest); None when the line is not a plain-word key."""
    cut = content.find(": ")
    if cut < 0:
        if not content.endswith(":"):
            return None
        cut = len(content) - 1
    key = content[:cut]
    if not key or key[0] in _NOT_A_PLAIN_STRING or ":" in key or " " in key:
        return None
    if key in _TRUE or key in _FALSE or key in _NULL:
        return None
    return key, content[cut + 1 :].lstrip(" ")


def _scalar(text: str) -> object:
    first = text[0]
    if first in "'\"":
        value, end = _quoted(text)
        tail = text[end:]
        if tail and not (tail[0] == " " and tail.lstrip(" ").startswith("#")):
            raise _Outside
        return value
    comment = text.find(" #")
    if comment >= 0:
        text = text[:comment].rstrip(" ")
    if text == "{}":
        return {}
    if text == "[]":
        return []
    if ": " in text or text.endswith(":"):
        raise _Outside  # ",[]{}" inside are fine: a block-context plain scalar ends only at ": "
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if text in _NULL:
        return None
    if first in _NOT_A_PLAIN_STRING:
        if text.isdigit() and (first != "0" or text == "0"):
            return int(text)
        raise _Outside  # other numbers, timestamps, indicators: PyYAML's
    return text


def _quoted(text: str) -> tuple[str, int]:
    """A one-line quoted scalar at the start of ``text`` -> (value, index after it)."""
    quote = text[0]
    out: list[str] = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == quote:
            if quote == "'" and text.startswith("''", i):
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        if char == "\\" and quote == '"':
            escaped = text[i + 1 : i + 2]
            if escaped not in ('"', "\\"):
                raise _Outside
            out.append(escaped)
            i += 2
            continue
        out.append(char)
        i += 1
    raise _Outside  # not closed on this line
