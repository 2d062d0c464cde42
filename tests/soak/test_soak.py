"""The short soak CI runs: 50 cycles per mode with faults drawn at random; no invariant may break.

The full run is ``bash scripts/soak.sh`` (1,000 cycles per mode; figures in RELIABILITY.md).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.soak.checks import Tally
from tests.soak.cycle import Cycle, faults_for
from tests.soak.rig import Outcome, Rig
from tests.soak.runner import report, soak

pytestmark = pytest.mark.netns

CYCLES = 50
# Fault kinds left out of the CI mix while what they find is open (the full soak injects them
# and RELIABILITY.md gives their counts).
EXCLUDED: dict[str, str] = {}  # fault kind -> why CI leaves it out (none today)


@pytest.mark.parametrize("mode", ["thin", "thick"])
def test_short_soak_breaks_no_invariant(mode: str) -> None:
    seed = random.randrange(1 << 32)
    tally = Tally()
    soak(mode, CYCLES, seed, tally, faults=[f for f in faults_for(mode) if f not in EXCLUDED])
    summary = report(tally, seed)
    assert tally.cycles[mode] == CYCLES, summary
    assert sum(n for (m, kind), n in tally.faults.items() if m == mode and kind != "none") > 0, summary
    assert dict(tally.violations) == {}, summary


class _NeverDeleted(Cycle):
    """A runtime that never sends DEL: everything the ADD made must show up as a violation."""

    def delete(self) -> Outcome:
        self.deleted = True
        return Outcome("skipped")


def test_the_invariant_checks_see_what_an_add_leaves(tmp_path: Path) -> None:
    tally = Tally()
    rig = Rig("thin", tmp_path, random.Random(0))
    try:
        rig.start()
        _NeverDeleted(rig, 0, random.Random(0), tally).run("none")
    finally:
        rig.close()
    found = {kind for (_mode, kind) in tally.violations}
    assert tally.add_codes == {("thin", "none", "0"): 1}, report(tally, 0)
    assert found == {"links-in-netns", "links-on-host", "leases-left", "cache-files-left"}, report(tally, 0)
