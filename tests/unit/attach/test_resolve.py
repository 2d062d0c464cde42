"""Resolution of a pod's attachments, interface naming, runtime building, default-route decisions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from pymultus.attach.model import Attachment, PodRef
from pymultus.attach.resolve import resolve
from pymultus.attach.runtime import capability_args, check_capabilities, cni_args
from pymultus.cni.request import CniRequest
from pymultus.config.multus import parse_multus_conf
from pymultus.errors import InvalidConfig, MissingCapability, NetworkForbidden, NetworkNotFound


class Objects:
    """An in-memory PodSource: the unit-test stand-in for the API or the manifests directory."""

    def __init__(self) -> None:
        self.nads: dict[tuple[str, str], dict[str, object]] = {}

    def nad(self, namespace: str, name: str, config: dict[str, object] | None, **annotations: str) -> None:
        self.nads[(namespace, name)] = {
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"config": json.dumps(config)} if config is not None else {},
        }

    def get_pod(self, namespace: str, name: str, *, uid: str | None) -> dict[str, object] | None:
        return None

    def get_network_attachment(self, namespace: str, name: str) -> dict[str, object] | None:
        return self.nads.get((namespace, name))

    def write_network_status(self, pod: dict[str, object], status: Sequence[Mapping[str, object]]) -> None:
        raise AssertionError("not used here")

    def record_event(self, pod: dict[str, object], *, kind: str, reason: str, message: str) -> None:
        raise AssertionError("not used here")


def pod(namespace: str = "default", **annotations: str) -> dict[str, object]:
    return {"metadata": {"name": "p", "namespace": namespace, "annotations": annotations}}


def bridge(name: str = "", **extra: object) -> dict[str, object]:
    conf: dict[str, object] = {"cniVersion": "1.0.0", "type": "bridge", "ipam": {"type": "host-local"}}
    if name:
        conf["name"] = name
    conf.update(extra)
    return conf


def multus(tmp_path: Path, **keys: object) -> object:
    base: dict[str, object] = {"cniVersion": "1.0.0", "type": "multus", "confDir": str(tmp_path)}
    base.update(keys)
    return parse_multus_conf(json.dumps(base).encode())


def run(
    tmp_path: Path, objects: Objects, the_pod: dict[str, object] | None, **keys: object
) -> list[Attachment]:
    conf = multus(tmp_path, **keys)
    ns = the_pod["metadata"]["namespace"] if the_pod else "default"  # type: ignore[index]
    return resolve(
        conf,  # type: ignore[arg-type]
        pod=the_pod,
        pod_ref=PodRef(str(ns), "p", "uid-1"),
        runtime_ifname="eth0",
        source=objects,
    ).attachments


@pytest.fixture
def objects() -> Objects:
    found = Objects()
    found.nad("kube-system", "cluster", bridge())
    for name in ("a", "b", "c"):
        found.nad("default", name, bridge())
    found.nad("shared", "s", bridge())
    found.nad("default", "named", bridge(name="own-name"))
    return found


def test_cluster_network_then_annotation_networks_with_positional_names(
    tmp_path: Path, objects: Objects
) -> None:
    got = run(
        tmp_path,
        objects,
        pod(**{"k8s.v1.cni.cncf.io/networks": "a,b@bee,default/c"}),
        clusterNetwork="cluster",
    )
    assert [(a.name, a.ifname, a.is_master) for a in got] == [
        ("kube-system/cluster", "eth0", True),
        ("default/a", "net1", False),
        ("default/b", "bee", False),
        ("default/c", "net3", False),
    ]


def test_nad_name_is_injected_only_when_the_config_has_none(tmp_path: Path, objects: Objects) -> None:
    got = run(tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": "a,named"}), clusterNetwork="cluster")
    assert [a.network.name for a in got[1:]] == ["a", "own-name"]


def test_repeated_nad_gets_two_attachments(tmp_path: Path, objects: Objects) -> None:
    got = run(tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": "a,a"}), clusterNetwork="cluster")
    assert [a.ifname for a in got] == ["eth0", "net1", "net2"]


def test_default_network_annotation_replaces_the_cluster_network(tmp_path: Path, objects: Objects) -> None:
    objects.nad("kube-system", "migration", bridge())
    got = run(
        tmp_path, objects, pod(**{"v1.multus-cni.io/default-network": "migration"}), clusterNetwork="cluster"
    )
    assert [(a.name, a.ifname, a.is_master) for a in got] == [("kube-system/migration", "eth0", True)]


def test_default_networks_skip_system_namespaces(tmp_path: Path, objects: Objects) -> None:
    objects.nad("kube-system", "sidecar", bridge())
    regular = run(tmp_path, objects, pod("default"), clusterNetwork="cluster", defaultNetworks=["sidecar"])
    system = run(tmp_path, objects, pod("kube-system"), clusterNetwork="cluster", defaultNetworks=["sidecar"])
    assert [a.name for a in regular] == ["kube-system/cluster", "kube-system/sidecar"]
    assert [a.name for a in system] == ["kube-system/cluster"]


def test_cluster_network_by_conf_name_in_conf_dir(tmp_path: Path, objects: Objects) -> None:
    (tmp_path / "10-x.conf").write_text(json.dumps(bridge(name="cbr0")))
    got = run(tmp_path, objects, None, clusterNetwork="cbr0")
    assert got[0].name == "cbr0" and got[0].is_master


def test_cluster_network_by_directory_takes_the_first_file(tmp_path: Path, objects: Objects) -> None:
    netd = tmp_path / "netd"
    netd.mkdir()
    (netd / "20-b.conf").write_text(json.dumps(bridge(name="second")))
    (netd / "10-a.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "first", "plugins": [bridge()]})
    )
    got = run(tmp_path, objects, None, clusterNetwork=str(netd))
    assert got[0].name == "first"


def test_empty_nad_spec_prefers_a_conflist_over_a_conf(tmp_path: Path, objects: Objects) -> None:
    objects.nad("default", "disk", None)
    (tmp_path / "01-disk.conf").write_text(json.dumps(bridge(name="disk", bridge="from-conf")))
    (tmp_path / "02-disk.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "disk", "plugins": [bridge(bridge="from-list")]})
    )
    got = run(tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": "disk"}), clusterNetwork="cluster")
    assert got[1].network.plugins[0]["bridge"] == "from-list"


def test_missing_nad_is_network_not_found(tmp_path: Path, objects: Objects) -> None:
    with pytest.raises(NetworkNotFound, match=r"missing"):
        run(tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": "missing"}), clusterNetwork="cluster")


def test_namespace_isolation_refuses_foreign_namespaces_except_global_ones(
    tmp_path: Path, objects: Objects
) -> None:
    annotated = pod(**{"k8s.v1.cni.cncf.io/networks": "shared/s"})
    with pytest.raises(NetworkForbidden, match="namespace isolation"):
        run(tmp_path, objects, annotated, clusterNetwork="cluster", namespaceIsolation=True)
    allowed = run(
        tmp_path,
        objects,
        annotated,
        clusterNetwork="cluster",
        namespaceIsolation=True,
        globalNamespaces="shared",
    )
    assert allowed[1].name == "shared/s"


def test_clashing_interface_names_are_refused(tmp_path: Path, objects: Objects) -> None:
    with pytest.raises(InvalidConfig, match="requested twice"):
        run(tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": "a@x,b@x"}), clusterNetwork="cluster")
    with pytest.raises(InvalidConfig, match="eth0"):
        run(tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": "a@eth0"}), clusterNetwork="cluster")


def test_inline_delegates_without_cluster_network(tmp_path: Path, objects: Objects) -> None:
    got = run(tmp_path, objects, None, delegates=[bridge(name="first"), bridge(name="second")])
    assert [(a.name, a.ifname, a.is_master) for a in got] == [
        ("first", "eth0", True),
        ("second", "net1", False),
    ]


def test_cni_args_from_the_annotation_merge_into_every_plugin(tmp_path: Path, objects: Objects) -> None:
    objects.nad(
        "default",
        "lst",
        {"cniVersion": "1.0.0", "plugins": [bridge(args={"cni": {"a": 1, "b": 1}}), {"type": "tuning"}]},
    )
    annotation = json.dumps([{"name": "lst", "cni-args": {"b": 2}}])
    got = run(tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": annotation}), clusterNetwork="cluster")
    assert [p["args"] for p in got[1].network.plugins] == [{"cni": {"a": 1, "b": 2}}, {"cni": {"b": 2}}]


class TestDefaultRoute:
    def test_requesting_attachment_takes_the_family_from_all_others(
        self, tmp_path: Path, objects: Objects
    ) -> None:
        annotation = json.dumps([{"name": "a", "default-route": ["10.1.1.1"]}, {"name": "b"}])
        got = run(
            tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": annotation}), clusterNetwork="cluster"
        )
        assert [(a.filter_v4, a.filter_v6) for a in got] == [(True, False), (True, False), (True, False)]
        assert got[1].default_route == ["10.1.1.1"]

    def test_empty_request_keeps_the_own_route(self, tmp_path: Path, objects: Objects) -> None:
        annotation = json.dumps([{"name": "a", "default-route": []}])
        got = run(
            tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": annotation}), clusterNetwork="cluster"
        )
        assert [(a.filter_v4, a.filter_v6) for a in got] == [(False, False), (False, False)]

    def test_two_gateways_of_one_family_are_refused(self, tmp_path: Path, objects: Objects) -> None:
        annotation = json.dumps(
            [{"name": "a", "default-route": ["10.1.1.1"]}, {"name": "b", "default-route": ["10.2.2.1"]}]
        )
        with pytest.raises(InvalidConfig, match="ECMP"):
            run(
                tmp_path,
                objects,
                pod(**{"k8s.v1.cni.cncf.io/networks": annotation}),
                clusterNetwork="cluster",
            )

    def test_one_gateway_per_family_on_different_attachments_is_fine(
        self, tmp_path: Path, objects: Objects
    ) -> None:
        annotation = json.dumps(
            [{"name": "a", "default-route": ["10.1.1.1"]}, {"name": "b", "default-route": ["fd00::1"]}]
        )
        got = run(
            tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": annotation}), clusterNetwork="cluster"
        )
        assert [(a.filter_v4, a.filter_v6) for a in got] == [(True, True), (True, False), (False, True)]


class TestRuntime:
    def request(self, args: str) -> CniRequest:
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "c1",
            "CNI_NETNS": "/n",
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": args,
        }
        return CniRequest.from_env(env, b"{}")

    def test_cni_args_carry_pod_keys_request_keys_and_ip_mac(self, tmp_path: Path, objects: Objects) -> None:
        annotation = json.dumps([{"name": "a", "ips": ["10.1.1.5/24"], "mac": "02:00:00:00:00:01"}])
        got = run(
            tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": annotation}), clusterNetwork="cluster"
        )
        request = self.request(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=u;EXTRA=1"
        )
        args = cni_args(request, PodRef.from_request(request), got[1])
        assert args[0] == ("IgnoreUnknown", "true")
        assert ("K8S_POD_NAME", "p") in args and ("EXTRA", "1") in args
        assert ("IP", "10.1.1.5/24") in args and ("MAC", "02:00:00:00:00:01") in args

    def test_runtime_config_goes_only_to_the_cluster_network(self, tmp_path: Path, objects: Objects) -> None:
        mappings = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
        annotation = json.dumps([{"name": "a", "ips": ["10.1.1.5/24"]}])
        conf = multus(tmp_path, clusterNetwork="cluster", runtimeConfig={"portMappings": mappings})
        got = run(
            tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": annotation}), clusterNetwork="cluster"
        )
        assert capability_args(conf, got[0]) == {"portMappings": mappings}  # type: ignore[arg-type]
        assert capability_args(conf, got[1]) == {"ips": ["10.1.1.5/24"]}  # type: ignore[arg-type]

    def test_undeclared_capability_warns_or_refuses(self, tmp_path: Path, objects: Objects) -> None:
        annotation = json.dumps([{"name": "a", "mac": "02:00:00:00:00:01"}])
        got = run(
            tmp_path, objects, pod(**{"k8s.v1.cni.cncf.io/networks": annotation}), clusterNetwork="cluster"
        )
        lenient = multus(tmp_path, clusterNetwork="cluster")
        assert "mac" in check_capabilities(lenient, got[1])  # type: ignore[arg-type]
        strict = multus(tmp_path, clusterNetwork="cluster", strictCapabilities=True)
        with pytest.raises(MissingCapability, match="mac"):
            check_capabilities(strict, got[1])  # type: ignore[arg-type]
