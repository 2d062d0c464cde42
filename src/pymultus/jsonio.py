"""JSON for the CNI hot path, on the C accelerator ``_json`` alone.

``import json`` pulls in ``re`` and costs ~6 ms of start-up per process; the `multus` and
`multus-shim` executables start twice per pod (ADD and DEL), so they decode and encode with the
C scanner and encoder directly. Output is compact (no spaces) and, like ``json.dumps``, ASCII-only.
"""

from __future__ import annotations

import _json

from pymultus import errors

_WHITESPACE = " \t\n\r"

# Deepest nesting of arrays/objects accepted. CNI configurations, results, annotations and API
# objects nest a dozen levels at most; without a bound, a document nested ~1,000 levels deep makes
# the C scanner (and anything that walks the value later) fail with RecursionError, a code 999.
MAX_DEPTH = 256


def _finite_float(literal: str) -> float:
    # float() turns 1e400 into inf, which no encoder can write back (allow_nan is off): the
    # document would decode, then fail with 999 wherever it is re-encoded (a delegate's conf).
    # OverflowError (which nothing else in a decode raises) rather than a class of our own: one
    # class less to build in every process.
    value = float(literal)
    if value - value != 0.0:  # inf - inf is nan; a finite value minus itself is 0
        raise OverflowError(literal)
    return value


class _DecoderContext:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = staticmethod(_finite_float)
    parse_int = int
    memo: dict[str, str]

    def __init__(self) -> None:
        self.memo = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        raise ValueError(f"{name} is not valid JSON")


_scan_once = _json.make_scanner(_DecoderContext())  # type: ignore[arg-type]  # duck-typed context


def _reject(obj: object) -> object:
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


_encode = _json.make_encoder(
    None,  # markers: no cycle detection needed for our own plain data
    _reject,
    _json.encode_basestring_ascii,
    None,  # indent: the C encoder only does compact output
    ":",
    ",",
    False,  # sort_keys
    False,  # skipkeys
    False,  # allow_nan
)


def loads(data: str | bytes | bytearray, *, what: str = "JSON document") -> object:
    """Decode one JSON document; ``what`` names it in the error message."""
    if isinstance(data, bytes | bytearray):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.JSONDecodeError(
                f"{what} is not valid UTF-8: {exc.reason} at byte {exc.start}"
            ) from exc
    else:
        text = data
    start = _skip_whitespace(text, 0)
    if start == len(text):
        raise errors.JSONDecodeError(f"{what} is empty")
    try:
        value, end = _scan_once(text, start)
    except RecursionError:
        raise _too_deep(what) from None
    except OverflowError as exc:
        raise errors.JSONDecodeError(
            f"{what} holds the number {exc.args[0][:40]}, too large for a float"
        ) from None
    except (StopIteration, ValueError, SystemError):
        # Error path only: the full decoder gives the precise message and position.
        raise errors.JSONDecodeError(f"{what} is not valid JSON: {_explain(text)}") from None
    end = _skip_whitespace(text, end)
    if end != len(text):
        raise errors.JSONDecodeError(f"{what} is not valid JSON: extra data at offset {end}")
    # Only a document with more brackets than the limit can be nested deeper (a C-speed count).
    if text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(value, what)
    return value


def loads_object(data: str | bytes | bytearray, *, what: str = "JSON document") -> dict[str, object]:
    """Decode a JSON document that must be an object."""
    value = loads(data, what=what)
    if not isinstance(value, dict):
        raise errors.JSONDecodeError(f"{what} must be a JSON object, not {kind_of(value)}")
    return value


def dumps(obj: object) -> str:
    """Encode compactly, ASCII-only, like ``json.dumps(obj, separators=(",", ":"))``."""
    if isinstance(obj, str):
        return str(_json.encode_basestring_ascii(obj))
    return "".join(_encode(obj, 0))


def dumpb(obj: object) -> bytes:
    return dumps(obj).encode("ascii")


def _too_deep(what: str) -> errors.JSONNestingError:
    return errors.JSONNestingError(f"{what} is nested deeper than {MAX_DEPTH} levels of arrays and objects")


def _check_depth(value: object, what: str) -> None:
    """Raise :class:`JSONNestingError` when containers nest deeper than MAX_DEPTH (iteratively:
    the check itself must not recurse)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    raise _too_deep(what)
                stack.append((child, depth + 1))


def _skip_whitespace(text: str, pos: int) -> int:
    end = len(text)
    while pos < end and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _explain(text: str) -> str:
    import json

    try:
        json.loads(text, parse_constant=_DecoderContext.parse_constant)
    except ValueError as exc:
        return str(exc)
    return "unexpected data"


def kind_of(value: object) -> str:
    """How error messages name a decoded JSON value's type ("a string", "a list", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
