"""deploy/policy: the ValidatingAdmissionPolicy that lets a per-node identity (system:multus:<node>)
write pods/status and create Events only for pods of its own node, evaluated with cel-python.

The evaluator (tests/fakeapi/vap.py, also the fake API server's admission path) is first checked
against kube-apiserver itself: the recorded policy of tests/data/k8s-wire (cases 47-49) must give
the recorded verdicts, codes and messages. What remains unverified: that cel-go type-checks our
expressions as cel-python runs them (the policy is accepted by the OpenAPI schema,
tests/deploy/test_manifests.py; no API server runs here).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import manifests as m
from tests.fakeapi.vap import Decision, admit, request

WIRE = Path(__file__).resolve().parents[1] / "data" / "k8s-wire"
NODE = "node-a"
ME = f"system:multus:{NODE}"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"


def _policy() -> tuple[dict[str, Any], dict[str, Any]]:
    docs = m.render("policy")
    (policy,) = m.find(docs, "ValidatingAdmissionPolicy")
    (binding,) = m.find(docs, "ValidatingAdmissionPolicyBinding")
    return policy, binding


def pod(name: str, node: str | None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "pause"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": {}},
        "spec": spec,
        "status": status or {"phase": "Pending", "qosClass": "BestEffort"},
    }


def status_write(user: str, old: dict[str, Any], *, new_status: dict[str, Any] | None = None) -> Decision:
    policy, binding = _policy()
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][NETWORK_STATUS] = "[]"
    if new_status is not None:
        new["status"] = new_status
    req = request(
        user, resource="pods", sub_resource="status", operation="UPDATE", name=old["metadata"]["name"]
    )
    return admit(policy, binding, req, new, old)


def event(user: str, kind: str) -> Decision:
    policy, binding = _policy()
    obj = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "p.1", "namespace": "default"},
        "involvedObject": {"kind": kind, "namespace": "default", "name": "p"},
        "reason": "AddedInterface",
    }
    return admit(policy, binding, request(user, resource="events", operation="CREATE", name="p.1"), obj, None)


def test_own_pod_status_is_allowed() -> None:
    assert status_write(ME, pod("mine", NODE)).allowed


def test_pod_of_another_node_is_forbidden_naming_both() -> None:
    decision = status_write(ME, pod("other", "node-b"))
    assert (decision.allowed, decision.code, decision.reason) == (False, 403, "Forbidden")
    assert decision.message == (
        "pods \"other\" is forbidden: ValidatingAdmissionPolicy 'pymultus-node-own-pods' with binding "
        "'pymultus-node-own-pods' denied request: "
        f"pods/status of a pod on node node-b may not be written by {ME}"
    )


@pytest.mark.parametrize("user", [f"{ME}x", "system:multus:node", "system:multus:"])
def test_near_miss_identities_are_forbidden(user: str) -> None:
    assert not status_write(user, pod("mine", NODE)).allowed


def test_unscheduled_pod_is_forbidden() -> None:
    decision = status_write(ME, pod("pending", None))
    assert not decision.allowed
    assert "on node (none) may not be written" in decision.message


def test_changing_the_pods_status_itself_is_forbidden() -> None:
    decision = status_write(ME, pod("mine", NODE), new_status={"phase": "Running", "qosClass": "BestEffort"})
    assert (decision.allowed, decision.code) == (False, 403)
    assert decision.message.endswith("may change only the pod's annotations through pods/status")


@pytest.mark.parametrize(
    "user",
    ["system:serviceaccount:kube-system:pymultus", "admin", "system:node:node-a", "system:multusx:node-b"],
)
def test_other_identities_are_not_matched(user: str) -> None:
    assert status_write(user, pod("other", "node-b"), new_status={"phase": "Failed"}).allowed


def test_events_about_pods_only() -> None:
    assert event(ME, "Pod").allowed
    denied = event(ME, "Node")
    assert (denied.allowed, denied.code) == (False, 403)
    assert denied.message.endswith("may create Events about pods only")
    assert event("system:serviceaccount:kube-system:pymultus", "Node").allowed


def test_other_operations_and_resources_are_not_matched() -> None:
    policy, binding = _policy()
    other = pod("other", "node-b")
    for req in (
        request(ME, resource="pods", operation="UPDATE", name="other"),  # the pod itself: RBAC refuses it
        request(ME, resource="pods", sub_resource="status", operation="CREATE", name="other"),
    ):
        assert admit(policy, binding, req, other, other).allowed


# -- the evaluator against kube-apiserver's recorded answers -----------------------------------------


def _recorded(prefix: str) -> tuple[int, dict[str, Any]]:
    (path,) = WIRE.glob(f"{prefix}-*.http")
    head, _, body = path.read_bytes().partition(b"\r\n\r\n")
    code = int(head.split(b" ", 2)[1])
    if b"Transfer-Encoding: chunked" in head:
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return code, json.loads(body)


def _wire_policy(reason: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The policy and binding of the recording (tests/data/k8s-wire/README.md, "Policy set-up")."""
    text = (WIRE / "README.md").read_text()
    docs = [
        json.loads(line.strip()) for line in text.splitlines() if '"kind":"ValidatingAdmissionPolicy' in line
    ]
    policy, binding = docs
    if reason:
        policy["spec"]["validations"][0]["reason"] = reason
    return policy, binding


