"""Fixtures of the Kubernetes tests: the fake API server and the real-cluster switch."""

from tests.support.kube import fake_api, fake_api_pki, kube_env

__all__ = ["fake_api", "fake_api_pki", "kube_env"]
