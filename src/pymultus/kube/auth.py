"""Credentials for the Kubernetes API: a kubeconfig (JSON or YAML) or the in-cluster service account.

What is supported, as kubectl/client-go read it: ``current-context`` (or an explicit context),
``clusters[].cluster`` {``server``, ``certificate-authority``, ``certificate-authority-data``,
``insecure-skip-tls-verify``, ``tls-server-name``}, ``users[].user`` {``token``, ``tokenFile``,
``client-certificate(-data)``, ``client-key(-data)``, ``username``/``password``}. Relative paths are
relative to the kubeconfig's directory. ``exec``, ``auth-provider`` and ``proxy-url`` are refused
with a clear error rather than silently ignored.

A token file is **re-read on every request**: kubelet rotates projected service-account tokens
(and the Multus installer rewrites its kubeconfig token), so a token cached at start-up would
expire under a long-running daemon (multus#852).

Hot path: standard library only; the TLS context is built (with ``_ssl``, see
:mod:`pymultus.kube.http`) when the first connection is made, PyYAML is imported only for a
kubeconfig that is neither JSON nor in the YAML subset :mod:`pymultus.kube.kubeyaml` reads (the
shape installers write). The entry point passes the environment in.
"""

from __future__ import annotations

import binascii
import posix

from pymultus import errors, jsonio, paths
from pymultus.fileio import read_file
from pymultus.kube import http

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from pymultus.kube.http import TlsContext

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

_UNSUPPORTED_USER_KEYS = ("exec", "auth-provider")


class Credentials:
    """Where the API server is and how to authenticate to it."""

    __slots__ = (
        "_ssl_context",
        "base_path",
        "ca_data",
        "ca_file",
        "client_cert_data",
        "client_cert_file",
        "client_key_data",
        "client_key_file",
        "host",
        "insecure",
        "namespace",
        "password",
        "port",
        "scheme",
        "server",
        "source",
        "tls_server_name",
        "token",
        "token_file",
        "username",
    )

    def __init__(
        self,
        server: str,
        *,
        ca_file: str | None = None,
        ca_data: bytes | None = None,
        insecure: bool = False,
        tls_server_name: str | None = None,
        client_cert_file: str | None = None,
        client_key_file: str | None = None,
        client_cert_data: bytes | None = None,
        client_key_data: bytes | None = None,
        token: str | None = None,
        token_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        namespace: str | None = None,
        source: str = "",
    ) -> None:
        self.server = server
        self.scheme, self.host, self.port, self.base_path = parse_server_url(server, source=source)
        self.ca_file = ca_file
        self.ca_data = ca_data
        self.insecure = insecure
        if tls_server_name is not None and (not tls_server_name or tls_server_name.startswith(".")):
            # OpenSSL would refuse it at the first connection, as a ValueError, not a config error.
            where = source or server
            raise errors.InvalidConfig(f"tls-server-name {tls_server_name!r} in {where} is not a host name")
        self.tls_server_name = tls_server_name
        self.client_cert_file = client_cert_file
        self.client_key_file = client_key_file
        self.client_cert_data = client_cert_data
        self.client_key_data = client_key_data
        self.token = token
        self.token_file = token_file
        self.username = username
        self.password = password
        self.namespace = namespace
        self.source = source or server
        self._ssl_context: TlsContext | None = None

    def authorization(self) -> str | None:
        """The ``Authorization`` header value for the next request (token file re-read each time)."""
        if self.token_file:
            try:
                token = read_file(self.token_file).strip().decode("utf-8", "replace")
            except OSError as exc:
                if self.token:  # client-go falls back to the static token as well
                    return f"Bearer {self.token}"
                raise errors.IOFailure(
                    f"cannot read the Kubernetes token file {self.token_file}: {exc.strerror or exc}"
                ) from exc
            if token:
                return f"Bearer {token}"
        if self.token:
            return f"Bearer {self.token}"
        if self.username is not None and self.password is not None:
            raw = f"{self.username}:{self.password}".encode()
            return "Basic " + binascii.b2a_base64(raw, newline=False).decode("ascii")
        return None

    def ssl_context(self) -> TlsContext | None:
        """The TLS settings (built once, on first use); None for an ``http://`` server."""
        if self.scheme != "https":
            return None
        if self._ssl_context is None:
            self._ssl_context = self._build_ssl_context()
        return self._ssl_context

    def _build_ssl_context(self) -> TlsContext:
        try:
            ctx = http.tls_client_context()  # verification of chain and host name/IP: on
        except ImportError as exc:  # a Python built without OpenSSL
            raise errors.InvalidConfig(
                f"{self.server} from {self.source} needs TLS, which this Python lacks"
            ) from exc
        try:
            if self.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = http.CERT_NONE
            elif self.ca_data is not None:
                ctx.load_verify_locations(cadata=self.ca_data.decode("ascii", "replace"))
            elif self.ca_file:
                # Read here, bounded: OpenSSL would read a device or a FIFO named by a kubeconfig.
                ctx.load_verify_locations(cadata=read_file(self.ca_file).decode("ascii", "replace"))
            else:
                ctx.set_default_verify_paths()  # what ssl's load_default_certs does on Linux
            if self.client_cert_data is not None or self.client_key_data is not None:
                _load_cert_chain_from_memory(ctx, self.client_cert_data, self.client_key_data)
            elif self.client_cert_file:
                # OpenSSL loads these from paths only: refuse first what read_file refuses.
                for path in (self.client_cert_file, self.client_key_file):
                    if path:
                        read_file(path)
                ctx.load_cert_chain(self.client_cert_file, self.client_key_file or None)
        except (OSError, ValueError) as exc:  # SSLError is an OSError
            raise errors.InvalidConfig(
                f"TLS settings for the Kubernetes API from {self.source} are unusable: {exc}"
            ) from exc
        return ctx


