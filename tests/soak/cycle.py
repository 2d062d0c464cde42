"""One soak cycle: a fresh pod and netns, ADD with one fault injected, DEL (retried a bounded
number of times, as a runtime does), then every invariant; leftovers are recorded and removed.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time

from pymultus.store.deleted import LIMIT as DELETED_LIMIT
from tests.soak import checks
from tests.soak.checks import Tally
from tests.soak.rig import CALL_TIMEOUT, NAMESPACE, Outcome, Rig

DEL_ATTEMPTS = 5  # a runtime retries a failed DEL; after this many the pod counts as stuck
DEL_RETRY_PAUSE = 0.2
SETTLE = 5.0  # seconds a delegate still running after the final DEL may take to go away
HOST_SETTLE = 3.0  # seconds the kernel may take to remove the host veths of a deleted netns
SLOW_DELEGATE = 0.8  # a slow delegate (under the rig's delegate timeout) to interrupt mid-ADD
HANG = 30  # far beyond the delegate timeout
ATTACHED = ["eth0", "net1", "net2"]
PARALLEL_BASE = 500_000  # container-ID index of the extra pods of parallel-pods cycles

FAULTS_BOTH = [
    "none",
    "delegate-fail",
    "delegate-hang",
    "delegate-del-fail",
    "kill-mid-add",
    "api-500",
    "api-429",
    "api-slow",
    "api-drop",
    "api-status-fail",
    "netns-gone-before-del",
    "corrupt-delegate-list",
    "corrupt-result-cache",
    "hostile-cache-file",
    "repeated-add",
    "repeated-del",
    "kill-mid-del",
    "del-during-add",
    "uid-mismatch",
    "parallel-pods",
]
FAULTS_THICK = ["daemon-kill-between", "daemon-kill-during-add", "daemon-kill-during-del"]


def faults_for(mode: str) -> list[str]:
    return FAULTS_BOTH + (FAULTS_THICK if mode == "thick" else [])


class Cycle:
    def __init__(self, rig: Rig, index: int, rng: random.Random, tally: Tally) -> None:
        self.rig = rig
        self.mode = rig.mode
        self.rng = rng
        self.tally = tally
        self.fault = "none"
        self.deleted = False  # a fault that ran the DEL itself sets it
        self.note = ""  # what exactly the fault did, for the violation's detail
        self.foreign: list[str] = []  # entries the harness put in cniDir that DEL leaves alone by design
        self.index = index
        self.pod, self.uid, self.cid, self.netns = rig.new_pod(index)

    def run(self, fault: str) -> None:
        self.fault = fault
        self.tally.cycles[self.mode] += 1
        self.tally.faults[(self.mode, fault)] += 1
        started = time.monotonic()
        try:
            getattr(self, "_" + fault.replace("-", "_"))()
            if not self.deleted:
                self.delete()
            self.check_final()
        finally:
            self.rig.clear_delegate_action(self.cid)
            self.rig.drop_netns(self.netns)
            # The kernel removes a deleted netns's veth peers in the background: let them go
            # before the next cycle looks at the host.
            self.host_links_after(SETTLE)
            self.rig.api.delete_pod(NAMESPACE, self.pod)
            self.tally.fault_seconds[(self.mode, fault)] += time.monotonic() - started

    # -- calls --------------------------------------------------------------------------------

    def launch(self, command: str) -> subprocess.Popen[bytes]:
        return self.rig.launch(command, self.pod, self.uid, self.cid, self.netns)

    def finish(self, proc: subprocess.Popen[bytes], command: str) -> Outcome:
        outcome = self.rig.finish(proc)
        if outcome.code == "hung":
            self.violate("call-hung", f"{command} did not finish in {CALL_TIMEOUT} s (killed)")
        return outcome

    def call(self, command: str) -> Outcome:
        return self.finish(self.launch(command), command)

    def record_add(self, outcome: Outcome) -> Outcome:
        self.tally.add_codes[(self.mode, self.fault, outcome.code)] += 1
        return outcome

    def add(self) -> Outcome:
        return self.record_add(self.call("ADD"))

    def delete(self) -> Outcome:
        """DEL until it succeeds, at most DEL_ATTEMPTS times (each extra one is a retry)."""
        self.deleted = True
        outcome = Outcome("none")
        for attempt in range(DEL_ATTEMPTS):
            if self.rig.stop.is_set():
                return outcome
            if attempt:
                self.tally.del_retries[self.mode] += 1
                time.sleep(DEL_RETRY_PAUSE)
            self.tally.del_calls[self.mode] += 1
            outcome = self.call("DEL")
            if outcome.ok:
                return outcome
        self.violate(
            "del-never-succeeded", f"{DEL_ATTEMPTS} DELs failed, last: {outcome.code} {outcome.stdout}"
        )
        return outcome

    def violate(self, kind: str, detail: str) -> None:
        note = f" ({self.note})" if self.note else ""
        self.tally.violation(self.mode, kind, self.fault, f"{self.cid}{note}: {detail}")

    # -- checks ---------------------------------------------------------------------------------

    def check_after_add(self, outcome: Outcome) -> None:
        """After a completed ADD: all three attachments and their leases, or (failed) nothing."""
        links, leases = checks.netns_links(self.netns), checks.leases_of(self.rig.node.leases(), self.cid)
        if outcome.ok and (links != ATTACHED or len(leases) != len(ATTACHED)):
            self.violate("add-ok-incomplete", f"links {links}, leases {len(leases)} after a successful ADD")
        if not outcome.ok and outcome.code not in ("killed", "hung") and (links or leases):
            self.violate(
                "add-rollback-leak", f"ADD failed ({outcome.code}) but left links {links}, leases {leases}"
            )

    def check_final(self) -> None:
        if self.rig.stop.is_set():
            return  # interrupted: the rig's clean-up removes everything, nothing is counted
        pids = self.wait_for_processes()
        if pids:
            self.violate("delegate-process-left", "; ".join(checks.describe(p) for p in pids))
            checks.kill_all(pids)
        links = checks.netns_links(self.netns)
        if links:
            self.violate("links-in-netns", f"{links} left in the pod netns after DEL")
        host = self.host_links_after(HOST_SETTLE if not checks.netns_exists(self.netns) else 0.0)
        if host:
            self.violate("links-on-host", f"{host} left on the host after DEL")
            for name in host:
                checks.ip("link", "delete", name, check=False)
        leases = self.rig.node.leases()
        if leases:
            self.violate("leases-left", f"{[os.path.relpath(p, self.rig.root) for p in leases]}")
            checks.remove_files(leases)
        records = checks.deleted_records(self.rig.node.cni_dir)
        if records > DELETED_LIMIT:
            self.violate(
                "deleted-records-unbounded", f"{records} records of completed DELs > {DELETED_LIMIT}"
            )
        caches = [p for p in checks.cache_entries(self.rig.node.cni_dir) if p not in self.foreign]
        checks.remove_files(self.foreign)
        if caches:
            self.violate("cache-files-left", f"{[os.path.relpath(p, self.rig.root) for p in caches]}")
            checks.remove_files(caches)
        self.sample_daemon()

    def host_links_after(self, patience: float) -> list[str]:
        """The soak's links on the host, waiting up to ``patience`` s for them to go."""
        deadline = time.monotonic() + patience
        links = checks.host_links(self.rig.node.bridges, self.rig.parent)
        while links and time.monotonic() < deadline:
            time.sleep(0.05)
            links = checks.host_links(self.rig.node.bridges, self.rig.parent)
        return links

    def wait_for_processes(self) -> list[int]:
        deadline = time.monotonic() + SETTLE
        pids = checks.processes_with(self.cid)
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = checks.processes_with(self.cid)
        return pids

    def sample_daemon(self) -> None:
        pid = self.rig.daemon_pid
        sample = checks.sample_daemon(pid) if pid else None
        if sample is None:
            return
        samples = self.tally.daemon.setdefault(self.mode, [])
        samples.append(sample)
        for kind, detail in checks.daemon_over_bounds(samples):
            self.violate(kind, detail)

    # -- the faults -------------------------------------------------------------------------------

    def _none(self) -> None:
        self.check_after_add(self.add())

    def _delegate_fail(self) -> None:
        self.rig.set_delegate_action(self.cid, f"fail {self.rng.choice([7, 11, 101])}")
        self.check_after_add(self.add())

    def _delegate_hang(self) -> None:
        self.rig.set_delegate_action(self.cid, f"sleep {HANG}")
        self.check_after_add(self.add())

    def _delegate_del_fail(self) -> None:
        """The net1 delegate's DEL fails or hangs 1-3 times; the retried DEL must converge."""
        self.check_after_add(self.add())
        times = self.rng.randint(1, 3)
        action = self.rng.choice([f"fail {self.rng.choice([7, 11, 101])}", f"sleep {HANG}"])
        self.note = f"DEL of net1: {action}, {times} time(s)"
        self.rig.set_delegate_action(self.cid, f"{action} {times}", command="DEL")

    def _kill_mid_add(self) -> None:
        """containerd's CNI timeout: SIGKILL of the plugin process only, then DEL at once."""
        self.rig.set_delegate_action(self.cid, f"sleep {SLOW_DELEGATE}")
        proc = self.launch("ADD")
        delay = self.rng.uniform(0.02, SLOW_DELEGATE + 0.1)  # before, during or after net1
        self.note = f"multus killed {delay:.2f} s into the ADD"
        time.sleep(delay)
        proc.kill()
        self.record_add(self.finish(proc, "ADD"))
        if self.rng.random() < 0.3:  # the runtime tore the sandbox down before its DEL
            self.note += ", netns deleted before DEL"
            self.rig.drop_netns(self.netns)

    def _kill_mid_del(self) -> None:
        """The runtime's timeout hits a DEL: SIGKILL, then the DEL is retried."""
        self.check_after_add(self.add())
        proc = self.launch("DEL")
        delay = self.rng.uniform(0.0, 0.2)
        self.note = f"killed {delay:.2f} s into the DEL"
        time.sleep(delay)
        proc.kill()
        self.finish(proc, "DEL")
        self.tally.del_calls[self.mode] += 1

    def _del_during_add(self) -> None:
        """A DEL arrives while the ADD is still running (the runtime gave up on the pod)."""
        self.rig.set_delegate_action(self.cid, f"sleep {SLOW_DELEGATE}")
        proc = self.launch("ADD")
        delay = self.rng.uniform(0.02, SLOW_DELEGATE + 0.1)
        self.note = f"DEL {delay:.2f} s into the ADD"
        time.sleep(delay)
        self.delete()
        self.record_add(self.finish(proc, "ADD"))

    def _uid_mismatch(self) -> None:
        """The pod was deleted and re-created under the same name: the runtime's UID is the old one."""
        self.rig.api.delete_pod(NAMESPACE, self.pod)
        self.rig.recreate_pod(self.pod)
        outcome = self.add()
        if outcome.ok:
            self.violate(
                "uid-mismatch-accepted", f"ADD with a stale pod UID answered 0: {outcome.stdout[:200]}"
            )
        self.check_after_add(outcome)

    def _daemon_kill_during_add(self) -> None:
        slow = self.rng.choice([0, SLOW_DELEGATE])
        self.rig.set_delegate_action(self.cid, f"sleep {slow}")
        proc = self.launch("ADD")
        delay = self.rng.uniform(0.02, 1.0)
        self.note = f"daemon killed {delay:.2f} s into the ADD, net1 delegate sleeping {slow} s"
        time.sleep(delay)
        self.rig.kill_daemon()
        if self.rng.random() < 0.5:
            # The shim DELs from the on-disk cache while the dead daemon's delegates may still run.
            self.note += ", DEL while the daemon is down"
            self.record_add(self.finish(proc, "ADD"))
            self.delete()
            self.rig.restart_daemon()
            return
        self.rig.restart_daemon()
        self.record_add(self.finish(proc, "ADD"))

    def _daemon_kill_during_del(self) -> None:
        self.check_after_add(self.add())
        proc = self.launch("DEL")
        delay = self.rng.uniform(0.0, 0.2)
        self.note = f"daemon killed {delay:.2f} s into the DEL"
        time.sleep(delay)
        self.rig.kill_daemon()
        self.rig.restart_daemon()
        self.finish(proc, "DEL")
        self.tally.del_calls[self.mode] += 1

    def _daemon_kill_between(self) -> None:
        self.check_after_add(self.add())
        self.rig.kill_daemon()
        if self.rng.random() < 0.5:
            self.note = "DEL while the daemon is down"
            self.delete()  # the shim DELs from the on-disk cache while the daemon is down
            self.rig.restart_daemon()
        else:
            self.rig.restart_daemon()

    def _api_fault(
        self, status: int | None, *, retry_after: int | None = None, delay: float = 0.0, target: str = ""
    ) -> None:
        """The next 1-6 requests of one kind (enough to outlast the client's retries at times)."""
        targets: dict[str, dict[str, object]] = {
            "any request": {},
            "pod GET": {"method": "GET", "path_suffix": f"/pods/{self.pod}"},
            "NAD GET": {"method": "GET", "path_suffix": "/macvlan"},
            "event POST": {"method": "POST", "path_suffix": "/events"},
            "status write": {"method": ("PUT", "PATCH"), "path_suffix": "/status"},
        }
        # The status write only in its own fault kind (api-status-fail), so CI can leave it out.
        target = target or self.rng.choice(sorted(set(targets) - {"status write"}))
        count = self.rng.randint(1, 6)
        self.note = f"{count} x {target}"
        self.rig.api.inject(
            status,
            count=count,
            retry_after=retry_after,
            delay=delay,
            **targets[target],  # type: ignore[arg-type]
        )
        try:
            self.check_after_add(self.add())
        finally:
            self.rig.clear_api_faults()

    def _api_500(self) -> None:
        self._api_fault(500)

    def _api_429(self) -> None:
        self._api_fault(429, retry_after=self.rng.randint(0, 1))

    def _api_status_fail(self) -> None:
        """The network-status write fails, after every delegate ran (500 or 429, 1-6 times)."""
        status = self.rng.choice([500, 429])
        self._api_fault(status, retry_after=0 if status == 429 else None, target="status write")

    def _api_slow(self) -> None:
        self._api_fault(None, delay=self.rng.uniform(0.2, 0.8))

    def _api_drop(self) -> None:
        """The API server closes every connection for a moment (a restart, a network blip)."""
        self.rig.api.set_down(True)
        timer = threading.Timer(self.rng.uniform(0.1, 1.0), self.rig.api.set_down, (False,))
        timer.start()
        try:
            self.check_after_add(self.add())
        finally:
            timer.cancel()
            self.rig.api.set_down(False)

    def _netns_gone_before_del(self) -> None:
        self.check_after_add(self.add())
        self.rig.drop_netns(self.netns)

    def _corrupt_delegate_list(self) -> None:
        self.check_after_add(self.add())
        self.corrupt(str(self.rig.node.cni_dir / self.cid))

    def _corrupt_result_cache(self) -> None:
        self.check_after_add(self.add())
        results = self.rig.node.cni_dir / "results"
        names = sorted(os.listdir(results)) if results.is_dir() else []
        if names:
            self.corrupt(str(results / self.rng.choice(names)))

    def _hostile_cache_file(self) -> None:
        """What no crash leaves but a hostile or broken node can: a FIFO, a directory or a
        symlink to /dev/zero in place of a cache file (issue 9 defects 5d and 6)."""
        self.check_after_add(self.add())
        results = self.rig.node.cni_dir / "results"
        candidates = [self.rig.node.cni_dir / self.cid]
        candidates += [results / n for n in sorted(os.listdir(results))] if results.is_dir() else []
        path = self.rng.choice(candidates)
        if not path.exists():
            return
        path.unlink()
        how = self.rng.choice(["fifo", "directory", "dev-zero"])
        self.note = f"{how} in place of {os.path.relpath(path, self.rig.root)}"
        if how == "fifo":
            os.mkfifo(path, 0o600)
        elif how == "directory":
            # Not ours, so DEL leaves it alone (docs/troubleshooting.md, "What DEL guarantees" 5).
            path.mkdir()
            self.foreign.append(str(path))
        else:
            path.symlink_to("/dev/zero")

    def corrupt(self, path: str) -> None:
        """Truncate, empty or overwrite with garbage (what a crash or a bad disk leaves)."""
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            return  # the ADD failed before writing it
        how = self.rng.choice(["truncate", "empty", "garbage"])
        self.note = f"{how} {os.path.relpath(path, self.rig.root)}"
        replacement = {"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"\x00\xff{not json"}[how]
        with open(path, "wb") as handle:
            handle.write(replacement)

    def _repeated_add(self) -> None:
        first = self.add()
        self.check_after_add(first)
        self.add()
        if first.ok:
            links, leases = checks.netns_links(self.netns), checks.leases_of(self.rig.node.leases(), self.cid)
            if links != ATTACHED or len(leases) != len(ATTACHED):
                self.violate(
                    "repeated-add-destroyed-first",
                    f"after a second ADD the first ADD's pod has links {links}, {len(leases)} leases",
                )

    def _parallel_pods(self) -> None:
        """2-4 more pods ADDed and DELed at the same time as this one (the daemon's pool, the
        host-local store and the bridges shared between requests); each must end clean."""
        others = [
            Cycle(self.rig, PARALLEL_BASE + self.index * 4 + k, self.rng, self.tally)
            for k in range(self.rng.randint(2, 4))
        ]
        self.note = f"{len(others)} more pods"
        try:
            pods = [self, *others]
            for pod in others:
                pod.fault = self.fault
            adds = [pod.launch("ADD") for pod in pods]
            for pod, proc in zip(pods, adds, strict=True):
                pod.check_after_add(pod.record_add(pod.finish(proc, "ADD")))
            dels = [pod.launch("DEL") for pod in pods]
            for pod, proc in zip(pods, dels, strict=True):
                self.tally.del_calls[self.mode] += 1
                if pod.finish(proc, "DEL").ok:
                    pod.deleted = True
            for pod in others:
                if not pod.deleted:
                    pod.delete()
                pids = pod.wait_for_processes()
                if pids:
                    pod.violate("delegate-process-left", "; ".join(checks.describe(p) for p in pids))
                    checks.kill_all(pids)
                links = checks.netns_links(pod.netns)
                if links:
                    pod.violate("links-in-netns", f"{links} left in the pod netns after DEL")
        finally:
            for pod in others:
                pod.rig.clear_delegate_action(pod.cid)
                pod.rig.drop_netns(pod.netns)
                pod.rig.api.delete_pod(NAMESPACE, pod.pod)

    def _repeated_del(self) -> None:
        self.check_after_add(self.add())
        self.delete()
        again = self.call("DEL")
        self.tally.del_calls[self.mode] += 1
        if not again.ok:
            self.violate("repeated-del-failed", f"a second DEL answered {again.code} {again.stdout}")
