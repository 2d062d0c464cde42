"""The engine's log lines (``attach.trace``): the resolution summary names where each network
came from, lines carry the pod and container, and a disabled level builds nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pymultus.attach import trace
from pymultus.attach.context import Call, Deps
from pymultus.attach.resolve import resolve
from pymultus.cni.request import CniRequest
from pymultus.config.multus import parse_multus_conf
from tests.unit.attach.test_resolve import Objects, bridge, pod

CID = "0123456789abcdef0123"


def call_for(
    tmp_path: Path, lines: list[tuple[str, str]], level: str, namespace: str, **keys: object
) -> Call:
    conf = {"cniVersion": "1.0.0", "type": "multus", "confDir": str(tmp_path), **keys}
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": CID,
        "CNI_NETNS": "/var/run/netns/x",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": f"K8S_POD_NAMESPACE={namespace};K8S_POD_NAME=p",
    }
    request = CniRequest.from_env(env, json.dumps(conf).encode())
    deps = Deps(
        pods=None,
        netns=None,  # type: ignore[arg-type]
        executor=None,  # type: ignore[arg-type]
        log=lambda lvl, message: lines.append((lvl, message)),
        log_level=level,
    )
    return Call(request, parse_multus_conf(json.dumps(conf).encode()), deps)


@pytest.mark.parametrize(
    ("namespace", "annotations", "expected"),
    [
        (
            "default",
            {"k8s.v1.cni.cncf.io/networks": "a"},
            "eth0=cluster(clusterNetwork) net1=kube-system/extra(defaultNetworks) net2=default/a(annotation)",
        ),
        (
            "kube-system",  # a system namespace gets no defaultNetworks
            {"k8s.v1.cni.cncf.io/networks": "a"},
            "eth0=cluster(clusterNetwork) net1=kube-system/a(annotation)",
        ),
        (
            "default",
            {"v1.multus-cni.io/default-network": "kube-system/alt"},
            "eth0=kube-system/alt(default-network) net1=kube-system/extra(defaultNetworks)",
        ),
    ],
)
def test_the_resolution_line_names_each_source(
    tmp_path: Path, namespace: str, annotations: dict[str, str], expected: str
) -> None:
    (tmp_path / "cluster.conf").write_text(json.dumps(bridge("cluster")))
    objects = Objects()
    for ns, name in (("kube-system", "extra"), (namespace, "a"), ("kube-system", "alt")):
        objects.nad(ns, name, bridge())
    lines: list[tuple[str, str]] = []
    call = call_for(
        tmp_path,
        lines,
        "verbose",
        namespace,
        clusterNetwork=str(tmp_path / "cluster.conf"),
        defaultNetworks=["extra"],
    )
    the_pod = pod(namespace, **annotations)
    resolution = resolve(call.conf, pod=the_pod, pod_ref=call.pod_ref, runtime_ifname="eth0", source=objects)
    trace.resolution(call, the_pod, resolution.attachments)
    (level, message) = lines[0]
    assert level == "verbose"
    assert message == (
        f'msg="networks resolved" pod={namespace}/p containerID={CID[:12]} command=ADD networks="{expected}"'
    )


def test_inline_delegates_are_named_as_such(tmp_path: Path) -> None:
    lines: list[tuple[str, str]] = []
    call = call_for(tmp_path, lines, "debug", "default", delegates=[bridge("one"), bridge("two")])
    resolution = resolve(call.conf, pod=None, pod_ref=call.pod_ref, runtime_ifname="eth0", source=None)
    trace.resolution(call, None, resolution.attachments)
    assert lines[0][1].endswith('networks="eth0=one(delegates) net1=two(delegates)"')


def test_a_disabled_level_writes_nothing(tmp_path: Path) -> None:
    lines: list[tuple[str, str]] = []
    call = call_for(tmp_path, lines, "error", "default", delegates=[bridge("one")])
    assert call.logs("error") and not call.logs("verbose")
    call.log("verbose", "hidden", field="x")
    call.log("warning", "shown")
    assert lines == [("warning", f"msg=shown pod=default/p containerID={CID[:12]} command=ADD")]
