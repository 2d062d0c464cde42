"""A reusable benchmark harness: candidates against a floor, interleaved cycle by cycle.

Method (DESIGN.md "Performance targets"): every sample is one cycle (typically ADD+DEL) in a
fresh network namespace with a fresh container ID; the namespace is deleted afterwards and the
harness pauses 0.1 s (the kernel tears namespaces down in the background and would otherwise slow
the next cycle). In each round every candidate and the floor run once, in a rotating order, so
machine noise hits them alike. The report gives, per candidate, the median milliseconds added over
the floor, the ratio of medians, the median of the paired per-round differences, and min/max.

    from bench.harness import Candidate, CycleContext, run_comparison
    report = run_comparison("cni", floor=Candidate("plugins direct", floor_fn),
                            candidates=[Candidate("pymultus cni", impl_fn)], samples=50)

A benchmark module is ``bench/<name>_bench.py`` with a ``main(argv) -> int``; ``scripts/bench.sh``
runs them all.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PAUSE_AFTER_NETNS_DELETE = 0.1


@dataclass
class CycleContext:
    """What one timed cycle gets: its own namespace and container ID."""

    round: int
    netns_name: str
    container_id: str

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns_name}"


@dataclass
class Candidate:
    name: str
    cycle: Callable[[CycleContext], None]
    samples_ms: list[float] = field(default_factory=list)


@dataclass
class Row:
    name: str
    median_ms: float
    added_ms: float
    paired_added_ms: float
    ratio: float
    min_ms: float
    max_ms: float


@dataclass
class Report:
    name: str
    title: str
    samples: int
    floor: Row
    rows: list[Row]
    notes: list[str]

    def markdown(self) -> str:
        lines = [
            f"### {self.title}",
            "",
            f"{self.samples} interleaved rounds; fresh netns + container ID per cycle; "
            f"{PAUSE_AFTER_NETNS_DELETE:g} s pause after each netns delete. Machine: {machine()}.",
            "",
            "| | median ms | added over floor (ms) | paired median added (ms) | ratio | min ms | max ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in [self.floor, *self.rows]:
            lines.append(
                f"| {row.name} | {row.median_ms:.1f} | {row.added_ms:+.1f} | {row.paired_added_ms:+.1f} | "
                f"{row.ratio:.2f} | {row.min_ms:.1f} | {row.max_ms:.1f} |"
            )
        lines.extend(["", *(f"- {note}" for note in self.notes)] if self.notes else [])
        return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _one_cycle(candidate: Candidate, round_index: int) -> float:
    name = f"pmbench{uuid.uuid4().hex[:8]}"
    ctx = CycleContext(round=round_index, netns_name=name, container_id=f"bench{uuid.uuid4().hex}")
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        started = time.perf_counter()
        candidate.cycle(ctx)
        elapsed = (time.perf_counter() - started) * 1000.0
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)
        time.sleep(PAUSE_AFTER_NETNS_DELETE)
    return elapsed


def run_comparison(
    name: str,
    *,
    title: str,
    floor: Candidate,
    candidates: Sequence[Candidate],
    samples: int = 50,
    warmup: int = 3,
    notes: Sequence[str] = (),
    progress: bool = True,
) -> Report:
    """Run ``warmup`` untimed rounds then ``samples`` timed rounds; write and return the report."""
    everyone = [floor, *candidates]
    for round_index in range(-warmup, samples):
        order = everyone[round_index % len(everyone) :] + everyone[: round_index % len(everyone)]
        for candidate in order:
            elapsed = _one_cycle(candidate, round_index)
            if round_index >= 0:
                candidate.samples_ms.append(elapsed)
        if progress and round_index >= 0 and (round_index + 1) % 10 == 0:
            print(f"  {name}: {round_index + 1}/{samples} rounds", flush=True)
    floor_median = statistics.median(floor.samples_ms)

    def row(candidate: Candidate) -> Row:
        median = statistics.median(candidate.samples_ms)
        paired = [c - f for c, f in zip(candidate.samples_ms, floor.samples_ms, strict=True)]
        return Row(
            name=candidate.name,
            median_ms=median,
            added_ms=median - floor_median,
            paired_added_ms=statistics.median(paired),
            ratio=median / floor_median,
            min_ms=min(candidate.samples_ms),
            max_ms=max(candidate.samples_ms),
        )

    report = Report(name, title, samples, row(floor), [row(c) for c in candidates], list(notes))
    publish(name, report.markdown())
    return report


def publish(name: str, text: str) -> None:
    """Write a results table to ``bench/results/<name>.md`` and print it."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.md").write_text(text)
    print(text)


def write_bound_plugin(path: str, python: str, plugin: str, confs: list[bytes]) -> None:
    """``bench/bound_plugin.py`` as an executable at ``path``, run by ``python -IS``: it execs
    ``plugin`` with each of ``confs`` (ADD in order, DEL in reverse) and does nothing else."""
    source = (Path(__file__).parent / "bound_plugin.py").read_text()
    source = source.replace("CONFS: list[bytes] = []", f"CONFS: list[bytes] = {confs!r}", 1)
    source = source.replace('PLUGIN = ""', f"PLUGIN = {plugin!r}", 1)
    with open(path, "w") as f:
        f.write(f"#!{python} -IS\n{source}")
    os.chmod(path, 0o755)


def common_arguments(description: str, default_samples: int = 50) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--samples", type=int, default=default_samples, help="timed rounds (>= 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    return parser


def check_samples(samples: int) -> None:
    if samples < 30:
        raise SystemExit("the method needs at least 30 samples")
