"""The Kubernetes API's errors: part of the one hierarchy (:class:`pymultus.errors.MultusError`),
kept with the client that raises them, so a process that never talks to the API (a thin plugin
without Kubernetes: ~0.1 ms of class creation per start) does not build them.

Translated from HTTP answers in one place, :func:`pymultus.kube.client.api_error`.
"""

from __future__ import annotations

from pymultus.errors import TRY_AGAIN_LATER, MultusError


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
