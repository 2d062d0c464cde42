"""The one error hierarchy of pymultus.

Every error we raise on purpose is a :class:`MultusError` whose class carries the CNI error code
reported to the runtime. A code is assigned where the condition is known, never by reading a
message later. Anything that is not a ``MultusError`` becomes code 999 at the process boundary.
The Kubernetes API's errors are in :mod:`pymultus.kube.errors`, with the client that raises them.

This module is on the CNI hot path: it imports nothing at run time.
"""

from __future__ import annotations

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


class IncompatibleVersion(MultusError):
    code = INCOMPATIBLE_CNI_VERSION


class UnknownContainer(MultusError):
    code = UNKNOWN_CONTAINER


class InvalidEnvironment(MultusError):
    code = INVALID_ENVIRONMENT


class IOFailure(MultusError):
    code = IO_FAILURE


class DecodingError(MultusError):
    code = DECODING_FAILURE


class InvalidConfig(MultusError):
    code = INVALID_NETWORK_CONFIG


class NetworkNotFound(InvalidConfig):
    """A network named by the configuration or a pod annotation does not exist."""


class NetworkForbidden(InvalidConfig):
    """Namespace isolation refuses a network in another namespace."""


class InvalidAnnotation(InvalidConfig):
    """A pod annotation does not follow the multi-network grammar."""


class InterfaceExists(InvalidConfig):
    """The requested interface name is already in use in the pod's network namespace."""


class MissingCapability(InvalidConfig):
    """A per-attachment request needs a capability no plugin of the network declares."""


class PluginNotFound(InvalidConfig):
    """A delegate plugin binary is not on the search path."""


class TryAgainLater(MultusError):
    code = TRY_AGAIN_LATER


class DefaultNetworkNotReady(TryAgainLater):
    """The readiness-indicator file of the default network did not appear in time."""


class DelegateTimeout(TryAgainLater):
    """A delegate plugin did not finish within its timeout and was killed."""


class PodUidMismatch(TryAgainLater):
    """The pod of that name has another UID than ``K8S_POD_UID`` (a re-created StatefulSet pod,
    or a cache that still holds the other one): transient, so the runtime retries. The manifest
    source raises it with code 7 (the manifest is configuration: retrying changes nothing)."""


class ContainerBusy(TryAgainLater):
    """Another ADD or DEL of the same container is running, or a DEL cancelled this ADD."""


class DelegateFailed(MultusError):
    """A delegate plugin answered with a CNI error; its own code passes through unchanged."""

    def __init__(self, msg: str, *, code: int, details: str = "", delegate: str = "") -> None:
        super().__init__(msg, details=details, code=code)
        self.delegate = delegate


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
    return DelegateFailed(msg, code=code, details=details, delegate=delegate)
