"""The thin host kubeconfig outlives the installer pod: `pymultus install --mode thin` (a real
subprocess, as in the DaemonSet) writes a TokenRequest token bound to the Node, not the pod's own
projected token, renews it at half its life, and falls back to the pod's token (with a warning)
only while the TokenRequest is refused. Against the fake API server, which issues the tokens."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pymultus.errors import KubeUnauthorized
from pymultus.kube.api_calls import API_CALLS
from pymultus.kube.auth import load_kubeconfig
from pymultus.kube.client import KubeClient
from tests.fakeapi import FakeApiServer
from tests.support.waiting import wait_until

SA_USER = "system:serviceaccount:kube-system:pymultus"
NODE = "node-a"
PRIMARY = {"cniVersion": "0.3.1", "name": "br", "type": "bridge"}


def pod_token(suffix: str) -> str:
    """A token shaped like a projected service account token (a JWT naming the account)."""

    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {"sub": SA_USER, "kubernetes.io": {"pod": {"name": f"pymultus-{suffix}"}}}
    return f"{part({'alg': 'RS256'})}.{part(claims)}.sig-{suffix}"


class Pod:
    """The installer pod's view: a service account dir and the in-cluster environment."""

    def __init__(self, root: Path, api: FakeApiServer, *, allowed: frozenset[tuple[str, str, str]]) -> None:
        self.token = pod_token(root.name)
        api.add_token(self.token, SA_USER, allowed=allowed)
        self.sa = root / "sa"
        self.sa.mkdir(parents=True)
        (self.sa / "token").write_text(self.token)
        (self.sa / "ca.crt").write_bytes(api.ca_file.read_bytes())
        (self.sa / "namespace").write_text("kube-system")
        self.bin = root / "bin"
        self.conf = root / "net.d"
        self.bin.mkdir()
        self.conf.mkdir()
        (self.conf / "10-br.conf").write_text(json.dumps(PRIMARY))
        self.kubeconfig = self.conf / "multus.d" / "multus.kubeconfig"
        self.env = {
            "PATH": "/usr/bin:/bin",
            "KUBERNETES_SERVICE_HOST": api.host,
            "KUBERNETES_SERVICE_PORT": str(api.port),
            "MULTUS_NODE_NAME": NODE,
        }

    def argv(self, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "pymultus", "install", "--mode", "thin", "--skip-binary-copy",
            "--cni-bin-dir", str(self.bin), "--cni-conf-dir", str(self.conf),
            "--service-account-dir", str(self.sa), *extra,
        ]  # fmt: skip

    def kubeconfig_token(self) -> str:
        doc = json.loads(self.kubeconfig.read_text())
        return str(doc["users"][0]["user"]["token"])


@pytest.fixture
def allowed() -> frozenset[tuple[str, str, str]]:
    return frozenset(API_CALLS)


@pytest.fixture
def pod(tmp_path: Path, fake_api: FakeApiServer, allowed: frozenset[tuple[str, str, str]]) -> Pod:
    return Pod(tmp_path / "pod", fake_api, allowed=allowed)


def get_pod_with(kubeconfig: Path, api: FakeApiServer) -> None:
    if api.get_pod("default", "probe") is None:
        api.create_pod("default", "probe")
    client = KubeClient(load_kubeconfig(str(kubeconfig)), retries=0)
    try:
        client.get_pod("default", "probe")
    finally:
        client.close()


def test_the_kubeconfig_token_is_bound_to_the_node_and_survives_the_pod(
    pod: Pod, fake_api: FakeApiServer, tmp_path: Path
) -> None:
    proc = subprocess.run(
        pod.argv("--no-watch"), check=False, env=pod.env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    (request,) = fake_api.token_requests
    assert request["spec"] == {
        "expirationSeconds": 86400,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Node", "name": NODE},
    }
    token = pod.kubeconfig_token()
    assert token not in (pod.token, "")
    # The installer pod is deleted (its bound token dies with it): the host kubeconfig still works.
    del fake_api.tokens[pod.token]
    get_pod_with(pod.kubeconfig, fake_api)
    dead = tmp_path / "pod-token.kubeconfig"
    fake_api.write_kubeconfig(dead, token=pod.token, token_file=False)
    with pytest.raises(KubeUnauthorized):
        get_pod_with(dead, fake_api)


@pytest.fixture
def watcher(pod: Pod) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        pod.argv("--watch-interval", "0.1"), env=pod.env, stderr=subprocess.PIPE, text=True
    )
    yield proc
    proc.terminate()
    proc.wait(30)
    assert proc.stderr is not None
    proc.stderr.close()


def test_the_token_is_renewed_at_half_its_life(
    pod: Pod, fake_api: FakeApiServer, watcher: subprocess.Popen[str]
) -> None:
    fake_api.token_ttl = 4  # the server shortens the requested lifetime, as kube-apiserver may
    wait_until(
        lambda: pod.kubeconfig.exists() and len(fake_api.token_requests) == 1, "the first token", timeout=60.0
    )
    first = pod.kubeconfig_token()
    wait_until(lambda: len(fake_api.token_requests) >= 2, "a renewal", timeout=60.0)
    wait_until(
        lambda: pod.kubeconfig_token() != first, "the kubeconfig to get the renewed token", timeout=60.0
    )
    assert watcher.poll() is None
    get_pod_with(pod.kubeconfig, fake_api)


@pytest.mark.parametrize("allowed", [frozenset(API_CALLS) - {("create", "", "serviceaccounts/token")}])
def test_without_the_token_role_the_pods_token_is_used_with_a_warning(pod: Pod) -> None:
    proc = subprocess.run(
        pod.argv("--no-watch"), check=False, env=pod.env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert pod.kubeconfig_token() == pod.token
    assert f"cannot get a token bound to node {NODE}" in proc.stderr
    assert "stops working when this pod is deleted" in proc.stderr
