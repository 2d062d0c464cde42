"""What the soak counts and the invariants it checks after every cycle.

Each check returns what it found left behind, so the cycle can record a violation and then
remove the leftovers itself (the next cycle must start clean, or one leak would be counted
again in every later cycle).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pymultus.store.deleted import DELETED_DIR
from tests.support.netns import ip

EXAMPLES_PER_KIND = 3
FD_SLACK = 64  # daemon fds may grow this much over the first sample before it counts as a leak
RSS_SLACK_KIB = 100 * 1024  # likewise for the daemon's resident memory
# Subdirectories of cniDir that stay after every DEL: empty, except ``deleted`` (the bounded
# record of completed DELs, pymultus.store.deleted), which the cycle checks for its bound.
OWN_DIRS = ("results", "locks", DELETED_DIR)


@dataclass
class Tally:
    """Every count the soak prints, keyed by mode first."""

    cycles: Counter[str] = field(default_factory=Counter)
    faults: Counter[tuple[str, str]] = field(default_factory=Counter)
    add_codes: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # mode, fault, code
    del_calls: Counter[str] = field(default_factory=Counter)
    del_retries: Counter[str] = field(default_factory=Counter)
    violations: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_fault: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # mode, kind, fault
    examples: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    daemon: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # mode: (fds, rss KiB)
    seconds: Counter[str] = field(default_factory=Counter)
    fault_seconds: Counter[tuple[str, str]] = field(default_factory=Counter)

    def violation(self, mode: str, kind: str, fault: str, detail: str) -> None:
        self.violations[(mode, kind)] += 1
        self.by_fault[(mode, kind, fault)] += 1
        examples = self.examples.setdefault((mode, kind), [])
        if len(examples) < EXAMPLES_PER_KIND:
            examples.append(f"[{fault}] {detail}")

    @property
    def total_violations(self) -> int:
        return sum(self.violations.values())

    def to_json(self) -> dict[str, object]:
        def flat(counter: Counter[tuple[str, ...]] | Counter[str]) -> dict[str, int]:
            return {"/".join(k) if isinstance(k, tuple) else k: v for k, v in sorted(counter.items())}

        return {
            "cycles": flat(self.cycles),
            "faults": flat(self.faults),
            "addCodes": flat(self.add_codes),
            "delCalls": flat(self.del_calls),
            "delRetries": flat(self.del_retries),
            "violations": flat(self.violations),
            "violationsByFault": flat(self.by_fault),
            "examples": {"/".join(k): v for k, v in self.examples.items()},
            "daemon": {mode: daemon_figures(samples) for mode, samples in self.daemon.items()},
            "seconds": dict(self.seconds),
            "faultSeconds": {"/".join(k): round(v, 1) for k, v in sorted(self.fault_seconds.items())},
        }


def daemon_figures(samples: list[tuple[int, int]]) -> dict[str, int]:
    if not samples:
        return {}
    fds = [s[0] for s in samples]
    rss = [s[1] for s in samples]
    return {
        "fdsStart": fds[0],
        "fdsEnd": fds[-1],
        "fdsMax": max(fds),
        "rssStartKiB": rss[0],
        "rssEndKiB": rss[-1],
        "rssMaxKiB": max(rss),
    }


# -- processes --------------------------------------------------------------------------------


def processes_with(container_id_prefix: str) -> list[int]:
    """PIDs whose environment has ``CNI_CONTAINERID=<prefix>...``: multus and every delegate
    (delegates run in their own process groups, so only the environment ties them to a pod)."""
    needle = b"\0CNI_CONTAINERID=" + container_id_prefix.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path("/proc", entry, "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if needle in b"\0" + environ:
            found.append(int(entry))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def describe(pid: int) -> str:
    try:
        cmdline = Path("/proc", str(pid), "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return str(pid)
    return f"{pid} {cmdline.decode(errors='replace').strip()}"


# -- links, leases, caches --------------------------------------------------------------------


def host_links(bridges: list[str], parent: str) -> list[str]:
    """Host links that belong to the soak's pods: ports of its bridges, children of its macvlan
    parent (a veth, whose own peer also names it as ``link`` but is not a child)."""
    links = json.loads(ip("-j", "-d", "link", "show") or "[]")
    return [
        str(link["ifname"])
        for link in links
        if link.get("master") in bridges
        or (link.get("link") == parent and link.get("linkinfo", {}).get("info_kind") != "veth")
    ]


def netns_exists(netns: str) -> bool:
    return Path("/var/run/netns", netns).exists()


def netns_links(netns: str) -> list[str]:
    if not netns_exists(netns):
        return []
    links = json.loads(ip("-j", "link", "show", netns=netns) or "[]")
    return sorted(str(link["ifname"]) for link in links if link["ifname"] != "lo")


def leases_of(all_leases: list[str], container_id: str) -> list[str]:
    """The host-local leases of one container (a lease file holds "<containerID>\\r\\n<ifname>")."""
    found = []
    for path in all_leases:
        try:
            owner = Path(path).read_text().split()
        except OSError:
            continue
        if owner and owner[0] == container_id:
            found.append(path)
    return found


def cache_entries(cni_dir: Path) -> list[str]:
    """Everything under the private cniDir but its own subdirectories: delegate lists, result
    caches, lock and temp files, and a directory, FIFO or symlink in a cache file's place."""
    found = []
    for root, dirs, files in os.walk(cni_dir):
        if root == str(cni_dir / DELETED_DIR):
            continue
        found.extend(os.path.join(root, name) for name in files)
        found.extend(
            os.path.join(root, name) for name in dirs if not (root == str(cni_dir) and name in OWN_DIRS)
        )
    return sorted(found)


def deleted_records(cni_dir: Path) -> int:
    try:
        return len(os.listdir(cni_dir / DELETED_DIR))
    except FileNotFoundError:
        return 0


def remove_files(paths: list[str]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except IsADirectoryError:
            shutil.rmtree(path, ignore_errors=True)
        except FileNotFoundError:
            pass


# -- the daemon ---------------------------------------------------------------------------------


def sample_daemon(pid: int) -> tuple[int, int] | None:
    """(open fds, VmRSS in KiB) of the daemon, None when it is not running."""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return fds, rss


def daemon_over_bounds(samples: list[tuple[int, int]]) -> list[tuple[str, str]]:
    """(violation kind, description) for each bound the latest sample exceeds (first + slack)."""
    if len(samples) < 2:
        return []
    (fds0, rss0), (fds, rss) = samples[0], samples[-1]
    found = []
    if fds > fds0 + FD_SLACK:
        found.append(("daemon-fds", f"daemon fds {fds} > {fds0} + {FD_SLACK}"))
    if rss > rss0 + RSS_SLACK_KIB:
        found.append(("daemon-rss", f"daemon VmRSS {rss} KiB > {rss0} + {RSS_SLACK_KIB} KiB"))
    return found
