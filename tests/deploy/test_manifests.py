"""The manifests in deploy/: they parse, validate offline against the Kubernetes OpenAPI schemas
(kubernetes-validate) and the NAD CRD's own schema, render as kustomize renders them, and say
what pymultus needs on a node — no more, no less."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy import manifests as m

# The oldest Kubernetes minor we support and the newest schema kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
NAD_KIND = "NetworkAttachmentDefinition"
CRD_NAME = "network-attachment-definitions.k8s.cni.cncf.io"
DEBIAN_CNI_PLUGINS = Path("/usr/lib/cni")


def _all_docs() -> list[tuple[str, int, dict[str, Any]]]:
    return [
        (str(path.relative_to(m.ROOT)), index, doc)
        for path in m.manifest_files()
        for index, doc in enumerate(m.load_docs(path))
    ]


ALL_DOCS = _all_docs()
BUILTIN_DOCS = [(f, i, d) for f, i, d in ALL_DOCS if d.get("kind") != NAD_KIND]
NAD_DOCS = [(f, i, d) for f, i, d in ALL_DOCS if d.get("kind") == NAD_KIND]


def _crd() -> dict[str, Any]:
    crds = m.find(m.render("crd"), "CustomResourceDefinition", CRD_NAME)
    assert len(crds) == 1
    return crds[0]


# ---- parsing and schema validation ------------------------------------------------------------


def test_every_yaml_file_parses_into_named_objects() -> None:
    assert len(ALL_DOCS) >= 12, "deploy/ lost manifests"
    for file, index, doc in ALL_DOCS:
        assert isinstance(doc, dict), f"{file}#{index} is not a mapping"
        assert doc.get("apiVersion") and doc.get("kind"), f"{file}#{index} lacks apiVersion/kind"
        assert doc.get("metadata", {}).get("name"), f"{file}#{index} has no metadata.name"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("file", "index", "doc"), BUILTIN_DOCS, ids=[f"{f}#{i}" for f, i, _ in BUILTIN_DOCS])
def test_builtin_object_validates_against_kubernetes_openapi(
    file: str, index: int, doc: dict[str, Any], version: str
) -> None:
    # strict: unknown fields (typos such as "mountPropogation") are errors, as with
    # `kubectl apply --validate=strict`.
    kubernetes_validate.validate(doc, version, strict=True)


def test_crd_is_the_npwg_definition() -> None:
    crd = _crd()
    spec = crd["spec"]
    assert spec["group"] == "k8s.cni.cncf.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == NAD_KIND
    assert spec["names"]["plural"] == "network-attachment-definitions"
    assert set(spec["names"]["shortNames"]) == {"net-attach-def", "nad"}
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    config = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["config"]
    assert config["type"] == "string"


@pytest.mark.parametrize(("file", "index", "doc"), NAD_DOCS, ids=[f"{f}#{i}" for f, i, _ in NAD_DOCS])
def test_nad_validates_against_the_crd_schema(file: str, index: int, doc: dict[str, Any]) -> None:
    schema = _crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.Draft7Validator(schema).validate(doc)
    assert doc["apiVersion"] == "k8s.cni.cncf.io/v1"


def test_crd_schema_rejects_a_non_string_config() -> None:
    # Guards the test above: the schema really constrains spec.config.
    schema = _crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    bad = {"apiVersion": "k8s.cni.cncf.io/v1", "kind": NAD_KIND, "metadata": {}, "spec": {"config": {}}}
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'string'"):
        jsonschema.Draft7Validator(schema).validate(bad)


@pytest.mark.parametrize(("file", "index", "doc"), NAD_DOCS, ids=[f"{f}#{i}" for f, i, _ in NAD_DOCS])
def test_example_nad_config_is_a_cni_config_of_real_plugins(
    file: str, index: int, doc: dict[str, Any]
) -> None:
    from pymultus.cni.netconf import load_bytes

    raw = doc["spec"]["config"].encode()
    net = load_bytes(raw, source=file)
    # NPWG §3.4.3 recommends the CNI name to equal the NAD name.
    assert net.name == doc["metadata"]["name"]
    for plugin in net.plugins:
        plugin_type = plugin["type"]
        assert isinstance(plugin_type, str)
        assert (DEBIAN_CNI_PLUGINS / plugin_type).exists(), f"{file}: no CNI plugin named {plugin_type}"
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict):
            assert (DEBIAN_CNI_PLUGINS / str(ipam["type"])).exists()


def test_example_pod_annotations_parse_and_name_existing_nads() -> None:
    from pymultus.kube.annotations import NETWORKS_ANNOTATION, parse_networks

    docs = m.render("examples")
    nads = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in m.find(docs, NAD_KIND)}
    pods = m.find(docs, "Pod")
    assert len(pods) == 2
    forms = set()
    for pod in pods:
        value = pod["metadata"]["annotations"][NETWORKS_ANNOTATION]
        forms.add("json" if value.lstrip().startswith("[") else "comma")
        selections = parse_networks(value, pod_namespace=pod["metadata"]["namespace"])
        assert len(selections) == 2
        for selection in selections:
            assert (selection.namespace, selection.name) in nads
    assert forms == {"json", "comma"}


# ---- kustomize layout -------------------------------------------------------------------------


@pytest.mark.parametrize("path", m.kustomization_files(), ids=lambda p: str(p.relative_to(m.ROOT)))
def test_kustomization_references_existing_files(path: Path) -> None:
    doc = m.load_kustomization(path.parent)
    assert doc["resources"], f"{path} lists no resources"
    for entry in doc["resources"]:
        target = path.parent / entry
        assert target.exists(), f"{path} lists {entry}, which does not exist"
        if target.is_dir():
            assert (target / "kustomization.yaml").exists()


def test_every_manifest_is_used_by_a_kustomization() -> None:
    used = set()
    for path in m.kustomization_files():
        used |= {(path.parent / e).resolve() for e in m.load_kustomization(path.parent)["resources"]}
    unused = [str(p.relative_to(m.ROOT)) for p in m.manifest_files() if p.resolve() not in used]
    assert not unused, f"manifests no kustomization applies: {unused}"


def test_the_overlays_are_the_documented_set() -> None:
    assert {p.parent.name for p in m.kustomization_files()} == set(m.OVERLAYS)


@pytest.mark.parametrize("overlay", m.OVERLAYS)
def test_rendered_objects_are_unique(overlay: str) -> None:
    keys = [(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in m.render(overlay)]
    assert len(keys) == len(set(keys)), f"duplicate objects in deploy/{overlay}"


@pytest.mark.parametrize("overlay", m.OVERLAYS)
def test_renderer_matches_kubectl_kustomize(overlay: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the built-in renderer was still checked above")
    out = subprocess.run(
        [kubectl, "kustomize", str(m.DEPLOY / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    theirs = [d for d in yaml.safe_load_all(out) if d]

    def key(d: dict[str, Any]) -> str:
        return json.dumps(d, sort_keys=True)

    # kustomize orders by kind (legacy order); compare as multisets of canonical JSON.
    assert sorted(map(key, theirs)) == sorted(map(key, m.render(overlay)))


def test_image_tag_is_the_package_version() -> None:
    version = tomllib.loads((m.ROOT / "pyproject.toml").read_text())["project"]["version"]
    for overlay in ("thin", "thick"):
        spec = m.pod_spec(overlay)
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert c["image"] == f"pymultus:{version}", f"{overlay}/{c['name']}"


# ---- what a node agent needs ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["thin", "thick"])
def test_daemonset_runs_on_every_linux_node_first(overlay: str) -> None:
    ds = m.daemonset(overlay)
    spec = ds["spec"]["template"]["spec"]
    assert ds["metadata"]["namespace"] == "kube-system"
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    # One toleration without key or effect tolerates every taint (NoSchedule, NoExecute, ...).
    assert {"operator": "Exists"} in spec["tolerations"]
    # A CNI agent must not depend on the pod network it provides.
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["serviceAccountName"] == "pymultus"
    strategy = ds["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"]
    # Thin and thick share the (immutable) selector, so switching modes is a rolling update.
    assert ds["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "pymultus"}}


@pytest.mark.parametrize("overlay", ["thin", "thick"])
def test_every_container_states_its_user_and_resources(overlay: str) -> None:
    spec = m.pod_spec(overlay)
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        # The image's default user is non-root (Dockerfile USER); containers that need root must
        # say so, or they would silently run unprivileged and fail to write the host dirs.
        assert c["securityContext"]["runAsUser"] == 0, c["name"]
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], c["name"]
        assert c["resources"]["limits"]["memory"], c["name"]
        assert "cpu" not in c["resources"]["limits"], f"{c['name']}: CPU limits throttle pod start-up"


@pytest.mark.parametrize(("overlay", "name"), [("thin", "install"), ("thick", "install-shim")])
def test_installer_containers_hold_no_capabilities(overlay: str, name: str) -> None:
    sc = m.container(overlay, name)["securityContext"]
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_thin_installer_mounts_bin_and_conf_dirs_at_host_paths() -> None:
    mounts = m.host_mounts("thin", "install")
    assert set(mounts) == {"/opt/cni/bin", "/etc/cni/net.d"}
    for host, mount in mounts.items():
        assert mount["mountPath"] == host
        assert not mount.get("readOnly")


# Reference §2.3 (Go Multus thick DaemonSet) host mounts -> where pymultus mounts them.
# Deliberate differences, each documented in docs/deployment.md:
#   /run              -> only the three directories of it the daemon uses (socket, netns,
#                        device-info), at the same paths (mounting all of /run over the
#                        container's /run would also redirect /var/run/secrets onto the host)
#   /var/lib/kubelet  -> only pod-resources/ and device-plugins/, read-only (all of it would pull
#                        every pod volume mount into the daemon's mount namespace)
THICK_HOST_MOUNTS = {
    "/opt/cni/bin": "/opt/cni/bin",
    "/etc/cni/net.d": "/etc/cni/net.d",
    "/etc/cni/multus/net.d": "/etc/cni/multus/net.d",
    "/var/lib/cni/multus": "/var/lib/cni/multus",
    "/run/multus": "/run/multus",
    "/run/netns": "/run/netns",
    "/run/k8s.cni.cncf.io": "/run/k8s.cni.cncf.io",
    "/var/lib/kubelet/pod-resources": "/var/lib/kubelet/pod-resources",
    "/var/lib/kubelet/device-plugins": "/var/lib/kubelet/device-plugins",
    "/": "/hostroot",
}


def test_thick_daemon_mounts_what_the_reference_lists() -> None:
    mounts = m.host_mounts("thick", "daemon")
    assert {host: mount["mountPath"] for host, mount in mounts.items()} == THICK_HOST_MOUNTS
    # Mounts made on the host after the daemon started (named netns, pod mounts under the
    # host root) must appear inside, so these two need HostToContainer propagation.
    for host in ("/run/netns", "/"):
        assert mounts[host].get("mountPropagation") == "HostToContainer", host
    for host in ("/var/lib/kubelet/pod-resources", "/var/lib/kubelet/device-plugins"):
        assert mounts[host].get("readOnly") is True, host
    # Delegates chrooted into /hostroot write host state (IPAM leases): it must be writable.
    assert not mounts["/"].get("readOnly")


def test_thick_daemon_pod_is_privileged_with_host_pid() -> None:
    spec = m.pod_spec("thick")
    assert spec["hostPID"] is True
    daemon = m.container("thick", "daemon")
    assert daemon["securityContext"]["privileged"] is True
    env = {e["name"]: e for e in daemon["env"]}
    assert env["MULTUS_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert m.host_mounts("thick", "install-shim").keys() == {"/opt/cni/bin"}


def _daemon_config() -> dict[str, Any]:
    cms = m.find(m.render("thick"), "ConfigMap", "pymultus-daemon-config")
    assert len(cms) == 1
    config: dict[str, Any] = json.loads(cms[0]["data"]["daemon-config.json"])
    return config


def test_thick_daemon_config_is_valid_and_mounted() -> None:
    from pymultus.daemon.config import parse_daemon_config

    raw = _daemon_config()
    conf = parse_daemon_config(json.dumps(raw).encode(), source="deploy/thick/daemon-config.yaml")
    daemon = m.container("thick", "daemon")
    # The daemon is started with the file the ConfigMap volume provides.
    command = daemon["command"]
    config_path = command[command.index("--config") + 1]
    volumes = {v["name"]: v for v in m.pod_spec("thick")["volumes"]}
    config_mounts = [
        mt
        for mt in daemon["volumeMounts"]
        if volumes[mt["name"]].get("configMap", {}).get("name") == "pymultus-daemon-config"
    ]
    assert [f"{mt['mountPath']}/daemon-config.json" for mt in config_mounts] == [config_path]
    # Every directory the config names is a host path mounted at the same path (or the host root).
    container_paths = {mt["mountPath"] for mt in daemon["volumeMounts"]}
    for key in (
        "socketDir",
        "daemonSocketDir",
        "cniConfigDir",
        "multusAutoconfigDir",
        "binDir",
        "cniDir",
        "confDir",
    ):
        path = raw[key].rstrip("/")
        assert path in container_paths, f"daemon-config {key}={path} is not mounted"
    assert conf.chroot_dir == "/hostroot"
    assert conf.socket_dir.rstrip("/") == conf.daemon_socket_dir.rstrip("/")
    assert conf.auto


def test_probes_ask_the_daemon_over_its_socket() -> None:
    daemon = m.container("thick", "daemon")
    socket_dir = _daemon_config()["socketDir"]
    endpoints = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = daemon[probe]["exec"]["command"]
        assert command[:2] == ["pymultus", "healthcheck"]
        assert command[command.index("--socket-dir") + 1] == socket_dir
        endpoints[probe] = "readyz" if "--ready" in command else "healthz"
        # Python starts in well under a second, but not always on a node busy booting pods.
        assert daemon[probe]["timeoutSeconds"] >= 5
    assert endpoints == {"startupProbe": "healthz", "livenessProbe": "healthz", "readinessProbe": "readyz"}


# ---- RBAC: exactly the API calls the code makes -----------------------------------------------


def _granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    granted = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {rule}"
        granted |= {(v, g, r) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return granted


# Granted by the thin overlay's Role, for the pymultus service account only (resourceNames).
TOKEN_CALL = ("create", "", "serviceaccounts/token")


def test_cluster_role_grants_exactly_the_api_calls_of_the_code() -> None:
    from pymultus.kube.api_calls import API_CALLS

    (role,) = m.find(m.render("base"), "ClusterRole", "pymultus")
    granted = _granted(role["rules"])
    needed = set(API_CALLS) - {TOKEN_CALL}
    assert granted - needed == set(), "the ClusterRole grants calls the code never makes"
    assert needed - granted == set(), "the code makes calls the ClusterRole does not grant"


def test_thin_may_mint_tokens_of_its_own_service_account_only() -> None:
    from pymultus.kube.api_calls import API_CALLS

    assert TOKEN_CALL in API_CALLS
    docs = m.render("thin")
    (sa,) = m.find(docs, "ServiceAccount")
    (role,) = m.find(docs, "Role")
    (binding,) = m.find(docs, "RoleBinding")
    (rule,) = role["rules"]
    assert rule == {
        "apiGroups": [""],
        "resources": ["serviceaccounts/token"],
        "resourceNames": [sa["metadata"]["name"]],
        "verbs": ["create"],
    }
    assert role["metadata"]["namespace"] == sa["metadata"]["namespace"] == binding["metadata"]["namespace"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}
    ]
    assert not m.find(m.render("thick"), "Role"), "the thick daemon mints no tokens"
    # The installer binds the token to the Node it runs on.
    env = {e["name"]: e for e in m.container("thin", "install").get("env", [])}
    assert env["MULTUS_NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_cluster_role_binding_names_the_daemonset_service_account() -> None:
    docs = m.render("base")
    (binding,) = m.find(docs, "ClusterRoleBinding", "pymultus")
    (sa,) = m.find(docs, "ServiceAccount", "pymultus")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "pymultus",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}
    ]
