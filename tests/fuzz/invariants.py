"""The invariant every fuzz target shares: a bad input is a CNI error with a known code, never a
traceback and never 999 (code "internal error", reserved for the truly unexpected)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from typing import TypeVar

from pymultus import errors
from pymultus.errors import MultusError

T = TypeVar("T")

# Examples run per test node id, for scripts/fuzz.sh's table (counted in conftest.py).
INPUTS: Counter[str] = Counter()

KNOWN_CODES = frozenset(
    {
        errors.INCOMPATIBLE_CNI_VERSION,
        errors.UNSUPPORTED_FIELD,
        errors.UNKNOWN_CONTAINER,
        errors.INVALID_ENVIRONMENT,
        errors.IO_FAILURE,
        errors.DECODING_FAILURE,
        errors.INVALID_NETWORK_CONFIG,
        errors.TRY_AGAIN_LATER,
    }
)


def outcome(call: Callable[[], T], codes: Collection[int] = KNOWN_CODES) -> T | MultusError:
    """Run ``call``: its value, or the MultusError it raised after checking the error's shape.

    Any other exception propagates, so Hypothesis reports (and shrinks) the traceback."""
    try:
        return call()
    except MultusError as exc:
        check_cni_error(exc.to_cni_error("1.1.0"), codes)
        return exc


def check_cni_error(error: object, codes: Collection[int] = KNOWN_CODES) -> None:
    """A CNI error object (spec §"Error"): an int code among ``codes`` and a message."""
    assert isinstance(error, dict), error
    code = error.get("code")
    assert code != errors.INTERNAL, f"code 999 for a bad input: {error!r}"
    assert code in codes, f"unexpected code {code!r}: {error!r}"
    msg = error.get("msg")
    assert isinstance(msg, str) and msg.strip(), f"an error without a message: {error!r}"
