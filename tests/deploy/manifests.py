"""Loading and rendering the manifests in ``deploy/`` without a cluster or a network.

``render(overlay)`` is a deliberately small kustomize: it supports exactly the kustomization keys
the project uses (``resources`` and ``images``) and fails on any other key, so a kustomization
that starts using a feature this renderer does not understand breaks the tests instead of being
validated wrongly. When ``kubectl`` is installed, the tests also compare against
``kubectl kustomize``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("crd", "base", "thin", "thick", "examples", "uninstall", "policy", "cert-approver")
SUPPORTED_KUSTOMIZATION_KEYS = frozenset({"apiVersion", "kind", "resources", "images"})

Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    """Every non-empty document of a (multi-document) YAML file."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def manifest_files() -> list[Path]:
    """Every YAML file under deploy/ except the kustomization files themselves."""
    return sorted(
        path
        for path in DEPLOY.rglob("*.yaml")
        if path.name not in ("kustomization.yaml", "kustomization.yml")
    )


def kustomization_files() -> list[Path]:
    return sorted(DEPLOY.rglob("kustomization.yaml"))


def load_kustomization(directory: Path) -> Doc:
    docs = load_docs(directory / "kustomization.yaml")
    assert len(docs) == 1, f"{directory}/kustomization.yaml must hold exactly one document"
    doc = docs[0]
    unknown = set(doc) - SUPPORTED_KUSTOMIZATION_KEYS
    assert not unknown, (
        f"{directory}/kustomization.yaml uses {sorted(unknown)}, which tests/deploy/manifests.py does not "
        "render; extend the renderer (and its comparison with kubectl kustomize) first"
    )
    assert doc.get("apiVersion") == "kustomize.config.k8s.io/v1beta1"
    assert doc.get("kind") == "Kustomization"
    return doc


def _iter_resources(directory: Path, seen: tuple[Path, ...]) -> Iterator[Doc]:
    directory = directory.resolve()
    assert directory not in seen, f"kustomization cycle: {[*seen, directory]}"
    kustomization = load_kustomization(directory)
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            docs.extend(_iter_resources(target, (*seen, directory)))
        else:
            docs.extend(load_docs(target))
    for doc in docs:
        _apply_images(doc, kustomization.get("images", []))
    yield from docs


def _apply_images(doc: Doc, images: list[Doc]) -> None:
    """kustomize's ``images`` transformer, for the fields the project uses (name, newName, newTag)."""
    spec = (
        doc.get("spec", {}).get("template", {}).get("spec")
        if doc.get("kind") in ("DaemonSet", "Deployment")
        else None
    )
    if doc.get("kind") == "Pod":
        spec = doc.get("spec")
    if not spec:
        return
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        name, _, tag = container["image"].partition(":")
        for image in images:
            assert set(image) <= {"name", "newName", "newTag"}, f"unsupported images entry {image}"
            if image["name"] == name:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"


def render(overlay: str) -> list[Doc]:
    """The objects ``kubectl kustomize deploy/<overlay>`` produces (same content, file order)."""
    return list(_iter_resources(DEPLOY / overlay, ()))


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def daemonset(overlay: str) -> Doc:
    sets = find(render(overlay), "DaemonSet")
    assert len(sets) == 1, f"deploy/{overlay} must render exactly one DaemonSet"
    return sets[0]


def pod_spec(overlay: str) -> Doc:
    spec: Doc = daemonset(overlay)["spec"]["template"]["spec"]
    return spec


def container(overlay: str, name: str) -> Doc:
    spec = pod_spec(overlay)
    matches = [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == name]
    assert len(matches) == 1, f"deploy/{overlay}: no single container named {name}"
    return matches[0]


def host_mounts(overlay: str, container_name: str) -> dict[str, Doc]:
    """hostPath source -> the container's volumeMount, for one container."""
    volumes = {v["name"]: v for v in pod_spec(overlay)["volumes"]}
    mounts: dict[str, Doc] = {}
    for mount in container(overlay, container_name).get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "hostPath" in volume:
            mounts[volume["hostPath"]["path"]] = mount
    return mounts