def parse_server_url(url: str, *, source: str = "") -> tuple[str, str, int, str]:
    """``https://host[:port][/prefix]`` -> (scheme, host, port, prefix); IPv6 hosts in brackets."""
    where = f" in {source}" if source else ""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("https", "http"):
        raise errors.InvalidConfig(
            f"Kubernetes API server URL {url!r}{where} must start with https:// or http://"
        )
    authority, slash, path = rest.partition("/")
    base_path = ("/" + path).rstrip("/") if slash else ""
    if "@" in authority or "?" in authority or "#" in authority:
        raise errors.InvalidConfig(f"Kubernetes API server URL {url!r}{where} has an unsupported authority")
    port_text = ""
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise errors.InvalidConfig(f"Kubernetes API server URL {url!r}{where} has a malformed IPv6 host")
        port_text = after[1:]
    else:
        host, _, port_text = authority.partition(":")
    if not host:
        raise errors.InvalidConfig(f"Kubernetes API server URL {url!r}{where} has no host")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise errors.InvalidConfig(f"Kubernetes API server URL {url!r}{where} has an invalid port")
        port = int(port_text)
    else:
        port = 443 if scheme == "https" else 80
    return scheme, host, port, base_path


def load_kubeconfig(path: str, *, context: str | None = None) -> Credentials:
    """Credentials from a kubeconfig file (JSON, or YAML: PyYAML only beyond kubeyaml's subset)."""
    try:
        data = read_file(path)
    except OSError as exc:
        raise errors.InvalidConfig(f"cannot read kubeconfig {path}: {exc.strerror or exc}") from exc
    return parse_kubeconfig(data, path=path, context=context)


def parse_kubeconfig(data: bytes, *, path: str, context: str | None = None) -> Credentials:
    """Credentials from kubeconfig bytes; ``path`` anchors relative file names and error messages."""
    doc = _decode_kubeconfig(data, path)
    base_dir = paths.dirname(paths.abspath(path))
    ctx_name = context or doc.get("current-context")
    if not isinstance(ctx_name, str) or not ctx_name:
        raise errors.InvalidConfig(f"kubeconfig {path} has no current-context")
    ctx = _named(doc, "contexts", "context", ctx_name, path)
    cluster_name = ctx.get("cluster")
    if not isinstance(cluster_name, str) or not cluster_name:
        raise errors.InvalidConfig(f"context {ctx_name!r} in kubeconfig {path} names no cluster")
    cluster = _named(doc, "clusters", "cluster", cluster_name, path)
    user_name = ctx.get("user")
    user: dict[str, object] = {}
    if isinstance(user_name, str) and user_name:
        user = _named(doc, "users", "user", user_name, path)

    where = f"kubeconfig {path}"
    server = _str(cluster, "server", where)
    if not server:
        raise errors.InvalidConfig(f"cluster {cluster_name!r} in {where} has no server")
    if cluster.get("proxy-url"):
        raise errors.InvalidConfig(f"cluster {cluster_name!r} in {where}: proxy-url is not supported")
    for key in _UNSUPPORTED_USER_KEYS:
        if user.get(key):
            raise errors.InvalidConfig(f"user {user_name!r} in {where}: {key} credentials are not supported")
    namespace = ctx.get("namespace")
    return Credentials(
        server,
        ca_file=_path(cluster, "certificate-authority", base_dir, where),
        ca_data=_b64(cluster, "certificate-authority-data", where),
        insecure=cluster.get("insecure-skip-tls-verify") is True,
        tls_server_name=_str(cluster, "tls-server-name", where),
        client_cert_file=_path(user, "client-certificate", base_dir, where),
        client_key_file=_path(user, "client-key", base_dir, where),
        client_cert_data=_b64(user, "client-certificate-data", where),
        client_key_data=_b64(user, "client-key-data", where),
        token=_str(user, "token", where),
        token_file=_path(user, "tokenFile", base_dir, where),
        username=_str(user, "username", where),
        password=_str(user, "password", where),
        namespace=namespace if isinstance(namespace, str) and namespace else None,
        source=where,
    )


