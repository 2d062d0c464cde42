"""Hypothesis profiles for the fuzz suite, and the per-target input counts ``scripts/fuzz.sh`` reports.

``PYMULTUS_FUZZ_PROFILE`` selects the profile:

* ``ci`` (default): a bounded, reproducible budget — ``derandomize`` makes every run try the same
  inputs, so a failure in CI is a failure on every machine; a couple of hundred examples each.
* ``deep``: random (the seed is printed with any failure), ``PYMULTUS_FUZZ_EXAMPLES`` examples per
  property (``scripts/fuzz.sh`` sets it so the whole suite tries about 10^5 inputs).

With ``PYMULTUS_FUZZ_REPORT=<file>`` the session writes, per test, the inputs tried (examples run,
shrinking included), the outcome and the wall time as JSON (``scripts/fuzz.sh`` turns it into a table).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests.fuzz.invariants import INPUTS

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# No "explain" phase: it traces every line of a failing example again, minutes on a YAML emitter.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("PYMULTUS_FUZZ_EXAMPLES", "200")),
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
    phases=_PHASES,
)
# The long run leaves the @example inputs (known defects) to the CI profile and spends its whole
# budget on new inputs.
settings.register_profile(
    "deep",
    max_examples=int(os.environ.get("PYMULTUS_FUZZ_EXAMPLES", "8000")),
    derandomize=False,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
    phases=_PHASES[1:],
)
settings.load_profile(os.environ.get("PYMULTUS_FUZZ_PROFILE", "ci"))

_RESULTS: dict[str, dict[str, object]] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    try:
        return (yield)
    finally:
        _RESULTS[item.nodeid] = {"seconds": round(time.monotonic() - started, 2)}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.nodeid in _RESULTS:
        _RESULTS[report.nodeid]["outcome"] = report.outcome


def _counted(nodeid: str, inner: Callable[..., object]) -> Callable[..., object]:
    @functools.wraps(inner)
    def run(*args: object, **kwargs: object) -> object:
        INPUTS[nodeid] += 1
        return inner(*args, **kwargs)

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Count the examples each property runs (Hypothesis lets plugins wrap ``inner_test``), and
    with ``PYMULTUS_FUZZ_COUNT=<file>`` write how many properties were collected (``scripts/fuzz.sh``
    divides its input budget by it)."""
    properties = 0
    for item in items:
        test = getattr(item, "obj", None)
        if getattr(test, "is_hypothesis_test", False):
            properties += 1
            test.hypothesis.inner_test = _counted(item.nodeid, test.hypothesis.inner_test)  # type: ignore[union-attr]
    path = os.environ.get("PYMULTUS_FUZZ_COUNT")
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(f"{properties}\n")


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("PYMULTUS_FUZZ_REPORT")
    if not path:
        return
    report = {
        nodeid: {**result, "inputs": INPUTS.get(nodeid, 0)} for nodeid, result in sorted(_RESULTS.items())
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(
            {"profile": os.environ.get("PYMULTUS_FUZZ_PROFILE", "ci"), "tests": report}, handle, indent=1
        )
