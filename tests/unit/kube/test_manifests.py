"""The embedded manifest directory (no Kubernetes): loading, status written back, events."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pymultus.errors import INVALID_NETWORK_CONFIG, InvalidConfig, PodUidMismatch
from pymultus.kube.manifests import ManifestPodSource
from pymultus.kube.netstatus import NETWORK_STATUS_ANNOTATION, encode_status

NADS_AND_PODS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: bridge-net
  namespace: demo
spec:
  config: |
    {"cniVersion": "1.0.0", "name": "bridge-net", "type": "bridge",
     "ipam": {"type": "host-local", "subnet": "10.10.0.0/24"}}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: from-disk
---
apiVersion: v1
kind: Pod
metadata:
  name: pod-a
  namespace: demo
  uid: 1111-aaaa
  creationTimestamp: 2024-05-01T10:00:00Z
  annotations:
    k8s.v1.cni.cncf.io/networks: bridge-net@br1, from-disk
spec:
  containers:
  - name: c
    image: busybox
---
"""


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(textwrap.dedent(text))


def test_multi_document_file(tmp_path: Path) -> None:
    write(tmp_path, "all.yaml", NADS_AND_PODS)
    source = ManifestPodSource(str(tmp_path))
    pod = source.get_pod("demo", "pod-a", uid="1111-aaaa")
    assert pod is not None
    assert pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == "bridge-net@br1, from-disk"  # type: ignore[index]
    # Timestamps stay strings, as kubectl's YAML-to-JSON conversion keeps them.
    assert pod["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"  # type: ignore[index]
    json.dumps(pod)  # plain JSON data, like an API response

    nad = source.get_network_attachment("demo", "bridge-net")
    assert nad is not None
    config = json.loads(nad["spec"]["config"])  # type: ignore[index]
    assert config["type"] == "bridge"
    # No namespace in the manifest: "default", as kubectl would do.
    nad_default = source.get_network_attachment("default", "from-disk")
    assert nad_default is not None
    assert nad_default["metadata"]["namespace"] == "default"  # type: ignore[index]
    assert "spec" not in nad_default

    assert source.get_network_attachment("demo", "from-disk") is None
    assert source.get_pod("demo", "nope", uid=None) is None
    assert source.get_pod("default", "pod-a", uid=None) is None


def test_uid_checked_only_when_the_manifest_has_one(tmp_path: Path) -> None:
    write(
        tmp_path,
        "pods.yml",
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: with-uid, uid: u-1}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: no-uid}
        """,
    )
    source = ManifestPodSource(str(tmp_path))
    assert source.get_pod("default", "with-uid", uid="u-1") is not None
    assert source.get_pod("default", "with-uid", uid=None) is not None
    with pytest.raises(PodUidMismatch) as caught:  # another pod: an error, never "no pod"
        source.get_pod("default", "with-uid", uid="u-2")
    assert caught.value.code == 7 and 'expected pod UID "u-2" but got "u-1"' in caught.value.msg
    assert source.get_pod("default", "no-uid", uid="anything") is not None


def test_json_files_lists_and_other_kinds(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "x"}},
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}},
                ],
            }
        )
    )
    write(tmp_path, "b.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n")
    write(tmp_path, "c.yaml", "")  # empty file
    write(tmp_path, "notes.txt", "not: [a manifest")  # other suffixes are not read
    write(tmp_path, ".hidden.yaml", "{{{ editor swap file")
    (tmp_path / "sub.yaml").mkdir()  # a directory with a manifest-like name is skipped
    source = ManifestPodSource(str(tmp_path))
    assert source.get_pod("x", "p1", uid=None) is not None
    assert source.get_network_attachment("default", "cm") is None


def test_missing_directory(tmp_path: Path) -> None:
    source = ManifestPodSource(str(tmp_path / "absent"))  # constructing does no I/O
    with pytest.raises(InvalidConfig) as info:
        source.get_pod("default", "p", uid=None)
    assert info.value.code == INVALID_NETWORK_CONFIG
    assert info.value.msg == f"manifest directory {tmp_path / 'absent'} does not exist"


def test_directory_is_a_file(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", "")
    with pytest.raises(InvalidConfig, match="is not a directory"):
        ManifestPodSource(str(tmp_path / "f.yaml")).get_network_attachment("default", "n")


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("bad.yaml", "kind: Pod\nmetadata: {name: [unclosed\n", "bad.yaml is not valid YAML at line"),
        ("bad.json", '{"kind": "Pod",', "bad.json is not valid JSON"),
        ("scalar.yaml", "just a string\n", "scalar.yaml is not a Kubernetes object"),
        ("two.yaml", "kind: ConfigMap\n---\n- 1\n", "two.yaml (document 2) is not a Kubernetes object"),
        (
            "noname.yaml",
            "kind: Pod\nmetadata: {namespace: x}\n",
            "Pod in {dir}/noname.yaml has no metadata.name",
        ),
        ("nometa.yaml", "kind: NetworkAttachmentDefinition\n", "has no metadata"),
        (
            "cfg.yaml",
            "kind: NetworkAttachmentDefinition\nmetadata: {name: n}\nspec:\n  config: {type: bridge}\n",
            "spec.config must be a string",
        ),
        ("latin1.yaml", b"kind: Pod\nmetadata: {name: \xe9}\n", "latin1.yaml is not valid"),
    ],
)
def test_invalid_manifest_names_the_file(tmp_path: Path, name: str, text: str | bytes, fragment: str) -> None:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(InvalidConfig) as info:
        ManifestPodSource(str(tmp_path)).get_pod("default", "p", uid=None)
    assert info.value.code == INVALID_NETWORK_CONFIG
    assert fragment.format(dir=tmp_path) in info.value.msg
    assert str(path) in info.value.msg


def test_duplicate_object_is_an_error(tmp_path: Path) -> None:
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: twin}\n"
    write(tmp_path, "a.yaml", pod)
    write(tmp_path, "b.yaml", pod)
    with pytest.raises(InvalidConfig) as info:
        ManifestPodSource(str(tmp_path)).get_pod("default", "twin", uid=None)
    assert (
        info.value.msg == f"Pod default/twin is defined twice: in {tmp_path}/a.yaml and in {tmp_path}/b.yaml"
    )
    # A Pod and a NAD of the same name are different objects.
    write(
        tmp_path,
        "b.yaml",
        "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {name: twin}\n",
    )
    source = ManifestPodSource(str(tmp_path))
    assert source.get_pod("default", "twin", uid=None) is not None
    assert source.get_network_attachment("default", "twin") is not None


STATUS = [
    {"name": "cbr0", "interface": "eth0", "ips": ["10.0.0.5"], "default": True, "dns": {}},
    {
        "name": "demo/bridge-net",
        "interface": "br1",
        "ips": ["10.10.0.2"],
        "mac": "02:00:00:00:00:02",
        "default": False,
        "dns": {},
    },
]


def test_network_status_written_next_to_the_manifests(tmp_path: Path) -> None:
    write(tmp_path, "all.yaml", NADS_AND_PODS)
    before = (tmp_path / "all.yaml").read_bytes()
    source = ManifestPodSource(str(tmp_path))
    pod = source.get_pod("demo", "pod-a", uid=None)
    assert pod is not None
    source.write_network_status(pod, STATUS)

    path = tmp_path / "status" / "demo_pod-a.network-status.json"
    assert source.status_path("demo", "pod-a") == str(path)
    text = path.read_text()
    assert text == encode_status(STATUS) + "\n"  # the annotation value, Multus's format
    assert json.loads(text) == STATUS
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by the user
    assert (tmp_path / "all.yaml").read_bytes() == before  # the user's file is untouched
    assert {p.name for p in (tmp_path / "status").iterdir()} == {
        "demo_pod-a.network-status.json",
        ".manifests-cache.json",
    }  # no temp file left

    # The in-memory pod carries the annotation, as the API would after the write.
    assert pod["metadata"]["annotations"][NETWORK_STATUS_ANNOTATION] == encode_status(STATUS)  # type: ignore[index]
    # Another process (a fresh source) reads it back; the status/ dir is not taken as manifests.
    fresh = ManifestPodSource(str(tmp_path))
    assert fresh.read_network_status("demo", "pod-a") == STATUS
    assert fresh.read_network_status("demo", "other") is None
    assert fresh.get_pod("demo", "pod-a", uid=None) is not None

    # Rewriting replaces the file atomically.
    source.write_network_status(pod, STATUS[:1])
    assert fresh.read_network_status("demo", "pod-a") == STATUS[:1]


def test_status_for_a_pod_object_not_from_the_directory(tmp_path: Path) -> None:
    write(tmp_path, "all.yaml", NADS_AND_PODS)
    source = ManifestPodSource(str(tmp_path))
    copy = json.loads(json.dumps(source.get_pod("demo", "pod-a", uid=None)))
    source.write_network_status(copy, STATUS)
    stored = source.get_pod("demo", "pod-a", uid=None)
    assert stored is not None
    assert NETWORK_STATUS_ANNOTATION in stored["metadata"]["annotations"]  # type: ignore[index,operator]


def test_events_are_appended_as_json_lines(tmp_path: Path) -> None:
    write(tmp_path, "all.yaml", NADS_AND_PODS)
    source = ManifestPodSource(str(tmp_path))
    pod = source.get_pod("demo", "pod-a", uid=None)
    assert pod is not None
    source.record_event(
        pod, kind="Normal", reason="AddedInterface", message="Add br1 [10.10.0.2/24] from demo/bridge-net"
    )
    source.record_event(pod, kind="Warning", reason="NoNetworkFound", message='cannot find "x" <&>')
    lines = (tmp_path / "status" / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["reason"] for e in events] == ["AddedInterface", "NoNetworkFound"]
    assert events[0]["type"] == "Normal"
    assert events[1]["message"] == 'cannot find "x" <&>'
    assert events[0]["involvedObject"] == {
        "kind": "Pod",
        "namespace": "demo",
        "name": "pod-a",
        "uid": "1111-aaaa",
    }
    assert events[0]["time"].endswith("Z")


def test_record_event_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the directory should be")
    source = ManifestPodSource(str(blocker))
    source.record_event({"metadata": {"name": "p"}}, kind="Normal", reason="R", message="m")
    source.record_event({}, kind="Normal", reason="R", message="m")  # not even a name
    assert blocker.read_text() == "a file where the directory should be"


def test_write_status_failure_is_io_failure(tmp_path: Path) -> None:
    write(tmp_path, "all.yaml", NADS_AND_PODS)
    (tmp_path / "status").write_text("a file where the status directory should be")
    source = ManifestPodSource(str(tmp_path))
    pod = source.get_pod("demo", "pod-a", uid=None)
    assert pod is not None
    from pymultus.errors import IOFailure

    with pytest.raises(IOFailure, match="cannot write the network-status of pod demo/pod-a"):
        source.write_network_status(pod, STATUS)


def test_reload_sees_new_files(tmp_path: Path) -> None:
    source = ManifestPodSource(str(tmp_path))
    assert source.get_pod("default", "late", uid=None) is None
    write(tmp_path, "late.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: late}\n")
    assert source.get_pod("default", "late", uid=None) is None  # read once per instance
    source.reload()
    assert source.get_pod("default", "late", uid=None) is not None


LOAD_AND_REPORT = """
import sys
from pymultus.kube.manifests import ManifestPodSource
pod = ManifestPodSource(sys.argv[1]).get_pod("demo", "pod-a", uid=None)
print(pod["metadata"]["name"], "yaml" in sys.modules)
"""


def load_in_fresh_process(directory: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_AND_REPORT, str(directory)], capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def test_parsed_cache_avoids_yaml_until_a_manifest_changes(tmp_path: Path) -> None:
    write(tmp_path, "all.yaml", NADS_AND_PODS)
    assert load_in_fresh_process(tmp_path) == "pod-a True"  # parsed, cache written
    assert (tmp_path / "status" / ".manifests-cache.json").exists()
    assert load_in_fresh_process(tmp_path) == "pod-a False"  # from the cache: no PyYAML import

    # Any change to the set of files or to a file's content invalidates it.
    write(tmp_path, "more.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: more, namespace: demo}\n")
    assert load_in_fresh_process(tmp_path) == "pod-a True"
    source = ManifestPodSource(str(tmp_path))
    assert source.get_pod("demo", "more", uid=None) is not None
    write(tmp_path, "more.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: renamed, namespace: demo}\n")
    source.reload()
    assert source.get_pod("demo", "more", uid=None) is None
    assert source.get_pod("demo", "renamed", uid=None) is not None
    (tmp_path / "more.yaml").unlink()
    source.reload()
    assert source.get_pod("demo", "renamed", uid=None) is None


def test_corrupt_cache_is_ignored_and_errors_are_not_cached(tmp_path: Path) -> None:
    write(tmp_path, "all.yaml", NADS_AND_PODS)
    ManifestPodSource(str(tmp_path)).get_pod("demo", "pod-a", uid=None)
    cache = tmp_path / "status" / ".manifests-cache.json"
    cache.write_text('{"schema": 1, "files": [')  # torn by a crash, say
    assert ManifestPodSource(str(tmp_path)).get_pod("demo", "pod-a", uid=None) is not None
    assert json.loads(cache.read_text())["schema"] == 1  # rewritten

    write(tmp_path, "bad.yaml", "kind: Pod\nmetadata: {name: [\n")
    for _ in range(2):
        with pytest.raises(InvalidConfig, match=r"bad\.yaml is not valid YAML"):
            ManifestPodSource(str(tmp_path)).get_pod("demo", "pod-a", uid=None)


def test_duplicates_are_reported_from_the_cache_too(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: twin}\n")
    ManifestPodSource(str(tmp_path)).get_pod("default", "twin", uid=None)
    write(tmp_path, "b.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: twin}\n")
    for _ in range(2):
        with pytest.raises(InvalidConfig, match="defined twice"):
            ManifestPodSource(str(tmp_path)).get_pod("default", "twin", uid=None)
