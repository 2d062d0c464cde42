"""Adapts :class:`pymultus.kube.client.KubeClient` to the informer's :class:`ListWatch`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from pymultus.kube.client import KubeClient

KubeObject = dict[str, object]

POD_COLLECTION = "/api/v1/pods"
NAD_COLLECTION = "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions"


class KubeListWatch:
    def __init__(self, client: KubeClient) -> None:
        self.client = client

    def list_page(self, path: str, params: Mapping[str, str]) -> KubeObject:
        return self.client.request("GET", path, params=dict(params))

    def watch(self, path: str, params: Mapping[str, str]) -> Iterator[KubeObject]:
        query = dict(params)
        resource_version = query.pop("resourceVersion", None) or None
        timeout = int(query.pop("timeoutSeconds", "300"))
        query.pop("watch", None)
        query.pop("allowWatchBookmarks", None)
        stream = self.client.watch(path, resource_version, timeout, True, params=query)
        try:
            for kind, obj in stream:
                yield {"type": kind, "object": obj}
        finally:
            stream.close()
