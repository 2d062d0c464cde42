"""Run N cycles of one mode with faults drawn at random (seeded), and print the counts."""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from tests.soak import checks
from tests.soak.checks import Tally
from tests.soak.cycle import Cycle, faults_for
from tests.soak.rig import Rig

NO_FAULT_WEIGHT = 3  # "none" is drawn this many times as often as each fault


def soak(
    mode: str,
    cycles: int,
    seed: int,
    tally: Tally,
    *,
    faults: Sequence[str] | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> None:
    """``cycles`` cycles of ``mode`` ("thin" or "thick") into ``tally``; cleans up whatever happens.
    ``stop`` ends the run after the current cycle (Ctrl-C while modes run in parallel threads)."""
    rng = random.Random(f"{seed}-{mode}")
    kinds = [k for k in faults_for(mode) if faults is None or k in faults]
    weights = [NO_FAULT_WEIGHT if k == "none" else 1 for k in kinds]
    root = Path(tempfile.mkdtemp(prefix=f"pmsoak-{mode}-"))
    rig = Rig(mode, root, rng)
    if stop is not None:
        rig.stop = stop
    started = time.monotonic()
    try:
        rig.start()
        for index in range(cycles):
            if stop is not None and stop.is_set():
                break
            fault = rng.choices(kinds, weights)[0]
            try:
                Cycle(rig, index, rng, tally).run(fault)
            except RuntimeError as exc:  # ip(8) failed: the host changed under the soak
                tally.violation(mode, "harness-error", fault, f"cycle {index}: {exc}")
            if progress and (index + 1) % 100 == 0:
                print(
                    f"  {mode}: {index + 1}/{cycles} cycles, {tally.total_violations} violations, "
                    f"{time.monotonic() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        tally.seconds[mode] += round(time.monotonic() - started, 1)
        checks.kill_all(checks.processes_with(rig.run_id))
        rig.close()
        shutil.rmtree(root, ignore_errors=True)


def report(tally: Tally, seed: int) -> str:
    lines = [f"soak seed {seed}"]
    for mode in sorted(tally.cycles):
        cycles, seconds = tally.cycles[mode], tally.seconds[mode]
        lines.append(f"== {mode}: {cycles} cycles in {seconds:.0f} s ({cycles / max(seconds, 0.1):.1f}/s)")
        faults = {k: v for (m, k), v in sorted(tally.faults.items()) if m == mode}
        lines.append(
            "  faults injected (mean s per cycle): "
            + ", ".join(f"{k} {v} ({tally.fault_seconds[(mode, k)] / v:.1f})" for k, v in faults.items())
        )
        for fault in faults:
            codes = {c: n for (m, f, c), n in sorted(tally.add_codes.items()) if m == mode and f == fault}
            lines.append(f"  ADD by code, {fault}: " + ", ".join(f"{c}: {n}" for c, n in codes.items()))
        lines.append(f"  DEL calls {tally.del_calls[mode]}, retries {tally.del_retries[mode]}")
        figures = checks.daemon_figures(tally.daemon.get(mode, []))
        if figures:
            lines.append(
                "  daemon fds start/end/max {fdsStart}/{fdsEnd}/{fdsMax}, VmRSS KiB start/end/max "
                "{rssStartKiB}/{rssEndKiB}/{rssMaxKiB}".format(**figures)
            )
        violations = {k: v for (m, k), v in sorted(tally.violations.items()) if m == mode}
        lines.append(
            "  invariant violations: "
            + (", ".join(f"{k} {v}" for k, v in violations.items()) if violations else "none")
        )
        for kind in violations:
            by_fault = {f: n for (m, k, f), n in sorted(tally.by_fault.items()) if m == mode and k == kind}
            lines.append(f"    {kind} by fault: " + ", ".join(f"{f} {n}" for f, n in by_fault.items()))
            lines.extend(f"      e.g. {example[:400]}" for example in tally.examples[(mode, kind)])
    return "\n".join(lines)


def markdown(tally: Tally, seed: int, commit: str) -> str:
    """The figures of a run as RELIABILITY.md tables (``--markdown FILE``)."""
    modes = sorted(tally.cycles)
    head = "| | " + " | ".join(modes) + " |\n|---|" + "---:|" * len(modes)
    rows = [f"Seed {seed}, commit {commit}.", "", head]

    def row(label: str, values: list[object]) -> None:
        rows.append(f"| {label} | " + " | ".join(str(v) for v in values) + " |")

    row("cycles", [tally.cycles[m] for m in modes])
    row("wall time (s)", [f"{tally.seconds[m]:.0f}" for m in modes])
    row("DEL calls / retries", [f"{tally.del_calls[m]} / {tally.del_retries[m]}" for m in modes])
    for mode in modes:
        figures = checks.daemon_figures(tally.daemon.get(mode, []))
        if figures:
            row(
                f"{mode} daemon fds start/end/max",
                ["{fdsStart}/{fdsEnd}/{fdsMax}".format(**figures) if m == mode else "" for m in modes],
            )
            row(
                f"{mode} daemon VmRSS MiB start/end/max",
                [
                    "/".join(f"{figures[k] / 1024:.1f}" for k in ("rssStartKiB", "rssEndKiB", "rssMaxKiB"))
                    if m == mode
                    else ""
                    for m in modes
                ],
            )
    row(
        "**invariant violations**",
        [sum(n for (mm, _k), n in tally.violations.items() if mm == m) for m in modes],
    )
    rows += ["", "| fault | " + " | ".join(f"{m}: cycles" for m in modes) + " | ADD outcomes (code: count) |"]
    rows.append("|---|" + "---:|" * len(modes) + "---|")
    kinds = sorted({k for (_m, k) in tally.faults})
    for kind in kinds:
        outcomes: dict[str, int] = {}
        for (_m, fault, code), n in tally.add_codes.items():
            if fault == kind:
                outcomes[code] = outcomes.get(code, 0) + n
        text = ", ".join(f"{c}: {n}" for c, n in sorted(outcomes.items()))
        rows.append(f"| {kind} | " + " | ".join(str(tally.faults[(m, kind)]) for m in modes) + f" | {text} |")
    if tally.violations:
        rows += ["", "| mode | violation | by fault | example |", "|---|---|---|---|"]
        for (mode, kind), _n in sorted(tally.violations.items()):
            by_fault = ", ".join(
                f"{f} {n}" for (m, k, f), n in sorted(tally.by_fault.items()) if m == mode and k == kind
            )
            example = tally.examples[(mode, kind)][0].replace("|", "/")[:300]
            rows.append(f"| {mode} | {kind} | {by_fault} | {example} |")
    return "\n".join(rows) + "\n"
