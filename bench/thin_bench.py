"""Thin mode: ADD+DEL through the real ``multus`` executable vs the same delegates called directly.

    sudo .venv/bin/python bench/thin_bench.py [--samples 40] [--sizes 1,2,4] \\
        [--modes plain,kube-json,kube-yaml]

Method (DESIGN "Performance targets"): one sample = ADD then DEL of a pod with N attachments,
fresh netns and container ID each time, 0.1 s pause after deleting the netns; the floor (the same N
bridge+host-local delegates exec'd by the harness in the same order, DEL in reverse) and
``multus`` are interleaved round by round; the report gives the median ms added over the floor.

Modes:
* ``plain``: no Kubernetes, the N networks are the conf's ``delegates`` (Go Multus: +31/+27/+25 ms);
* ``kube-json`` / ``kube-yaml``: the fake API server on loopback (HTTPS, bearer token from a token
  file, CA inline), the kubeconfig written as JSON (what ``pymultus install`` writes) or as YAML
  (what Go Multus's installer writes, so what a migrating node has); the cluster network is a conf
  file and the pod's annotation names N-1 NADs; ADD GETs the pod and the NADs, writes
  network-status on ``pods/status`` and posts an event per interface (Go Multus: +58/+62/+62 ms).
In ``plain`` mode a third candidate is the bound (``bench/bound_plugin.py``): a Python plugin,
started like ``multus``, that does nothing but exec the delegates; what it adds is what any Python
plugin pays in this harness, what ``multus`` adds beyond it is ``multus``'s own work.
Also measured: the cold start of the ``multus`` executable with the Kubernetes path loaded. The
summary (``bench/results/thin.md``) sets every row against Go Multus's figures from DESIGN.md (Go
Multus cannot be built on these machines: its source cannot be fetched) and the issue-12 goals.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.harness import (  # noqa: E402
    Candidate,
    CycleContext,
    Report,
    check_samples,
    common_arguments,
    publish,
    run_comparison,
    write_bound_plugin,
)

from pymultus.install.codearchive import ARCHIVE_NAME  # noqa: E402
from pymultus.install.launcher import default_python, default_sys_path, write_launcher  # noqa: E402

PLUGIN_DIR = "/usr/lib/cni"


# Go Multus on these machines, same method (DESIGN.md "Performance targets"), ms added per cycle.
GO_MULTUS = {"plain": (31.0, 27.0, 25.0), "kube": (58.0, 62.0, 62.0)}
GOAL_MARGIN = {"plain": 0.0, "kube": 5.0}  # issue 12: <= Go without Kubernetes, <= Go - 5 with it
SIZES = (1, 2, 4)
BOUND_LABEL = "bound: a Python plugin that only execs the delegates"


class Node:
    def __init__(
        self, root: Path, size: int, kube: object | None, *, kubeconfig_format: str = "json"
    ) -> None:
        self.root = root
        self.size = size
        self.bin = root / "bin"
        self.multus = str(self.bin / "multus")  # as `pymultus install-plugin` writes it
        self.multus_plain = str(self.bin / "multus-plain")  # the launcher without the code archive
        for path, archive in ((self.multus, str(self.bin / ARCHIVE_NAME)), (self.multus_plain, None)):
            write_launcher(
                path,
                entry_module="pymultus.cli.thin",
                python=default_python(),
                sys_path=default_sys_path(),
                archive=archive,
            )
        self.bound = str(self.bin / "bound")  # bench/bound_plugin.py: only execs the delegates
        self.bridges = [f"pmtb{os.getpid() % 10000}x{index}" for index in range(size)]
        self.delegates = [
            {
                "cniVersion": "1.0.0",
                "name": f"net{index}",
                "type": "bridge",
                "bridge": bridge,
                "ipam": {
                    "type": "host-local",
                    "subnet": f"10.232.{index}.0/24",
                    "dataDir": str(root / "ipam"),
                },
            }
            for index, bridge in enumerate(self.bridges)
        ]
        conf: dict[str, object] = {
            "cniVersion": "1.0.0",
            "name": "multus-cni-network",
            "type": "multus",
            "cniDir": str(root / "cache"),
            "binDir": PLUGIN_DIR,
        }
        self.pod_args = ""
        if kube is None:
            conf["delegates"] = self.delegates
        else:
            cluster = root / "10-cluster.conf"
            cluster.write_text(json.dumps(self.delegates[0]))
            conf["clusterNetwork"] = str(cluster)
            conf["kubeconfig"] = str(
                kube.write_kubeconfig(root / "kubeconfig", yaml_format=kubeconfig_format == "yaml")  # type: ignore[attr-defined]
            )
            kube.create_namespace("bench")  # type: ignore[attr-defined]
            names = []
            for delegate in self.delegates[1:]:
                kube.create_nad("bench", str(delegate["name"]), json.dumps(delegate))  # type: ignore[attr-defined]
                names.append(str(delegate["name"]))
            annotations = {"k8s.v1.cni.cncf.io/networks": ",".join(names)} if names else {}
            kube.create_pod("bench", "web", annotations=annotations)  # type: ignore[attr-defined]
            self.pod_args = ";K8S_POD_NAMESPACE=bench;K8S_POD_NAME=web"
        self.conf = json.dumps(conf).encode()
        write_bound_plugin(
            self.bound,
            default_python(),
            f"{PLUGIN_DIR}/bridge",
            [json.dumps(d).encode() for d in self.delegates],
        )

    def env(self, command: str, ctx: CycleContext, ifname: str = "eth0") -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": ctx.container_id,
            "CNI_NETNS": ctx.netns_path,
            "CNI_IFNAME": ifname,
            "CNI_PATH": PLUGIN_DIR,
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID={ctx.container_id}{self.pod_args}",
        }

    def through_multus(self, ctx: CycleContext) -> None:
        self._through(self.multus, ctx)

    def through_plain_launcher(self, ctx: CycleContext) -> None:
        self._through(self.multus_plain, ctx)

    def through_bound(self, ctx: CycleContext) -> None:
        self._through(self.bound, ctx)

    def _through(self, executable: str, ctx: CycleContext) -> None:
        for command in ("ADD", "DEL"):
            proc = subprocess.run(
                [executable], input=self.conf, env=self.env(command, ctx), capture_output=True, check=False
            )
            if proc.returncode != 0:
                raise RuntimeError(f"multus {command} failed: {proc.stdout!r} {proc.stderr!r}")

    def floor(self, ctx: CycleContext) -> None:
        names = ["eth0"] + [f"net{index}" for index in range(1, self.size)]
        for delegate, ifname in zip(self.delegates, names, strict=True):
            self._exec("ADD", delegate, self.env("ADD", ctx, ifname))
        for delegate, ifname in reversed(list(zip(self.delegates, names, strict=True))):
            self._exec("DEL", delegate, self.env("DEL", ctx, ifname))

    def _exec(self, command: str, delegate: dict[str, object], env: dict[str, str]) -> None:
        proc = subprocess.run(
            [f"{PLUGIN_DIR}/bridge"],
            input=json.dumps(delegate).encode(),
            env=env,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"bridge {command} failed: {proc.stdout!r}")

    def cleanup(self) -> None:
        for bridge in self.bridges:
            subprocess.run(["ip", "link", "delete", bridge], check=False, capture_output=True)


def start_cost(samples: int) -> str:
    """Cold start of the executable's code paths in fresh ``python -IS`` processes."""
    python = default_python()
    path = repr(default_sys_path())
    with tempfile.TemporaryDirectory(prefix="pymultus-thin-start-") as tmp:
        archived, plain = f"{tmp}/multus", f"{tmp}/multus-plain"
        for launcher, archive in ((archived, f"{tmp}/{ARCHIVE_NAME}"), (plain, None)):
            write_launcher(
                launcher,
                entry_module="pymultus.cli.thin",
                python=python,
                sys_path=default_sys_path(),
                archive=archive,
            )
        variants: dict[str, list[str]] = {
            "interpreter alone (`python3 -IS -c pass`)": [python, "-IS", "-c", "pass"],
            "`multus` VERSION, launcher + code archive (install-plugin)": [archived],
            "`multus` VERSION, launcher without the archive": [plain],
            "`multus` entry + Kubernetes path (client, kubeconfig, TLS context), plain imports": [
                python,
                "-IS",
                "-c",
                f"import sys; sys.path[:0] = {path}; from pymultus.cli.thin import main; "
                "from pymultus.attach import service; from pymultus.kube import auth, client, pods; "
                "from pymultus.kube.http import tls_client_context; tls_client_context()",
            ],
        }
        timings: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(samples):
            for name, argv in variants.items():
                started = time.perf_counter()
                subprocess.run(
                    argv, input=b"{}", env={"CNI_COMMAND": "VERSION"}, capture_output=True, check=True
                )
                timings[name].append((time.perf_counter() - started) * 1000)
    lines = [
        f"### Start cost of the `multus` executable (cold process, median of {samples} interleaved runs)",
        "",
        "| what runs | median ms | min ms |",
        "|---|---:|---:|",
    ]
    for name, values in timings.items():
        lines.append(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = common_arguments(__doc__.splitlines()[0] if __doc__ else "thin bench", default_samples=40)
    parser.add_argument("--sizes", default="1,2,4", help="attachments per pod, comma-separated")
    parser.add_argument("--modes", default="plain,kube-json,kube-yaml", help="plain, kube-json, kube-yaml")
    parser.add_argument("--skip-start", action="store_true", help="skip the start-cost table")
    args = parser.parse_args(argv)
    check_samples(args.samples)
    sizes = [int(size) for size in args.sizes.split(",")]
    modes = args.modes.split(",")
    reports: dict[tuple[str, int], Report] = {}
    for mode in modes:
        for size in sizes:
            reports[(mode, size)] = _run(mode, size, args.samples, args.warmup)
    publish("thin", summary(reports))
    if not args.skip_start:
        publish("thin-start", start_cost(max(30, args.samples)))
    return 0


def summary(reports: dict[tuple[str, int], Report]) -> str:
    """One table of the run: each mode and size against the floor, Go Multus and the goal."""
    lines = [
        "### thin `multus`: ms added per ADD+DEL cycle over the floor (one run)",
        "",
        "| mode | attachments | floor median | multus median | added | paired | ratio "
        "| without archive: added | Python bound: added | Go Multus (DESIGN) | goal | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (mode, size), report in reports.items():
        row = report.rows[0]
        family = "plain" if mode == "plain" else "kube"
        go = GO_MULTUS[family][SIZES.index(size)] if size in SIZES else None
        goal = None if go is None else go - GOAL_MARGIN[family]
        verdict = (
            "—"
            if goal is None
            else ("met" if row.added_ms <= goal else f"missed by {row.added_ms - goal:.1f}")
        )
        lines.append(
            f"| {mode} | {size} | {report.floor.median_ms:.1f} | {row.median_ms:.1f} | {row.added_ms:+.1f} "
            f"| {row.paired_added_ms:+.1f} | {row.ratio:.2f} | {report.rows[1].added_ms:+.1f} "
            f"| {f'{report.rows[2].added_ms:+.1f}' if len(report.rows) > 2 else '—'} "
            f"| {'—' if go is None else f'+{go:.0f}'} "
            f"| {'—' if goal is None else f'<= +{goal:.0f}'} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def _run(mode: str, size: int, samples: int, warmup: int) -> Report:
    if mode not in ("plain", "kube-json", "kube-yaml"):
        raise SystemExit(f"unknown mode {mode!r}: plain, kube-json or kube-yaml")
    with tempfile.TemporaryDirectory(prefix="pymultus-thin-bench-") as tmp:
        fake = None
        if mode != "plain":
            from tests.fakeapi.certs import Pki
            from tests.fakeapi.server import FakeApiServer

            (Path(tmp) / "pki").mkdir()
            (Path(tmp) / "api").mkdir()
            fake = FakeApiServer(Path(tmp) / "api", pki=Pki(Path(tmp) / "pki")).start()
        node = Node(Path(tmp), size, fake, kubeconfig_format=mode.removeprefix("kube-"))
        label = (
            "no Kubernetes, delegates in the conf"
            if mode == "plain"
            else f"fake API server on loopback, {mode.removeprefix('kube-').upper()} kubeconfig"
        )
        cycle: Callable[[CycleContext], None] = node.through_multus
        plain: Callable[[CycleContext], None] = node.through_plain_launcher
        try:
            return run_comparison(
                f"thin-{mode}-{size}",
                title=f"thin `multus`, {size} attachment(s), {label}",
                floor=Candidate(f"floor: {size} bridge delegate(s) exec'd directly", node.floor),
                candidates=[
                    Candidate("`multus` (install-plugin: launcher + code archive)", cycle),
                    Candidate("`multus`, launcher without the code archive", plain),
                    *([Candidate(BOUND_LABEL, node.through_bound)] if mode == "plain" else []),
                ],
                samples=samples,
                warmup=warmup,
            )
        finally:
            node.cleanup()
            if fake is not None:
                fake.stop()


if __name__ == "__main__":
    sys.exit(main())
