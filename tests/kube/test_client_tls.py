"""The TLS/TCP transport of the Kubernetes client, end to end against real servers on loopback.

``pymultus.kube.http`` talks to ``_ssl``/``_socket`` directly (start-up cost) and falls back to the
public ``ssl``/``socket`` modules when the private names are missing. Both transports must verify
the same way, so every test here runs with each (``transport`` fixture): CA as data or file, a
wrong CA, a host name or IP that the certificate does not name, client certificates,
insecure-skip-tls-verify, IPv6 literals, timeouts, ragged EOFs, and no leaked descriptors.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pymultus import errors
from pymultus.kube import http
from pymultus.kube.auth import Credentials, load_kubeconfig
from pymultus.kube.client import KubeClient, api_error
from tests.fakeapi import server as fakeapi_server
from tests.fakeapi.certs import Pki
from tests.fakeapi.server import FakeApiServer
from tests.support.isolated import run_isolated


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture(params=["native", "public"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``native``: ``_ssl``/``_socket`` (what this Python uses); ``public``: the fallback."""
    if request.param == "public":
        monkeypatch.setattr(http, "NATIVE", False)
    else:
        assert http.NATIVE, "this CPython should have the private _ssl/_socket names"
    return str(request.param)


@pytest.fixture
def api(fake_api: FakeApiServer) -> FakeApiServer:
    fake_api.create_pod("default", "p")
    return fake_api


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _fds_settle(before: set[str]) -> bool:
    """No descriptors beyond ``before`` once the in-process server closed its side too."""
    deadline = time.monotonic() + 3
    while not _open_fds() <= before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _get(creds: Credentials, *, retries: int = 0, sleep: Callable[[float], None] | None = None) -> str:
    client = KubeClient(creds, retries=retries, sleep=sleep or Sleeps(), timeout=5)
    try:
        return str(client.get_pod("default", "p")["metadata"]["name"])  # type: ignore[index]
    finally:
        client.close()


