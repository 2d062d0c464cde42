"""Kubernetes access: API client, annotations, embedded manifests."""
