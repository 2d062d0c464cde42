"""The Kubernetes API client of pymultus: small, synchronous, standard library only.

It does what Multus needs and nothing more: GET pods and NetworkAttachmentDefinitions, write the
``network-status`` annotation through ``pods/status``, POST Events, and LIST + WATCH for the
daemon's caches. Every call it makes is declared in :mod:`pymultus.kube.api_calls` (the RBAC
ClusterRole is derived from that list).

Failures become ``pymultus.errors`` classes in exactly one place, :func:`api_error`:
401 KubeUnauthorized, 403 KubeForbidden, 404 KubeNotFound, 409 KubeConflict, 410 KubeGone,
422 (and 400) KubeInvalid, 429 / 5xx / connection errors KubeUnavailable (CNI code 11) once the
retries are spent. Retries use exponential back-off with jitter, honour ``Retry-After`` and take an
injectable ``sleep`` so tests never really wait.

A write whose answer nobody waits for (an Event) can be sent with :meth:`KubeClient.send_deferred`:
its answer is read just before the next request on that connection (or at close/exit), so the API
server handles it while the thin plugin runs the next delegate — ~1 ms per Event on loopback, more
on a real cluster. The same retry rules apply, late; errors go to a callback.
"""

from __future__ import annotations

import posix
import time

from pymultus import errors, jsonio
from pymultus.errors import MultusError
from pymultus.kube.http import Connection

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Mapping

    from pymultus.kube.auth import Credentials

    KubeObject = dict[str, object]
    ObjectList = list[dict[str, object]]
    Params = Mapping[str, str | int | bool]

USER_AGENT = "pymultus"
NAD_GROUP = "k8s.cni.cncf.io"
NAD_VERSION = "v1"
NAD_RESOURCE = "network-attachment-definitions"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# The error class of each status, by name: the classes are built on first use (pymultus.errors).
_ERROR_CLASSES = {
    400: "KubeInvalid",
    401: "KubeUnauthorized",
    403: "KubeForbidden",
    404: "KubeNotFound",
    409: "KubeConflict",
    410: "KubeGone",
    422: "KubeInvalid",
}
_WATCH_READ_MARGIN = 30.0  # the server ends a watch at timeoutSeconds; allow it this much slack


def _random_fraction() -> float:
    """A jitter factor in [0, 1) without importing ``random`` (its import costs start-up time)."""
    return int.from_bytes(posix.urandom(2), "big") / 65536


