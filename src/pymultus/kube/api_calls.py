"""Every Kubernetes API call pymultus makes, as (verb, apiGroup, resource[/subresource]).

The deploy helper derives the RBAC ClusterRole from :data:`API_CALLS`, and a unit test drives
every client method against the fake API server and checks each request it saw with
:func:`classify`, so the list cannot fall behind the code.

``patch pods/status`` is how the network-status annotation is written (a merge-patch needs no
resourceVersion and never clobbers kubelet's status); ``update pods/status`` is the fallback used
when only Go Multus's ClusterRole (get/update) is granted.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

NAD_GROUP = "k8s.cni.cncf.io"
DRA_GROUP = "resource.k8s.io"
CSR_GROUP = "certificates.k8s.io"

API_CALLS: tuple[tuple[str, str, str], ...] = (
    ("get", "", "pods"),
    ("list", "", "pods"),
    ("watch", "", "pods"),
    ("update", "", "pods/status"),
    ("patch", "", "pods/status"),
    ("create", "", "events"),
    # Thin installer: a Node-bound token for the host kubeconfig, for its own service account only
    # (granted by a Role with resourceNames, not by the ClusterRole).
    ("create", "", "serviceaccounts/token"),
    ("get", NAD_GROUP, "network-attachment-definitions"),
    ("list", NAD_GROUP, "network-attachment-definitions"),
    ("watch", NAD_GROUP, "network-attachment-definitions"),
    # DRA (pymultus.kube.dra), only for pods with ResourceClaims: GET each claim of the pod, LIST the
    # driver's ResourceSlices of the pod's node (fieldSelector spec.nodeName + spec.driver).
    ("get", DRA_GROUP, "resourceclaims"),
    ("list", DRA_GROUP, "resourceslices"),
    # Per-node certificates (pymultus.kube.certs), thick mode with perNodeCertificate: create the
    # node's CSR, watch it by name for the certificate (GET after an expired watch).
    ("create", CSR_GROUP, "certificatesigningrequests"),
    ("get", CSR_GROUP, "certificatesigningrequests"),
    ("watch", CSR_GROUP, "certificatesigningrequests"),
)

# pymultus cert-approver (pymultus.kube.csr_approver), its own ClusterRole in deploy/cert-approver;
# approving also needs the non-HTTP RBAC verb "approve" on signers/kubernetes.io/kube-apiserver-client.
APPROVER_API_CALLS: tuple[tuple[str, str, str], ...] = (
    ("list", CSR_GROUP, "certificatesigningrequests"),
    ("watch", CSR_GROUP, "certificatesigningrequests"),
    ("update", CSR_GROUP, "certificatesigningrequests/approval"),
    ("create", "", "events"),
)


def classify(method: str, path: str, query: Mapping[str, str] | None = None) -> tuple[str, str, str]:
    """The RBAC (verb, apiGroup, resource[/subresource]) of one request, as kube-apiserver's
    RequestInfoFactory derives it: ``/api/v1/...`` is the core group, ``/apis/<group>/<version>/...``
    a named one; a GET of a collection is ``list`` (``watch`` with ``watch=true``)."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        raise ValueError(f"not a resource path: {path}")
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        rest = rest[2:]  # namespaced: drop "namespaces/<ns>" (but /api/v1/namespaces/<ns> is a namespace)
    if not rest:
        raise ValueError(f"not a resource path: {path}")
    resource = rest[0]
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    watch = (query or {}).get("watch") in ("true", "1")
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
    if verb is None:
        verb = "watch" if watch else ("get" if named else "list")
    elif verb == "delete" and not named:
        verb = "deletecollection"
    return verb, group, resource
