"""`pymultus cni` ADD+DEL of a conflist against the same plugins called directly (the floor).

    sudo .venv/bin/python bench/cni_bench.py [--samples 50]

The network: bridge + host-local -> tuning -> portmap (with a port mapping, so portmap does its
iptables work), cniVersion 1.0.0. Candidates:

* ``pymultus cni`` through the venv's console script (what a user types);
* the same command started as ``python3 -I -S`` with ``src`` on sys.path (how the CNI hot path
  is launched: no site, no argparse, nothing else imported);
* the floor: the harness process itself execs each plugin in order with prevResult threading, then
  DEL in reverse with the final result as prevResult: the least any driver can do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.harness import Candidate, CycleContext, check_samples, common_arguments, run_comparison  # noqa: E402

PLUGIN_DIR = "/usr/lib/cni"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
CAPS = {"portMappings": [{"hostPort": 28731, "containerPort": 80, "protocol": "tcp"}]}


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf_dir = root / "net.d"
        self.cache_dir = root / "cache"
        self.conf_dir.mkdir()
        self.bridge = f"pmbb{os.getpid() % 100000}"
        self.name = "benchnet"
        self.conflist: dict[str, object] = {
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipam": {"type": "host-local", "subnet": "10.233.77.0/24", "dataDir": str(root / "ipam")},
                },
                {"type": "tuning", "mtu": 1400},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.conf_dir / "10-bench.conflist").write_text(json.dumps(self.conflist))
        self.common = ["--conf-dir", str(self.conf_dir), "--cache-dir", str(self.cache_dir)]
        self.env = {**os.environ, "CNI_PATH": PLUGIN_DIR}

    def _tool(self, prefix: list[str], ctx: CycleContext) -> None:
        for verb in ("add", "del"):
            argv = [*prefix, verb, self.name, ctx.netns_path, "--container-id", ctx.container_id]
            argv += [*self.common, "--capability-args", json.dumps(CAPS)]
            proc = subprocess.run(argv, env=self.env, capture_output=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{verb} failed: {proc.stdout!r} {proc.stderr!r}")

    def console_script(self, ctx: CycleContext) -> None:
        self._tool([str(ROOT / ".venv" / "bin" / "pymultus"), "cni"], ctx)

    def isolated(self, ctx: CycleContext) -> None:
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); "
            "from pymultus.cli.cnitool import main; sys.exit(main(sys.argv[1:]))"
        )
        self._tool([PYTHON, "-I", "-S", "-c", code], ctx)

    def floor(self, ctx: CycleContext) -> None:
        """The plugins, exec'd directly in order, prevResult threaded; DEL in reverse."""
        plugins = self.conflist["plugins"]
        assert isinstance(plugins, list)
        env = {
            "CNI_CONTAINERID": ctx.container_id,
            "CNI_NETNS": ctx.netns_path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": PLUGIN_DIR,
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        prev: object = None
        for plugin in plugins:
            prev = json.loads(self._exec("ADD", plugin, env, prev))
        for plugin in reversed(plugins):
            self._exec("DEL", plugin, env, prev)

    def _exec(self, command: str, plugin: dict[str, object], env: dict[str, str], prev: object) -> bytes:
        conf = {key: value for key, value in plugin.items() if key != "capabilities"}
        conf["name"] = self.name
        conf["cniVersion"] = "1.0.0"
        if prev is not None:
            conf["prevResult"] = prev
        if "capabilities" in plugin:
            conf["runtimeConfig"] = CAPS
        proc = subprocess.run(
            [f"{PLUGIN_DIR}/{plugin['type']}"],
            input=json.dumps(conf).encode(),
            env={**env, "CNI_COMMAND": command},
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{plugin['type']} {command} failed: {proc.stdout!r}")
        return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = common_arguments(__doc__.splitlines()[0] if __doc__ else "cni bench", default_samples=50)
    args = parser.parse_args(argv)
    check_samples(args.samples)
    with tempfile.TemporaryDirectory(prefix="pymultus-cni-bench-") as tmp:
        setup = Setup(Path(tmp))
        try:
            run_comparison(
                "cni",
                title="`pymultus cni` ADD+DEL, conflist bridge+host-local -> tuning -> portmap",
                floor=Candidate("floor: plugins exec'd directly by the harness", setup.floor),
                candidates=[
                    Candidate("`pymultus cni` (venv console script)", setup.console_script),
                    Candidate("`pymultus cni` (`python3 -I -S`, src on sys.path)", setup.isolated),
                ],
                samples=args.samples,
                warmup=args.warmup,
                notes=[
                    "A cycle is two process starts for `pymultus cni` (ADD, DEL), each running "
                    "3 plugins; the floor runs the same 6 plugin execs from the already-running harness.",
                    "`pymultus cni` also writes, reads and removes the libcni result cache and "
                    "passes the cached result as DEL's prevResult (the floor keeps it in memory).",
                ],
            )
        finally:
            subprocess.run(["ip", "link", "delete", setup.bridge], check=False, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
