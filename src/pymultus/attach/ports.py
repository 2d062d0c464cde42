"""The ports of the attach layer: what the use cases need from the outside world.

Entry points build concrete adapters (live API client, informer caches, embedded manifests,
netns operations) and hand them in; the use cases never construct I/O themselves.

Pods and NetworkAttachmentDefinitions travel as plain decoded Kubernetes JSON objects
(``dict``), exactly as the API server returns them, so every source (live GET, daemon cache,
embedded YAML manifests) produces the same shape.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Protocol

    KubeObject = dict[str, object]

    class PodSource(Protocol):
        """Where pods and NetworkAttachmentDefinitions come from, and where status goes."""

        def get_pod(self, namespace: str, name: str, *, uid: str | None) -> KubeObject | None:
            """The pod, or None when it does not exist; a pod of that name whose UID is not
            ``uid`` (static/mirror pods excepted) raises ``errors.PodUidMismatch``."""
            ...

        def get_network_attachment(self, namespace: str, name: str) -> KubeObject | None:
            """The NetworkAttachmentDefinition, or None when it does not exist."""
            ...

        def write_network_status(self, pod: KubeObject, status: Sequence[Mapping[str, object]]) -> None:
            """Publish ``k8s.v1.cni.cncf.io/network-status`` on the pod (conflict-safe)."""
            ...

        def record_event(self, pod: KubeObject, *, kind: str, reason: str, message: str) -> None:
            """Record an Event on the pod; ``kind`` is "Normal" or "Warning". Never raises."""
            ...

    class NetnsOps(Protocol):
        """Operations inside a pod's network namespace (``pymultus.netns``)."""

        def netns_exists(self, path: str) -> bool: ...

        def pod_netns_problem(self, path: str) -> str:
            """Why ``path`` cannot be a pod's network namespace, or "" (e.g. the caller's own)."""
            ...

        def interface_exists(self, netns: str, ifname: str) -> bool: ...

        def replace_default_routes(
            self, netns: str, ifname: str, *, remove_families: Sequence[int], gateways: Sequence[str]
        ) -> None:
            """Delete the default routes of ``remove_families`` (4, 6) on ``ifname``; then add a
            default route via each of ``gateways`` on ``ifname`` (an existing identical route is fine)."""
            ...
