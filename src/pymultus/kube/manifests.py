"""The embedded (no-Kubernetes) source of pods and NetworkAttachmentDefinitions.

A directory of the manifests a user would ``kubectl apply -f <dir>``: ``*.yaml``, ``*.yml`` and
``*.json`` files directly in it (not recursive, hidden files skipped), each holding one or more
documents. ``Pod`` and ``NetworkAttachmentDefinition`` objects are used (``kind: List`` items
too); every other kind is ignored without error, so the same files can also carry Namespaces,
Deployments, etc. An object without ``metadata.namespace`` is in ``default``, as with kubectl.
Timestamps are kept as the strings written (like kubectl's YAML→JSON conversion).

Errors are :class:`~pymultus.errors.InvalidConfig` (code 7) naming the file (and document):
a missing directory, invalid YAML/JSON, a document that is not an object, a Pod/NAD without a
name, a NAD whose ``spec.config`` is not a string, and the same object defined twice.
The directory is read once, on first use (``reload()`` reads it again). PyYAML costs ~30 ms of
import per process (the thin plugin is one process per ADD/DEL), so the parsed objects are
cached in ``status/.manifests-cache.json`` with each manifest's name, inode, size, mtime and
ctime; YAML is parsed again only when that fingerprint changes.

What we write goes to ``<directory>/status/``, never into the user's files:

* ``<namespace>_<name>.network-status.json`` — the pod's ``k8s.v1.cni.cncf.io/network-status``
  value, exactly as it would be on the pod (Multus's format), written atomically (temp file,
  fsync, rename) with mode 0644 so that the user can read it. ``_`` cannot occur in Kubernetes
  names, so the file name is unambiguous. The in-memory pod gets the annotation too.
* ``events.jsonl`` — one JSON object per line per Event: ``time``, ``type`` (Normal/Warning),
  ``reason``, ``message``, ``involvedObject`` {``kind``, ``namespace``, ``name``, ``uid``}.
  Appended with a single ``O_APPEND`` write; recording an event never raises.

PyYAML is imported only here, and only when the directory is read. Every file is read through
``fileio.read_file`` (regular files only, at most 8 MiB each). YAML aliases are resolved with a
bound: a file may expand to at most twice as many values and string characters as it has
bytes (an alias-free file never reaches that), and nest at most ``jsonio.MAX_DEPTH`` levels,
so a 500-byte "billion laughs" document is an error naming the file, not 10^8 values in memory.
"""

from __future__ import annotations

import os

from pymultus import errors, jsonio
from pymultus.fileio import read_file, write_atomically
from pymultus.kube.netstatus import NETWORK_STATUS_ANNOTATION, decode_status, encode_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    KubeObject = dict[str, object]
    _Entry = tuple[str, str, str, str, KubeObject]  # kind, namespace, name, label, object

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STATUS_DIR = "status"
EVENTS_FILE = "events.jsonl"
CACHE_FILE = ".manifests-cache.json"
CACHE_SCHEMA = 1
POD_KIND = "Pod"
NAD_KIND = "NetworkAttachmentDefinition"
DEFAULT_NAMESPACE = "default"