def _creds(api: FakeApiServer, tmp_path: Path, **changes: object) -> Credentials:
    creds = load_kubeconfig(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
    for name, value in changes.items():
        setattr(creds, name, value)
    return creds


def test_native_transport_is_used_and_cheap() -> None:
    """The point of the module: no ``ssl``/``socket`` (and their imports) in a fresh process."""

    src = str(Path(http.__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {src!r}); from pymultus.kube import http, auth, client, pods; "
        "assert http.NATIVE; auth.Credentials('https://127.0.0.1:1', insecure=True).ssl_context(); "
        "heavy = {'ssl', 'socket', 'enum', 're', 'base64', 'encodings.idna', 'selectors'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = run_isolated(code)
    assert out.strip() == "[]"


def test_constants_match_the_public_ssl_module() -> None:
    assert ssl.TLSVersion.TLSv1_2 == http.TLS_1_2
    assert http.CERT_NONE == ssl.CERT_NONE
    ctx = http.tls_client_context()
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("ca", ["data", "file"])
def test_ca_data_and_ca_file(api: FakeApiServer, tmp_path: Path, transport: str, ca: str) -> None:
    kc = api.write_kubeconfig(tmp_path / "kubeconfig", ca=ca)
    assert _get(load_kubeconfig(str(kc))) == "p"


def test_keep_alive_over_tls(api: FakeApiServer, tmp_path: Path, transport: str) -> None:
    client = KubeClient(_creds(api, tmp_path), timeout=5)
    try:
        for _ in range(3):
            client.get_pod("default", "p")
        assert len(client._idle) == 1 and client._idle[0].requests == 3
        sock = client._idle[0]._sock
        assert isinstance(sock, ssl.SSLSocket) == (transport == "public")  # the transport under test
    finally:
        client.close()


def test_wrong_ca_is_refused_and_not_retried(api: FakeApiServer, tmp_path: Path, transport: str) -> None:
    other = Pki(tmp_path / "other-pki")
    sleeps = Sleeps()
    before = _open_fds()
    with pytest.raises(errors.KubeError) as info:
        _get(_creds(api, tmp_path, ca_data=other.ca_pem), retries=3, sleep=sleeps)
    assert info.value.reason == "CertificateVerifyFailed"
    assert not isinstance(info.value, errors.KubeUnavailable)  # a CNI "try again" would be a lie
    assert "certificate verify failed" in info.value.msg
    assert sleeps.calls == []
    assert _fds_settle(before)  # the failed connection's socket is closed (the server's, soon)
    assert not [r for r in api.requests if r.path.endswith("/pods/p")]  # nothing was sent


@pytest.mark.parametrize(
    ("server_name", "why"),
    [("wrong.example.com", "Hostname mismatch"), ("127.0.0.2", "IP address mismatch")],
    ids=["dns-name", "ip-address"],
)
def test_name_not_in_certificate_is_refused(
    api: FakeApiServer, tmp_path: Path, transport: str, server_name: str, why: str
) -> None:
    """The certificate names 127.0.0.1, ::1, localhost and kubernetes.default.svc only."""
    with pytest.raises(errors.KubeError) as info:
        _get(_creds(api, tmp_path, tls_server_name=server_name), retries=2)
    assert info.value.reason == "CertificateVerifyFailed"
    assert why in info.value.msg


@pytest.mark.parametrize("server_name", ["kubernetes.default.svc", "localhost", "127.0.0.1"])
def test_names_in_certificate_are_accepted(
    api: FakeApiServer, tmp_path: Path, transport: str, server_name: str
) -> None:
    assert _get(_creds(api, tmp_path, tls_server_name=server_name)) == "p"


def test_host_name_url(api: FakeApiServer, tmp_path: Path, transport: str) -> None:
    """A DNS name in the URL is resolved (bytes to the resolver) and verified against the SAN."""
    creds = Credentials(f"https://localhost:{api.port}", ca_data=api.pki.ca_pem, token=api.token)
    assert _get(creds) == "p"


@pytest.mark.parametrize("inline", [False, True], ids=["cert-files", "cert-data"])
def test_client_certificate(api: FakeApiServer, tmp_path: Path, transport: str, inline: bool) -> None:
    api.add_user("system:node:n1", allowed=None)
    cert = api.pki.client("system:node:n1", "system:nodes")
    kc = api.write_kubeconfig(tmp_path / "kubeconfig", client_cert=cert, inline_client_cert=inline)
    assert _get(load_kubeconfig(str(kc))) == "p"
    assert api.requests[-1].user == "system:node:n1"


def test_unusable_client_key_is_a_config_error(api: FakeApiServer, tmp_path: Path, transport: str) -> None:
    cert, _key = api.pki.client("u1")
    _other_cert, other_key = api.pki.client("u2")
    creds = _creds(api, tmp_path, client_cert_file=str(cert), client_key_file=str(other_key))
    with pytest.raises(errors.InvalidConfig, match=r"TLS settings .* are unusable"):
        _get(creds)


def test_insecure_skips_both_checks(api: FakeApiServer, tmp_path: Path, transport: str) -> None:
    other = Pki(tmp_path / "other-pki")
    creds = _creds(api, tmp_path, insecure=True, ca_data=other.ca_pem, tls_server_name="wrong.example.com")
    creds.ca_data = None
    assert _get(creds) == "p"


def test_bad_tls_server_name_is_a_config_error() -> None:
    with pytest.raises(errors.InvalidConfig, match="tls-server-name"):
        Credentials("https://127.0.0.1:6443", tls_server_name=".example.com")


@pytest.fixture
def fake_api_v6(
    tmp_path_factory: pytest.TempPathFactory, fake_api_pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeApiServer]:
    """The fake API server on [::1] (its certificate names ::1)."""

    class V6Server(fakeapi_server._HttpServer):
        address_family = socket.AF_INET6

    monkeypatch.setattr(fakeapi_server, "_HttpServer", V6Server)
    try:
        server = FakeApiServer(tmp_path_factory.mktemp("fakeapi6"), host="::1", pki=fake_api_pki).start()
    except OSError as exc:  # pragma: no cover - a host without IPv6 on loopback
        pytest.skip(f"cannot listen on [::1]: {exc}")
    try:
        yield server
    finally:
        server.stop()


def test_ipv6_literal_url(fake_api_v6: FakeApiServer, tmp_path: Path, transport: str) -> None:
    fake_api_v6.create_pod("default", "p")
    creds = _creds(fake_api_v6, tmp_path)
    assert creds.server.startswith("https://[::1]:") and creds.host == "::1"
    assert _get(creds) == "p"
    with pytest.raises(errors.KubeError, match="IP address mismatch"):
        _get(_creds(fake_api_v6, tmp_path, tls_server_name="::2"))


# -- raw servers: what the fake API server cannot do ---------------------------------------------


class OneShot:
    """A loopback listener whose connections are served by ``handler`` in a thread."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, args=(handler,), daemon=True)
        self.thread.start()

    def _run(self, handler: Callable[[socket.socket], None]) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            try:
                handler(conn)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def _read_head(conn: socket.socket | ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(4096)
        if not piece:
            break
        data += piece
    return data


def test_ragged_eof_ends_a_body_without_length(fake_api_pki: Pki, transport: str) -> None:
    """TLS closed without close_notify after a body framed by EOF: the body is complete.

    With OpenSSL 3 that works because CPython's contexts set ``OP_IGNORE_UNEXPECTED_EOF`` (ours is
    made the same way); older OpenSSL reports an ``SSLEOFError``, which the native transport reads
    as the end of the stream like ``ssl``'s ``suppress_ragged_eofs``.
    """
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(fake_api_pki.server_cert, fake_api_pki.server_key)

    def handler(raw: socket.socket) -> None:
        tls = server_ctx.wrap_socket(raw, server_side=True)
        _read_head(tls)
        tls.sendall(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"kind":"Pod","metadata":{"name":"p"}}')
        os.close(tls.detach())  # no close_notify: close the TCP connection under the TLS session

    server = OneShot(handler)
    try:
        creds = Credentials(f"https://127.0.0.1:{server.port}", ca_data=fake_api_pki.ca_pem)
        ctx = creds.ssl_context()
        assert ctx is not None and ctx.options & ssl.OP_IGNORE_UNEXPECTED_EOF
        assert _get(creds) == "p"
    finally:
        server.close()


def test_handshake_timeout_is_unavailable(fake_api_pki: Pki, transport: str) -> None:
    """A server that accepts TCP but never answers the ClientHello: a timeout, retried, then 11."""
    done = threading.Event()
    server = OneShot(lambda raw: done.wait(5) and None)
    try:
        creds = Credentials(f"https://127.0.0.1:{server.port}", ca_data=fake_api_pki.ca_pem)
        client = KubeClient(creds, retries=0, timeout=0.3)
        with pytest.raises(errors.KubeUnavailable, match="timed out"):
            client.get_pod("default", "p")
    finally:
        done.set()
        server.close()


def test_plain_http_server(transport: str) -> None:
    body = b'{"kind":"Pod","metadata":{"name":"p"}}'
    seen: list[bytes] = []

    def handler(raw: socket.socket) -> None:
        seen.append(_read_head(raw))
        raw.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    server = OneShot(handler)
    try:
        assert _get(Credentials(f"http://127.0.0.1:{server.port}")) == "p"
        assert seen[0].startswith(b"GET /api/v1/namespaces/default/pods/p HTTP/1.1\r\n")
    finally:
        server.close()


def test_refused_connection_is_unavailable_and_retried(transport: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    sleeps = Sleeps()
    client = KubeClient(Credentials(f"https://127.0.0.1:{port}", insecure=True), retries=2, sleep=sleeps)
    with pytest.raises(errors.KubeUnavailable, match="cannot reach the Kubernetes API server") as info:
        client.get_pod("default", "p")
    assert info.value.reason == "ConnectionFailed" and len(sleeps.calls) == 2


def test_sockets_are_close_on_exec(api: FakeApiServer, tmp_path: Path, transport: str) -> None:
    """The thin plugin execs delegates while a keep-alive connection is open: it must not leak."""
    client = KubeClient(_creds(api, tmp_path), timeout=5)
    try:
        client.get_pod("default", "p")
        conn = client._idle[0]
        sock = conn._sock
        raw = getattr(sock, "_raw", sock)
        assert not os.get_inheritable(raw.fileno())  # type: ignore[union-attr]
    finally:
        client.close()


def test_transport_errors_translate_in_one_place(api: FakeApiServer, tmp_path: Path) -> None:
    """Real exceptions of the C module, classified by ``api_error``."""
    import _ssl

    other = Pki(tmp_path / "other-pki")
    ctx = http.tls_client_context()
    ctx.load_verify_locations(cadata=other.ca_pem.decode())
    conn = http.Connection("127.0.0.1", api.port, ssl_context=ctx, timeout=5)
    with pytest.raises(_ssl.SSLCertVerificationError) as info:
        conn.connect()
    assert api_error("GET", "/x", 0, b"", info.value).reason == "CertificateVerifyFailed"
    eof = api_error("GET", "/x", 0, b"", _ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    assert isinstance(eof, errors.KubeUnavailable)
    reset = api_error("GET", "/x", 0, b"", ConnectionResetError(104, "Connection reset by peer"))
    assert isinstance(reset, errors.KubeUnavailable) and "Connection reset" in reset.msg
