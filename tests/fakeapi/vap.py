"""A small ValidatingAdmissionPolicy evaluator for tests, on cel-python (``celpy``): used by
tests/deploy/test_policy.py and by the fake API server's admission path (``admission_policies``).

It does what kube-apiserver does for the parts our policies use (wire fact 22): ``matchConstraints
.resourceRules`` (group, version, operation, resource[/subresource]), ``matchConditions`` (all must
be true), then ``validations`` in order; the first false one denies with its ``message`` or
``messageExpression``: 403 ``Forbidden`` when it has ``reason: Forbidden``, else 422 ``Invalid``,
the message reading ``<resource> "<name>" is forbidden: ValidatingAdmissionPolicy '<policy>' with
binding '<binding>' denied request: <message>``.

What it cannot tell: cel-python is not cel-go. Kubernetes type-checks expressions against the
OpenAPI schema and adds its CEL libraries (strings, lists, regex, quantity, ...); this evaluator
runs them untyped on JSON. Expressions that use only standard CEL behave the same; a type error
that kube-apiserver would reject when the policy is created shows up here only when evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import celpy
from celpy.adapter import json_to_cel

Obj = dict[str, Any]


@dataclass
class Decision:
    allowed: bool
    code: int = 200
    reason: str = ""
    message: str = ""
    cause: str = ""  # the Status details' cause: the message without "<resource> "<name>" is forbidden: "


def request(
    username: str,
    *,
    resource: str,
    operation: str,
    name: str,
    namespace: str = "default",
    sub_resource: str = "",
    groups: tuple[str, ...] = (),
) -> Obj:
    """An AdmissionRequest as CEL's ``request`` variable sees it (core group, v1)."""
    return {
        "resource": {"group": "", "version": "v1", "resource": resource},
        "subResource": sub_resource,
        "operation": operation,
        "name": name,
        "namespace": namespace,
        "userInfo": {"username": username, "groups": list(groups)},
    }


def _matches_rules(policy: Obj, req: Obj) -> bool:
    full = req["resource"]["resource"] + (f"/{req['subResource']}" if req["subResource"] else "")
    for rule in policy["spec"]["matchConstraints"]["resourceRules"]:
        if (
            req["resource"]["group"] in rule["apiGroups"]
            and req["resource"]["version"] in rule["apiVersions"]
            and (req["operation"] in rule["operations"] or "*" in rule["operations"])
            and full in rule["resources"]
        ):
            return True
    return False


def _evaluate(expression: str, activation: dict[str, Any]) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(expression)).evaluate(activation)


def admit(
    policy: Obj, binding: Obj, req: Obj, obj: Obj | None, old: Obj | None, namespace_labels: Obj | None = None
) -> Decision:
    """The policy's verdict on one request (allowed when it does not match). ``namespace_labels``:
    the labels of the request's namespace, for the binding's ``matchResources.namespaceSelector``
    (``matchLabels`` only)."""
    if binding["spec"]["policyName"] != policy["metadata"]["name"] or not _matches_rules(policy, req):
        return Decision(True)
    wanted = binding["spec"].get("matchResources", {}).get("namespaceSelector", {}).get("matchLabels", {})
    if any((namespace_labels or {}).get(key) != value for key, value in wanted.items()):
        return Decision(True)
    activation = {
        "request": json_to_cel(req),
        "object": json_to_cel(obj),
        "oldObject": json_to_cel(old),
    }
    for condition in policy["spec"].get("matchConditions", []):
        if not bool(_evaluate(condition["expression"], activation)):
            return Decision(True)
    for validation in policy["spec"]["validations"]:
        if bool(_evaluate(validation["expression"], activation)):
            continue
        if "messageExpression" in validation:
            text = str(_evaluate(validation["messageExpression"], activation))
        else:
            text = validation.get("message") or f"failed expression: {validation['expression']}"
        forbidden = validation.get("reason") == "Forbidden"
        names = f"'{policy['metadata']['name']}' with binding '{binding['metadata']['name']}'"
        cause = f"ValidatingAdmissionPolicy {names} denied request: {text}"
        message = f'{req["resource"]["resource"]} "{req["name"]}" is forbidden: {cause}'
        code, reason = (403, "Forbidden") if forbidden else (422, "Invalid")
        return Decision(False, code, reason, message, cause)
    return Decision(True)
