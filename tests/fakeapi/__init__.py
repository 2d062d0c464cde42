"""A stateful fake Kubernetes API server for tests and benchmarks (see ``server.py``)."""

from tests.fakeapi.server import ADMIN, ApiStatus, FakeApiServer
from tests.fakeapi.store import NADS, PODS, Store

__all__ = ["ADMIN", "NADS", "PODS", "ApiStatus", "FakeApiServer", "Store"]
