"""The one error hierarchy of pymultus.

Every error we raise on purpose is a :class:`MultusError` whose class carries the CNI error code
reported to the runtime. A code is assigned where the condition is known, never by reading a
message later. Anything that is not a ``MultusError`` becomes code 999 at the process boundary.

This module is on the CNI hot path: it imports nothing at run time, and it builds one class,
:class:`MultusError`. The classes for each condition (:mod:`pymultus.errors.kinds`) are built on
first use, through the module's ``__getattr__``: a successful request never raises one, and
building ~30 classes would cost every thin-plugin start ~0.5 ms (the Kubernetes API's too:
a Kubernetes ADD raises none of them on success). So the hot path names them as
``errors.InvalidConfig`` at the ``raise`` and ``except`` (evaluated only when an exception gets
there), not with ``from pymultus.errors import InvalidConfig`` at the top; other code may import
them either way.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # the classes built on first use, for mypy
    from pymultus.errors.kinds import ContainerBusy as ContainerBusy
    from pymultus.errors.kinds import CorruptEntry as CorruptEntry
    from pymultus.errors.kinds import DecodingError as DecodingError
    from pymultus.errors.kinds import DefaultNetworkNotReady as DefaultNetworkNotReady
    from pymultus.errors.kinds import DelegateFailed as DelegateFailed
    from pymultus.errors.kinds import DelegateTimeout as DelegateTimeout
    from pymultus.errors.kinds import IncompatibleVersion as IncompatibleVersion
    from pymultus.errors.kinds import InterfaceExists as InterfaceExists
    from pymultus.errors.kinds import InvalidAnnotation as InvalidAnnotation
    from pymultus.errors.kinds import InvalidConfig as InvalidConfig
    from pymultus.errors.kinds import InvalidEnvironment as InvalidEnvironment
    from pymultus.errors.kinds import IOFailure as IOFailure
    from pymultus.errors.kinds import JSONDecodeError as JSONDecodeError
    from pymultus.errors.kinds import JSONNestingError as JSONNestingError
    from pymultus.errors.kinds import KubeConflict as KubeConflict
    from pymultus.errors.kinds import KubeError as KubeError
    from pymultus.errors.kinds import KubeForbidden as KubeForbidden
    from pymultus.errors.kinds import KubeGone as KubeGone
    from pymultus.errors.kinds import KubeInvalid as KubeInvalid
    from pymultus.errors.kinds import KubeNotFound as KubeNotFound
    from pymultus.errors.kinds import KubeUnauthorized as KubeUnauthorized
    from pymultus.errors.kinds import KubeUnavailable as KubeUnavailable
    from pymultus.errors.kinds import MissingCapability as MissingCapability
    from pymultus.errors.kinds import NetworkForbidden as NetworkForbidden
    from pymultus.errors.kinds import NetworkNotFound as NetworkNotFound
    from pymultus.errors.kinds import PluginNotFound as PluginNotFound
    from pymultus.errors.kinds import PodUidMismatch as PodUidMismatch
    from pymultus.errors.kinds import TryAgainLater as TryAgainLater
    from pymultus.errors.kinds import UnknownContainer as UnknownContainer
    from pymultus.errors.kinds import UnreadableFile as UnreadableFile

# CNI error codes (CNI spec 1.1 §"Error codes"). Plain ints, not an Enum: `enum` costs start-up time.
INCOMPATIBLE_CNI_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
PLUGIN_NOT_AVAILABLE_LIMITED_CONNECTIVITY = 51
INTERNAL = 999


class MultusError(Exception):
    """Base for every error raised on purpose; ``code`` is the CNI code the runtime sees.

    ``msg`` is one sentence about the domain object; ``details`` carries identifiers.
    """

    code: int = INTERNAL
    # Set once the engine has written this failure's log line, so an entry point that logs
    # its own failures (the daemon) does not write it twice.
    logged: bool = False

    def __init__(self, msg: str, *, details: str = "", code: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.msg

    def to_cni_error(self, cni_version: str) -> dict[str, object]:
        """The CNI error result object (spec §"Error"), ``details`` omitted when empty."""
        error: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            error["details"] = self.details
        return error


# The names __getattr__ serves: the classes of kinds (tests/unit/test_errors_lazy.py keeps the
# two in step), so that any other missing attribute is an AttributeError, never an import.
_KINDS = frozenset(
    {
        "IncompatibleVersion",
        "UnknownContainer",
        "InvalidEnvironment",
        "IOFailure",
        "DecodingError",
        "InvalidConfig",
        "NetworkNotFound",
        "NetworkForbidden",
        "InvalidAnnotation",
        "InterfaceExists",
        "MissingCapability",
        "PluginNotFound",
        "TryAgainLater",
        "DefaultNetworkNotReady",
        "DelegateTimeout",
        "PodUidMismatch",
        "ContainerBusy",
        "CorruptEntry",
        "DelegateFailed",
        "UnreadableFile",
        "JSONDecodeError",
        "JSONNestingError",
        "KubeError",
        "KubeNotFound",
        "KubeConflict",
        "KubeForbidden",
        "KubeUnauthorized",
        "KubeGone",
        "KubeInvalid",
        "KubeUnavailable",
    }
)


def __getattr__(name: str) -> type[MultusError]:
    """The error class ``name`` of :mod:`pymultus.errors.kinds`, imported on first use (PEP 562;
    the import system's lock makes concurrent first uses share one module)."""
    if name not in _KINDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import pymultus.errors.kinds

    kind: type[MultusError] = getattr(pymultus.errors.kinds, name)
    globals()[name] = kind
    return kind


def error_from_cni(obj: object, *, fallback_msg: str, delegate: str = "") -> DelegateFailed:
    """Build a :class:`DelegateFailed` from a decoded CNI error object, tolerating odd shapes."""
    code = INTERNAL
    msg = fallback_msg
    details = ""
    if isinstance(obj, dict):
        raw_code = obj.get("code")
        if isinstance(raw_code, int) and not isinstance(raw_code, bool) and raw_code > 0:
            code = raw_code
        raw_msg = obj.get("msg")
        if isinstance(raw_msg, str) and raw_msg:
            msg = raw_msg
        raw_details = obj.get("details")
        if isinstance(raw_details, str):
            details = raw_details
    from pymultus.errors.kinds import DelegateFailed

    return DelegateFailed(msg, code=code, details=details, delegate=delegate)
