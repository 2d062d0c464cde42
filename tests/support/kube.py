"""A Kubernetes API for tests: the fake API server by default, a real cluster on request.

Set ``PYMULTUS_TEST_KUBECONFIG`` to a kubeconfig and the same tests run against that cluster:
``kube_env`` then creates its own namespace per test (and the NetworkAttachmentDefinition CRD if
it is missing) and removes what it created. Everything goes through the HTTP API with
``pymultus.kube.client.KubeClient``, so both back ends behave the same; the fake's test hooks
(fault injection, down, compaction, ...) are on ``kube_env.fake``, which is None on a real
cluster — a test that needs them skips there with ``kube_env.require_fake()``.

Pods are never run: on a real cluster they get a scheduler name nobody serves (and no node unless
the test asks), so no kubelet ever starts them and no real CNI is invoked.

Use in a conftest: ``from tests.support.kube import fake_api, fake_api_pki, kube_env  # noqa: F401``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymultus.errors import KubeConflict, KubeNotFound
from pymultus.kube.auth import load_kubeconfig
from pymultus.kube.client import KubeClient, nad_path, pod_path
from tests.fakeapi.certs import Pki
from tests.fakeapi.server import CRD_PATH, FakeApiServer

KUBECONFIG_ENV = "PYMULTUS_TEST_KUBECONFIG"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
NO_SCHEDULER = "pymultus-test-no-scheduler"  # keeps real-cluster test pods Pending forever

Obj = dict[str, object]

NAD_CRD: Obj = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "network-attachment-definitions.k8s.cni.cncf.io"},
    "spec": {
        "group": "k8s.cni.cncf.io",
        "scope": "Namespaced",
        "names": {
            "plural": "network-attachment-definitions",
            "singular": "network-attachment-definition",
            "kind": "NetworkAttachmentDefinition",
            "shortNames": ["net-attach-def"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {"type": "object", "properties": {"config": {"type": "string"}}},
                        },
                    }
                },
            }
        ],
    },
}


class KubeEnv:
    """The common test interface over the fake server or a real cluster."""

    def __init__(self, client: KubeClient, kubeconfig_path: Path, *, fake: FakeApiServer | None) -> None:
        self.client = client
        self.kubeconfig_path = kubeconfig_path
        self.fake = fake
        self.namespace = f"pymultus-{uuid.uuid4().hex[:8]}"
        self._namespaces: list[str] = []
        self._crd_created = False
        if fake is None:
            self._ensure_crd()
        self.create_namespace(self.namespace)

    @property
    def is_fake(self) -> bool:
        return self.fake is not None

    def require_fake(self) -> FakeApiServer:
        """The fake server, or skip: fault injection does not exist on a real cluster."""
        if self.fake is None:
            pytest.skip("needs the fake API server's test hooks (not available on a real cluster)")
        return self.fake

    # -- objects ----------------------------------------------------------------------------

    def create_namespace(self, name: str) -> str:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        try:
            self.client.request("POST", "/api/v1/namespaces", body=json.dumps(body).encode())
            self._namespaces.append(name)
        except KubeConflict:
            pass  # already there (e.g. "default")
        return name

    def create_pod(
        self,
        name: str,
        *,
        namespace: str | None = None,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        node_name: str | None = None,
        networks: str | list[Obj] | None = None,
    ) -> Obj:
        """Create a pod that never runs; ``networks`` sets the networks annotation (a string, or
        a list that is JSON-encoded)."""
        annotations = dict(annotations or {})
        if networks is not None:
            annotations[NETWORKS] = networks if isinstance(networks, str) else json.dumps(networks)
        ns = namespace or self.namespace
        meta: Obj = {"name": name, "namespace": ns}
        if labels:
            meta["labels"] = labels
        if annotations:
            meta["annotations"] = annotations
        spec: Obj = {
            "containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}],
            "automountServiceAccountToken": False,
            "schedulerName": NO_SCHEDULER,
        }
        if node_name:
            spec["nodeName"] = node_name
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        return self.client.request("POST", f"/api/v1/namespaces/{ns}/pods", body=json.dumps(body).encode())

    def create_nad(
        self,
        name: str,
        config: str | Obj | None = None,
        *,
        namespace: str | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Obj:
        """Create a NetworkAttachmentDefinition; ``config`` None: an empty spec (resolved from confDir)."""
        ns = namespace or self.namespace
        meta: Obj = {"name": name, "namespace": ns}
        if annotations:
            meta["annotations"] = annotations
        spec: Obj = {}
        if config is not None:
            spec["config"] = config if isinstance(config, str) else json.dumps(config)
        body = {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": meta,
            "spec": spec,
        }
        path = f"/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions"
        return self.client.request("POST", path, body=json.dumps(body).encode())

    def get_pod(self, name: str, *, namespace: str | None = None) -> Obj | None:
        try:
            return self.client.get_pod(namespace or self.namespace, name)
        except KubeNotFound:
            return None

    def get_nad(self, name: str, *, namespace: str | None = None) -> Obj | None:
        try:
            return self.client.get_network_attachment(namespace or self.namespace, name)
        except KubeNotFound:
            return None

    def delete_pod(self, name: str, *, namespace: str | None = None) -> None:
        """Delete at once (gracePeriodSeconds=0); a missing pod is fine."""
        try:
            self.client.request(
                "DELETE", pod_path(namespace or self.namespace, name), params={"gracePeriodSeconds": 0}
            )
        except KubeNotFound:
            pass

    def delete_nad(self, name: str, *, namespace: str | None = None) -> None:
        try:
            self.client.request("DELETE", nad_path(namespace or self.namespace, name))
        except KubeNotFound:
            pass

    def events_for(self, pod: str, *, namespace: str | None = None) -> list[Obj]:
        """The Events whose involvedObject is the pod ``pod``, oldest first."""
        ns = namespace or self.namespace
        items, _rv = self.client.list(
            f"/api/v1/namespaces/{ns}/events", {"fieldSelector": f"involvedObject.name={pod}"}
        )
        return sorted(items, key=lambda e: str(e.get("firstTimestamp") or ""))

    def network_status(self, pod: str, *, namespace: str | None = None) -> list[Obj] | None:
        """The pod's decoded ``network-status`` annotation (None when absent or no pod)."""
        obj = self.get_pod(pod, namespace=namespace)
        annotations = (obj or {}).get("metadata", {}).get("annotations") or {}  # type: ignore[union-attr]
        value = annotations.get(NETWORK_STATUS)
        return json.loads(value) if isinstance(value, str) else None

    # -- set-up and clean-up ----------------------------------------------------------------

    def cleanup(self) -> None:
        for ns in reversed(self._namespaces):
            try:
                self.client.request("DELETE", f"/api/v1/namespaces/{ns}")
            except KubeNotFound:
                pass
        if self._crd_created:
            try:
                self.client.request("DELETE", CRD_PATH)
            except KubeNotFound:
                pass
        self.client.close()

    def _ensure_crd(self) -> None:
        try:
            self.client.request("GET", CRD_PATH)
            return
        except KubeNotFound:
            pass
        path = CRD_PATH.rsplit("/", 1)[0]
        self.client.request("POST", path, body=json.dumps(NAD_CRD).encode())
        self._crd_created = True
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            crd = self.client.request("GET", CRD_PATH)
            conditions = (crd.get("status") or {}).get("conditions") or []  # type: ignore[union-attr]
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                return
            time.sleep(0.2)
        raise RuntimeError("the NetworkAttachmentDefinition CRD did not become Established within 30 s")


