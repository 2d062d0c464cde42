"""A stateful fake kube-apiserver speaking the real wire format (see tests/data/k8s-wire/README.md).

HTTPS (its own CA, made at start), HTTP/1.1 with keep-alive, bearer tokens and client certificates,
RBAC per user, Status objects with the recorded shapes and headers, Content-Length up to 2048 bytes
and chunked above, LIST with limit/continue/resourceVersionMatch, WATCH with chunked framing,
BOOKMARKs, sendInitialEvents, and "too old resourceVersion" as 200 + an ERROR event.

Resources: namespaces, pods (+ ``pods/status``), events, and NetworkAttachmentDefinitions
(``/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions``); ResourceClaims
(+ ``status``) and ResourceSlices in tests/fakeapi/dra.py; CertificateSigningRequests (+
``approval``, an optional signer) in tests/fakeapi/csr.py; ValidatingAdmissionPolicies on
``pods/status`` writes (``admission_policies``, tests/fakeapi/vap.py).

Test hooks (all thread-safe): :meth:`FakeApiServer.inject` / :meth:`fail_status_writes` (answer the
next N matching requests with an error or a delay), :meth:`set_down` (close every connection at
once), :meth:`compact` (old RVs expire), :meth:`cut_watches`, :meth:`count` / :attr:`requests`,
:meth:`rotate_token`, and object helpers (:meth:`create_pod`, :meth:`create_nad`, ...).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import email.utils
import json
import os
import secrets
import socket
import ssl
import string
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

from tests.fakeapi import csr, dra
from tests.fakeapi.certs import Pki
from tests.fakeapi.store import (
    EVENTS,
    NADS,
    NAMESPACES,
    PODS,
    RESOURCES,
    Expired,
    Resource,
    Store,
    WatchEvent,
    now_rfc3339,
)

ADMIN = "admin"
ANONYMOUS = "system:anonymous"
CHUNK = 0x800  # kube-apiserver's writes are cut at 2 KiB
MAX_CONTENT_LENGTH = 2048  # bigger bodies go chunked (wire fact 2)
DEFAULT_WATCH_TIMEOUT = 1800
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
CRD_PATH = (
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/network-attachment-definitions.k8s.cni.cncf.io"
)

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
CONTINUE_EXPIRED_MSG = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)

# Go struct field orders (wire fact 10); keys not listed keep their order after these.
META_ORDER = (
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
)  # fmt: skip
POD_SPEC_ORDER = (
    "volumes", "initContainers", "containers", "ephemeralContainers", "restartPolicy",
    "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy", "nodeSelector",
    "serviceAccountName", "serviceAccount", "automountServiceAccountToken", "nodeName", "hostNetwork",
    "hostPID", "hostIPC", "shareProcessNamespace", "securityContext", "imagePullSecrets", "hostname",
    "subdomain", "affinity", "schedulerName", "tolerations", "hostAliases", "priorityClassName", "priority",
    "dnsConfig", "readinessGates", "runtimeClassName", "enableServiceLinks", "preemptionPolicy", "overhead",
)  # fmt: skip
CONTAINER_ORDER = (
    "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources", "resizePolicy",
    "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe", "startupProbe",
    "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy", "securityContext",
    "stdin", "stdinOnce", "tty",
)  # fmt: skip
POD_STATUS_ORDER = (
    "phase", "conditions", "message", "reason", "nominatedNodeName", "hostIP", "hostIPs", "podIP", "podIPs",
    "startTime", "initContainerStatuses", "containerStatuses", "qosClass",
)  # fmt: skip
EVENT_ORDER = (
    "kind", "apiVersion", "metadata", "involvedObject", "reason", "message", "source", "firstTimestamp",
    "lastTimestamp", "count", "type", "eventTime", "series", "action", "related", "reportingComponent",
    "reportingInstance",
)  # fmt: skip
REF_ORDER = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
DEFAULT_TOLERATIONS = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]
Obj = dict[str, object]


class ApiStatus(Exception):
    """Answer the request with a Status object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = list(headers)
        self.admission = False  # a refusal by an admission plugin: no nosniff header (wire fact 21)

    def body(self) -> Obj:
        obj: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        obj["message"] = self.message
        obj["reason"] = self.reason
        if self.details is not None:
            obj["details"] = self.details
        obj["code"] = self.code
        return obj


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    user: str


@dataclass
class Injection:
    status: int | None  # None: only delay, then answer normally
    count: int
    methods: tuple[str, ...] | None
    path: str | None
    path_suffix: str | None
    retry_after: int | None
    delay: float


@dataclass
class User:
    name: str
    groups: list[str] = field(default_factory=list)
    allowed: frozenset[tuple[str, str, str]] | None = None  # None: everything (system:masters)


@dataclass
class Info:
    verb: str
    resource: Resource
    namespace: str | None
    name: str
    subresource: str

    @property
    def qualified(self) -> str:
        return self.resource.plural + (f".{self.resource.group}" if self.resource.group else "")

    def details(self, name: str | None = None) -> Obj:
        details: Obj = {}
        if name or self.name:
            details["name"] = name or self.name
        if self.resource.group:
            details["group"] = self.resource.group
        details["kind"] = self.resource.plural
        return details


