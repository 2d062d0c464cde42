"""The Kubernetes checks of ``pymultus doctor``: kubeconfig, token, API server, clock skew.

The API server is probed with one authenticated ``GET /version`` on a fresh connection (no
retries): a 401 means the credentials are rejected; any other answer proves the server is
reachable and gives its ``Date`` header, compared with the local clock. Service-account tokens
are JWTs; their ``exp`` claim is read (not verified: only the server can) to warn before expiry.
"""

from __future__ import annotations

import time

from pymultus.errors import MultusError
from pymultus.ops.doctor import FAIL, PASS, WARN, Check

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pymultus.config.multus import MultusConf
    from pymultus.kube.auth import Credentials

TOKEN_WARN_SECONDS = 300.0  # kubelet refreshes projected tokens at 80% of their life
SKEW_WARN_SECONDS = 10.0
SKEW_FAIL_SECONDS = 60.0  # tokens and certificates start failing around here (nbf/iat checks)
PROBE_TIMEOUT = 5.0


def checks(conf: MultusConf, env: Mapping[str, str], clock: Callable[[], float]) -> list[Check]:
    in_cluster = bool(env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT"))
    if not conf.kubeconfig and not in_cluster:
        where = (
            f"pods and NADs come from manifestsDir {conf.manifests_dir}"
            if conf.manifests_dir
            else ("only the configured delegates run")
        )
        return [Check("kubeconfig", PASS, f"no kubeconfig configured: {where}")]
    from pymultus.ops.node import credentials

    try:
        creds = credentials(conf, env)
    except MultusError as exc:
        return [Check("kubeconfig", FAIL, exc.msg)]
    source = conf.kubeconfig or "the in-cluster service account"
    found = [Check("kubeconfig", PASS, f"{source} is valid: server {creds.server}")]
    found.append(token_check(creds, clock()))
    api, skew = api_checks(creds, clock)
    found.append(api)
    if skew is not None:
        found.append(skew)
    return found


def token_check(creds: Credentials, now: float) -> Check:
    try:
        authorization = creds.authorization()
    except MultusError as exc:
        return Check("token", FAIL, exc.msg)
    if authorization is None:
        kind = (
            "a client certificate" if creds.client_cert_file or creds.client_cert_data else "no credentials"
        )
        return Check("token", PASS if kind != "no credentials" else WARN, f"no bearer token: {kind}")
    if not authorization.startswith("Bearer "):
        return Check("token", PASS, "basic authentication")
    expiry = jwt_expiry(authorization[len("Bearer ") :])
    where = creds.token_file or "the kubeconfig"
    if expiry is None:
        return Check("token", PASS, f"token from {where} is readable (no expiry claim)")
    left = expiry - now
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry))
    if left <= 0:
        return Check("token", FAIL, f"token from {where} expired at {stamp}")
    if left < TOKEN_WARN_SECONDS:
        return Check(
            "token", WARN, f"token from {where} expires in {left:.0f} s ({stamp}) and was not renewed"
        )
    return Check("token", PASS, f"token from {where} is readable, expires {stamp}")


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), None when it is not a JWT with one."""
    import binascii

    from pymultus import jsonio

    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1].replace("-", "+").replace("_", "/")
    try:
        claims = jsonio.loads_object(binascii.a2b_base64(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, MultusError):
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def api_checks(creds: Credentials, clock: Callable[[], float]) -> tuple[Check, Check | None]:
    """(API reachable, clock skew) from one GET /version."""
    from pymultus.kube.http import Connection

    conn = Connection(
        creds.host,
        creds.port,
        ssl_context=creds.ssl_context(),
        server_hostname=creds.tls_server_name or creds.host,
        timeout=PROBE_TIMEOUT,
    )
    headers = [("Host", creds.host), ("User-Agent", "pymultus-doctor"), ("Accept", "application/json")]
    try:
        authorization = creds.authorization()
        if authorization:
            headers.append(("Authorization", authorization))
        sent = clock()
        response = conn.request("GET", creds.base_path.rstrip("/") + "/version", headers)
        received = clock()
    except (OSError, MultusError) as exc:
        return Check("api", FAIL, f"API server {creds.server} is not reachable: {exc}"), None
    finally:
        conn.close()
    elapsed = (received - sent) * 1000
    if response.status == 401:
        return Check("api", FAIL, f"API server {creds.server} rejects the credentials (401)"), None
    api = Check("api", PASS, f"API server {creds.server} answered {response.status} in {elapsed:.0f} ms")
    return api, skew_check(response.headers.get("date", ""), (sent + received) / 2)


def skew_check(date_header: str, local: float) -> Check:
    """Compare the server's ``Date`` (1 s resolution) with the local time of the exchange."""
    from email.utils import parsedate_to_datetime

    try:
        server = parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return Check("clock", WARN, f"the API server sent no usable Date header ({date_header!r})")
    skew = local - server
    ahead = "ahead of" if skew > 0 else "behind"
    text = f"local clock is {abs(skew):.0f} s {ahead} the API server"
    if abs(skew) >= SKEW_FAIL_SECONDS:
        return Check("clock", FAIL, text)
    if abs(skew) >= SKEW_WARN_SECONDS:
        return Check("clock", WARN, text)
    return Check("clock", PASS, f"{text} (within {SKEW_WARN_SECONDS:.0f} s)")
