"""Thick-mode benchmarks: multus-shim + pymultus daemon vs the floor, shim start, burst, RSS.

    sudo .venv/bin/python bench/thick_bench.py [--samples 40] [--skip-rss] [--kube]

Method (DESIGN "Performance targets"): one ADD+DEL cycle per sample, fresh netns and container
ID each time, 0.1 s pause after deleting the netns, the shim path and the *floor* (the same bridge
+ host-local delegates exec'd directly, in the same order, ADD then DEL in reverse) interleaved
cycle by cycle (which one goes first rotates every round); report the median milliseconds
added over the floor, the median of the per-round differences, and the ratio. A third candidate
is the bound (``bench/bound_plugin.py``): a Python process that does nothing but exec the same
delegates, started by the same interpreter as the shim; any cycle that runs a Python shim per
call (two processes, each waiting while the delegates run) takes at least that long.

Wall time on shared CPUs moves by several ms from run to run, so each row also gives the CPU
time our code adds per cycle, which moves far less: the two ``multus-shim`` processes (their
rusage) plus the daemon's threads (``/proc/<pid>/task/*/schedstat``; the delegates it runs are
not in it, nor threads that ended during the cycle, i.e. the background result-cache writes).

``--del-gap MS`` (diagnostic, not the DESIGN method): pause MS milliseconds between the ADD and
the DEL of every cycle, excluded from the timing, in both candidates. The kernel makes a bridge
attachment's DEL a few ms dearer once the interface has lived for a while (measured ~+4.6 ms
after 15 ms); the floor's DEL otherwise follows its ADD within microseconds, which no
implementation that starts a process in between (any shim, Go's included) can match.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.harness import write_bound_plugin  # noqa: E402
from tests.fakeapi import FakeApiServer  # noqa: E402
from tests.support.daemon import DaemonProcess, write_shim  # noqa: E402
from tests.support.netns import delete_host_link, ip, unique_name  # noqa: E402

from pymultus.install.launcher import default_python  # noqa: E402

PLUGINS = "/usr/lib/cni"


def _bridge(name: str, bridge: str, subnet: str, ipam: Path) -> dict[str, object]:
    return {
        "cniVersion": "0.3.1",
        "name": name,
        "type": "bridge",
        "bridge": bridge,
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(ipam)},
    }


class Setup:
    def __init__(self, root: Path, networks: int, api: FakeApiServer | None = None, **keys: object) -> None:
        self.root = root
        self.api = api
        self.pod_networks = ""
        self.pods_created = 0
        self.cpu_added: list[tuple[float, float]] = []  # per shim cycle: (the shims', the daemon's) CPU s
        for sub in ("net.d", "multus.d", "emptybin"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.bridges: list[str] = []
        self.confs: list[dict[str, object]] = []
        extra = []
        for index in range(networks):
            bridge = unique_name("pbb")
            self.bridges.append(bridge)
            conf = _bridge(f"b{index}-{bridge}", bridge, f"10.231.{index}.0/24", root / f"ipam{index}")
            self.confs.append(conf)
            if index == 0:
                (root / "net.d" / "10-primary.conf").write_text(json.dumps(conf))
            elif api is not None:  # a NAD named by each pod's annotation
                api.create_nad("default", f"nad{index}", conf)
                extra.append(f"nad{index}")
            else:
                (root / "multus.d" / f"{conf['name']}.conf").write_text(json.dumps(conf))
                extra.append(conf["name"])
        sock = tempfile.mkdtemp(prefix="pmb", dir="/tmp") + "/"
        config: dict[str, object] = {
            "socketDir": sock,
            "daemonSocketDir": sock,
            "cniVersion": "0.3.1",
            "cniConfigDir": str(root / "net.d"),
            "multusAutoconfigDir": str(root / "net.d"),
            "cniDir": str(root / "cache"),
            "confDir": str(root / "multus.d"),
            "binDir": PLUGINS,
            "logLevel": "error",
        }
        if api is not None:
            config["kubeconfig"] = str(api.write_kubeconfig(root / "kubeconfig"))
            self.pod_networks = ",".join(extra)
        elif extra:
            config["defaultNetworks"] = extra
        config.update(keys)
        self.daemon = DaemonProcess(root, config)
        if api is not None:
            self.daemon.env["MULTUS_NODE_NAME"] = "node1"
        self.shim = write_shim(root / "bin")
        self.bound = str(root / "bin" / "bound")  # bench/bound_plugin.py: only execs the delegates
        write_bound_plugin(
            self.bound, default_python(), f"{PLUGINS}/bridge", [json.dumps(c).encode() for c in self.confs]
        )

    def conf(self) -> bytes:
        return (self.root / "net.d" / "00-multus.conf").read_bytes()

    def create_pod(self, name: str) -> None:
        """Kubernetes mode: the pod exists (and is in the daemon's cache) before its ADD, as when
        the kubelet starts a sandbox; not timed."""
        if self.api is None:
            return
        annotations = {"k8s.v1.cni.cncf.io/networks": self.pod_networks} if self.pod_networks else None
        self.api.create_pod("default", name, annotations=annotations)
        deadline = time.monotonic() + 10
        while self.daemon.stats()["caches"]["pods"]["objects"] < self.pods_created + 1:  # type: ignore[index]
            if time.monotonic() > deadline:
                raise RuntimeError(f"pod {name} never reached the daemon's cache")
            time.sleep(0.005)
        self.pods_created += 1

    def close(self) -> None:
        self.daemon.stop()
        for bridge in self.bridges:
            delete_host_link(bridge)


def _env(command: str, cid: str, ns: str, ifname: str = "eth0") -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": f"/var/run/netns/{ns}",
        "CNI_IFNAME": ifname,
        "CNI_PATH": PLUGINS,
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={cid}",
        "PATH": os.environ.get("PATH", ""),
    }


def _exec(argv: list[str], env: dict[str, str], stdin: bytes) -> None:
    proc = subprocess.run(argv, input=stdin, env=env, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} {env['CNI_COMMAND']} failed: {proc.stdout[:300]!r} {proc.stderr[:300]!r}"
        )


def daemon_cpu(pid: int) -> float:
    """CPU seconds of the daemon's live threads (nanosecond resolution, unlike /proc/<pid>/stat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total / 1e9


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _add_then_del(executable: str, stdin: bytes, cid: str, ns: str, gap: float) -> float:
    """ADD then DEL through ``executable``; the seconds both took (the gap between not counted)."""
    started = time.perf_counter()
    _exec([executable], _env("ADD", cid, ns), stdin)
    added = time.perf_counter()
    if gap:
        time.sleep(gap)
    resumed = time.perf_counter()
    _exec([executable], _env("DEL", cid, ns), stdin)
    return added - started + time.perf_counter() - resumed


def shim_cycle(setup: Setup, cid: str, ns: str, gap: float = 0.0) -> float:
    assert setup.daemon.proc is not None
    pid = setup.daemon.proc.pid
    shims, daemon = children_cpu(), daemon_cpu(pid)
    elapsed = _add_then_del(str(setup.shim), setup.conf(), cid, ns, gap)
    setup.cpu_added.append((children_cpu() - shims, daemon_cpu(pid) - daemon))
    return elapsed


def bound_cycle(setup: Setup, cid: str, ns: str, gap: float = 0.0) -> float:
    return _add_then_del(setup.bound, b"{}", cid, ns, gap)


def floor_cycle(setup: Setup, cid: str, ns: str, gap: float = 0.0) -> float:
    started = time.perf_counter()
    for index, conf in enumerate(setup.confs):
        data = json.dumps(conf).encode()
        _exec([f"{PLUGINS}/bridge"], _env("ADD", cid, ns, "eth0" if index == 0 else f"net{index}"), data)
    added = time.perf_counter()
    if gap:
        time.sleep(gap)
    resumed = time.perf_counter()
    for index in reversed(range(len(setup.confs))):
        data = json.dumps(setup.confs[index]).encode()
        _exec([f"{PLUGINS}/bridge"], _env("DEL", cid, ns, "eth0" if index == 0 else f"net{index}"), data)
    return added - started + time.perf_counter() - resumed


def one(kind: str, setup: Setup, gap: float = 0.0) -> float:
    ns = unique_name("pbn")
    ip("netns", "add", ns)
    try:
        cid = unique_name("bc")
        if kind == "shim":
            setup.create_pod(cid)
            return shim_cycle(setup, cid, ns, gap)
        if kind == "bound":
            return bound_cycle(setup, cid, ns, gap)
        return floor_cycle(setup, cid, ns, gap)
    finally:
        ip("netns", "delete", ns, check=False)
        time.sleep(0.1)


def bench_cycles(samples: int, root: Path, gap: float = 0.0, api: FakeApiServer | None = None) -> list[str]:
    lines = [
        "| networks | floor median | shim median | added | paired added | ratio | CPU: shims + daemon "
        "| Python bound: added |",
        "|---|---|---|---|---|---|---|---|",
    ]
    kinds = ("shim", "floor", "bound")
    for networks in (1, 2, 4):
        setup = Setup(root / f"cyc{networks}{'k' if api else ''}", networks, api)
        setup.daemon.start(wait="readyz")
        try:
            for _ in range(3):
                for kind in kinds:
                    one(kind, setup, gap)
            setup.cpu_added.clear()  # the warm-up's
            times: dict[str, list[float]] = {kind: [] for kind in kinds}
            for round_ in range(samples):
                # Rotate who goes first, so none always follows another's netns teardown.
                for kind in kinds[round_ % 3 :] + kinds[: round_ % 3]:
                    times[kind].append(one(kind, setup, gap))
            shim, floor = times["shim"], times["floor"]
            s, f = statistics.median(shim) * 1000, statistics.median(floor) * 1000
            bound = statistics.median(times["bound"]) * 1000
            paired = statistics.median(a - b for a, b in zip(shim, floor, strict=True)) * 1000
            shims_cpu = statistics.median(c[0] for c in setup.cpu_added) * 1000
            daemon_cpu_ms = statistics.median(c[1] for c in setup.cpu_added) * 1000
            lines.append(
                f"| {networks} | {f:.1f} ms | {s:.1f} ms | **{s - f:+.1f} ms** | {paired:+.1f} ms "
                f"| {s / f:.2f} | {shims_cpu:.1f} + {daemon_cpu_ms:.1f} ms | {bound - f:+.1f} ms |"
            )
            print(lines[-1], flush=True)
        finally:
            setup.close()
    return lines


def bench_shim_start(samples: int, root: Path) -> list[str]:
    setup = Setup(root / "start", 1)
    setup.daemon.start(wait="readyz")
    try:
        conf = setup.conf()
        bare, version, status = [], [], []
        env = {"CNI_COMMAND": "VERSION", "PATH": os.environ.get("PATH", "")}
        for _ in range(samples):
            t = time.perf_counter()
            subprocess.run([os.path.realpath(sys.executable), "-I", "-S", "-c", "pass"], check=True)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            _exec([str(setup.shim)], env, conf)
            version.append(time.perf_counter() - t)
            t = time.perf_counter()
            _exec([str(setup.shim)], {**env, "CNI_COMMAND": "STATUS", "CNI_PATH": PLUGINS}, conf)
            status.append(time.perf_counter() - t)
        return [
            "| what | median |",
            "|---|---|",
            f"| `python -I -S -c pass` | {statistics.median(bare) * 1000:.1f} ms |",
            f"| `multus-shim` VERSION (start + imports) | {statistics.median(version) * 1000:.1f} ms |",
            f"| `multus-shim` STATUS round trip | {statistics.median(status) * 1000:.1f} ms |",
        ]
    finally:
        setup.close()


def bench_burst(root: Path, pods: int = 50) -> list[str]:
    setup = Setup(root / "burst", 1, connectionLimit=4)
    setup.daemon.start(wait="readyz")
    names = [unique_name("pbu") for _ in range(pods)]
    for name in names:
        ip("netns", "add", name)
    try:
        conf = setup.conf()

        def run(command: str) -> float:
            errors: list[str] = []

            def one_pod(name: str) -> None:
                try:
                    _exec([str(setup.shim)], _env(command, f"c{name}", name), conf)
                except RuntimeError as exc:
                    errors.append(str(exc))

            threads = [threading.Thread(target=one_pod, args=(n,)) for n in names]
            t = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise RuntimeError(errors[0])
            return time.perf_counter() - t

        add = run("ADD")
        delete = run("DEL")
        stats = setup.daemon.stats()
        return [
            f"50 pods started at once through `multus-shim`, `connectionLimit` 4 ({os.cpu_count()} CPUs): "
            f"ADD of all 50 in **{add:.2f} s** ({pods / add:.0f} pods/s), DEL of all 50 in {delete:.2f} s; "
            f"in-flight high-water mark {stats['in_flight_max']}, rejected {stats['rejected']}."
        ]
    finally:
        for name in names:
            ip("netns", "delete", name, check=False)
        setup.close()


def _rss(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def bench_rss(root: Path, pods: int = 5000, nads: int = 1000) -> list[str]:
    lines = ["| daemon state | RSS | peak RSS (VmHWM) |", "|---|---|---|"]
    setup = Setup(root / "rss-idle", 1)
    setup.daemon.start(wait="readyz")
    time.sleep(1)
    assert setup.daemon.proc is not None
    rss, hwm = _rss(setup.daemon.proc.pid)
    lines.append(f"| idle, no Kubernetes, no metrics | {rss:.1f} MiB | {hwm:.1f} MiB |")
    setup.close()

    with FakeApiServer(root / "api") as api:
        kubeconfig = api.write_kubeconfig(root / "kubeconfig")
        setup = Setup(
            root / "rss-idle-kube",
            1,
            kubeconfig=str(kubeconfig),
            metricsPort=19391,
            metricsAddress="127.0.0.1",
        )
        setup.daemon.env["MULTUS_NODE_NAME"] = "node1"
        setup.daemon.start(wait="readyz")
        time.sleep(1)
        rss, hwm = _rss(setup.daemon.proc.pid)  # type: ignore[union-attr]
        lines.append(f"| idle, with Kubernetes (empty caches) and metrics | {rss:.1f} MiB | {hwm:.1f} MiB |")
        setup.close()

        for index in range(nads):
            api.create_nad(
                f"ns{index % 50}",
                f"nad{index}",
                _bridge(f"nad{index}", "br-unused", "10.232.0.0/24", root / "unused"),
            )
        for index in range(pods):
            api.create_pod(
                f"ns{index % 50}",
                f"pod-{index}",
                annotations={"k8s.v1.cni.cncf.io/networks": f"nad{index % nads},nad{(index + 1) % nads}"},
                labels={"app": f"app-{index % 100}", "pod-template-hash": "5d4f8b9c7d"},
                node_name="node1",
            )
        setup = Setup(
            root / "rss-full", 1, kubeconfig=str(kubeconfig), metricsPort=19392, metricsAddress="127.0.0.1"
        )
        setup.daemon.env["MULTUS_NODE_NAME"] = "node1"
        started = time.perf_counter()
        setup.daemon.start(wait="readyz", timeout=120)
        synced = time.perf_counter() - started
        stats = setup.daemon.stats()["caches"]
        time.sleep(2)
        rss, hwm = _rss(setup.daemon.proc.pid)  # type: ignore[union-attr]
        lines.append(
            f"| {stats['pods']['objects']} pods + {stats['nads']['objects']} NADs cached, metrics on "
            f"(start to ready {synced:.1f} s) | **{rss:.1f} MiB** | {hwm:.1f} MiB |"
        )
        setup.close()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--only", choices=("cycles", "start", "burst", "rss"), default=None)
    parser.add_argument(
        "--kube",
        action="store_true",
        help="cycles against the fake API server: pod and NADs from the daemon's caches, "
        "network-status written and events posted per ADD (what Go Multus's thick figures include)",
    )
    parser.add_argument(
        "--del-gap",
        type=float,
        default=0.0,
        metavar="MS",
        help="diagnostic: pause between ADD and DEL (untimed, both candidates); not the DESIGN method",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pmthick") as tmp:
        root = Path(tmp)
        out: list[str] = []
        if args.only in (None, "cycles"):
            title = "### ADD+DEL cycles through multus-shim vs the floor" + (
                f" (--del-gap {args.del_gap:g} ms)" if args.del_gap else ""
            )
            out += [f"{title}, no Kubernetes", "", *bench_cycles(args.samples, root, args.del_gap / 1000), ""]
            if args.kube:
                with FakeApiServer(root / "api") as api:
                    cycles = bench_cycles(args.samples, root, args.del_gap / 1000, api)
                out += [f"{title}, fake API server (HTTPS) on loopback", "", *cycles, ""]
        if args.only in (None, "start"):
            out += ["### multus-shim start cost", "", *bench_shim_start(args.samples, root), ""]
        if args.only in (None, "burst"):
            out += ["### Burst", "", *bench_burst(root), ""]
        if not args.skip_rss and args.only in (None, "rss"):
            out += ["### Daemon memory", "", *bench_rss(root), ""]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
