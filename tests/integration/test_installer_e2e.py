"""Thin mode end to end on a simulated node: installer -> conf + kubeconfig -> installed `multus`.

The installer runs with a service-account token against the fake API server; the `multus` it
installed then reads the generated 00-multus.conf (unchanged, from disk), finds the pod and its
NetworkAttachmentDefinition through the generated kubeconfig, attaches both networks to a real
netns and writes network-status back to the pod.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakeapi.server import FakeApiServer
from tests.integration.test_installer import bundle  # noqa: F401 - the session's bundle fixture
from tests.support.netns import PLUGIN_DIR, delete_host_link, netns, unique_name

pytestmark = pytest.mark.netns

SA_TOKEN = "sa-" + unique_name("tok")
SA_USER = "system:serviceaccount:kube-system:pymultus"
STATUS = "k8s.v1.cni.cncf.io/network-status"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApiServer]:
    with FakeApiServer(tmp_path / "api") as server:
        server.add_token(SA_TOKEN, SA_USER, allowed=None)
        yield server


def test_installed_thin_plugin_attaches_networks_with_the_generated_files(
    tmp_path: Path,
    api: FakeApiServer,
    bundle: Path,  # noqa: F811 - the imported fixture
) -> None:
    bin_dir, conf_dir, sa, ipam = (tmp_path / d for d in ("opt/cni/bin", "etc/cni/net.d", "sa", "ipam"))
    conf_dir.mkdir(parents=True)
    sa.mkdir()
    (sa / "token").write_text(SA_TOKEN)
    (sa / "ca.crt").write_bytes(api.pki.ca_pem)
    cluster_bridge, nad_bridge = unique_name("pmc"), unique_name("pmn")
    (conf_dir / "10-cluster.conf").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "cluster",
                "type": "bridge",
                "bridge": cluster_bridge,
                "ipam": {"type": "host-local", "subnet": "10.232.1.0/24", "dataDir": str(ipam)},
            }
        )
    )
    kubeconfig = conf_dir / "multus.d/multus.kubeconfig"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pymultus", "install", "--no-watch", "--bundle-source", str(bundle),
            "--cni-bin-dir", str(bin_dir), "--cni-bin-dir-host", str(bin_dir),
            "--cni-conf-dir", str(conf_dir), "--cni-conf-dir-host", str(conf_dir),
            "--multus-kubeconfig-file-host", str(kubeconfig), "--service-account-dir", str(sa),
        ],
        env={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)},
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    conf = (conf_dir / "00-multus.conflist").read_bytes()  # cniVersion 1.0.0 -> conflist form
    plugin = json.loads(conf)["plugins"][0]
    assert plugin["kubeconfig"] == str(kubeconfig)
    assert plugin["clusterNetwork"] == str(conf_dir / "10-cluster.conf")

    api.create_nad(
        "default",
        "net-a",
        {
            "cniVersion": "1.0.0",
            "name": "net-a",
            "type": "bridge",
            "bridge": nad_bridge,
            "ipam": {"type": "host-local", "subnet": "10.232.2.0/24", "dataDir": str(ipam)},
        },
    )
    api.create_pod("default", "web", annotations={"k8s.v1.cni.cncf.io/networks": "net-a"})
    cid = unique_name("c")
    try:
        with netns("pme") as ns:

            def multus(command: str) -> subprocess.CompletedProcess[bytes]:
                # The runtime's view: a conflist's plugin gets the conflist's name/cniVersion.
                stdin = json.dumps({"cniVersion": "1.0.0", "name": "multus-cni-network", **plugin}).encode()
                env = {
                    "CNI_COMMAND": command,
                    "CNI_CONTAINERID": cid,
                    "CNI_NETNS": ns.path,
                    "CNI_IFNAME": "eth0",
                    "CNI_PATH": str(PLUGIN_DIR),
                    "CNI_ARGS": f"IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                    f"K8S_POD_INFRA_CONTAINER_ID={cid}",
                }
                return subprocess.run(
                    [str(bin_dir / "multus")],
                    input=stdin,
                    env=env,
                    capture_output=True,
                    timeout=60,
                    check=False,
                )

            added = multus("ADD")
            assert added.returncode == 0, (added.stdout, added.stderr)
            links = ns.links()
            assert ns.addresses("eth0")[0].startswith("10.232.1.")
            assert "net1" in links and ns.addresses("net1")[0].startswith("10.232.2.")
            pod = api.get_pod("default", "web")
            assert pod is not None
            status = json.loads(pod["metadata"]["annotations"][STATUS])  # type: ignore[index]
            assert [entry["interface"] for entry in status] == ["eth0", "net1"]
            assert status[1]["name"] == "default/net-a"

            deleted = multus("DEL")
            assert deleted.returncode == 0, (deleted.stdout, deleted.stderr)
            assert "eth0" not in ns.links() and "net1" not in ns.links()
            assert not list(ipam.rglob("10.232.*"))
    finally:
        delete_host_link(cluster_bridge)
        delete_host_link(nad_bridge)
