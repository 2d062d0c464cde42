"""Credentials: every kubeconfig variant and the in-cluster service account, against the fake."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pymultus import errors
from pymultus.kube.auth import (
    Credentials,
    load_in_cluster,
    load_kubeconfig,
    parse_kubeconfig,
    parse_server_url,
)
from pymultus.kube.client import KubeClient
from tests.fakeapi.server import ADMIN, FakeApiServer


def _get(creds: Credentials) -> str:
    client = KubeClient(creds, retries=0)
    try:
        return str(client.get_pod("default", "p")["metadata"]["name"])  # type: ignore[index]
    finally:
        client.close()


@pytest.fixture
def api(fake_api: FakeApiServer) -> FakeApiServer:
    fake_api.create_pod("default", "p")
    return fake_api


@pytest.mark.parametrize(
    ("yaml_format", "ca", "token_file"),
    [(False, "data", True), (True, "data", True), (False, "file", False), (True, "insecure", False)],
    ids=["json-cadata-tokenfile", "yaml-cadata-tokenfile", "json-cafile-token", "yaml-insecure-token"],
)
def test_kubeconfig_variants(
    api: FakeApiServer, tmp_path: Path, yaml_format: bool, ca: str, token_file: bool
) -> None:
    kc = api.write_kubeconfig(tmp_path / "kubeconfig", token_file=token_file, ca=ca, yaml_format=yaml_format)
    assert _get(load_kubeconfig(str(kc))) == "p"


@pytest.mark.parametrize("inline", [False, True], ids=["cert-files", "cert-data"])
def test_client_certificate(api: FakeApiServer, tmp_path: Path, inline: bool) -> None:
    api.add_user("system:multus:node1", allowed=None)
    cert = api.pki.client("system:multus:node1", "system:multus")
    kc = api.write_kubeconfig(tmp_path / "kubeconfig", client_cert=cert, inline_client_cert=inline)
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    assert _get(load_kubeconfig(str(kc))) == "p"
    assert api.requests[-1].user == "system:multus:node1"
    if inline:  # the key was written to a private temp dir only while OpenSSL read it
        after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
        assert not [n for n in after - before if n.startswith("pymultus-tls-")]


def test_unknown_client_certificate_user_is_forbidden(api: FakeApiServer, tmp_path: Path) -> None:
    kc = api.write_kubeconfig(tmp_path / "kubeconfig", client_cert=api.pki.client("stranger"))
    with pytest.raises(errors.KubeForbidden) as info:
        _get(load_kubeconfig(str(kc)))
    assert 'User "stranger" cannot get resource "pods"' in info.value.msg


def test_no_credentials_is_anonymous_403(api: FakeApiServer, tmp_path: Path) -> None:
    with pytest.raises(errors.KubeForbidden) as info:
        _get(Credentials(api.url, ca_file=str(api.ca_file)))
    assert "system:anonymous" in info.value.msg


def test_relative_paths_are_relative_to_the_kubeconfig(api: FakeApiServer, tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(api.pki.ca_pem)
    (tmp_path / "token").write_text(api.token + "\n")
    doc = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "ns9"}}],
        "clusters": [{"name": "k", "cluster": {"server": api.url, "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
    }
    (tmp_path / "kubeconfig").write_text(json.dumps(doc))
    creds = load_kubeconfig(str(tmp_path / "kubeconfig"))
    assert creds.ca_file == str(tmp_path / "ca.crt") and creds.namespace == "ns9"
    assert _get(creds) == "p"


def test_explicit_context_wins(tmp_path: Path) -> None:
    doc = {
        "current-context": "a",
        "contexts": [{"name": "a", "context": {"cluster": "a"}}, {"name": "b", "context": {"cluster": "b"}}],
        "clusters": [
            {"name": "a", "cluster": {"server": "https://a:1"}},
            {"name": "b", "cluster": {"server": "https://b:2"}},
        ],
    }
    creds = parse_kubeconfig(json.dumps(doc).encode(), path=str(tmp_path / "kc"), context="b")
    assert (creds.host, creds.port) == ("b", 2)


BAD = [
    ({"contexts": []}, "no current-context"),
    ({"current-context": "x"}, "no context named 'x'"),
    ({"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k"}}]},
     "no cluster named 'k'"),
    ({"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
      "clusters": [{"name": "k", "cluster": {"server": "https://h"}}],
      "users": [{"name": "u", "user": {"exec": {"command": "aws"}}}]}, "exec credentials are not supported"),
    ({"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k"}}],
      "clusters": [{"name": "k", "cluster": {"server": "ftp://h"}}]}, "must start with https:// or http://"),
    ({"current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k"}}],
      "clusters": [{"name": "k", "cluster": {"server": "https://h", "certificate-authority-data": "!!"}}]},
     "not valid base64"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_kubeconfig_is_a_clear_config_error(tmp_path: Path, doc: dict[str, object], message: str) -> None:
    with pytest.raises(errors.InvalidConfig) as info:
        parse_kubeconfig(json.dumps(doc).encode(), path=str(tmp_path / "kc"))
    assert message in info.value.msg and info.value.code == errors.INVALID_NETWORK_CONFIG


def test_missing_kubeconfig_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidConfig, match="cannot read kubeconfig"):
        load_kubeconfig(str(tmp_path / "nope"))
    (tmp_path / "kc").write_text("a: [unclosed")
    with pytest.raises(errors.InvalidConfig, match="not valid YAML"):
        load_kubeconfig(str(tmp_path / "kc"))


def test_unreadable_token_file_is_io_failure(tmp_path: Path) -> None:
    creds = Credentials("https://h", token_file=str(tmp_path / "missing"))
    with pytest.raises(errors.IOFailure, match="token file"):
        creds.authorization()
    assert (
        Credentials("https://h", token_file=str(tmp_path / "missing"), token="t").authorization()
        == "Bearer t"
    )
    assert Credentials("https://h", username="u", password="p").authorization() == "Basic dTpw"


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("https://10.0.0.1:6443", ("https", "10.0.0.1", 6443, "")),
        ("https://kube.example", ("https", "kube.example", 443, "")),
        ("http://h:8080/prefix/", ("http", "h", 8080, "/prefix")),
        ("https://[fd00::1]:6443", ("https", "fd00::1", 6443, "")),
        ("HTTPS://[::1]", ("https", "::1", 443, "")),
    ],
)
def test_server_urls(url: str, parsed: tuple[str, str, int, str]) -> None:
    assert parse_server_url(url) == parsed


@pytest.mark.parametrize(
    "url", ["h:6443", "https://", "https://h:0", "https://h:x", "https://[::1", "https://u@h"]
)
def test_bad_server_urls(url: str) -> None:
    with pytest.raises(errors.InvalidConfig):
        parse_server_url(url)


def test_in_cluster_service_account(api: FakeApiServer, tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(api.token)
    (sa / "ca.crt").write_bytes(api.pki.ca_pem)
    (sa / "namespace").write_text("kube-system\n")
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}
    creds = load_in_cluster(env, sa_dir=str(sa))
    assert creds.namespace == "kube-system" and creds.token_file == str(sa / "token")
    assert _get(creds) == "p"
    # kubelet rotates the projected token: the next request reads the new one
    new = api.rotate_token(write_token_files=False)
    (sa / "token").write_text(new)
    assert _get(creds) == "p"
    assert api.requests[-1].user == ADMIN


def test_in_cluster_ipv6_and_missing_env(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    creds = load_in_cluster(
        {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}, sa_dir=str(tmp_path)
    )
    assert creds.server == "https://[fd00::1]:443" and creds.host == "fd00::1"
    with pytest.raises(errors.InvalidEnvironment, match="KUBERNETES_SERVICE_HOST"):
        load_in_cluster({}, sa_dir=str(tmp_path))
    with pytest.raises(errors.InvalidEnvironment, match="token"):
        load_in_cluster(
            {"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"}, sa_dir=str(tmp_path / "x")
        )