@pytest.mark.parametrize(
    ("case", "pod_name", "node", "reason"),
    [("47", "vap-other", "wire2-other", None), ("48", "vap-mine", "wire2-node", None),
     ("49", "vap-other", "wire2-other", "Forbidden")],
)  # fmt: skip
def test_evaluator_gives_the_recorded_verdicts(
    case: str, pod_name: str, node: str, reason: str | None
) -> None:
    policy, binding = _wire_policy(reason)
    code, body = _recorded(case)
    target = pod(pod_name, node)
    target["metadata"]["namespace"] = "wire2"
    req = request(
        "system:serviceaccount:wire2:wire2-node", resource="pods", sub_resource="status", operation="UPDATE",
        name=pod_name, namespace="wire2",
    )  # fmt: skip
    decision = admit(policy, binding, req, target, target, {"kubernetes.io/metadata.name": "wire2"})
    if code == 200:
        assert decision.allowed
        return
    assert (decision.code, decision.reason, decision.message) == (code, body["reason"], body["message"])
    assert body["details"]["causes"] == [{"message": decision.cause}]


# -- the policy on the fake API server's admission path, with pymultus's own status writer ----------


def test_policy_on_the_fake_api_lets_a_node_write_only_its_own_pods(fake_api: Any, tmp_path: Path) -> None:
    from pymultus import errors
    from pymultus.kube.api_calls import API_CALLS
    from pymultus.kube.auth import load_kubeconfig
    from pymultus.kube.client import KubeClient
    from pymultus.kube.pods import ApiPodSource

    policy, binding = _policy()
    fake_api.admission_policies.append((policy, binding))
    fake_api.add_user(ME, groups=["system:multus"], allowed=frozenset(API_CALLS))
    cert, key = fake_api.pki.client(ME, "system:multus")
    client = KubeClient(
        load_kubeconfig(str(fake_api.write_kubeconfig(tmp_path / "kc", client_cert=(cert, key))))
    )
    source = ApiPodSource(client, sleep=lambda _s: None)
    try:
        fake_api.create_pod("default", "mine", node_name=NODE)
        fake_api.create_pod("default", "other", node_name="node-b")
        status = [
            {"name": "net-a", "interface": "net1", "ips": ["10.1.0.5"], "mac": "02:00:00:00:00:01", "dns": {}}
        ]
        source.write_network_status(client.get_pod("default", "mine"), status)
        with pytest.raises(
            errors.KubeForbidden, match="pods/status of a pod on node node-b may not be written by"
        ):
            source.write_network_status(client.get_pod("default", "other"), status)
    finally:
        client.close()
    mine = fake_api.get_pod("default", "mine")["metadata"]["annotations"]
    other = fake_api.get_pod("default", "other")["metadata"].get("annotations") or {}
    assert NETWORK_STATUS in mine and NETWORK_STATUS not in other