def load_in_cluster(env: Mapping[str, str], *, sa_dir: str = SERVICE_ACCOUNT_DIR) -> Credentials:
    """The pod's service account, as client-go's ``InClusterConfig`` finds it.

    ``env`` is the process environment, passed in by the entry point.
    """
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise errors.InvalidEnvironment(
            "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set"
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 service address
    token_file = paths.join(sa_dir, "token")
    if not paths.exists(token_file):
        raise errors.InvalidEnvironment(f"the service account token {token_file} does not exist")
    ca_file = paths.join(sa_dir, "ca.crt")
    namespace = None
    try:
        namespace = read_file(paths.join(sa_dir, "namespace")).strip().decode("utf-8", "replace") or None
    except OSError:
        pass  # optional, as in client-go
    return Credentials(
        f"https://{host}:{port}",
        ca_file=ca_file if paths.exists(ca_file) else None,
        token_file=token_file,
        namespace=namespace,
        source=f"the in-cluster service account ({sa_dir})",
    )


# -- helpers ------------------------------------------------------------------------------------


def _decode_kubeconfig(data: bytes, path: str) -> dict[str, object]:
    text = data.lstrip()
    if text.startswith(b"{"):
        return jsonio.loads_object(data, what=f"kubeconfig {path}")
    from pymultus.kube import kubeyaml

    simple = kubeyaml.load(data)  # the shape installers write, without PyYAML's ~18 ms import
    if simple is not None:
        return simple
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dependency; the self-contained form may omit it
        raise errors.InvalidConfig(
            f"kubeconfig {path} is YAML but PyYAML is not installed; use a JSON kubeconfig"
        ) from None
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise errors.InvalidConfig(f"kubeconfig {path} is not valid YAML: {exc}") from exc
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise errors.InvalidConfig(f"kubeconfig {path} nests too deeply to be a kubeconfig") from None
    if not isinstance(doc, dict):
        raise errors.InvalidConfig(f"kubeconfig {path} must be a mapping")
    return doc


def _named(doc: dict[str, object], section: str, key: str, name: str, path: str) -> dict[str, object]:
    entries = doc.get(section)
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and entry.get("name") == name:
                value = entry.get(key)
                if value is None:
                    return {}
                if not isinstance(value, dict):
                    raise errors.InvalidConfig(f"{section} entry {name!r} in kubeconfig {path} is malformed")
                return value
    raise errors.InvalidConfig(f"kubeconfig {path} has no {key} named {name!r}")


def _str(obj: dict[str, object], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.InvalidConfig(f"{key} in {where} must be a string")
    return value


def _path(obj: dict[str, object], key: str, base_dir: str, where: str) -> str | None:
    value = _str(obj, key, where)
    if value is None:
        return None
    return paths.join(base_dir, value)  # an absolute value stays as it is


def _b64(obj: dict[str, object], key: str, where: str) -> bytes | None:
    value = _str(obj, key, where)
    if value is None:
        return None
    try:
        compact = "".join(value.split())  # wrapped base64 (e.g. from a YAML block) is fine
        return binascii.a2b_base64(compact.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise errors.InvalidConfig(f"{key} in {where} is not valid base64") from exc


def _load_cert_chain_from_memory(ctx: TlsContext, cert: bytes | None, key: bytes | None) -> None:
    """OpenSSL (through ``_ssl``) loads client certificates from files only: write them to a private directory
    (0700, files 0600, in /dev/shm when available so the key never touches a disk) and remove it
    as soon as OpenSSL has read them."""
    if cert is None or key is None:
        raise ValueError("client-certificate-data and client-key-data must be given together")
    base = "/dev/shm" if paths.isdir("/dev/shm") else "/tmp"
    tmpdir = paths.join(base, f"pymultus-tls-{posix.getpid()}-{binascii.hexlify(posix.urandom(6)).decode()}")
    posix.mkdir(tmpdir, 0o700)
    cert_path = paths.join(tmpdir, "client.crt")
    key_path = paths.join(tmpdir, "client.key")
    try:
        for file_path, content in ((cert_path, cert), (key_path, key)):
            flags = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW
            fd = posix.open(file_path, flags, 0o600)
            with open(fd, "wb") as f:
                f.write(content)
        ctx.load_cert_chain(cert_path, key_path)
    finally:
        for file_path in (cert_path, key_path):
            try:
                posix.unlink(file_path)
            except FileNotFoundError:
                pass
        posix.rmdir(tmpdir)
