"""``python -m tests.soak [--cycles N] [--mode thin|thick|both] [--seed S] [--faults a,b] [--exclude a,b]
[--serial] [--json F] [--markdown F]``.

Both modes run in parallel threads by default (each has its own API server, directories, bridges
and daemon; most of a cycle is spent waiting on subprocesses). Exit status 1 when any invariant
was violated, 2 on a usage error or a harness crash, 130 when interrupted. Run as root.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import threading
import traceback
from types import FrameType

from tests.soak.checks import Tally
from tests.soak.cycle import faults_for
from tests.soak.runner import markdown, report, soak


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="soak", description="ADD/DEL cycles with faults injected at random")
    parser.add_argument("--cycles", type=int, default=1000, help="cycles per mode (default 1000)")
    parser.add_argument("--mode", choices=["thin", "thick", "both"], default="both")
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--faults", default="", help="comma-separated fault kinds to draw from (default all)")
    parser.add_argument("--exclude", default="", help="comma-separated fault kinds never to inject")
    parser.add_argument("--serial", action="store_true", help="run the modes one after the other")
    parser.add_argument("--json", default="", help="also write the counts to this file")
    parser.add_argument("--markdown", default="", help="also write the figures as Markdown tables here")
    args = parser.parse_args(argv)
    known = set(faults_for("thick"))
    chosen = [f for f in args.faults.split(",") if f] or sorted(known)
    excluded = [f for f in args.exclude.split(",") if f]
    unknown = sorted(set(chosen + excluded) - known)
    if unknown:
        parser.error(f"unknown fault kinds {unknown}; known: {sorted(known)}")
    args.fault_list = [f for f in chosen if f not in excluded]
    return args


def _join_cleanups() -> None:
    """Wait for the soak threads' clean-up; a second Ctrl-C must not abandon it half-way."""
    for thread in threading.enumerate():
        while thread.name.startswith("soak-") and thread.is_alive():
            try:
                thread.join(0.5)
            except KeyboardInterrupt:
                print("still cleaning up (links, namespaces, the daemon); a moment", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"soak seed {seed} (repeat with --seed {seed}); faults: {','.join(args.fault_list)}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    tally = Tally()
    stop = threading.Event()
    crashes: list[str] = []

    def run(mode: str) -> None:
        try:
            soak(mode, args.cycles, seed, tally, faults=args.fault_list, progress=True, stop=stop)
        except Exception:
            crashes.append(f"{mode}: {traceback.format_exc()}")
            stop.set()

    modes = ["thin", "thick"] if args.mode == "both" else [args.mode]
    groups = [[m] for m in modes] if args.serial else [modes]
    try:
        for group in groups:
            threads = [threading.Thread(target=run, args=(m,), name=f"soak-{m}") for m in group]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.5)
    except KeyboardInterrupt:
        stop.set()
        print("interrupted: killing the calls in flight and cleaning up", flush=True)
        _join_cleanups()
    print(report(tally, seed), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"seed": seed, "faultKinds": args.fault_list, **tally.to_json()}, handle, indent=1)
    if args.markdown:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        with open(args.markdown, "w") as handle:
            handle.write(markdown(tally, seed, commit or "unknown"))
    for crash in crashes:
        print(f"harness crash in {crash}", file=sys.stderr)
    if crashes:
        return 2
    if stop.is_set():
        return 130
    return 1 if tally.total_violations else 0


if __name__ == "__main__":
    sys.exit(main())
