"""The thin plugin's kubeconfig, written from the installer pod's service account (reference §10).

JSON (a YAML subset every kubeconfig reader accepts, and ``pymultus.kube`` reads it without
PyYAML), one cluster, one token user. The token is embedded because the projected token's path
inside the pod means nothing on the host; the installer's watch loop rewrites the file when the
token is rotated or the CA changes (bound tokens expire: multus#852).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping

from pymultus.errors import InvalidEnvironment
from pymultus.fileio import read_file

DEFAULT_SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


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