class KubeClient:
    """A client for one API server; safe to share between threads (a small connection pool)."""

    __slots__ = (
        "_exit_hook",
        "_idle",
        "backoff",
        "credentials",
        "jitter",
        "max_backoff",
        "max_idle",
        "max_retry_after",
        "retries",
        "sleep",
        "timeout",
        "user_agent",
    )

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_retry_after: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = _random_fraction,
        user_agent: str = USER_AGENT,
        max_idle: int = 4,
    ) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.sleep = sleep
        self.jitter = jitter
        self.user_agent = user_agent
        self.max_idle = max_idle
        self._idle: list[Connection] = []
        self._exit_hook = False

    def close(self) -> None:
        """Read the outstanding deferred answers, then close the idle keep-alive connections."""
        self.settle()
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:  # another thread emptied it
                break

    # -- what Multus needs ------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> KubeObject:
        return self.request("GET", pod_path(namespace, name))

    def get_network_attachment(self, namespace: str, name: str) -> KubeObject:
        return self.request("GET", nad_path(namespace, name))

    def update_pod_status(self, pod: Mapping[str, object]) -> KubeObject:
        """PUT ``pods/status`` with the whole pod; its ``metadata.resourceVersion`` guards the write
        (a stale one is a 409 :class:`KubeConflict`)."""
        namespace, name = _namespace_name(pod)
        return self.request("PUT", pod_path(namespace, name) + "/status", body=jsonio.dumpb(pod))

    def patch_pod_status_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None], *, uid: str | None = None
    ) -> KubeObject:
        """Merge-patch ``metadata.annotations`` through ``pods/status`` (None deletes a key).

        With ``uid`` the patch carries ``metadata.uid``, which the API server treats as a
        precondition: a pod re-created under the same name answers 409 instead of being patched.
        """
        metadata: dict[str, object] = {"uid": uid} if uid else {}
        metadata["annotations"] = dict(annotations)
        patch = {"metadata": metadata}
        return self.request(
            "PATCH", pod_path(namespace, name) + "/status", body=jsonio.dumpb(patch), content_type=MERGE_PATCH
        )

    def create_event(self, namespace: str, event: Mapping[str, object]) -> KubeObject:
        return self.request("POST", _events_path(namespace), body=jsonio.dumpb(event))

    def create_event_later(
        self, namespace: str, event: Mapping[str, object], *, on_error: Callable[[MultusError], None] | None
    ) -> None:
        """POST an Event with :meth:`send_deferred`: errors reach ``on_error``, not the caller."""
        self.send_deferred("POST", _events_path(namespace), body=jsonio.dumpb(event), on_error=on_error)

    def request_token(
        self, namespace: str, service_account: str, *, bound_node: str, expiration_seconds: int
    ) -> KubeObject:
        """A TokenRequest for ``service_account`` bound to the Node ``bound_node``: the token stays
        valid until it expires or the Node object is deleted, not when the calling pod goes (the
        installer gives it to the thin plugin on the host, which outlives every installer pod)."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": expiration_seconds,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Node", "name": bound_node},
            },
        }
        path = (
            f"/api/v1/namespaces/{_segment(namespace, 'namespace')}/serviceaccounts/"
            f"{_segment(service_account, 'service account name')}/token"
        )
        return self.request("POST", path, body=jsonio.dumpb(body))

    def watch(
        self,
        path: str,
        resource_version: str | None = None,
        timeout_seconds: int = 300,
        allow_bookmarks: bool = True,
        *,
        params: Params | None = None,
        send_initial_events: bool = False,
    ) -> WatchStream:
        """Start a WATCH of the collection ``path``; iterate the result for ``(type, object)``.

        Types are ADDED, MODIFIED, DELETED and BOOKMARK. An ERROR event raises: code 410 (the
        resourceVersion is too old, which kube-apiserver reports as ``200`` + an ERROR event) as
        :class:`KubeGone`, so the caller re-lists. The iteration ends when the server closes the
        stream at ``timeout_seconds``; a stream cut before its end raises :class:`KubeUnavailable`.
        HTTP errors of the initial request raise here, before any iteration.
        """
        query: dict[str, str | int | bool] = dict(params or {})
        query["watch"] = "true"
        query["timeoutSeconds"] = timeout_seconds
        if allow_bookmarks:
            query["allowWatchBookmarks"] = "true"
        if resource_version is not None:
            query["resourceVersion"] = resource_version
        if send_initial_events:
            query["sendInitialEvents"] = "true"
            query.setdefault("resourceVersionMatch", "NotOlderThan")
        target = self._target(path, query)
        conn, status, headers = self._exchange(
            "GET", target, None, None, timeout_seconds + _WATCH_READ_MARGIN, dedicated=True
        )
        if status != 200:
            try:
                data = conn.read_body("GET", status, headers)
            except OSError:
                data = b""
            conn.close()
            raise api_error("GET", target, status, data)
        return WatchStream(conn, headers, target)

    # -- generic (``list`` comes last: its name would shadow the builtin in later annotations) --

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: bytes | None = None,
        content_type: str = JSON,
        timeout: float | None = None,
    ) -> KubeObject:
        """One API call returning the decoded JSON object of a 2xx answer; errors raise."""
        target = self._target(path, params)
        return self._call(
            method,
            target,
            body,
            content_type=content_type if body is not None else None,
            timeout=timeout,
            attempt=0,
        )

    def send_deferred(
        self,
        method: str,
        path: str,
        *,
        body: bytes,
        content_type: str = JSON,
        on_error: Callable[[MultusError], None] | None = None,
    ) -> None:
        """Send a write now and read its answer later: before the next request on the same
        connection, in :meth:`settle`/:meth:`close`, or at interpreter exit.

        At most one answer is outstanding per connection (taking a connection reads it first), so
        this is never HTTP pipelining. The rules of :meth:`request` still apply, late: a failure
        on a stale keep-alive connection is re-sent at once, 429/5xx/connection errors after the
        back-off, up to ``retries`` times; a refused write is not re-sent. A failure that remains
        goes to ``on_error`` (the caller has moved on). Only for writes whose answer nobody needs.
        """
        target = self._target(path, None)
        headers = self._headers(content_type)  # a token file error raises here, to the caller
        conn = self._checkout()
        pending = _Deferred(method, target, body, content_type, on_error)
        try:
            conn.send_request(method, target, headers, body)
        except OSError as exc:
            reused = conn.requests > 1
            conn.close()
            self._retry_deferred(pending, 0, b"", headers={}, exc=exc, reused=reused)
            return
        conn.deferred = pending
        self._checkin(conn)
        if not self._exit_hook:
            import atexit  # built in: free

            atexit.register(self.settle)  # never leave a write unanswered (the server sees a reset)
            self._exit_hook = True

    def settle(self) -> None:
        """Read the answers of deferred requests still outstanding (:meth:`send_deferred`)."""
        for conn in list(self._idle):
            if conn.deferred is None:
                continue
            try:
                self._idle.remove(conn)
            except ValueError:  # another thread took it (and reads the answer itself)
                continue
            self._settle(conn)
            self._checkin(conn)

    def _call(
        self,
        method: str,
        target: str,
        body: bytes | None,
        *,
        content_type: str | None,
        timeout: float | None,
        attempt: int,
    ) -> KubeObject:
        conn, status, headers = self._exchange(method, target, body, content_type, timeout, attempt=attempt)
        try:
            data = conn.read_body(method, status, headers)
        except OSError as exc:
            conn.close()
            raise api_error(method, target, 0, b"", exc) from exc
        self._checkin(conn)
        if status >= 300:
            raise api_error(method, target, status, data)
        return jsonio.loads_object(data, what=f"the Kubernetes API answer to {method} {target}")

    # -- transport --------------------------------------------------------------------------

    def _target(self, path: str, params: Params | None) -> str:
        target = self.credentials.base_path + path
        if params:
            target += "?" + "&".join(f"{_quote(k)}={_quote(_param(v))}" for k, v in params.items())
        return target

    def _headers(self, content_type: str | None) -> list[tuple[str, str]]:
        creds = self.credentials
        host = creds.host if ":" not in creds.host else f"[{creds.host}]"
        default_port = 443 if creds.scheme == "https" else 80
        headers = [
            ("Host", host if creds.port == default_port else f"{host}:{creds.port}"),
            ("User-Agent", self.user_agent),
        ]
        authorization = creds.authorization()  # re-reads a token file every time
        if authorization:
            headers.append(("Authorization", authorization))
        headers.append(("Accept", JSON))
        if content_type:
            headers.append(("Content-Type", content_type))
        return headers

    def _checkout(self) -> Connection:
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return self._new_connection()
            if conn.deferred is not None:
                self._settle(conn)
            if conn.is_open:
                return conn

    def _checkin(self, conn: Connection) -> None:
        if conn.is_open and len(self._idle) < self.max_idle:
            self._idle.append(conn)
            return
        if conn.deferred is not None:
            self._settle(conn)
        conn.close()

    def _settle(self, conn: Connection) -> None:
        """Read the deferred answer waiting on ``conn``; retry or report a failure."""
        pending = conn.deferred
        conn.deferred = None
        if not isinstance(pending, _Deferred):
            return
        try:
            status, _reason, headers = conn.read_head()
            data = conn.read_body(pending.method, status, headers)
        except OSError as exc:
            reused = conn.requests > 1
            conn.close()
            self._retry_deferred(pending, 0, b"", headers={}, exc=exc, reused=reused)
            return
        if status < 300:
            return
        self._retry_deferred(pending, status, data, headers=headers, exc=None, reused=False)

    def _retry_deferred(
        self,
        pending: _Deferred,
        status: int,
        data: bytes,
        *,
        headers: dict[str, str],
        exc: OSError | None,
        reused: bool,
    ) -> None:
        """What :meth:`_exchange` does with a failed first attempt, for a deferred request."""
        attempt = 1
        if exc is not None and reused and not isinstance(exc, TimeoutError):
            attempt = 0  # stale idle connection: not an API failure, send again at once
        else:
            error = api_error(pending.method, pending.target, status, data, exc)
            if not isinstance(error, errors.KubeUnavailable) or self.retries < 1:
                _report(pending.on_error, error)
                return
            self.sleep(self._delay(0, _retry_after(headers.get("retry-after"))))
        try:
            self._call(
                pending.method,
                pending.target,
                pending.body,
                content_type=pending.content_type,
                timeout=None,
                attempt=attempt,
            )
        except MultusError as failure:
            _report(pending.on_error, failure)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        delay: float = min(self.max_backoff, self.backoff * 2.0**attempt)
        return delay / 2 + delay / 2 * self.jitter()  # "equal jitter": spread retries out

    def _new_connection(self) -> Connection:
        creds = self.credentials
        return Connection(
            creds.host,
            creds.port,
            ssl_context=creds.ssl_context(),
            server_hostname=creds.tls_server_name or creds.host,
            timeout=self.timeout,
        )

    def _exchange(
        self,
        method: str,
        target: str,
        body: bytes | None,
        content_type: str | None,
        timeout: float | None,
        *,
        dedicated: bool = False,
        attempt: int = 0,
    ) -> tuple[Connection, int, dict[str, str]]:
        """Send until a final answer arrives: returns the connection positioned at the body.

        Retries connection errors, 429 and 5xx with back-off; a failure on a reused keep-alive
        connection (the server closed it while idle) is resent at once on a fresh one.
        """
        while True:
            conn = self._new_connection() if dedicated else self._checkout()
            headers = self._headers(content_type)
            retry_after: float | None = None
            try:
                conn.send_request(method, target, headers, body, timeout=timeout)
                status, _reason, response_headers = conn.read_head()
            except OSError as exc:
                reused = conn.requests > 1
                conn.close()
                if reused and not isinstance(exc, TimeoutError):
                    continue  # stale idle connection: not an API failure
                error = api_error(method, target, 0, b"", exc)
                if not isinstance(error, errors.KubeUnavailable):
                    raise error from exc
            else:
                if status != 429 and status < 500:
                    return conn, status, response_headers
                try:
                    data = conn.read_body(method, status, response_headers)
                except OSError:
                    conn.close()
                    data = b""
                if dedicated:
                    conn.close()
                else:
                    self._checkin(conn)
                error = api_error(method, target, status, data)
                retry_after = _retry_after(response_headers.get("retry-after"))
            if attempt >= self.retries:
                raise error
            self.sleep(self._delay(attempt, retry_after))
            attempt += 1

    def list(self, path: str, params: Params | None = None, *, limit: int = 500) -> tuple[ObjectList, str]:
        """LIST a collection page by page (``limit`` / ``continue``); returns (items, resourceVersion).

        A continue token that expired mid-way is a :class:`KubeGone`: list again from scratch.
        """
        query: dict[str, str | int | bool] = dict(params or {})
        items: ObjectList = []
        resource_version = ""
        while True:
            if limit > 0:
                query["limit"] = limit
            page = self.request("GET", path, params=query)
            metadata = page.get("metadata")
            metadata = metadata if isinstance(metadata, dict) else {}
            if not resource_version:
                rv = metadata.get("resourceVersion")
                resource_version = rv if isinstance(rv, str) else ""
            page_items = page.get("items")
            if isinstance(page_items, list):
                items.extend(item for item in page_items if isinstance(item, dict))
            token = metadata.get("continue")
            if not isinstance(token, str) or not token:
                return items, resource_version
            # The continue token pins the snapshot; the API refuses it together with an RV.
            query.pop("resourceVersion", None)
            query.pop("resourceVersionMatch", None)
            query["continue"] = token


class WatchStream:
    """The events of one WATCH request; iterate for ``(type, object)``. ``close()`` may be called
    from another thread to stop a blocked read (it shuts the socket down)."""

    __slots__ = ("_closed", "_conn", "_events", "target")

    def __init__(self, conn: Connection, headers: dict[str, str], target: str) -> None:
        self._conn = conn
        self._closed = False
        self.target = target
        self._events = self._iterate(headers)

    def __iter__(self) -> Iterator[tuple[str, KubeObject]]:
        return self._events

    def __next__(self) -> tuple[str, KubeObject]:
        return next(self._events)

    def close(self) -> None:
        self._closed = True
        self._conn.shutdown()  # wakes a read blocked in another thread
        try:
            self._events.close()  # runs the iterator's clean-up (or marks a never-started one done)
        except ValueError:
            return  # iterating in another thread right now: it closes the connection itself
        self._conn.close()

    def _iterate(self, headers: dict[str, str]) -> Generator[tuple[str, KubeObject], None, None]:
        conn = self._conn
        try:
            for line in conn.iter_lines(headers):
                event = jsonio.loads_object(line, what=f"a watch event of {self.target}")
                kind = event.get("type")
                obj = event.get("object")
                if not isinstance(kind, str) or not isinstance(obj, dict):
                    raise errors.KubeError(
                        f"malformed watch event from {self.target}",
                        details=line[:200].decode("utf-8", "replace"),
                    )
                if kind == "ERROR":
                    code = obj.get("code")
                    raise api_error(
                        "WATCH", self.target, code if isinstance(code, int) else 500, jsonio.dumpb(obj)
                    )
                yield kind, obj
        except OSError as exc:
            if self._closed:
                return  # close() was called (maybe from another thread): a requested stop
            raise api_error("WATCH", self.target, 0, b"", exc) from exc
        finally:
            conn.close()


def api_error(
    method: str, target: str, status: int, body: bytes, exc: BaseException | None = None
) -> errors.KubeError:
    """THE translation of a failed API call into a ``pymultus.errors`` class.

    ``status`` 0 with ``exc`` is a transport failure. The Status object's ``message`` and
    ``reason`` are kept (``msg`` and ``reason``); ``details`` names the request.
    """
    where = f"{method} {target}"
    if exc is not None:
        if hasattr(exc, "verify_message"):  # (_)ssl.SSLCertVerificationError: retrying cannot help
            return errors.KubeError(
                f"the Kubernetes API server's certificate was not accepted: {exc}",
                details=where,
                reason="CertificateVerifyFailed",
            )
        if isinstance(exc, TimeoutError):
            text = "timed out"
        else:
            text = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
        return errors.KubeUnavailable(
            f"cannot reach the Kubernetes API server: {text}", details=where, reason="ConnectionFailed"
        )
    message = ""
    reason = ""
    try:
        obj = jsonio.loads(body) if body else None
    except ValueError:
        obj = None
    if isinstance(obj, dict) and obj.get("kind") == "Status":
        raw_message = obj.get("message")
        raw_reason = obj.get("reason")
        message = raw_message if isinstance(raw_message, str) else ""
        reason = raw_reason if isinstance(raw_reason, str) else ""
    if not message:
        snippet = body[:200].decode("utf-8", "replace").strip()
        message = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    name = _ERROR_CLASSES.get(status)
    cls: type[errors.KubeError]
    if name is not None:
        cls = getattr(errors, name)
    else:
        cls = errors.KubeUnavailable if status == 429 or status >= 500 else errors.KubeError
    return cls(f"Kubernetes API: {message}", details=where, status=status, reason=reason)


# -- paths and query strings ----------------------------------------------------------------------


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{_segment(namespace, 'namespace')}/pods/{_segment(name, 'pod name')}"


def nad_path(namespace: str, name: str) -> str:
    return (
        f"/apis/{NAD_GROUP}/{NAD_VERSION}/namespaces/{_segment(namespace, 'namespace')}/{NAD_RESOURCE}/"
        f"{_segment(name, 'network-attachment-definition name')}"
    )


def _segment(value: str, what: str) -> str:
    """A name as one path segment: never empty, "." or "..", and percent-encoded."""
    if not value or value in (".", ".."):
        raise errors.KubeInvalid(f"{what} {value!r} is not a valid Kubernetes object name", reason="Invalid")
    return _quote(value)


def _quote(value: str) -> str:
    if all(c in _UNRESERVED for c in value):
        return value
    return "".join(c if c in _UNRESERVED else "".join(f"%{b:02X}" for b in c.encode()) for c in value)


def _param(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _namespace_name(obj: Mapping[str, object]) -> tuple[str, str]:
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        namespace = metadata.get("namespace")
        name = metadata.get("name")
        if isinstance(namespace, str) and isinstance(name, str):
            return namespace, name
    raise errors.KubeInvalid("the object has no metadata.namespace and metadata.name", reason="Invalid")


class _Deferred:
    """A request sent by :meth:`KubeClient.send_deferred` whose answer is still to be read."""

    __slots__ = ("body", "content_type", "method", "on_error", "target")

    def __init__(
        self,
        method: str,
        target: str,
        body: bytes,
        content_type: str,
        on_error: Callable[[MultusError], None] | None,
    ) -> None:
        self.method = method
        self.target = target
        self.body = body
        self.content_type = content_type
        self.on_error = on_error


def _report(on_error: Callable[[MultusError], None] | None, error: MultusError) -> None:
    if on_error is not None:
        try:
            on_error(error)
        except Exception:  # noqa: S110 - a reporting callback must not break the client
            pass


def _events_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{_segment(namespace, 'namespace')}/events"


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None  # absent, or the HTTP-date form: use our own back-off
