"""Where the milliseconds of a thin ADD and DEL go: a wall-clock timeline of each ``multus`` process.

    sudo .venv/bin/python bench/phases_bench.py [--samples 30] [--sizes 1,4] [--modes plain,kube-yaml]

Each sample is one ADD+DEL cycle (fresh netns and container ID) through a copy of the ``multus``
launcher that ``pymultus install-plugin`` writes (code archive included), with timestamps added at
the phase boundaries (``time.monotonic``, the same clock as the harness's ``perf_counter``):

* **start** — from the harness's ``subprocess.run`` to the launcher's first line: exec, the
  interpreter's own start-up (``-IS``) and compiling the launcher script;
* **archive** — opening the code archive and installing its loader;
* **entry** — importing ``pymultus.cli.thin`` (``skel``, ``jsonio``, ``errors``, ``_json`` ...);
* **to first delegate** — reading the request, importing the use case, the conf, the
  per-container lock, network resolution (Kubernetes: client, TLS, the pod and NAD GETs), the
  netns checks, the scratch cache (fsync'd) — until the first delegate is spawned;
* **delegates** — the delegates' own run time, spawn to reap (not ours: the floor's part);
* **between delegates** — our work from one delegate's end to the next one's spawn;
* **to exit** — after the last delegate: result cache (fsync'd), network-status and events
  (Kubernetes), the result on stdout, the lock released;
* **teardown** — from ``os._exit`` until the harness sees the process gone (the kernel freeing it).

The instrumentation itself costs a few µs per phase. Writes ``bench/results/phases.md``.
"""

from __future__ import annotations

import ast
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.harness import (  # noqa: E402
    PAUSE_AFTER_NETNS_DELETE,
    CycleContext,
    check_samples,
    common_arguments,
    machine,
    publish,
)
from bench.thin_bench import Node  # noqa: E402

PHASES = (
    "start",
    "archive",
    "entry",
    "to first delegate",
    "delegates",
    "between delegates",
    "to exit",
    "teardown",
)

# Inserted into the launcher: a list of (label, monotonic time); the delegate runs are wrapped and
# the list is appended to a file (one line per process) just before the process exits.
_HEAD = "import gc, sys, time\n_T = [('start', time.monotonic())]\nimport gc,sys;"
_AFTER_ARCHIVE = "_T.append(('archive', time.monotonic()))\n"
_AFTER_ENTRY = """\
_T.append(('entry', time.monotonic()))
import posix as _posix
import pymultus.cni.invoke as _invoke
_run_raw = _invoke.PluginExecutor.run_raw
def _timed_run_raw(self, *args, **kwargs):
    _T.append(('spawn', time.monotonic()))
    try:
        return _run_raw(self, *args, **kwargs)
    finally:
        _T.append(('reaped', time.monotonic()))
_invoke.PluginExecutor.run_raw = _timed_run_raw
_real_exit = _posix._exit
def _exit(code):
    _T.append(('exit', time.monotonic()))
    with open({log!r}, 'a') as f:
        f.write(repr(_T) + '\\n')
    _real_exit(code)
_posix._exit = _exit
"""


def instrument(launcher: Path, log: Path) -> None:
    text = launcher.read_text()
    entry = "from pymultus.cli.thin import main\n"
    if "\nimport gc,sys;" not in text or entry not in text:
        raise SystemExit(f"{launcher} is not a launcher this benchmark knows how to instrument")
    text = text.replace("import gc,sys;", _HEAD, 1)
    text = text.replace(entry, _AFTER_ARCHIVE + entry + _AFTER_ENTRY.format(log=str(log)), 1)
    launcher.write_text(text)


def phases(started: float, ended: float, marks: list[tuple[str, float]]) -> dict[str, float]:
    """Milliseconds per phase of one process, from the harness's and the process's timestamps."""
    out = dict.fromkeys(PHASES, 0.0)
    times = dict(marks[:3])
    out["start"] = times["start"] - started
    out["archive"] = times["archive"] - times["start"]
    out["entry"] = times["entry"] - times["archive"]
    spawns = [t for label, t in marks if label == "spawn"]
    reaps = [t for label, t in marks if label == "reaped"]
    exit_at = marks[-1][1]
    first = spawns[0] if spawns else exit_at
    out["to first delegate"] = first - times["entry"]
    out["delegates"] = sum(r - s for s, r in zip(spawns, reaps, strict=True))
    out["between delegates"] = sum(s - r for r, s in zip(reaps, spawns[1:], strict=False))
    out["to exit"] = exit_at - (reaps[-1] if reaps else first)
    out["teardown"] = ended - exit_at
    return {name: value * 1000 for name, value in out.items()}


