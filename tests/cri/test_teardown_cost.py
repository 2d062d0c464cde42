"""What one pod lifecycle under containerd costs: plugin execs and API requests per CRI call.

containerd sends one ADD (RunPodSandbox) and three DELs (StopPodSandbox with the netns, then
StopPodSandbox again and RemovePodSandbox without it). Go Multus, for comparison, GETs the pod on
every ADD and DEL, GETs each NAD and writes the pod status.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.cri.rig import CriRig

pytestmark = pytest.mark.netns

# Execs that are not pymultus's delegates: containerd's own loopback, and the plugin itself.
OWN_EXECS = ("loopback", "multus", "multus-shim")


def api_calls(rig: CriRig, pod: str) -> Counter[str]:
    """The fake API server's requests about ``pod`` and NADs, by kind (watches and lists excluded)."""
    assert rig.api is not None
    kinds: Counter[str] = Counter()
    for request in rig.api.requests:
        if "watch" in request.query:
            continue
        if request.method == "GET" and request.path.endswith(f"/pods/{pod}"):
            kinds["GET pod"] += 1
        elif request.method == "GET" and "/network-attachment-definitions/" in request.path:
            kinds["GET NAD"] += 1
        elif request.method in ("PUT", "PATCH") and request.path.endswith(f"/pods/{pod}/status"):
            kinds["status write"] += 1
        elif request.method == "POST" and request.path.endswith("/events"):
            kinds["POST event"] += 1
        elif request.path.endswith(f"/pods/{pod}") or "/network-attachment-definitions" in request.path:
            kinds[f"{request.method} other"] += 1
    return kinds


def test_cost_of_one_pod_lifecycle(rig: CriRig) -> None:
    assert rig.cri is not None
    nads = [rig.network(), rig.network()]
    pod = rig.pod(nads)
    steps: dict[str, tuple[list[str], Counter[str]]] = {}
    sandbox_id = ""

    def step(name: str, call: object) -> None:
        """The delegates pymultus ran and the API requests made during one CRI call."""
        before = len(rig.execs(sandbox_id)) if sandbox_id else 0
        if rig.api is not None:
            rig.api.reset_requests()
        call()  # type: ignore[operator]
        execs = [plugin for _, plugin, _ in rig.execs(sandbox_id)[before:] if plugin not in OWN_EXECS]
        steps[name] = (execs, api_calls(rig, pod.name) if rig.api is not None else Counter())

    def run() -> None:
        nonlocal sandbox_id
        sandbox_id = rig.run(pod).id

    step("RunPodSandbox", run)
    step("StopPodSandbox", lambda: rig.cri.stop(sandbox_id))  # type: ignore[union-attr]
    step("StopPodSandbox again", lambda: rig.cri.stop(sandbox_id))  # type: ignore[union-attr]
    step("RemovePodSandbox", lambda: rig.cri.remove(sandbox_id))  # type: ignore[union-attr]
    for name, (execs, calls) in steps.items():
        print(f"{rig.mode}: {name}: {len(execs)} delegate execs, API: {dict(calls)}")
    run_execs, run_api = steps["RunPodSandbox"]
    stop_execs, stop_api = steps["StopPodSandbox"]
    # The cluster network's chain (bridge, portmap, bandwidth, recorder: host-local too) and
    # bridge + host-local for each of the two networks; the first DEL runs them all again.
    assert len(run_execs) == len(stop_execs) == 9, (run_execs, stop_execs)
    assert stop_api == Counter()  # DEL works from the on-disk record
    # The later DELs (Stop again, Remove) cost one start of the plugin and nothing else.
    for later in ("StopPodSandbox again", "RemovePodSandbox"):
        assert steps[later] == ([], Counter()), (later, steps[later])
    if rig.mode == "kube":
        assert (run_api["GET pod"], run_api["GET NAD"], run_api["status write"]) == (1, 2, 1), run_api
    elif rig.mode == "thick":  # the pod and its NADs come from the daemon's informer caches
        assert (run_api["GET pod"], run_api["GET NAD"], run_api["status write"]) == (0, 0, 1), run_api
    assert rig.nothing_left() == {}
