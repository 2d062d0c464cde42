"""``python -m tests.soak [--cycles N] [--mode thin|thick|both] [--seed S] [--faults a,b] [--json F]``.

Exit status 1 when any invariant was violated, 2 on a usage error. Run as root (scripts/soak.sh).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
from types import FrameType

from tests.soak.checks import Tally
from tests.soak.cycle import faults_for
from tests.soak.runner import report, soak


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: the runner's finally blocks run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description="ADD/DEL cycles with faults injected at random")
    parser.add_argument("--cycles", type=int, default=1000, help="cycles per mode (default 1000)")
    parser.add_argument("--mode", choices=["thin", "thick", "both"], default="both")
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--faults", default="", help="comma-separated fault kinds to draw from (default all)")
    parser.add_argument("--exclude", default="", help="comma-separated fault kinds never to inject")
    parser.add_argument("--json", default="", help="also write the counts to this file")
    args = parser.parse_args(argv)
    known = set(faults_for("thick"))
    chosen = [f for f in args.faults.split(",") if f] or sorted(known)
    excluded = [f for f in args.exclude.split(",") if f]
    unknown = sorted(set(chosen + excluded) - known)
    if unknown:
        parser.error(f"unknown fault kinds {unknown}; known: {sorted(known)}")
    faults = [f for f in chosen if f not in excluded]
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"soak seed {seed} (repeat with --seed {seed})", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    tally = Tally()
    modes = ["thin", "thick"] if args.mode == "both" else [args.mode]
    interrupted = False
    try:
        for mode in modes:
            soak(mode, args.cycles, seed, tally, faults=faults, progress=True)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: cleaned up; counts so far:", flush=True)
    print(report(tally, seed), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"seed": seed, **tally.to_json()}, handle, indent=1)
    if interrupted:
        return 130
    return 1 if tally.total_violations else 0


if __name__ == "__main__":
    sys.exit(main())