class ManifestPodSource:
    """The ``PodSource`` port (``pymultus.attach.ports``) over a directory of manifests."""

    __slots__ = ("_cache_hit", "_loaded", "_nads", "_origins", "_pods", "directory")

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._loaded = False
        self._pods: dict[tuple[str, str], KubeObject] = {}
        self._nads: dict[tuple[str, str], KubeObject] = {}
        self._origins: dict[tuple[str, str, str], str] = {}
        self._cache_hit = False

    # -- PodSource ------------------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str, *, uid: str | None) -> KubeObject | None:
        """The pod, or None when no manifest defines it. A manifest without a uid matches any
        ``uid``; one whose ``metadata.uid`` differs from a given ``uid`` describes another pod:
        :class:`~pymultus.errors.PodUidMismatch` with code 7 (the manifest is configuration, a
        retry cannot fix it), never None — that would attach the configured delegates only."""
        self._load()
        pod = self._pods.get((namespace, name))
        if pod is None:
            return None
        own_uid = _metadata(pod).get("uid")
        if uid and isinstance(own_uid, str) and own_uid and own_uid != uid:
            from pymultus.errors import INVALID_NETWORK_CONFIG
            from pymultus.kube.pods import is_static_pod, uid_mismatch

            if not is_static_pod(pod):
                origin = self._origins.get((POD_KIND, namespace, name), self.directory)
                raise uid_mismatch(
                    namespace,
                    name,
                    expected=uid,
                    actual=own_uid,
                    source=f"manifest {origin}",
                    code=INVALID_NETWORK_CONFIG,
                )
        return pod

    def get_network_attachment(self, namespace: str, name: str) -> KubeObject | None:
        self._load()
        return self._nads.get((namespace, name))

    def write_network_status(self, pod: KubeObject, status: Sequence[Mapping[str, object]]) -> None:
        """Write the network-status next to the manifests (see the module docstring)."""
        namespace, name = _namespace_name(pod)
        value = encode_status(status)
        path = self.status_path(namespace, name)
        try:
            write_atomically(path, (value + "\n").encode("utf-8"), mode=0o644, dir_mode=None)
        except OSError as exc:
            raise errors.IOFailure(
                f"cannot write the network-status of pod {namespace}/{name} to {path}: {exc.strerror}",
                details=f"path={path}",
            ) from None
        _set_annotation(pod, NETWORK_STATUS_ANNOTATION, value)
        stored = self._pods.get((namespace, name))
        if stored is not None and stored is not pod:
            _set_annotation(stored, NETWORK_STATUS_ANNOTATION, value)

    def record_event(self, pod: KubeObject, *, kind: str, reason: str, message: str) -> None:
        """Append the Event to ``status/events.jsonl``; never raises."""
        try:
            import time

            namespace, name = _namespace_name(pod)
            involved: dict[str, object] = {"kind": "Pod", "namespace": namespace, "name": name}
            uid = _metadata(pod).get("uid")
            if isinstance(uid, str) and uid:
                involved["uid"] = uid
            event = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "type": kind,
                "reason": reason,
                "message": message,
                "involvedObject": involved,
            }
            line = jsonio.dumpb(event) + b"\n"
            status_dir = os.path.join(self.directory, STATUS_DIR)
            os.makedirs(status_dir, mode=0o755, exist_ok=True)
            # O_NONBLOCK: a FIFO put in the file's place must not hang the ADD (no effect on files).
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
            fd = os.open(self.events_path, flags, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except Exception:  # noqa: S110 - an event is best effort by contract (PodSource.record_event)
            pass

    # -- for users of the embedded mode (CLI, demo, tests) -------------------------------------

    @property
    def events_path(self) -> str:
        return os.path.join(self.directory, STATUS_DIR, EVENTS_FILE)

    def status_path(self, namespace: str, name: str) -> str:
        return os.path.join(self.directory, STATUS_DIR, f"{namespace}_{name}.network-status.json")

    def read_network_status(self, namespace: str, name: str) -> list[dict[str, object]] | None:
        """The network-status last written for the pod, or None when there is none."""
        try:
            value = read_file(self.status_path(namespace, name)).decode("utf-8")
        except FileNotFoundError:
            return None
        return decode_status(value)

    def reload(self) -> None:
        self._loaded = False
        self._load()

    # -- loading --------------------------------------------------------------------------------

    def _load(self) -> None:
        if self._loaded:
            return
        paths = manifest_files(self.directory)
        fingerprint = _fingerprint(paths)
        objects = self._read_cache(fingerprint)
        if objects is None:
            objects = []
            for path in paths:
                for label, obj in file_objects(path):
                    kind = obj.get("kind")
                    if kind not in (POD_KIND, NAD_KIND):
                        continue
                    if kind == NAD_KIND:
                        _check_nad(obj, label)
                    namespace, name = _identify(obj, label)
                    objects.append((str(kind), namespace, name, label, obj))
        pods: dict[tuple[str, str], KubeObject] = {}
        nads: dict[tuple[str, str], KubeObject] = {}
        origins: dict[tuple[str, str, str], str] = {}
        for kind, namespace, name, label, obj in objects:
            key = (kind, namespace, name)
            if key in origins:
                raise errors.InvalidConfig(
                    f"{kind} {namespace}/{name} is defined twice: in {origins[key]} and in {label}",
                    details=f"directory={self.directory}",
                )
            origins[key] = label
            (pods if kind == POD_KIND else nads)[(namespace, name)] = obj
        if fingerprint is not None and not self._cache_hit:
            self._write_cache(fingerprint, objects)
        self._pods, self._nads, self._origins = pods, nads, origins
        self._loaded = True

    # -- the parsed cache: PyYAML costs ~30 ms of import per process, so YAML is parsed only
    # -- when a manifest changed (same names, inode, size, mtime and ctime = same content).

    @property
    def cache_path(self) -> str:
        return os.path.join(self.directory, STATUS_DIR, CACHE_FILE)

    def _read_cache(self, fingerprint: list[object] | None) -> list[_Entry] | None:
        self._cache_hit = False
        if fingerprint is None:
            return None
        try:
            doc = jsonio.loads(read_file(self.cache_path, follow_symlinks=False), what="manifest cache")
        except OSError:  # first: a missing cache is the common case, and needs no error class built
            return None
        except errors.JSONDecodeError:
            return None
        if not isinstance(doc, dict) or doc.get("schema") != CACHE_SCHEMA or doc.get("files") != fingerprint:
            return None
        entries = doc.get("objects")
        if not isinstance(entries, list):
            return None
        out: list[_Entry] = []
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 5 and isinstance(entry[4], dict)):
                return None
            kind, namespace, name, label, obj = entry
            if not (isinstance(kind, str) and isinstance(namespace, str) and isinstance(name, str)):
                return None
            out.append((kind, namespace, name, str(label), obj))
        self._cache_hit = True
        return out

    def _write_cache(self, fingerprint: list[object], objects: list[_Entry]) -> None:
        doc = {"schema": CACHE_SCHEMA, "files": fingerprint, "objects": [list(entry) for entry in objects]}
        try:
            write_atomically(self.cache_path, jsonio.dumpb(doc), mode=0o644, dir_mode=None)
        except OSError:
            pass  # only an optimisation: a read-only directory is parsed every time