def run(mode: str, size: int, samples: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    with tempfile.TemporaryDirectory(prefix="pymultus-phases-") as tmp:
        root = Path(tmp)
        fake = None
        if mode != "plain":
            from tests.fakeapi.certs import Pki
            from tests.fakeapi.server import FakeApiServer

            (root / "pki").mkdir()
            (root / "api").mkdir()
            fake = FakeApiServer(root / "api", pki=Pki(root / "pki")).start()
        node = Node(root, size, fake, kubeconfig_format=mode.removeprefix("kube-"))
        log = root / "marks"
        instrument(Path(node.multus), log)
        spans: dict[str, list[tuple[float, float]]] = {"ADD": [], "DEL": []}
        try:
            for index in range(warmup + samples):
                ctx = CycleContext(index, f"pmph{index}x{size}", f"phases{index:06d}")
                subprocess.run(["ip", "netns", "add", ctx.netns_name], check=True)
                try:
                    for command in ("ADD", "DEL"):
                        started = time.monotonic()
                        proc = subprocess.run(
                            [node.multus],
                            input=node.conf,
                            env=node.env(command, ctx),
                            capture_output=True,
                            check=False,
                        )
                        ended = time.monotonic()
                        if proc.returncode != 0:
                            raise RuntimeError(f"multus {command} failed: {proc.stdout!r} {proc.stderr!r}")
                        spans[command].append((started, ended))
                finally:
                    subprocess.run(["ip", "netns", "delete", ctx.netns_name], check=False)
                    time.sleep(PAUSE_AFTER_NETNS_DELETE)
        finally:
            node.cleanup()
            if fake is not None:
                fake.stop()
        marks = [ast.literal_eval(line) for line in log.read_text().splitlines()]
    result: dict[str, dict[str, list[float]]] = {}
    for offset, command in enumerate(("ADD", "DEL")):
        rows: dict[str, list[float]] = {name: [] for name in (*PHASES, "total")}
        for index, (started, ended) in enumerate(spans[command]):
            if index < warmup:
                continue
            split = phases(started, ended, marks[2 * index + offset])
            for name, value in split.items():
                rows[name].append(value)
            rows["total"].append((ended - started) * 1000)
        result[command] = rows
    return result


def table(results: dict[tuple[str, int], dict[str, dict[str, list[float]]]], samples: int) -> str:
    columns = [(mode, size, command) for (mode, size) in results for command in ("ADD", "DEL")]
    lines = [
        f"### thin `multus`: where a process's milliseconds go (median of {samples} cycles per column)",
        "",
        f"{machine()}",
        "",
        "| phase | " + " | ".join(f"{mode} {size} net {command}" for mode, size, command in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name in (*PHASES, "total"):
        cells = [statistics.median(results[(mode, size)][command][name]) for mode, size, command in columns]
        label = f"**{name}**" if name == "total" else name
        lines.append(f"| {label} | " + " | ".join(f"{cell:.2f}" for cell in cells) + " |")
    ours = [
        sum(statistics.median(results[(m, s)][c][name]) for name in PHASES if name != "delegates")
        for m, s, c in columns
    ]
    lines.append("| **ours (all but delegates)** | " + " | ".join(f"**{cell:.2f}**" for cell in ours) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = common_arguments(__doc__.splitlines()[0] if __doc__ else "phases", default_samples=30)
    parser.add_argument("--sizes", default="1,4", help="attachments per pod, comma-separated")
    parser.add_argument("--modes", default="plain,kube-yaml", help="plain, kube-json, kube-yaml")
    args = parser.parse_args(argv)
    check_samples(args.samples)
    results = {
        (mode, int(size)): run(mode, int(size), args.samples, args.warmup)
        for mode in args.modes.split(",")
        for size in args.sizes.split(",")
    }
    text = table(results, args.samples)
    publish("phases", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
