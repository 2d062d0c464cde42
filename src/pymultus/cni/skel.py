"""The plugin side of CNI (libcni's ``pkg/skel``): validate, dispatch, print, exit code.

The caller passes the environment, stdin and stdout in (only entry points read ``os.environ``),
so tests drive ``serve`` without touching the process. Handlers return the result object already
in the version they want printed, or None for commands without output.
"""

from __future__ import annotations

from pymultus import errors, jsonio
from pymultus.cni import spec
from pymultus.cni.request import CniRequest
from pymultus.errors import INTERNAL, MultusError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Protocol

    class _Writer(Protocol):
        def write(self, data: bytes, /) -> object: ...

    Handler = Callable[[CniRequest], dict[str, object] | None]


def serve(
    handlers: Mapping[str, Handler],
    *,
    env: Mapping[str, str],
    stdin: bytes,
    stdout: _Writer,
    about: str = "",
    supported_versions: tuple[str, ...] = spec.SUPPORTED_VERSIONS,
    stderr: _Writer | None = None,
) -> int:
    """Run one CNI command; returns the process exit code (0 ok, 1 error printed on stdout)."""
    error_version = spec.CURRENT_VERSION
    try:
        command = env.get("CNI_COMMAND", "")
        if not command and about and stderr is not None:
            # Run by hand without CNI_COMMAND: say what this is, as skel does.
            versions = ", ".join(supported_versions)
            stderr.write(f"{about}\nCNI protocol versions supported: {versions}\n".encode())
            return 0
        if command == spec.VERSION:
            error_version = _requested_version(stdin, supported_versions)
            _emit(stdout, {"cniVersion": error_version, "supportedVersions": list(supported_versions)})
            return 0
        request = CniRequest.from_env(env, stdin)
        error_version = _config_version(stdin, supported_versions)
        minimum = spec.MIN_VERSION_FOR_COMMAND.get(command)
        if minimum is not None and not spec.version_at_least(error_version, minimum):
            raise errors.IncompatibleVersion(f"config version {error_version!r} does not allow {command}")
        handler = handlers.get(command)
        if handler is None:
            if command in (spec.GC, spec.STATUS):
                return 0  # nothing to collect, always ready: what a plugin without them means
            raise errors.InvalidEnvironment(f"this plugin does not implement CNI_COMMAND {command}")
        answer = handler(request)
        if answer is not None:
            _emit(stdout, answer)
        return 0
    except MultusError as exc:
        _emit(stdout, exc.to_cni_error(error_version))
        return 1
    except Exception as exc:  # the process boundary: anything unexpected is code 999, no traceback
        message = str(exc) or type(exc).__name__
        _emit(stdout, {"cniVersion": error_version, "code": INTERNAL, "msg": message})
        return 1


def _emit(stdout: _Writer, obj: object) -> None:
    stdout.write(jsonio.dumpb(obj) + b"\n")


def _declared_version(stdin: bytes) -> str | None:
    if not stdin.strip():
        return None
    doc = jsonio.loads_object(stdin, what="network configuration on stdin")
    version = doc.get("cniVersion")
    if version is None or version == "":
        return None
    if not isinstance(version, str):
        raise errors.IncompatibleVersion("the cniVersion of the configuration on stdin must be a string")
    return version


def _requested_version(stdin: bytes, supported: tuple[str, ...]) -> str:
    """VERSION answers in the version asked for; no version asked means the newest we speak."""
    version = _declared_version(stdin)
    if version is None:
        return spec.highest_supported(list(supported), supported) or spec.CURRENT_VERSION
    if version not in supported:
        raise errors.IncompatibleVersion(
            f"CNI version {version!r} is not supported by this plugin",
            details=f"supported: {', '.join(supported)}",
        )
    return version


def _config_version(stdin: bytes, supported: tuple[str, ...]) -> str:
    version = _declared_version(stdin) or spec.DEFAULT_CONFIG_VERSION
    if version not in supported:
        raise errors.IncompatibleVersion(
            f"incompatible CNI versions: the config is {version!r}, this plugin supports "
            f"{', '.join(supported)}"
        )
    return version