def real_cluster_kubeconfig() -> Path | None:
    value = os.environ.get(KUBECONFIG_ENV)
    return Path(value) if value else None


@pytest.fixture(scope="session")
def fake_api_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One CA + server certificate per test session (openssl takes a few tens of ms)."""
    return Pki(tmp_path_factory.mktemp("fakeapi-pki"))


@pytest.fixture
def fake_api(tmp_path_factory: pytest.TempPathFactory, fake_api_pki: Pki) -> Iterator[FakeApiServer]:
    """A fresh fake API server on 127.0.0.1:<ephemeral> for one test."""
    server = FakeApiServer(tmp_path_factory.mktemp("fakeapi"), pki=fake_api_pki).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kube_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEnv]:
    """The fake API server (default) or the cluster of ``PYMULTUS_TEST_KUBECONFIG``."""
    real = real_cluster_kubeconfig()
    if real is not None:
        env = KubeEnv(KubeClient(load_kubeconfig(str(real)), user_agent="pymultus-tests"), real, fake=None)
    else:
        server: FakeApiServer = request.getfixturevalue("fake_api")
        kubeconfig = server.write_kubeconfig(tmp_path_factory.mktemp("kubeconfig") / "kubeconfig")
        env = KubeEnv(
            KubeClient(load_kubeconfig(str(kubeconfig)), user_agent="pymultus-tests"), kubeconfig, fake=server
        )
    try:
        yield env
    finally:
        env.cleanup()
