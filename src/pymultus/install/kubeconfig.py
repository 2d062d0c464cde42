"""The thin plugin's kubeconfig, written from the installer pod's service account (reference §10).

JSON (a YAML subset every kubeconfig reader accepts, and ``pymultus.kube`` reads it without
PyYAML), one cluster, one token user. The token is embedded because the projected token's path
inside the pod means nothing on the host.

Which token: the pod's own projected token is bound to the pod, so it dies with the installer
pod — on every rolling update and DaemonSet delete every ADD on the node would then fail with
``Unauthorized`` until a new installer writes a new one. :class:`NodeTokenSource` therefore asks
for a TokenRequest of the same service account bound to the *Node* object (RBAC: ``create
serviceaccounts/token`` on its own service account only), valid for ``NODE_TOKEN_SECONDS`` and
renewed at half its life by the installer's watch loop; the pod's token is only the fallback
while that request fails (an API server older than 1.32, or the Role missing), with a warning.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import logging
import os
import time
from collections.abc import Callable, Mapping

from pymultus.errors import InvalidEnvironment, MultusError
from pymultus.fileio import read_file

log = logging.getLogger("pymultus.install")

DEFAULT_SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
NODE_TOKEN_SECONDS = 86400  # a day: a node whose installer is gone that long loses the API
RETRY_SECONDS = 60.0  # between TokenRequests that failed (the pod's token is used meanwhile)


class ServiceAccount:
    """The token and CA bundle the kubelet projects into the pod."""

    __slots__ = ("ca", "token")

    def __init__(self, token: str, ca: bytes) -> None:
        self.token = token
        self.ca = ca


def read_service_account(sa_dir: str = DEFAULT_SERVICE_ACCOUNT_DIR) -> ServiceAccount:
    token_path = os.path.join(sa_dir, "token")
    ca_path = os.path.join(sa_dir, "ca.crt")
    try:
        token = read_file(token_path).decode("utf-8").strip()
        ca = read_file(ca_path)
    except OSError as exc:
        raise InvalidEnvironment(
            f"cannot read the service account {exc.filename}: {exc.strerror}; is the pod's "
            "service account token mounted?"
        ) from exc
    if not token:
        raise InvalidEnvironment(f"service account token {token_path} is empty")
    return ServiceAccount(token, ca)


def server_from_env(env: Mapping[str, str]) -> str:
    """``https://host:port`` from KUBERNETES_SERVICE_{PROTOCOL,HOST,PORT}; IPv6 hosts bracketed."""
    host = env.get("KUBERNETES_SERVICE_HOST", "").strip()
    port = env.get("KUBERNETES_SERVICE_PORT", "").strip()
    protocol = env.get("KUBERNETES_SERVICE_PROTOCOL", "").strip() or "https"
    if not host:
        raise InvalidEnvironment("KUBERNETES_SERVICE_HOST is not set; run the installer in a pod")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidEnvironment(f"KUBERNETES_SERVICE_PORT {port!r} is not a TCP port number")
    if protocol not in ("https", "http"):
        raise InvalidEnvironment(f"KUBERNETES_SERVICE_PROTOCOL {protocol!r} must be https or http")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{protocol}://{host}:{port}"


def build_kubeconfig(*, server: str, sa: ServiceAccount, skip_tls_verify: bool = False) -> bytes:
    cluster: dict[str, object] = {"server": server}
    if skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    else:
        cluster["certificate-authority-data"] = base64.b64encode(sa.ca).decode("ascii")
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "multus", "user": {"token": sa.token}}],
        "contexts": [{"name": "multus-context", "context": {"cluster": "local", "user": "multus"}}],
        "current-context": "multus-context",
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def service_account_name(token: str) -> tuple[str, str]:
    """(namespace, name) from a service account token's ``sub`` claim (not verified: it is ours)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        prefix, namespace, name = str(claims["sub"]).rsplit(":", 2)
    except (IndexError, KeyError, ValueError, TypeError, binascii.Error) as exc:
        raise InvalidEnvironment("the service account token is not a JWT with a sub claim") from exc
    if prefix != "system:serviceaccount" or not namespace or not name:
        raise InvalidEnvironment(f"the token's subject {claims['sub']!r} is not a service account")
    return namespace, name


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 UTC timestamp as the API server writes them."""
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError) as exc:
        raise InvalidEnvironment(f"expirationTimestamp {text!r} is not an RFC 3339 UTC time") from exc


class NodeTokenSource:
    """The token for the host kubeconfig: a Node-bound TokenRequest, renewed at half its life."""

    def __init__(
        self,
        env: Mapping[str, str],
        sa_dir: str,
        node_name: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.env = env
        self.sa_dir = sa_dir
        self.node_name = node_name
        self.clock = clock
        self.token = ""
        self.expires_at = 0.0
        self.renew_at = 0.0
        self._retry_at = 0.0

    def current(self, pod_token: str) -> str:
        """The token to write now: the Node-bound one, requested when due; else ``pod_token``."""
        now = self.clock()
        if self.token and now < self.renew_at:
            return self.token
        if now >= self._retry_at:
            try:
                self._request(now, pod_token)
                return self.token
            except MultusError as exc:
                self._retry_at = now + RETRY_SECONDS
                log.warning(
                    "cannot get a token bound to node %s (%s); the kubeconfig keeps %s, which "
                    "stops working when %s",
                    self.node_name,
                    exc,
                    "the previous one" if self.token and now < self.expires_at else "this pod's token",
                    "it expires" if self.token and now < self.expires_at else "this pod is deleted",
                )
        return self.token if self.token and now < self.expires_at else pod_token

    def _request(self, now: float, pod_token: str) -> None:
        from pymultus.kube.auth import load_in_cluster
        from pymultus.kube.client import KubeClient

        namespace, name = service_account_name(pod_token)
        credentials = load_in_cluster(self.env, sa_dir=self.sa_dir)
        client = KubeClient(credentials, retries=1)
        try:
            answer = client.request_token(
                namespace, name, bound_node=self.node_name, expiration_seconds=NODE_TOKEN_SECONDS
            )
        finally:
            client.close()
        status = answer.get("status")
        if not isinstance(status, dict) or not isinstance(status.get("token"), str) or not status["token"]:
            raise InvalidEnvironment("the TokenRequest answer has no status.token")
        token = str(status["token"])
        expires_at = parse_timestamp(str(status.get("expirationTimestamp")))
        self.token = token
        self.expires_at = expires_at
        self.renew_at = now + max(expires_at - now, 0.0) / 2
        log.info(
            "got a token bound to node %s, valid until %s (renewed after %s)",
            self.node_name,
            time.strftime("%H:%M:%S", time.gmtime(expires_at)),
            time.strftime("%H:%M:%S", time.gmtime(self.renew_at)),
        )