def encode(obj: object, *, sort_keys: bool = False) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, <>& escaped, one trailing newline."""
    text = json.dumps(obj, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (text + "\n").encode()


def ordered(obj: Obj, order: Iterable[str]) -> Obj:
    out = {k: obj[k] for k in order if k in obj}
    out.update((k, v) for k, v in obj.items() if k not in out)
    return out


def is_subdomain(name: str) -> bool:
    if not name or len(name) > 253:
        return False
    return all(is_label(part, max_len=63) for part in name.split("."))


def is_label(name: str, max_len: int = 63) -> bool:
    allowed = set(string.ascii_lowercase + string.digits + "-")
    return 0 < len(name) <= max_len and set(name) <= allowed and name[0].isalnum() and name[-1].isalnum()


def fields_v1(obj: object, depth: int = 0) -> Obj:
    """A plausible managedFields ``fieldsV1`` for ``obj`` (shape only; the fake does no SSA)."""
    if not isinstance(obj, dict):
        return {}
    out: Obj = {".": {}} if depth >= 2 else {}
    for key, value in obj.items():
        if depth == 0 and key in ("kind", "apiVersion", "status"):
            continue
        if depth == 1 and key in _SERVER_META:
            continue
        out[f"f:{key}"] = fields_v1(value, depth + 1) if isinstance(value, dict) else {}
    return out


_SERVER_META = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "name",
    "namespace",
)


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def parse_selector(text: str, what: str) -> list[tuple[str, str, str | None]]:
    """``a=b,c!=d,e`` -> [(path, op, value)]; op is "=", "!=" or "exists"."""
    terms: list[tuple[str, str, str | None]] = []
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append((key.strip(), "!=", value.strip()))
        elif "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            terms.append((key.strip(), "=", value.strip()))
        elif what == "label" and term.replace("/", "").replace(".", "").replace("-", "").isalnum():
            terms.append((term, "exists", None))
        else:
            raise ApiStatus(400, "BadRequest", f"unable to parse requirement: {term!r} in {what} selector")
    return terms


def lookup(obj: Obj, dotted: str) -> str:
    value: object = obj
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: FakeApiServer

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        api = self.api
        if api.down:
            _abort(request)
            return
        try:
            request.settimeout(10)
            conn = api.ssl_context.wrap_socket(request, server_side=True)
            conn.settimeout(None)
        except (OSError, ValueError):
            _abort(request)
            return
        api._track(conn, True)
        try:
            super().finish_request(conn, client_address)  # type: ignore[arg-type]
        except OSError:
            pass  # the client went away, or the test cut the connection
        finally:
            api._track(conn, False)
            with contextlib.suppress(OSError):
                conn.close()


def _abort(sock: socket.socket) -> None:
    """Close with a RST, like a crashed or restarting API server."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


