"""``pymultus validate``: each problem names file, object and field; exit code 1 when any."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pymultus.cli.main import main

GOOD_NAD = """\
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: alpha
  namespace: team
spec:
  config: |
    {"cniVersion": "1.0.0", "type": "bridge", "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    k8s.v1.cni.cncf.io/networks: team/alpha@net5, beta
spec: {containers: []}
"""

BAD = """\
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: broken}
spec:
  config: '{"cniVersion": "1.0.0", "type": "bridge",}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: typeless}
spec:
  config: '{"cniVersion": "1.0.0"}'
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: team
  annotations:
    k8s.v1.cni.cncf.io/networks: '[{"name": "alpha", "interface": "this-name-is-far-too-long"}]'
    v1.multus-cni.io/default-network: 'a/b/c'
spec: {containers: []}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  template:
    metadata:
      annotations:
        k8s.v1.cni.cncf.io/networks: 'alpha/'
    spec: {containers: []}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["validate", *args])
    return code, capsys.readouterr().out


def test_valid_files_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD_NAD)
    conf = tmp_path / "00-multus.conf"
    conf.write_text(
        json.dumps({"cniVersion": "1.0.0", "type": "multus", "clusterNetwork": "k8s-pod-network"})
    )
    code, out = run(capsys, str(good), str(conf))
    assert code == 0
    assert out.splitlines() == [
        f"{good}: OK (NetworkAttachmentDefinition team/alpha; Pod default/web)",
        f"{conf}: OK (Multus conf 00-multus.conf)",
    ]


def test_each_problem_names_file_object_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    code, out = run(capsys, "-o", "json", str(bad))
    assert code == 1
    (report,) = json.loads(out)["files"]
    found = [(p["object"], p["field"]) for p in report["problems"]]
    assert found == [
        ("NetworkAttachmentDefinition default/broken", "spec.config"),
        ("NetworkAttachmentDefinition default/typeless", "spec.config"),
        ("Pod team/web", "metadata.annotations[k8s.v1.cni.cncf.io/networks]"),
        ("Pod team/web", "metadata.annotations[v1.multus-cni.io/default-network]"),
        ("Deployment default/api", "spec.template.metadata.annotations[k8s.v1.cni.cncf.io/networks]"),
    ]
    assert all(p["file"] == str(bad) and p["message"] for p in report["problems"])
    assert "type" in report["problems"][1]["message"]
    assert "this-name-is-far-too-long" in report["problems"][2]["message"]


@pytest.mark.parametrize(
    ("name", "content", "field"),
    [
        (
            "multus.conf",
            {"cniVersion": "1.0.0", "type": "multus", "clusterNetwork": "x", "logLevel": "loud"},
            "logLevel",
        ),
        (
            "multus2.conflist",
            {"cniVersion": "1.0.0", "name": "m", "plugins": [{"type": "multus"}]},
            "clusterNetwork",
        ),
        ("net.conflist", {"cniVersion": "1.0.0", "name": "n", "plugins": []}, "plugins"),
    ],
)
def test_confs_are_checked_with_the_plugin_parsers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: dict[str, object], field: str
) -> None:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    code, out = run(capsys, str(path))
    assert code == 1
    prefix = f"{path}: "
    assert out.startswith(prefix)
    assert out[len(prefix) :].split(": ")[1] == field, out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a: [unclosed", "bad.yaml"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "no NetworkAttachmentDefinition"),
    ],
)
def test_unreadable_or_irrelevant_files_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, out = run(capsys, str(path))
    assert code == 1
    assert message in out


def test_a_missing_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, str(tmp_path / "nope.yaml"))
    assert code == 1
    assert "nope.yaml" in out
