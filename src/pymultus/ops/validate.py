"""``pymultus validate FILE...``: check NADs, pod manifests and Multus confs offline.

Each file is read with the parsers of the hot path: Kubernetes YAML/JSON through the manifests
reader (``kind: List`` flattened, several documents per file), a NAD's ``spec.config`` through
the engine's own NAD parser, the ``networks`` and ``default-network`` annotations through the
annotation grammar, and a Multus or CNI conf through the conf parsers. Pod templates of
workloads (Deployment, DaemonSet, StatefulSet, ReplicaSet, Job, CronJob) are checked like pods.
Nothing is looked up: a NAD named by an annotation may live in the cluster.
"""

from __future__ import annotations

import os

from pymultus import fileio, jsonio
from pymultus.errors import MultusError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

NAD_KIND = "NetworkAttachmentDefinition"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK = "v1.multus-cni.io/default-network"
# kind -> path of its pod template
TEMPLATES: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


class Problem:
    __slots__ = ("field", "file", "message", "obj")

    def __init__(self, file: str, obj: str, field: str, message: str) -> None:
        self.file = file
        self.obj = obj
        self.field = field
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "object": self.obj, "field": self.field, "message": self.message}


class FileReport:
    __slots__ = ("checked", "path", "problems")

    def __init__(self, path: str) -> None:
        self.path = path
        self.checked: list[str] = []  # the objects looked at, e.g. "NetworkAttachmentDefinition ns/a"
        self.problems: list[Problem] = []

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.path,
            "checked": self.checked,
            "problems": [problem.to_json() for problem in self.problems],
        }


def validate_files(paths: list[str]) -> list[FileReport]:
    return [validate_file(path) for path in paths]


def validate_file(path: str) -> FileReport:
    report = FileReport(path)
    cni_doc = _cni_document(path)
    if cni_doc is not None:
        _check_cni_conf(report, cni_doc)
        return report
    from pymultus.kube.manifests import file_objects  # the embedded manifests reader of the plugin

    try:
        objects = file_objects(path)
    except MultusError as exc:
        report.problems.append(Problem(path, "-", "-", exc.msg))
        return report
    for _label, obj in objects:
        _check_object(report, obj)
    if not report.checked and not report.problems:
        report.problems.append(
            Problem(path, "-", "kind", "no NetworkAttachmentDefinition, Pod, pod template or CNI conf found")
        )
    return report


def _cni_document(path: str) -> dict[str, object] | None:
    """The file as a CNI conf document: a JSON object without ``kind`` (else None)."""
    if not path.endswith((".conf", ".conflist", ".json")):
        return None
    try:
        doc = jsonio.loads(fileio.read_file(path), what=path)
    except (OSError, MultusError):
        return None  # the manifests reader reports it, naming the file
    if isinstance(doc, dict) and "kind" not in doc:
        return doc
    return None


def _check_cni_conf(report: FileReport, doc: dict[str, object]) -> None:
    from pymultus.config.generate import OWN_TYPES

    plugins = doc.get("plugins")
    first = plugins[0] if isinstance(plugins, list) and plugins and isinstance(plugins[0], dict) else doc
    name = str(doc.get("name") or first.get("name") or os.path.basename(report.path))
    data = jsonio.dumpb(doc)
    try:
        if first.get("type") in OWN_TYPES:
            from pymultus.config.multus import parse_multus_conf

            report.checked.append(f"Multus conf {name}")
            parse_multus_conf(data)
        else:
            from pymultus.cni import netconf

            report.checked.append(f"CNI conf {name}")
            netconf.load_bytes(data, source=report.path)
    except MultusError as exc:
        report.problems.append(Problem(report.path, name, _field_of(exc.msg, doc), exc.msg))


def _check_object(report: FileReport, obj: Mapping[str, object]) -> None:
    kind = obj.get("kind")
    metadata = obj.get("metadata")
    meta = metadata if isinstance(metadata, dict) else {}
    namespace = str(meta.get("namespace") or "default")
    label = f"{kind} {namespace}/{meta.get('name') or '?'}"
    if kind == NAD_KIND:
        report.checked.append(label)
        _check_nad(report, obj, label, namespace, str(meta.get("name") or ""))
    elif kind == "Pod":
        report.checked.append(label)
        _check_annotations(report, meta, label, namespace, "metadata.annotations")
    elif isinstance(kind, str) and kind in TEMPLATES:
        template: object = obj
        for key in TEMPLATES[kind]:
            template = template.get(key) if isinstance(template, dict) else None
        template_meta = template.get("metadata") if isinstance(template, dict) else None
        report.checked.append(label)
        if isinstance(template_meta, dict):
            field = ".".join(TEMPLATES[kind]) + ".metadata.annotations"
            _check_annotations(report, template_meta, label, namespace, field)


def _check_nad(report: FileReport, obj: Mapping[str, object], label: str, namespace: str, name: str) -> None:
    spec = obj.get("spec")
    config = spec.get("config") if isinstance(spec, dict) else None
    if config is None:
        return  # the plugin then looks for a conf of that name on the node: fine offline
    if not isinstance(config, str):
        report.problems.append(Problem(report.path, label, "spec.config", "spec.config must be a string"))
        return
    from pymultus.attach.resolve import nad_network

    try:
        nad_network(dict(obj), namespace, name, conf_dir="")
    except MultusError as exc:
        report.problems.append(Problem(report.path, label, "spec.config", exc.msg))


def _check_annotations(
    report: FileReport, meta: Mapping[str, object], label: str, namespace: str, field: str
) -> None:
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict):
        return
    from pymultus.kube import annotations as grammar

    networks = annotations.get(NETWORKS)
    if networks is not None:
        try:
            if not isinstance(networks, str):
                raise MultusError("the annotation value must be a string")
            if networks.strip():
                grammar.parse_networks(networks, pod_namespace=namespace)
        except MultusError as exc:
            report.problems.append(Problem(report.path, label, f"{field}[{NETWORKS}]", exc.msg))
    default = annotations.get(DEFAULT_NETWORK)
    if default is not None:
        try:
            if not isinstance(default, str):
                raise MultusError("the annotation value must be a string")
            grammar.parse_default_network(default, default_namespace=namespace)
        except MultusError as exc:
            report.problems.append(Problem(report.path, label, f"{field}[{DEFAULT_NETWORK}]", exc.msg))


def _field_of(message: str, doc: Mapping[str, object]) -> str:
    """The conf key a parser's message names: the first double-quoted word (the conf parsers
    quote keys that way), else a key of the document mentioned as a word, else "-"."""
    start = message.find('"')
    end = message.find('"', start + 1)
    if 0 <= start < end:
        return message[start + 1 : end]
    words = set(message.replace("'", " ").replace(",", " ").replace(":", " ").split())
    plugins = doc.get("plugins")
    keys = (
        list(doc) + [key for p in plugins if isinstance(p, dict) for key in p]
        if isinstance(plugins, list)
        else list(doc)
    )
    return next((key for key in keys if key in words), "-")
