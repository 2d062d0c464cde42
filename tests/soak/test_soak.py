"""The short soak CI runs: 50 cycles per mode with faults drawn at random; no invariant may break.

The full run is ``bash scripts/soak.sh`` (1,000 cycles per mode; figures in RELIABILITY.md).
"""

from __future__ import annotations

import random

import pytest

from tests.soak.checks import Tally
from tests.soak.cycle import faults_for
from tests.soak.runner import report, soak

pytestmark = pytest.mark.netns

CYCLES = 50
# Fault kinds whose defects are not fixed yet (issue 9) stay out of the CI mix until they are;
# the full soak still injects them and RELIABILITY.md lists what they leak.
EXCLUDED: dict[str, str] = {}


@pytest.mark.parametrize("mode", ["thin", "thick"])
def test_short_soak_breaks_no_invariant(mode: str) -> None:
    seed = random.randrange(1 << 32)
    tally = Tally()
    soak(mode, CYCLES, seed, tally, faults=[f for f in faults_for(mode) if f not in EXCLUDED])
    summary = report(tally, seed)
    assert tally.cycles[mode] == CYCLES, summary
    assert sum(n for (m, kind), n in tally.faults.items() if m == mode and kind != "none") > 0, summary
    assert dict(tally.violations) == {}, summary
