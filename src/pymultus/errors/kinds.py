"""The error classes under :class:`pymultus.errors.MultusError`, one per condition we report.

Imported on first use (see :mod:`pymultus.errors`), never on a successful CNI request: building a
class costs the interpreter ~60 k instructions, and these ~30 would cost each thin-plugin start
~0.5 ms for errors it almost never raises. Code outside the hot path imports them from
``pymultus.errors`` as usual.
"""

from __future__ import annotations

from pymultus.errors import (
    DECODING_FAILURE,
    INCOMPATIBLE_CNI_VERSION,
    INVALID_ENVIRONMENT,
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    MultusError,
)


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


class CorruptEntry(MultusError):
    """A delegate-list cache file exists but cannot be decoded (e.g. truncated by a crash);
    DEL then falls back to the result caches (:mod:`pymultus.store.delegates`)."""


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


class UnreadableFile(IOFailure, OSError):
    """:func:`pymultus.fileio.read_file` refused the file: not a regular file, a symlink where none may be, or
    larger than the cap. Also an ``OSError`` whose ``strerror`` says why, so code that reports
    ``cannot read <path>: <strerror>`` for any ``OSError`` reports these the same way."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} {reason}", details=f"path={path}")
        self.filename = path
        self.strerror = reason


class JSONDecodeError(DecodingError, ValueError):
    """Invalid JSON; a CNI decoding failure (code 6)."""


class JSONNestingError(JSONDecodeError):
    """Valid or not, the document nests arrays/objects deeper than :data:`MAX_DEPTH` (code 6).

    A subclass of :class:`JSONDecodeError`, so every caller that maps decoding errors to its own
    code (annotations and NAD configs: 7) does the same for this one.
    """


class KubeError(MultusError):
    """The Kubernetes API answered with an error; translated in one place, ``kube.client.api_error``."""

    def __init__(self, msg: str, *, details: str = "", status: int = 0, reason: str = "") -> None:
        super().__init__(msg, details=details)
        self.status = status
        self.reason = reason


class KubeNotFound(KubeError):
    pass


class KubeConflict(KubeError):
    pass


class KubeForbidden(KubeError):
    pass


class KubeUnauthorized(KubeError):
    pass


class KubeGone(KubeError):
    pass


class KubeInvalid(KubeError):
    pass


class KubeUnavailable(KubeError):
    """Connection errors, 429 and 5xx after the retries: the caller may try again later."""

    code = TRY_AGAIN_LATER