class FakeApiServer:
    """The fake API server; ``start()`` runs it in a background thread on ``host``:ephemeral port."""

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bookmark_interval: float = 60.0,
        namespaces: Iterable[str] = ("default", "kube-system", "kube-public", "kube-node-lease"),
        pki: Pki | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.pki = pki or Pki(self.workdir / "pki")
        self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl_context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        # Client certificates are optional (token users send none); when sent they must be ours.
        self.ssl_context.verify_mode = ssl.CERT_OPTIONAL
        self.ssl_context.load_verify_locations(self.pki.ca_cert)
        self.store = Store()
        self.flowschema_uid = str(uuid.uuid4())
        self.prioritylevel_uid = str(uuid.uuid4())
        self.token = secrets.token_hex(16)
        self.tokens: dict[str, str] = {self.token: ADMIN}
        self.users: dict[str, User] = {
            ADMIN: User(ADMIN, ["system:masters"]),
            ANONYMOUS: User(ANONYMOUS, [], frozenset()),
        }
        self.down = False
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._injections: list[Injection] = []
        self._connections: set[socket.socket] = set()
        self._watches: set[socket.socket] = set()
        self._cut_generation = 0
        self._token_files: list[Path] = []
        # TokenRequests (POST .../serviceaccounts/<name>/token): the bodies received; tokens issued
        # live token_ttl seconds (None: as requested) and act as the service account's user.
        self.token_requests: list[Obj] = []
        self.token_ttl: float | None = None
        # Sign approved client CSRs for at most this many seconds (tests/fakeapi/csr.py); None: no signer.
        self.csr_signing_duration: float | None = None
        # (ValidatingAdmissionPolicy, binding) pairs checked on pods/status writes (tests/fakeapi/vap.py).
        self.admission_policies: list[tuple[Obj, Obj]] = []
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        for ns in namespaces:
            self.create_namespace(ns)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeApiServer:
        httpd = _HttpServer((self.host, self.port), _Handler)
        httpd.api = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with self.store.cond:
            self.store.cond.notify_all()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_cert

    # -- credentials ------------------------------------------------------------------------

    def add_token(
        self,
        token: str,
        user: str,
        *,
        groups: Iterable[str] = (),
        allowed: Iterable[tuple[str, str, str]] | None = (),
    ) -> None:
        """Accept ``token`` for ``user``; ``allowed`` = the RBAC (verb, group, resource) it may use
        (empty: nothing, a 403 for everything; None: everything)."""
        with self._lock:
            self.tokens[token] = user
            self.users[user] = User(user, list(groups), None if allowed is None else frozenset(allowed))

    def add_user(
        self, user: str, *, groups: Iterable[str] = (), allowed: Iterable[tuple[str, str, str]] | None = ()
    ) -> None:
        """A user authenticated by a client certificate (CN = user)."""
        with self._lock:
            self.users[user] = User(user, list(groups), None if allowed is None else frozenset(allowed))

    def rotate_token(self, *, write_token_files: bool = True) -> str:
        """Replace the admin token (the old one answers 401 from now on); returns the new one.
        With ``write_token_files`` the token files of :meth:`write_kubeconfig` get the new token."""
        new = secrets.token_hex(16)
        with self._lock:
            self.tokens.pop(self.token, None)
            self.token = new
            self.tokens[new] = ADMIN
        if write_token_files:
            self.write_token_files()
        return new

    def write_token_files(self) -> None:
        for path in self._token_files:
            _write_private(path, self.token + "\n")

    def write_kubeconfig(
        self,
        path: Path,
        *,
        token: str | None = None,
        token_file: bool = True,
        client_cert: tuple[Path, Path] | None = None,
        inline_client_cert: bool = False,
        ca: str = "data",  # "data", "file" or "insecure"
        yaml_format: bool = False,
    ) -> Path:
        """A kubeconfig for this server: CA as data (default) or file, the admin token in a token
        file (re-read by clients on every request) or inline, or a client certificate."""
        path = Path(path)
        cluster: Obj = {"server": self.url}
        if ca == "data":
            cluster["certificate-authority-data"] = base64.b64encode(self.pki.ca_pem).decode()
        elif ca == "file":
            cluster["certificate-authority"] = str(self.ca_file)
        else:
            cluster["insecure-skip-tls-verify"] = True
        user: Obj = {}
        if client_cert is not None:
            cert, key = client_cert
            if inline_client_cert:
                user["client-certificate-data"] = base64.b64encode(cert.read_bytes()).decode()
                user["client-key-data"] = base64.b64encode(key.read_bytes()).decode()
            else:
                user["client-certificate"] = str(cert)
                user["client-key"] = str(key)
        elif token_file:
            tf = path.with_name(path.name + ".token")
            _write_private(tf, (token or self.token) + "\n")
            if token is None:
                self._token_files.append(tf)
            user["tokenFile"] = str(tf)
        else:
            user["token"] = token or self.token
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "fake-user", "user": user}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake-user"}}],
            "current-context": "fake",
        }
        if yaml_format:
            import yaml

            text = yaml.safe_dump(doc)
        else:
            text = json.dumps(doc, indent=2)
        _write_private(path, text)
        return path

    # -- state helpers (direct, no HTTP) -----------------------------------------------------

    def create_namespace(self, name: str) -> Obj:
        obj: Obj = {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        return self.store.create(NAMESPACES, "", self._finish_meta(obj, "unknown"))

    def create_pod(
        self,
        namespace: str,
        name: str,
        *,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        node_name: str | None = "node1",
        uid: str | None = None,
    ) -> Obj:
        if not self.store.exists(NAMESPACES, "", namespace):
            self.create_namespace(namespace)
        meta: Obj = {"name": name, "namespace": namespace}
        if uid:
            meta["uid"] = uid
        if labels:
            meta["labels"] = labels
        if annotations:
            meta["annotations"] = annotations
        spec: Obj = {"containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}]}
        spec["automountServiceAccountToken"] = False
        if node_name:
            spec["nodeName"] = node_name
        body: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        return self.store.create(PODS, namespace, self._default_pod(body, "unknown"))

    def create_nad(
        self,
        namespace: str,
        name: str,
        config: str | Obj | None = None,
        *,
        annotations: dict[str, str] | None = None,
    ) -> Obj:
        if not self.store.exists(NAMESPACES, "", namespace):
            self.create_namespace(namespace)
        meta: Obj = {"name": name, "namespace": namespace}
        if annotations:
            meta["annotations"] = annotations
        spec: Obj = {}
        if config is not None:
            spec["config"] = config if isinstance(config, str) else json.dumps(config)
        body: Obj = {"apiVersion": NADS.api_version, "kind": NADS.kind, "metadata": meta, "spec": spec}
        return self.store.create(NADS, namespace, self._default_generic(body, NADS, "unknown"))

    def get_pod(self, namespace: str, name: str) -> Obj | None:
        return self.store.get(PODS, namespace, name)

    def delete_pod(self, namespace: str, name: str) -> Obj | None:
        return self.store.delete(PODS, namespace, name)

    def delete_nad(self, namespace: str, name: str) -> Obj | None:
        return self.store.delete(NADS, namespace, name)

    def events_for(self, namespace: str, name: str) -> list[Obj]:
        items, _rv = self.store.snapshot(EVENTS, namespace)
        return [e for e in items if lookup(e, "involvedObject.name") == name]

    # -- hooks ------------------------------------------------------------------------------

    def inject(
        self,
        status: int | None,
        *,
        count: int = 1,
        method: str | tuple[str, ...] | None = None,
        path: str | None = None,
        path_suffix: str | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (a Status object like the
        real one) after ``delay`` seconds; ``status=None`` only delays them."""
        methods = (method,) if isinstance(method, str) else method
        with self._lock:
            self._injections.append(Injection(status, count, methods, path, path_suffix, retry_after, delay))

    def clear_injections(self) -> None:
        """Forget the injected answers not used up yet."""
        with self._lock:
            self._injections.clear()

    def fail_status_writes(self, count: int, status: int = 409) -> None:
        """The next ``count`` PUT/PATCH of ``pods/{name}/status`` answer ``status`` (409 Conflict)."""
        self.inject(status, count=count, method=("PUT", "PATCH"), path_suffix="/status")

    def set_down(self, down: bool = True) -> None:
        """Down: every connection (new or kept alive) is closed at once, without an answer."""
        self.down = down
        if down:
            with self._lock:
                conns = list(self._connections)
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def compact(self) -> int:
        """Forget the history: watches and Exact lists from older resourceVersions get 410."""
        return self.store.compact()

    def cut_watches(self) -> int:
        """Cut every open watch stream mid-way (no terminating chunk); returns how many."""
        with self._lock:
            self._cut_generation += 1
            watches = list(self._watches)
        for sock in watches:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self.store.cond:
            self.store.cond.notify_all()
        return len(watches)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            )

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- internals used by the handler ------------------------------------------------------

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)
                self._watches.discard(sock)

    def _take_injection(self, method: str, path: str) -> Injection | None:
        with self._lock:
            for inj in self._injections:
                if inj.methods is not None and method not in inj.methods:
                    continue
                if inj.path is not None and path != inj.path:
                    continue
                if inj.path_suffix is not None and not path.endswith(inj.path_suffix):
                    continue
                inj.count -= 1
                if inj.count <= 0:
                    self._injections.remove(inj)
                return inj
        return None

    def _finish_meta(self, obj: Obj, manager: str, *, subresource: str | None = None) -> Obj:
        meta = obj.setdefault("metadata", {})
        assert isinstance(meta, dict)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("resourceVersion", "")  # keeps its Go position; the store sets the value
        meta.setdefault("creationTimestamp", now_rfc3339())
        for key in ("labels", "annotations"):
            if isinstance(meta.get(key), dict):
                meta[key] = dict(sorted(meta[key].items()))  # Go maps serialise sorted
        entry: Obj = {
            "manager": manager,
            "operation": "Update",
            "apiVersion": obj.get("apiVersion", "v1"),
            "time": now_rfc3339(),
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(obj),
        }
        if subresource:
            entry["subresource"] = subresource
        managed = [m for m in meta.get("managedFields") or [] if isinstance(m, dict)]
        managed = [
            m for m in managed if not (m.get("manager") == manager and m.get("subresource") == subresource)
        ]
        meta["managedFields"] = [entry, *managed]
        obj["metadata"] = ordered(meta, META_ORDER)
        return obj

    def _default_pod(self, body: Obj, manager: str) -> Obj:
        spec = dict(body.get("spec") or {})  # type: ignore[call-overload]
        containers = []
        for raw in spec.get("containers") or []:
            c = dict(raw)
            c.setdefault("resources", {})
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            image = str(c.get("image", ""))
            c.setdefault(
                "imagePullPolicy",
                "Always" if image.endswith(":latest") or ":" not in image else "IfNotPresent",
            )
            containers.append(ordered(c, CONTAINER_ORDER))
        spec["containers"] = containers
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("securityContext", {})
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("tolerations", copy.deepcopy(DEFAULT_TOLERATIONS))
        spec.setdefault("priority", 0)
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        status = dict(body.get("status") or {})  # type: ignore[call-overload]
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", "BestEffort")
        meta = dict(body.get("metadata") or {})  # type: ignore[call-overload]
        meta["generation"] = 1
        pod: Obj = {"kind": "Pod", "apiVersion": "v1", "metadata": meta}
        pod["spec"] = ordered(spec, POD_SPEC_ORDER)
        pod["status"] = ordered(status, POD_STATUS_ORDER)
        return self._finish_meta(pod, manager)

    def _default_generic(self, body: Obj, res: Resource, manager: str) -> Obj:
        obj = dict(body)
        obj["kind"] = res.kind
        obj["apiVersion"] = res.api_version
        meta = dict(obj.get("metadata") or {})  # type: ignore[call-overload]
        if res is NADS:
            meta["generation"] = 1
        obj["metadata"] = meta
        if res is EVENTS:
            if isinstance(obj.get("involvedObject"), dict):
                obj["involvedObject"] = ordered(obj["involvedObject"], REF_ORDER)  # type: ignore[arg-type]
            obj = ordered(obj, EVENT_ORDER)
        else:
            obj = ordered(obj, ("kind", "apiVersion", "metadata", "spec", "status"))
        return self._finish_meta(obj, manager)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # atomic, like kubelet's token projection


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # kube-apiserver (Go) sets TCP_NODELAY on every connection; without it the header and body
    # writes meet the client's delayed ACK and every answer takes an extra 40 ms.
    disable_nagle_algorithm = True
    server: _HttpServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests assert on behaviour, not on access logs

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- request handling -------------------------------------------------------------------

    @property
    def api(self) -> FakeApiServer:
        return self.server.api

    def _dispatch(self, method: str) -> None:
        api = self.api
        if api.down:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        path, _, qs = self.path.partition("?")
        query = dict(parse_qsl(qs, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        user: User | None = None
        try:
            user = self._authenticate()
            with api._lock:
                api.requests.append(Recorded(method, path, query, user.name))
            injection = api._take_injection(method, path)
            if injection is not None:
                if injection.delay:
                    time.sleep(injection.delay)
                if injection.status is not None:
                    raise self._injected(injection, method, path)
            self._route(method, path, query, body, user)
        except ApiStatus as status:
            self._send_status(status, pf=user is not None)
        except OSError:
            self.close_connection = True

    def _authenticate(self) -> User:
        api = self.api
        auth = self.headers.get("Authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            with api._lock:
                name = api.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
                user = api.users.get(name) if name else None
            if user is None:
                raise ApiStatus(401, "Unauthorized", "Unauthorized")
            return user
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if cert:
            cn = ""
            for rdn in cert.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        cn = value
            with api._lock:
                user = api.users.get(cn)
            return user or User(cn, [], frozenset())
        with api._lock:
            return api.users[ANONYMOUS]

    def _injected(self, inj: Injection, method: str, path: str) -> ApiStatus:
        code = inj.status or 500
        headers = [("Retry-After", str(inj.retry_after))] if inj.retry_after is not None else []
        name = (
            path.rstrip("/").split("/")[-2] if path.endswith("/status") else path.rstrip("/").split("/")[-1]
        )
        if code == 409:
            return ApiStatus(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                {"name": name, "kind": "pods"},
            )
        reasons = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
        messages = {
            429: "the server has received too many requests and has asked us to try again later",
            500: "Internal error occurred: injected by the test",
            503: "the server is currently unable to handle the request",
            504: "the server was unable to return a response in the time allotted",
        }
        details: Obj | None = {"retryAfterSeconds": inj.retry_after} if inj.retry_after is not None else None
        return ApiStatus(
            code, reasons.get(code, "InternalError"), messages.get(code, f"injected {code}"), details, headers
        )

    def _parse(self, method: str, path: str, query: dict[str, str]) -> Info:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
            group, rest = "", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis" and parts[2] == "v1":
            group, rest = parts[1], parts[3:]
        else:
            raise self._not_found_path()
        namespace: str | None = None
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise self._not_found_path()
        res = (
            RESOURCES.get((group, rest[0]))
            or dra.RESOURCES.get((group, rest[0]))
            or csr.RESOURCES.get((group, rest[0]))
        )
        if res is None or (namespace is not None and not res.namespaced) or len(rest) > 3:
            raise self._not_found_path()
        name = rest[1] if len(rest) >= 2 else ""
        sub = rest[2] if len(rest) == 3 else ""
        if sub and not (
            (sub == "status" and (res is PODS or res in dra.WITH_STATUS))
            or (res is csr.CSRS and sub in csr.SUBRESOURCES)
        ):
            raise self._not_found_path()
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "")
        if method == "GET":
            verb = "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list")
        if not verb or (verb == "create" and name):
            raise ApiStatus(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        return Info(verb, res, namespace, name, sub)

    @staticmethod
    def _not_found_path() -> ApiStatus:
        return ApiStatus(404, "NotFound", "the server could not find the requested resource", {})

    def _authorize(self, user: User, info: Info) -> None:
        if user.allowed is None:
            return
        resource = info.resource.plural + (f"/{info.subresource}" if info.subresource else "")
        if (info.verb, info.resource.group, resource) in user.allowed:
            return
        subject = f'{info.qualified} "{info.name}"' if info.name else info.qualified
        scope = f' in the namespace "{info.namespace}"' if info.namespace else " at the cluster scope"
        raise ApiStatus(
            403,
            "Forbidden",
            f'{subject} is forbidden: User "{user.name}" cannot {info.verb} resource "{resource}" '
            f'in API group "{info.resource.group}"{scope}',
            info.details(),
        )

    def _manager(self) -> str:
        agent = self.headers.get("User-Agent") or ""
        return agent.split("/", 1)[0].strip() or "unknown"

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes, user: User) -> None:
        if path == CRD_PATH and method == "GET":
            self._send_json(200, _nad_crd(), sort_keys=True)
            return
        parts = path.strip("/").split("/")
        if (
            method == "POST"
            and len(parts) == 7
            and parts[:3] == ["api", "v1", "namespaces"]
            and (parts[4::2] == ["serviceaccounts", "token"])
        ):
            self._token_request(parts[3], parts[5], body, user)
            return
        info = self._parse(method, path, query)
        self._authorize(user, info)
        self.user = user
        if info.verb in ("list", "watch"):
            dra.check_field_selector(info.resource, parse_selector(query.get("fieldSelector", ""), "field"))
        handler = getattr(self, f"_{info.verb}")
        handler(info, query, body)

    # -- verbs ------------------------------------------------------------------------------

    def _token_request(self, namespace: str, name: str, body: bytes, user: User) -> None:
        """TokenRequest, as kube-apiserver answers it; the new token authenticates as the
        service account with the requester's permissions (enough for the tests)."""
        allowed = ("create", "", "serviceaccounts/token")
        if user.allowed is not None and allowed not in user.allowed:
            raise ApiStatus(
                403,
                "Forbidden",
                f'serviceaccounts "{name}" is forbidden: User "{user.name}" cannot create resource '
                f'"serviceaccounts/token" in API group "" in the namespace "{namespace}"',
            )
        request = self._decode_body(body)
        spec = request.get("spec")
        if request.get("kind") != "TokenRequest" or not isinstance(spec, dict):
            raise ApiStatus(400, "BadRequest", "the body is not a TokenRequest")
        api = self.api
        requested = float(spec.get("expirationSeconds") or 3600)
        ttl = api.token_ttl if api.token_ttl is not None else requested
        token = secrets.token_hex(16)
        account = f"system:serviceaccount:{namespace}:{name}"
        with api._lock:
            api.token_requests.append(request)
            api.tokens[token] = account
            api.users.setdefault(account, User(account, [], user.allowed))
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + ttl))
        request["status"] = {"token": token, "expirationTimestamp": expires}
        self._send_json(201, request)

    def _get(self, info: Info, query: dict[str, str], body: bytes) -> None:
        obj = self.api.store.get(info.resource, info.namespace or "", info.name)
        if obj is None:
            raise self._not_found(info)
        self._send_json(200, obj, sort_keys=info.resource.crd)

    def _not_found(self, info: Info, name: str | None = None) -> ApiStatus:
        return ApiStatus(
            404, "NotFound", f'{info.qualified} "{name or info.name}" not found', info.details(name)
        )

    def _list(self, info: Info, query: dict[str, str], body: bytes) -> None:
        store = self.api.store
        res = info.resource
        at_rv: int | None = None
        start = ""
        token = query.get("continue")
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
                at_rv, start = int(decoded["rv"]), str(decoded["start"])
            except (ValueError, KeyError, TypeError):
                raise ApiStatus(400, "BadRequest", "continue key is not valid: illegal base64 data") from None
        elif query.get("resourceVersionMatch") == "Exact":
            rv_text = query.get("resourceVersion", "")
            if not rv_text.isdigit() or rv_text == "0":
                raise ApiStatus(400, "BadRequest", 'resourceVersionMatch "Exact" requires a resourceVersion')
            at_rv = int(rv_text)
        try:
            items, rv = store.snapshot(res, info.namespace, at_rv)
        except Expired:
            if token:
                raise ApiStatus(410, "Expired", CONTINUE_EXPIRED_MSG) from None
            raise ApiStatus(410, "Expired", "The resourceVersion for the provided list is too old.") from None
        items = [o for o in items if self._matches(o, query)]
        if start:
            items = [o for o in items if _key(o) > start]
        limit_text = query.get("limit", "")
        more = 0
        cont = ""
        if limit_text.isdigit() and 0 < int(limit_text) < len(items):
            limit = int(limit_text)
            more = len(items) - limit
            items = items[:limit]
            cont = (
                base64.urlsafe_b64encode(
                    json.dumps(
                        {"v": "meta.k8s.io/v1", "rv": rv, "start": _key(items[-1]) + "\x00"},
                        separators=(",", ":"),
                    ).encode()
                )
                .decode()
                .rstrip("=")
            )
        metadata: Obj = {"resourceVersion": str(rv)}
        if cont:
            metadata["continue"] = cont
            metadata["remainingItemCount"] = more
        if res.crd:
            metadata.setdefault("continue", "")
            out: Obj = {
                "apiVersion": res.api_version,
                "items": items,
                "kind": res.list_kind,
                "metadata": metadata,
            }
        else:
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
            out = {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": metadata, "items": items}
        self._send_json(200, out, sort_keys=res.crd, stream=True)

    def _matches(self, obj: Obj, query: dict[str, str]) -> bool:
        for key, op, value in parse_selector(query.get("fieldSelector", ""), "field"):
            actual = lookup(obj, key)
            if (op == "=" and actual != value) or (op == "!=" and actual == value):
                return False
        labels = obj.get("metadata", {}).get("labels") or {}  # type: ignore[union-attr]
        for key, op, value in parse_selector(query.get("labelSelector", ""), "label"):
            actual = labels.get(key)
            if op == "exists" and actual is None:
                return False
            if (op == "=" and actual != value) or (op == "!=" and actual == value):
                return False
        return True

    def _create(self, info: Info, query: dict[str, str], body: bytes) -> None:
        api = self.api
        res = info.resource
        obj = self._decode_body(body)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
        meta = dict(meta)
        namespace = info.namespace or ""
        if res.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiStatus(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
        name = str(meta.get("name") or "")
        if not name and meta.get("generateName"):
            name = str(meta["generateName"]) + secrets.token_hex(3)[:5]
            meta["name"] = name
        for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"):
            meta.pop(key, None)
        obj["metadata"] = meta
        valid = is_label(name) if res is NAMESPACES else is_subdomain(name)
        if not valid:
            rule = LABEL_MSG if res is NAMESPACES else SUBDOMAIN_MSG
            invalid = (
                f'Invalid value: "{name}": {rule}'
                if name
                else "Required value: name or generateName is required"
            )
            raise ApiStatus(
                422,
                "Invalid",
                f'{res.kind} "{name}" is invalid: metadata.name: {invalid}',
                {
                    "name": name,
                    "kind": res.kind,
                    "causes": [
                        {
                            "reason": "FieldValueInvalid" if name else "FieldValueRequired",
                            "message": invalid,
                            "field": "metadata.name",
                        }
                    ],
                },
            )
        if res.namespaced and not api.store.exists(NAMESPACES, "", namespace):
            raise ApiStatus(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )
        if api.store.exists(res, namespace, name):
            raise ApiStatus(
                409, "AlreadyExists", f'{info.qualified} "{name}" already exists', info.details(name)
            )
        if res is PODS:
            stored = self.api._default_pod(obj, self._manager())
        elif res is NAMESPACES:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
            labels = dict(meta.get("labels") or {})
            labels["kubernetes.io/metadata.name"] = name
            meta["labels"] = labels
            stored = self.api._default_generic(obj, res, self._manager())
        elif res in dra.RESOURCES.values():
            stored = self.api._finish_meta(dra.default(obj, res), self._manager())
        elif res is csr.CSRS:
            stored = csr.create(obj, self.user)
        else:
            stored = self.api._default_generic(obj, res, self._manager())
        created = api.store.create(res, namespace, stored)
        self._send_json(201, created, sort_keys=res.crd)

    def _decode_body(self, body: bytes) -> Obj:
        try:
            obj = json.loads(body)
        except ValueError as exc:
            raise ApiStatus(
                400, "BadRequest", f"couldn't get version/kind; json parse error: {exc}"
            ) from None
        if not isinstance(obj, dict):
            raise ApiStatus(400, "BadRequest", "couldn't get version/kind; json parse error: not an object")
        return obj

    def _preconditions(self, info: Info, current: Obj, meta: dict[str, object], *, require_rv: bool) -> None:
        cur_meta = current["metadata"]
        assert isinstance(cur_meta, dict)
        uid = meta.get("uid")
        if uid and uid != cur_meta.get("uid"):
            raise ApiStatus(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {info.qualified} "{info.name}": Precondition failed: '
                f"UID in precondition: {uid}, UID in object meta: {cur_meta.get('uid')}",
                info.details(),
            )
        rv = meta.get("resourceVersion")
        if require_rv and not rv:
            raise ApiStatus(
                422,
                "Invalid",
                f'{info.resource.kind} "{info.name}" is invalid: metadata.resourceVersion: '
                "Invalid value: 0x0: must be specified for an update",
                {
                    "name": info.name,
                    "kind": info.resource.kind,
                    "causes": [
                        {
                            "reason": "FieldValueInvalid",
                            "message": "Invalid value: 0x0: must be specified for an update",
                            "field": "metadata.resourceVersion",
                        }
                    ],
                },
            )
        if rv and rv != cur_meta.get("resourceVersion"):
            raise ApiStatus(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {info.qualified} "{info.name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                info.details(),
            )

    def _apply_update(self, info: Info, current: Obj, new: Obj, *, patch: bool) -> None:
        """Write ``new`` over ``current`` the way the (sub)resource allows, and answer 200."""
        api = self.api
        res = info.resource
        result = copy.deepcopy(current)
        cur_meta = result["metadata"]
        new_meta = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
        assert isinstance(cur_meta, dict) and isinstance(new_meta, dict)
        for key in ("labels", "annotations"):
            if new_meta.get(key):
                cur_meta[key] = new_meta[key]
            else:
                cur_meta.pop(key, None)
        if res is PODS and info.subresource == "status":
            if isinstance(new.get("status"), dict):
                result["status"] = ordered(new["status"], POD_STATUS_ORDER)  # type: ignore[arg-type]
                dra.check_pod_claim_statuses(info.name, result)
        elif res in dra.WITH_STATUS and info.subresource == "status":
            result["status"] = dra.claim_status(info.name, current, new.get("status"))
        elif res is PODS:
            if new.get("spec") != current.get("spec") and isinstance(new.get("spec"), dict):
                result["spec"] = ordered(new["spec"], POD_SPEC_ORDER)  # type: ignore[arg-type]
                cur_meta["generation"] = int(cur_meta.get("generation", 1)) + 1  # type: ignore[call-overload]
        else:
            for key, value in new.items():
                if key not in ("metadata", "kind", "apiVersion", "status"):
                    result[key] = value
            if new.get("spec") != current.get("spec") and "generation" in cur_meta:
                cur_meta["generation"] = int(cur_meta["generation"]) + 1  # type: ignore[call-overload]
        if res is PODS and info.subresource == "status" and api.admission_policies:
            self._admit(info, result, current)
        if _same(result, current):
            self._send_json(200, current, sort_keys=res.crd)  # a no-op write keeps its resourceVersion
            return
        api._finish_meta(result, self._manager(), subresource=info.subresource or None)
        stored = api.store.replace(res, info.namespace or "", info.name, result)
        self._send_json(200, stored, sort_keys=res.crd)

    def _admit(self, info: Info, new: Obj, old: Obj) -> None:
        """The ValidatingAdmissionPolicies, as kube-apiserver answers their denials (wire fact 22)."""
        from tests.fakeapi import vap

        req = vap.request(
            self.user.name, resource="pods", sub_resource="status", operation="UPDATE", name=info.name,
            namespace=info.namespace or "", groups=tuple(self.user.groups),
        )  # fmt: skip
        namespace = self.api.store.get(NAMESPACES, "", info.namespace or "") or {}
        labels = namespace.get("metadata", {}).get("labels")  # type: ignore[attr-defined]
        for policy, binding in self.api.admission_policies:
            decision = vap.admit(policy, binding, req, new, old, labels)
            if not decision.allowed:
                details: Obj = {"name": info.name, "kind": "pods", "causes": [{"message": decision.cause}]}
                refusal = ApiStatus(decision.code, decision.reason, decision.message, details)
                refusal.admission = True
                raise refusal

    def _update(self, info: Info, query: dict[str, str], body: bytes) -> None:
        if info.resource is csr.CSRS and info.subresource == "approval":
            self._csr_approval(info, body)
            return
        if not (info.resource is NADS or (info.resource is PODS and info.subresource == "status")):
            raise ApiStatus(405, "MethodNotAllowed", "the fake API server does not implement this update")
        new = self._decode_body(body)
        meta = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        if meta.get("name") not in (None, info.name):
            raise ApiStatus(400, "BadRequest", "the name of the object does not match the name on the URL")
        with self.api.store.cond:
            current = self.api.store.get(info.resource, info.namespace or "", info.name)
            if current is None:
                raise self._not_found(info)
            self._preconditions(info, current, meta, require_rv=True)
            self._apply_update(info, current, new, patch=False)

    def _csr_approval(self, info: Info, body: bytes) -> None:
        new = self._decode_body(body)
        meta = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        with self.api.store.cond:
            current = self.api.store.get(info.resource, "", info.name)
            if current is None:
                raise self._not_found(info)
            self._preconditions(info, current, meta, require_rv=False)
            stored = self.api.store.replace(
                info.resource, "", info.name, csr.approve(info, current, new, self.user)
            )
        self._send_json(200, stored)
        csr.sign_if_due(self.api, info.name)

    def _patch(self, info: Info, query: dict[str, str], body: bytes) -> None:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiStatus(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                "application/merge-patch+json, application/strategic-merge-patch+json",
            )
        patch = self._decode_body(body)
        with self.api.store.cond:
            current = self.api.store.get(info.resource, info.namespace or "", info.name)
            if current is None:
                raise self._not_found(info)
            meta = patch.get("metadata") if isinstance(patch.get("metadata"), dict) else {}
            assert isinstance(meta, dict)
            self._preconditions(info, current, meta, require_rv=False)
            merged = merge_patch(current, patch)
            assert isinstance(merged, dict)
            self._apply_update(info, current, merged, patch=True)

    def _delete(self, info: Info, query: dict[str, str], body: bytes) -> None:
        api = self.api
        res = info.resource
        grace: int | None = None
        if query.get("gracePeriodSeconds", "").lstrip("-").isdigit():
            grace = int(query["gracePeriodSeconds"])
        if body:
            options = self._decode_body(body)
            if isinstance(options.get("gracePeriodSeconds"), int):
                grace = options["gracePeriodSeconds"]  # type: ignore[assignment]
        if not info.name:
            raise ApiStatus(
                405, "MethodNotAllowed", "the fake API server does not implement deletecollection"
            )
        with api.store.cond:
            current = api.store.get(res, info.namespace or "", info.name)
            if current is None:
                raise self._not_found(info)
            meta = current["metadata"]
            assert isinstance(meta, dict)
            if res is PODS and lookup(current, "spec.nodeName") and grace != 0:
                # Bound pod, graceful: only marked; kubelet would finish it (wire fact 11).
                if "deletionTimestamp" in meta:
                    self._send_json(200, current)
                    return
                seconds = (
                    grace
                    if grace is not None
                    else int(lookup(current, "spec.terminationGracePeriodSeconds") or 30)
                )
                marked = copy.deepcopy(current)
                mmeta = marked["metadata"]
                assert isinstance(mmeta, dict)
                mmeta["deletionTimestamp"] = time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds)
                )
                mmeta["deletionGracePeriodSeconds"] = seconds
                mmeta["generation"] = int(mmeta.get("generation", 1)) + 1  # type: ignore[call-overload]
                marked["metadata"] = ordered(mmeta, META_ORDER)
                self._send_json(200, api.store.replace(res, info.namespace or "", info.name, marked))
                return
            if res is PODS and "deletionTimestamp" in meta and meta.get("deletionGracePeriodSeconds") != 0:
                meta["deletionGracePeriodSeconds"] = 0
                api.store.replace(res, info.namespace or "", info.name, current)
            if res is NAMESPACES:
                for inner in (PODS, NADS, EVENTS):
                    for obj in api.store.snapshot(inner, info.name)[0]:
                        api.store.delete(inner, info.name, lookup(obj, "metadata.name"))
            deleted = api.store.delete(res, info.namespace or "", info.name)
        assert deleted is not None
        if res.crd or res is EVENTS:
            details: Obj = {"name": info.name}
            if res.group:
                details["group"] = res.group
            details["kind"] = res.plural
            details["uid"] = lookup(deleted, "metadata.uid")
            status: Obj = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }
            self._send_json(200, status)
            return
        if res is NAMESPACES:
            deleted["status"] = {"phase": "Terminating"}
        self._send_json(200, deleted)

    def _watch(self, info: Info, query: dict[str, str], body: bytes) -> None:
        api = self.api
        store = api.store
        res = info.resource
        timeout = (
            int(query["timeoutSeconds"])
            if query.get("timeoutSeconds", "").isdigit()
            else DEFAULT_WATCH_TIMEOUT
        )
        bookmarks = query.get("allowWatchBookmarks") == "true"
        initial = query.get("sendInitialEvents") == "true"
        rv_text = query.get("resourceVersion", "")
        if initial and query.get("resourceVersionMatch") != "NotOlderThan":
            raise ApiStatus(422, "Invalid", "sendInitialEvents requires resourceVersionMatch=NotOlderThan")
        parse_selector(query.get("fieldSelector", ""), "field")  # a bad selector fails before the 200
        parse_selector(query.get("labelSelector", ""), "label")
        first: list[tuple[str, Obj]] = []
        expired: Expired | None = None
        with store.cond:
            if initial or rv_text in ("", "0"):
                items, last_rv = store.snapshot(res, info.namespace)
                first = [("ADDED", o) for o in items if self._matches(o, query)]
                if initial and bookmarks:
                    first.append(("BOOKMARK", _bookmark(res, last_rv, initial_end=True)))
            elif not rv_text.isdigit():
                raise ApiStatus(400, "BadRequest", f"invalid resource version: {rv_text!r}")
            else:
                last_rv = int(rv_text)
                try:
                    backlog = store.events_since(last_rv)
                except Expired as exc:
                    expired = exc
                else:
                    first = [(ev.type, ev.obj) for ev in backlog if self._event_matches(ev, info, query)]
                    if backlog:
                        last_rv = backlog[-1].rv
            cut_generation = api._cut_generation
        self._start_stream()
        if expired is not None:
            status = ApiStatus(
                410, "Expired", f"too old resource version: {rv_text} ({expired.oldest})"
            ).body()
            self._write_events([("ERROR", status)], res)
            self._end_stream()
            return
        with api._lock:
            api._watches.add(self.connection)
        try:
            self._write_events(first, res)
            now = time.monotonic()
            deadline = now + timeout
            # kube-apiserver's watch cache sends a BOOKMARK 2 s before the deadline, else ~every minute;
            # watches of <= 4 s got none before their end in the recordings (cases 21 and 26).
            pre_deadline = deadline - 2 if timeout > 4 else float("inf")
            next_bookmark = min(now + api.bookmark_interval, pre_deadline) if bookmarks else float("inf")
            done = False
            while not done:
                batch: list[tuple[str, Obj]] = []
                with store.cond:
                    while True:
                        if api._cut_generation != cut_generation or api._httpd is None:
                            self._abort_stream()
                            return
                        now = time.monotonic()
                        try:
                            backlog = store.events_since(last_rv)
                        except Expired as exc:  # compacted under a running watch
                            status = ApiStatus(
                                410, "Expired", f"too old resource version: {last_rv} ({exc.oldest})"
                            )
                            batch, done = [("ERROR", status.body())], True
                            break
                        if backlog:
                            batch = [
                                (ev.type, ev.obj) for ev in backlog if self._event_matches(ev, info, query)
                            ]
                            last_rv = backlog[-1].rv
                            if batch:
                                break
                            continue
                        if now >= next_bookmark:
                            batch = [("BOOKMARK", _bookmark(res, store.rv))]
                            following = now + api.bookmark_interval
                            next_bookmark = following if following < pre_deadline else float("inf")
                            break
                        if now >= deadline:
                            done = True
                            break
                        store.cond.wait(min(deadline, next_bookmark) - now)
                self._write_events(batch, res)
            self._end_stream()
        finally:
            with api._lock:
                api._watches.discard(self.connection)

    def _event_matches(self, ev: WatchEvent, info: Info, query: dict[str, str]) -> bool:
        return (
            ev.resource is info.resource
            and (info.namespace is None or ev.namespace == info.namespace)
            and self._matches(ev.obj, query)
        )

    # -- responses --------------------------------------------------------------------------

    def _headers(self, *, forbidden: bool = False, pf: bool = True) -> list[tuple[str, str]]:
        headers = [
            ("Audit-Id", str(uuid.uuid4())),
            ("Cache-Control", "no-cache, private"),
            ("Content-Type", "application/json"),
        ]
        if forbidden:
            headers.append(("X-Content-Type-Options", "nosniff"))
        if pf:
            headers.append(("X-Kubernetes-Pf-Flowschema-Uid", self.api.flowschema_uid))
            headers.append(("X-Kubernetes-Pf-Prioritylevel-Uid", self.api.prioritylevel_uid))
        headers.append(("Date", email.utils.formatdate(usegmt=True)))
        return headers

    def _send_status(self, status: ApiStatus, *, pf: bool) -> None:
        self._send_json(
            status.code,
            status.body(),
            forbidden=status.code == 403 and not status.admission,
            pf=pf and status.code != 401,
            extra=status.headers,
        )

    def _send_json(
        self,
        code: int,
        obj: object,
        *,
        sort_keys: bool = False,
        stream: bool = False,
        forbidden: bool = False,
        pf: bool = True,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        data = encode(obj, sort_keys=sort_keys)
        client_close = self.close_connection
        self.send_response_only(code)
        for name, value in [*self._headers(forbidden=forbidden, pf=pf), *extra]:
            self.send_header(name, value)
        if len(data) <= MAX_CONTENT_LENGTH:
            self.send_header("Content-Length", str(len(data)))
            if client_close:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            return
        if client_close:
            self.send_header("Connection", "close")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        # One object = one chunk; lists are streamed in 2 KiB pieces (wire fact 2).
        pieces = _split(data, CHUNK) if stream else [data]
        self.wfile.write(b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n")

    def _start_stream(self) -> None:
        client_close = self.close_connection
        self.send_response_only(200)
        for name, value in self._headers():
            self.send_header(name, value)
        if client_close:
            self.send_header("Connection", "close")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _write_events(self, events: list[tuple[str, Obj]], res: Resource) -> None:
        """Events queued together go out as one buffer cut in 2 KiB chunks, so chunk boundaries
        fall inside events (wire fact 3); a lone event is its own chunk."""
        if not events:
            return
        data = b"".join(
            b'{"type":"%s","object":%s'
            % (etype.encode(), encode(obj, sort_keys=res.crd and etype != "ERROR")[:-1])
            + b"}\n"
            for etype, obj in events
        )
        pieces = _split(data, CHUNK) if len(events) > 1 else [data]
        self.wfile.write(b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces))

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _abort_stream(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _split(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))  # type: ignore[return-value]


def _key(obj: Obj) -> str:
    ns = lookup(obj, "metadata.namespace")
    name = lookup(obj, "metadata.name")
    return f"/{ns}/{name}" if ns else f"/{name}"


def _same(a: Obj, b: Obj) -> bool:
    return encode(a) == encode(b)


def _bookmark(res: Resource, rv: int, *, initial_end: bool = False) -> Obj:
    meta: Obj = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {INITIAL_EVENTS_END: "true"}
    if res is csr.CSRS:
        return csr.bookmark(rv)
    if res is PODS:
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": meta,
            "spec": {"containers": None},
            "status": {},
        }
    return {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}


def _nad_crd() -> Obj:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "network-attachment-definitions.k8s.cni.cncf.io"},
        "spec": {
            "group": "k8s.cni.cncf.io",
            "names": {
                "kind": "NetworkAttachmentDefinition",
                "plural": "network-attachment-definitions",
                "singular": "network-attachment-definition",
                "shortNames": ["net-attach-def"],
            },
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
        "status": {"conditions": [{"type": "Established", "status": "True"}]},
    }
