"""What a user waits for: containerd's RunPodSandbox and StopPodSandbox+RemovePodSandbox with
pymultus (1, 2, 4 networks; thin and thick) against containerd with the cluster network alone.

    sudo .venv/bin/python bench/cri_bench.py [--samples 30] [--warmup 3]

Private containerds run side by side (tests/support/containerd.py): one whose CNI conf is
the cluster network's conflist itself (bridge + host-local, portmap, bandwidth: the baseline), one
with the thin ``multus`` (no Kubernetes: pods and NADs in ``manifestsDir``) and one with
``multus-shim`` and a ``pymultus daemon`` (informer on the fake API server). The pod of an
N-network case names N-1 NADs (bridge + host-local each). Two more containerds run the 2-network
case with pymultus's record of completed DELs made unusable (``<cniDir>/deleted`` is a file), so
containerd's 2nd and 3rd DEL take the best-effort path of before (the same-run "before").
Each round runs every case once, in a rotating order: RunPodSandbox (timed), then
StopPodSandbox + RemovePodSandbox (timed, the three DELs containerd sends), then a 0.1 s pause.
Reported: medians, the ms added over the baseline (difference of medians) and the median of the
per-round differences.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.harness import check_samples, common_arguments, machine, publish  # noqa: E402
from tests.cri.rig import CriRig  # noqa: E402
from tests.fakeapi import FakeApiServer  # noqa: E402
from tests.support.containerd import build_pause_archive  # noqa: E402
from tests.support.cri import PodSpec  # noqa: E402

from pymultus.store.deleted import DELETED_DIR  # noqa: E402

PAUSE_AFTER_REMOVE = 0.1
SIZES = (1, 2, 4)


@dataclass
class Case:
    name: str
    rig: CriRig
    pod: PodSpec
    run_ms: list[float] = field(default_factory=list)
    remove_ms: list[float] = field(default_factory=list)


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000.0


def cycle(case: Case, record: bool) -> None:
    cri = case.rig.cri
    assert cri is not None
    sandbox_id = ""

    def run() -> None:
        nonlocal sandbox_id
        sandbox_id = cri.run_sandbox(case.pod)

    run_ms = timed(run)
    case.rig.containerd.sandbox_ids.add(sandbox_id)
    remove_ms = timed(lambda: (cri.stop(sandbox_id), cri.remove(sandbox_id)))
    if record:
        case.run_ms.append(run_ms)
        case.remove_ms.append(remove_ms)
    time.sleep(PAUSE_AFTER_REMOVE)


def table(cases: list[Case], samples: int) -> str:
    base = cases[0]
    lines = [
        f"{samples} interleaved rounds; RunPodSandbox, then StopPodSandbox+RemovePodSandbox; "
        f"{PAUSE_AFTER_REMOVE:g} s pause after each. Machine: {machine()}.",
        "",
        "| case | RunPodSandbox median ms | added | paired | Stop+Remove median ms | added | paired |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    run_base = statistics.median(base.run_ms)
    remove_base = statistics.median(base.remove_ms)
    for case in cases:
        run = statistics.median(case.run_ms)
        remove = statistics.median(case.remove_ms)
        run_paired = statistics.median(a - b for a, b in zip(case.run_ms, base.run_ms, strict=True))
        remove_paired = statistics.median(a - b for a, b in zip(case.remove_ms, base.remove_ms, strict=True))
        lines.append(
            f"| {case.name} | {run:.1f} | {run - run_base:+.1f} | {run_paired:+.1f} | "
            f"{remove:.1f} | {remove - remove_base:+.1f} | {remove_paired:+.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = common_arguments(__doc__ or "", default_samples=30)
    args = parser.parse_args(argv)
    check_samples(args.samples)
    work = Path(tempfile.mkdtemp(prefix="pmcri"))
    archive = build_pause_archive(work / "pause")
    api = FakeApiServer(work / "api").start()
    # "-old": the same, with pymultus's record of completed DELs made unusable (a file where its
    # directory goes), so containerd's 2nd and 3rd DEL take the best-effort path of before.
    names = ("cluster", "thin", "thick", "thin-old", "thick-old")
    rigs = {
        name: CriRig(
            work / name,
            name.removesuffix("-old"),
            pause_archive=archive,
            api=api if name.startswith("thick") else None,
            record=False,
        )
        for name in names
    }
    for name in ("thin-old", "thick-old"):
        (rigs[name].node.cni_dir / DELETED_DIR).write_text("")
    try:
        for rig in rigs.values():
            rig.start()
        cases = [Case("containerd + cluster network alone", rigs["cluster"], rigs["cluster"].pod())]
        for name in ("thin", "thick", "thin-old", "thick-old"):
            rig = rigs[name]
            label = (
                "`multus` (thin, no Kubernetes)" if rig.mode == "thin" else "`multus-shim` + daemon (thick)"
            )
            if name.endswith("-old"):
                # Diagnostic: 2 networks only, to keep the run short.
                nad = rig.network()
                cases.append(Case(f"{label}, 2 networks, repeated DELs not recorded", rig, rig.pod([nad])))
                continue
            nads = [rig.network() for _ in range(max(SIZES) - 1)]
            for size in SIZES:
                cases.append(
                    Case(f"{label}, {size} network{'s' if size > 1 else ''}", rig, rig.pod(nads[: size - 1]))
                )
        for round_index in range(-args.warmup, args.samples):
            shift = round_index % len(cases)
            for case in cases[shift:] + cases[:shift]:
                cycle(case, record=round_index >= 0)
            if round_index >= 0 and (round_index + 1) % 10 == 0:
                print(f"  cri: {round_index + 1}/{args.samples} rounds", flush=True)
    finally:
        for rig in rigs.values():
            errors = rig.cleanup()
            if errors:
                print(f"clean-up of {rig.mode}: {errors}", file=sys.stderr)
        api.stop()
        shutil.rmtree(work, ignore_errors=True)
    report = "### containerd CRI: pod sandbox start and teardown\n\n" + table(cases, args.samples)
    publish("cri", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
