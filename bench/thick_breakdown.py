"""Where the milliseconds of a thick ADD and DEL go: timestamps inside a real daemon.

    sudo .venv/bin/python bench/thick_breakdown.py [--networks 1] [--cycles 20] [--kube]

Runs the same setup as ``thick_bench.py`` (real ``multus-shim`` exec'd per call, a real daemon
process, bridge + host-local delegates, fresh netns per cycle), but the daemon is started through
this file (``--as-daemon``), which wraps the daemon's and the engine's steps with
``time.monotonic`` stamps before running ``pymultus daemon``; the harness stamps each shim exec
on the same clock. Floor cycles (the delegates exec'd directly) are interleaved, as in
``thick_bench.py``, for the delegates' own cost. Prints, per command, the medians of:

* the request's path: shim exec until the daemon's connection coroutine starts (interpreter
  start, the shim's imports, connect, the event loop's accept), the read, the hand-off to a
  worker, the work, the answer until the connection is done, until the shim is reaped;
* each wrapped function's inclusive time per request and its number of calls;
* the daemon's CPU time per cycle (all its threads, ``/proc/<pid>/task/*/schedstat``; threads
  that ended during the cycles are not counted: the background cache writes, which mostly wait).

Diagnostic only: the wrappers themselves cost a few microseconds per call.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (module, attribute) pairs wrapped in the daemon; the order is the order of the report.
STEPS = [
    ("pymultus.daemon.server", "UnixHttpServer._serve"),
    ("pymultus.daemon.server", "UnixHttpServer._read_request"),
    ("pymultus.daemon.workers", "WorkerPool.submit"),
    ("pymultus.daemon.workers", "_peer_gone"),
    ("pymultus.daemon.workers", "_send"),
    ("pymultus.daemon.service", "CniService.handle_cni"),
    ("pymultus.daemon.wire", "decode_request"),
    ("pymultus.config.multus", "parse_multus_conf"),
    ("pymultus.attach.service", "handle"),
    ("pymultus.attach.context", "Call.lock_container"),
    ("pymultus.attach.context", "Call.load_pod"),
    ("pymultus.attach.add", "resolve"),
    ("pymultus.attach.add", "_save"),
    ("pymultus.attach.add", "_announce"),
    ("pymultus.attach.delete", "_attachments_to_delete"),
    ("pymultus.netns.ops", "Netns.pod_netns_problem"),
    ("pymultus.netns.ops", "Netns.interface_exists"),
    ("pymultus.cni.chain", "CNIConfig.add_network_list"),
    ("pymultus.cni.chain", "CNIConfig.del_network_list"),
    ("pymultus.cni.invoke", "PluginExecutor.run_raw"),
    ("pymultus.cni.cache", "write"),
    ("pymultus.cni.cache", "remove"),
    ("pymultus.store.delegates", "save"),
    ("pymultus.store.delegates", "remove"),
    ("pymultus.daemon.podsource", "CachedPodSource.write_network_status"),
    ("pymultus.daemon.podsource", "CachedPodSource.record_event"),
]


# -- the daemon side ------------------------------------------------------------------------------


def _as_daemon(out: str, argv: list[str]) -> int:
    import functools
    import importlib
    import inspect

    records: list[tuple[str, float, float]] = []  # list.append is atomic: no lock among threads
    clock = time.monotonic

    def wrap(module: str, attribute: str) -> None:
        label = _label(module, attribute)
        owner: object = importlib.import_module(module)
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        raw = vars(owner)[name]
        fn = raw.__func__ if isinstance(raw, classmethod) else raw
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: object, **kw: object) -> object:
                started = clock()
                try:
                    return await fn(*args, **kw)
                finally:
                    records.append((label, started, clock()))

            wrapped: object = timed_async
        else:

            @functools.wraps(fn)
            def timed(*args: object, **kw: object) -> object:
                started = clock()
                try:
                    return fn(*args, **kw)
                finally:
                    records.append((label, started, clock()))

            wrapped = timed
        setattr(owner, name, classmethod(wrapped) if isinstance(raw, classmethod) else wrapped)

    for module, attribute in STEPS:
        wrap(module, attribute)

    def dump(_signum: int, _frame: object) -> None:
        taken = list(records)
        del records[: len(taken)]
        Path(out).write_text(json.dumps(taken))

    signal.signal(signal.SIGUSR1, dump)
    from pymultus.cli.main import main

    return main(argv)


# -- the harness side -----------------------------------------------------------------------------


def _label(module: str, attribute: str) -> str:
    return f"{module.rsplit('.', 1)[1]}.{attribute}"


def _median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f}" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=1)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument(
        "--kube", action="store_true", help="against the fake API server, as thick_bench --kube"
    )
    args = parser.parse_args()

    sys.path[:0] = [str(ROOT), str(ROOT / "src"), str(ROOT / "bench")]
    import thick_bench
    from tests.fakeapi import FakeApiServer
    from tests.support import daemon as support

    with tempfile.TemporaryDirectory(prefix="pmbreak") as tmp:
        out = Path(tmp) / "records.json"

        def command(self: support.DaemonProcess) -> list[str]:
            config = str(self.config_path)
            return [sys.executable, __file__, "--as-daemon", str(out), "daemon", "--config", config]

        thick_bench.DaemonProcess.command = command  # type: ignore[method-assign]
        execs: list[tuple[str, str, float, float]] = []  # (candidate, command, exec'd, reaped)
        current = ["shim"]
        plain_exec = thick_bench._exec

        def stamped_exec(argv: list[str], env: dict[str, str], stdin: bytes) -> None:
            started = time.monotonic()
            plain_exec(argv, env, stdin)
            execs.append((current[0], env["CNI_COMMAND"], started, time.monotonic()))

        thick_bench._exec = stamped_exec

        def run(api: FakeApiServer | None) -> tuple[list[list[object]], float]:
            setup = thick_bench.Setup(Path(tmp) / "setup", args.networks, api)
            setup.daemon.start(wait="readyz")
            assert setup.daemon.proc is not None
            pid = setup.daemon.proc.pid
            try:
                for _ in range(3):
                    thick_bench.one("shim", setup)
                execs.clear()
                os.kill(pid, signal.SIGUSR1)  # drops the warm-up's records
                time.sleep(0.3)
                cpu = thick_bench.daemon_cpu(pid)
                for round_ in range(args.cycles):
                    for kind in ("shim", "floor") if round_ % 2 == 0 else ("floor", "shim"):
                        current[0] = kind
                        thick_bench.one(kind, setup)
                cpu = thick_bench.daemon_cpu(pid) - cpu
                os.kill(pid, signal.SIGUSR1)
                time.sleep(0.5)
                return json.loads(out.read_text()), cpu
            finally:
                setup.close()

        if args.kube:
            with FakeApiServer(Path(tmp) / "api") as api:
                records, cpu = run(api)
        else:
            records, cpu = run(None)
    _report(execs, records, cpu, args)
    return 0


def _report(
    execs: list[tuple[str, str, float, float]],
    records: list[list[object]],
    cpu: float,
    args: argparse.Namespace,
) -> None:
    print(
        f"# {args.networks} network(s), {'fake API server' if args.kube else 'no Kubernetes'}, "
        f"{args.cycles} cycles; medians in ms"
    )
    for command in ("ADD", "DEL"):
        phases: dict[str, list[float]] = collections.defaultdict(list)
        steps: dict[str, list[float]] = collections.defaultdict(list)
        calls: dict[str, int] = {}
        for candidate, cmd, started, reaped in execs:
            if candidate != "shim" or cmd != command:
                continue
            # By start: the connection coroutine may end after the shim (the worker half-closed).
            mine = [r for r in records if started <= float(r[1]) <= reaped]  # type: ignore[arg-type]
            total: dict[str, float] = collections.defaultdict(float)
            first: dict[str, float] = {}
            last: dict[str, float] = {}
            count: collections.Counter[str] = collections.Counter()
            for name, begin, end in mine:
                total[name] += end - begin  # type: ignore[operator]
                first.setdefault(name, begin)  # type: ignore[arg-type]
                last[name] = end  # type: ignore[assignment]
                count[name] += 1  # type: ignore[index]
            serve, work = "server.UnixHttpServer._serve", "service.CniService.handle_cni"
            if serve not in first or work not in first:
                continue
            delegates = total["invoke.PluginExecutor.run_raw"]
            phases["shim exec -> daemon's connection coroutine starts"].append(first[serve] - started)
            read, submit = total["server.UnixHttpServer._read_request"], first["workers.WorkerPool.submit"]
            phases["request read (head + body)"].append(read)
            phases["read -> queued for a worker"].append(submit - first[serve] - read)
            phases["queued -> worker starts the work"].append(first[work] - submit)
            phases["work: delegates (exec'd, waited for)"].append(delegates)
            phases["work: everything else (daemon + engine)"].append(total[work] - delegates)
            phases["work done -> answer sent (worker)"].append(last["workers._send"] - last[work])
            phases["answer sent -> shim reaped"].append(reaped - last["workers._send"])
            phases["total (shim exec -> reaped)"].append(reaped - started)
            for name, spent in total.items():
                steps[name].append(spent)
                calls[name] = count[name]
        floor = [reaped - started for c, cmd, started, reaped in execs if c == "floor" and cmd == command]
        print(f"\n## {command} (n={len(phases['total (shim exec -> reaped)'])})\n")
        print("| phase | ms |\n|---|---|")
        for name, values in phases.items():
            print(f"| {name} | {_median_ms(values)} |")
        print(f"| floor: one delegate exec'd by the harness | {_median_ms(floor)} |")
        print("\n| step (inclusive, per request) | ms | calls |\n|---|---|---|")
        for module, attribute in STEPS:
            name = _label(module, attribute)
            if name in steps:
                print(f"| {name} | {_median_ms(steps[name])} | {calls[name]} |")
    print(f"\ndaemon CPU per cycle (ADD + DEL, all threads): {cpu / args.cycles * 1000:.2f} ms")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--as-daemon"]:
        sys.exit(_as_daemon(sys.argv[2], sys.argv[3:]))
    sys.exit(main())