def _fingerprint(paths: list[str]) -> list[object] | None:
    out: list[object] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            return None
        out.append([os.path.basename(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    return out


def manifest_files(directory: str) -> list[str]:
    """The manifest files of ``directory`` in lexical order (InvalidConfig if it is missing)."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        raise errors.InvalidConfig(
            f"manifest directory {directory} does not exist", details=f"directory={directory}"
        ) from None
    except NotADirectoryError:
        raise errors.InvalidConfig(
            f"manifest directory {directory} is not a directory", details=f"directory={directory}"
        ) from None
    except OSError as exc:
        raise errors.InvalidConfig(
            f"cannot read manifest directory {directory}: {exc.strerror}", details=f"directory={directory}"
        ) from None
    out = []
    for name in names:
        if name.startswith(".") or not name.endswith(MANIFEST_SUFFIXES):
            continue
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            out.append(path)
    return out


def file_objects(path: str) -> list[tuple[str, KubeObject]]:
    """(label for messages, object) for every object of the file, ``kind: List`` flattened."""
    try:
        data = read_file(path)
    except OSError as exc:
        raise errors.InvalidConfig(
            f"cannot read manifest {path}: {exc.strerror}", details=f"path={path}"
        ) from None
    if path.endswith(".json"):
        try:
            documents: list[object] = [jsonio.loads(data, what=f"manifest {path}")]
        except errors.JSONDecodeError as exc:
            raise errors.InvalidConfig(exc.msg, details=f"path={path}") from None
    else:
        documents = _yaml_documents(path, data)
    out: list[tuple[str, KubeObject]] = []
    several = len(documents) > 1
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue  # an empty document (e.g. a trailing "---")
        label = f"{path} (document {index})" if several else path
        if not isinstance(document, dict):
            raise errors.InvalidConfig(
                f"manifest {label} is not a Kubernetes object (a mapping with kind and metadata)",
                details=f"path={path}",
            )
        if document.get("kind") == "List" or (
            isinstance(document.get("kind"), str)
            and str(document["kind"]).endswith("List")
            and isinstance(document.get("items"), list)
        ):
            items = document.get("items")
            if items is not None and not isinstance(items, list):
                raise errors.InvalidConfig(
                    f"manifest {label}: the items of a List must be a list, not {jsonio.kind_of(items)}",
                    details=f"path={path}",
                )
            for item_index, item in enumerate(items or [], start=1):
                item_label = f"{label} item {item_index}"
                if not isinstance(item, dict):
                    raise errors.InvalidConfig(
                        f"manifest {item_label} is not a Kubernetes object", details=f"path={path}"
                    )
                out.append((item_label, item))
            continue
        out.append((label, document))
    return out


def _yaml_documents(path: str, data: bytes) -> list[object]:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class _Loader(base):  # type: ignore[misc,valid-type]
        """SafeLoader that keeps timestamps as strings, as kubectl's YAML-to-JSON step does."""

    _Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    budget = _Budget(path, len(data))
    try:
        return [budget.plain(document, 1) for document in yaml.load_all(data, Loader=_Loader)]
    except RecursionError:  # the pure-Python loader on a deeply nested document
        raise budget.too_deep() from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise errors.InvalidConfig(
            f"manifest {path} is not valid YAML{where}: {problem}", details=f"path={path}"
        ) from None
    except UnicodeDecodeError as exc:
        raise errors.InvalidConfig(
            f"manifest {path} is not valid UTF-8: {exc.reason}", details=f"path={path}"
        ) from None
    except ValueError as exc:  # PyYAML's int constructor past Python's digit limit, say
        raise errors.InvalidConfig(
            f"manifest {path} holds a value that cannot be read: {str(exc)[:120]}", details=f"path={path}"
        ) from None


class _Budget:
    """Turns YAML values into JSON values, bounding what aliases can expand to.

    PyYAML builds an aliased collection once and shares it, so loading a "billion laughs"
    document is cheap; copying it into plain JSON values is what would expand it. Without
    aliases a file holds fewer values, and fewer string characters, than it has bytes: each
    value costs 1 and each string its length, from a budget of twice the file's size.
    """

    __slots__ = ("left", "path")

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.left = 2 * size + 64  # a few bytes can hold several empty values ("[[]]")

    def too_deep(self) -> errors.InvalidConfig:
        return errors.InvalidConfig(
            f"manifest {self.path} nests deeper than {jsonio.MAX_DEPTH} levels", details=f"path={self.path}"
        )

    def plain(self, value: object, depth: int) -> object:
        """YAML values as JSON values (string keys; bytes, sets and other scalars made plain)."""
        self.left -= 1 + len(value) if isinstance(value, str) else 1
        if self.left < 0:
            raise errors.InvalidConfig(
                f"manifest {self.path} expands to far more data than it holds (YAML aliases?)",
                details=f"path={self.path}",
            )
        if isinstance(value, dict | list | tuple | set | frozenset) and depth > jsonio.MAX_DEPTH:
            raise self.too_deep()
        if isinstance(value, dict):
            return {
                str(key) if not isinstance(key, str) else key: self.plain(item, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.plain(item, depth + 1) for item in value]
        if isinstance(value, set | frozenset):
            # A stable order whatever the members' types (a YAML !!set may mix them).
            return sorted((self.plain(item, depth + 1) for item in value), key=repr)
        if isinstance(value, bytes):
            import base64

            return base64.b64encode(value).decode("ascii")
        if isinstance(value, float) and value - value != 0.0:
            # .inf / .nan: JSON (the API, the parsed cache, a delegate's conf) cannot hold them.
            raise errors.InvalidConfig(
                f"manifest {self.path} holds the number {value}, which JSON cannot represent",
                details=f"path={self.path}",
            )
        if value is None or isinstance(value, str | int | float | bool):
            return value
        return str(value)


def _identify(obj: KubeObject, label: str) -> tuple[str, str]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        raise errors.InvalidConfig(
            f"{obj.get('kind')} in {label} has no metadata", details=f"manifest={label}"
        )
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise errors.InvalidConfig(
            f"{obj.get('kind')} in {label} has no metadata.name", details=f"manifest={label}"
        )
    namespace = metadata.get("namespace")
    if namespace is None or namespace == "":
        namespace = DEFAULT_NAMESPACE
        metadata["namespace"] = namespace  # as the API server would return it
    if not isinstance(namespace, str):
        raise errors.InvalidConfig(
            f"{obj.get('kind')} {name} in {label}: metadata.namespace must be a string",
            details=f"manifest={label}",
        )
    return namespace, name


def _check_nad(obj: KubeObject, label: str) -> None:
    spec = obj.get("spec")
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise errors.InvalidConfig(
            f"NetworkAttachmentDefinition in {label}: spec must be a mapping", details=label
        )
    config = spec.get("config")
    if config is not None and not isinstance(config, str):
        raise errors.InvalidConfig(
            f"NetworkAttachmentDefinition in {label}: spec.config must be a string holding the CNI "
            "JSON (in YAML, use a block scalar: 'config: |')",
            details=f"manifest={label}",
        )


def _metadata(obj: Mapping[str, object]) -> dict[str, object]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _namespace_name(pod: Mapping[str, object]) -> tuple[str, str]:
    metadata = _metadata(pod)
    name = metadata.get("name")
    namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        raise errors.InvalidConfig("the pod object has no metadata.name")
    return namespace, name


def _set_annotation(obj: KubeObject, key: str, value: str) -> None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
        obj["metadata"] = metadata
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict):
        annotations = {}
        metadata["annotations"] = annotations
    annotations[key] = value
