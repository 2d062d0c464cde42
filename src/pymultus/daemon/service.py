"""The daemon's CNI handlers: ``/cni`` and ``/delegate`` requests run through the attach engine.

Thick and thin mode run the same ``pymultus.attach`` functions; here the daemon builds the
dependencies (cached PodSource, shared executor with a timeout, netns operations), merges its
config keys over the request conf, honours the request's own CNI_PATH and CNI_ARGS (DESIGN item 7:
the engine builds the search path and the delegates' CNI_ARGS from the request, never from the
daemon's environment), and encodes the answer for the caller:

* our shim (header ``Pymultus-Shim: 1``): the exact bytes to print, in the conf's cniVersion;
* anything else (a Go multus-shim): ``{"Result": <1.0.0 result>}``, as Go Multus answers.

Errors keep their CNI code end to end (Go Multus flattens them to 999 in its shim).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pymultus import jsonio
from pymultus.daemon import logs, wire
from pymultus.daemon.config import DaemonConfig
from pymultus.daemon.http1 import Request, Response
from pymultus.daemon.metrics import NullMetrics
from pymultus.errors import INTERNAL, InvalidEnvironment, MultusError, TryAgainLater

if TYPE_CHECKING:
    from pymultus.attach.model import PodRef
    from pymultus.attach.ports import PodSource
    from pymultus.kube.devices import DeviceAllocator
    from pymultus.kube.dra import ClaimReader

log = logging.getLogger("pymultus.daemon.service")

DEFAULT_RESULT_VERSION = "1.0.0"  # what a Go multus-shim decodes (types100.Result)
GO_SHIM_RESULT_VERSION = "1.0.0"
READY_COMMANDS = ("ADD", "CHECK", "GC", "STATUS")


class _NotReady(TryAgainLater):
    """Raised before anything is done: the caller may wait for /readyz and send it again."""


def _conf_version(stdin: bytes) -> str:
    """The cniVersion of the request conf, for error and result encoding; best effort."""
    try:
        doc = jsonio.loads_object(stdin)
    except MultusError:
        return DEFAULT_RESULT_VERSION
    version = doc.get("cniVersion")
    return version if isinstance(version, str) and version else DEFAULT_RESULT_VERSION


class CniService:
    def __init__(
        self,
        config: DaemonConfig,
        *,
        pods: PodSource | None,
        metrics: NullMetrics,
        ready: Callable[[], str] = lambda: "",
        claims: ClaimReader | None = None,
    ) -> None:
        self.config = config
        self.claims = claims  # DRA devices, shared (with its ResourceSlice cache) by all requests
        self.overrides = config.request_overrides()
        self.pods = pods
        self.metrics = metrics
        self.ready = ready  # returns "" when ready, else why not
        self._executor: Any = None
        self._netns: Any = None

    # -- dependencies ------------------------------------------------------------------------

    def _shared(self) -> tuple[Any, Any]:
        if self._executor is None:
            from pymultus.netns.ops import Netns

            self._executor = _instrumented_executor(self.config, self.metrics)
            self._netns = Netns()
        return self._executor, self._netns

    def _deps(self, env: Mapping[str, str]) -> Any:
        from pymultus.attach.service import Deps

        executor, netns = self._shared()
        return Deps(
            pods=self.pods,
            netns=netns,
            executor=executor,
            base_env=env,
            wait_readiness=True,
            log=_engine_log,
            log_level=self.config.log_level,
            device_allocator=self._devices if self.claims is not None else None,
        )

    def engine_deps(self) -> Any:
        """The engine's dependencies for work of the daemon's own (hot-plug), not of a request."""
        return self._deps({})

    def _devices(self, pod_ref: PodRef) -> DeviceAllocator:
        from pymultus.kube.devices import DeviceAllocator

        claims = self.claims
        return DeviceAllocator(
            pod_ref.namespace, pod_ref.name, pod_ref.uid, claims=(lambda: claims) if claims else None
        )

    # -- /cni --------------------------------------------------------------------------------

    def handle_cni(self, http: Request) -> Response:
        started = time.monotonic()
        raw = wire.SHIM_HEADER.lower() in http.headers
        command, code, version = "unknown", 0, DEFAULT_RESULT_VERSION
        env: dict[str, str] = {}
        try:
            env, stdin, _ = wire.decode_request(http.body)
            command = env.get("CNI_COMMAND", "unknown").upper()
            version = _conf_version(stdin)
            with logs.request_context(command, wire.pod_of(env), env.get("CNI_CONTAINERID", "")):
                # The engine writes the command's "ADD done" line (with its ms) itself.
                return self._run_cni(command, env, stdin, version, raw)
        except MultusError as exc:
            code = exc.code
            with logs.request_context(command, wire.pod_of(env), env.get("CNI_CONTAINERID", "")):
                if not exc.logged:  # the engine's failure line already names pod and network
                    log.error("%s failed with code %d: %s%s", command, exc.code, exc.msg, _details(exc))
            headers = ((wire.NOT_READY_HEADER, "1"),) if isinstance(exc, _NotReady) else ()
            return Response(400, jsonio.dumpb(exc.to_cni_error(version)), headers=headers)
        except Exception as exc:
            code = INTERNAL
            with logs.request_context(command, wire.pod_of(env), env.get("CNI_CONTAINERID", "")):
                log.exception("%s failed unexpectedly", command)
            error = {"cniVersion": version, "code": INTERNAL, "msg": f"internal error: {exc}"}
            return Response(400, jsonio.dumpb(error))
        finally:
            self.metrics.request(command, code, time.monotonic() - started)

    def _run_cni(
        self, command: str, env: Mapping[str, str], stdin: bytes, version: str, raw: bool
    ) -> Response:
        from pymultus.attach.service import handle
        from pymultus.cni.request import CniRequest
        from pymultus.config.multus import parse_multus_conf

        if command in READY_COMMANDS:
            why = self.ready()
            if why:
                raise _NotReady(f"pymultus daemon is not ready: {why}")
        request = CniRequest.from_env(env, stdin)
        if request.command == "VERSION":
            raise InvalidEnvironment("VERSION is answered by the shim itself, not sent to the daemon")
        conf = parse_multus_conf(stdin, overrides=self.overrides)
        result = handle(request, conf, self._deps(env))
        if result is None:
            return Response(200)
        if raw:
            if version != conf.cni_version:
                result = _convert(result, conf.cni_version, version)
            return Response(200, jsonio.dumpb(result))
        return Response(
            200, jsonio.dumpb({"Result": _convert(result, conf.cni_version, GO_SHIM_RESULT_VERSION)})
        )

    # -- /delegate ---------------------------------------------------------------------------

    def handle_delegate(self, http: Request) -> Response:
        """One delegate for a running pod (multus-dynamic-networks-controller's hot-plug API).

        The request's ``config`` is the delegate's conf; the Multus conf comes from the daemon
        config alone (as in Go Multus). DEL errors are returned, not swallowed."""
        started = time.monotonic()
        command, code, version = "unknown", 0, DEFAULT_RESULT_VERSION
        env: dict[str, str] = {}
        try:
            env, stdin, attributes = wire.decode_request(http.body)
            command = env.get("CNI_COMMAND", "unknown").upper()
            version = _conf_version(stdin)
            with logs.request_context(
                f"delegate-{command}", wire.pod_of(env), env.get("CNI_CONTAINERID", "")
            ):
                result = self._run_delegate(command, env, stdin, attributes)
            if result is None:
                return Response(200)
            return Response(200, jsonio.dumpb({"Result": result}))
        except MultusError as exc:
            code = exc.code
            log.error("delegate %s failed with code %d: %s%s", command, exc.code, exc.msg, _details(exc))
            return Response(400, jsonio.dumpb(exc.to_cni_error(version)))
        except Exception as exc:
            code = INTERNAL
            log.exception("delegate %s failed unexpectedly", command)
            return Response(400, jsonio.dumpb({"cniVersion": version, "code": INTERNAL, "msg": str(exc)}))
        finally:
            self.metrics.request(f"delegate-{command}", code, time.monotonic() - started)

    def _run_delegate(
        self, command: str, env: Mapping[str, str], stdin: bytes, attributes: Mapping[str, object]
    ) -> dict[str, object] | None:
        from pymultus.attach import service as engine
        from pymultus.cni.request import CniRequest
        from pymultus.config.multus import parse_multus_conf

        request = CniRequest.from_env(env, stdin)
        delegate = jsonio.loads_object(stdin, what="the delegate configuration")
        base: dict[str, object] = {
            "cniVersion": self.config.cni_version or delegate.get("cniVersion") or DEFAULT_RESULT_VERSION,
            "name": "multus-cni-network",
            "type": "multus-shim",
            "delegates": [delegate],
        }
        conf = parse_multus_conf(jsonio.dumpb(base), overrides=self.overrides)
        if command not in ("ADD", "DEL", "CHECK", "STATUS"):
            raise InvalidEnvironment(f"CNI_COMMAND {command} is not supported by /delegate")
        return engine.handle_delegate(request, conf, self._deps(env), stdin, attributes)


def _convert(result: dict[str, object], source: str, target: str) -> dict[str, object]:
    if source == target and result.get("cniVersion") == target:
        return result
    from pymultus.cni.result import Result

    converted: dict[str, object] = Result.parse(result, source).to_version(target)
    return converted


_ENGINE_LEVELS = {
    "panic": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "verbose": logging.INFO,
    "debug": logging.DEBUG,
}
_engine_logger = logging.getLogger("pymultus.attach")


def _engine_log(level: str, message: str) -> None:
    """The engine's ``Deps.log``: into the daemon's logging, with the request context."""
    _engine_logger.log(_ENGINE_LEVELS.get(level, logging.INFO), "%s", message)


def _details(exc: MultusError) -> str:
    return f" ({exc.details})" if exc.details else ""


def _instrumented_executor(config: DaemonConfig, metrics: NullMetrics) -> Any:
    """The shared PluginExecutor, timing each delegate for ``pymultus_delegate_duration_seconds``."""
    from pymultus.cni.invoke import PluginExecutor

    class InstrumentedExecutor(PluginExecutor):
        def run(
            self, path: str, env: Mapping[str, str], stdin: bytes, *, timeout: float | None = None
        ) -> bytes:
            started = time.monotonic()
            try:
                return super().run(path, env, stdin, timeout=timeout)
            finally:
                metrics.delegate(
                    env.get("CNI_COMMAND", "unknown"), os.path.basename(path), time.monotonic() - started
                )

    return InstrumentedExecutor(
        base_env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
        timeout=config.delegate_timeout,
        chroot=config.chroot_dir or None,
    )
