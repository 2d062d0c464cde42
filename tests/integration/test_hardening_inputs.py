"""Issue 9, defects 5-8, through the real ``multus`` executable: DEL converges whatever the
state on disk, every input is bounded, the host's own netns is refused, and each known condition
has its own code and a message naming the path or field.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.netns import PLUGIN_DIR, Netns, unique_name
from tests.support.node import Answer, Node

pytestmark = pytest.mark.netns

POD = ("default", "web")


def _cluster(sim: Node) -> Path:
    return sim.write_conf("10-cluster.conf", sim.bridge_conf("cluster", "10.88.0.0/24", gateway=True))


def _pod_with_net1(sim: Node) -> dict[str, object]:
    """The cluster network and one annotated bridge network ``net-a`` for pod default/web."""
    cluster = _cluster(sim)
    sim.add_nad("net-a", sim.bridge_conf("net-a", "10.10.1.0/24"))
    sim.add_pod("web", networks="net-a")
    return sim.multus_conf(clusterNetwork=str(cluster))


def _assert_nothing_left(sim: Node) -> None:
    assert sim.leases() == []
    assert sim.cache_files() == []
    assert sim.host_veths() == []


def _limited(sim: Node) -> str:
    """A ``multus`` wrapper with a 1 GiB address-space limit: an unbounded read fails fast in
    the test instead of exhausting the machine's memory."""
    wrapper = sim.bin_dir / "multus-limited"
    wrapper.write_text(f'#!/bin/sh\nulimit -v 1048576\nexec "{sim.bin_dir / "multus"}"\n')
    wrapper.chmod(0o755)
    return wrapper.name


def _result_caches(sim: Node) -> list[Path]:
    return sorted((sim.cni_dir / "results").iterdir())


# -- 5a / 8: nesting -------------------------------------------------------------------------------


def test_deeply_nested_networks_annotation_fails_add_with_code_7_and_del_succeeds(
    sim: Node, pod_ns: Netns
) -> None:
    cluster = _cluster(sim)
    sim.add_pod("web", networks="[" * 50_000 + "]" * 50_000)
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    cid = unique_name("c")

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD)
    assert added.error_code == 7, added
    assert "k8s.v1.cni.cncf.io/networks" in str(added.json["msg"]), added
    assert "nested deeper than 256 levels" in str(added.json["msg"]), added
    assert set(pod_ns.links()) == {"lo"}
    _assert_nothing_left(sim)
    for _ in range(2):
        deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD)
        assert deleted.ok, deleted


def test_deeply_nested_stdin_is_a_decoding_error(sim: Node, pod_ns: Netns) -> None:
    conf = sim.multus_conf()
    nested = json.dumps(conf)[:-1] + ', "deep": ' + "[" * 50_000 + "]" * 50_000 + "}"
    for command in ("ADD", "DEL"):
        proc = subprocess.run(
            [str(sim.bin_dir / "multus")],
            input=nested.encode(),
            capture_output=True,
            env={
                "CNI_COMMAND": command,
                "CNI_CONTAINERID": unique_name("c"),
                "CNI_NETNS": pod_ns.path,
                "CNI_IFNAME": "eth0",
                "CNI_PATH": str(PLUGIN_DIR),
            },
            timeout=60,
            check=False,
        )
        answer = Answer(proc)
        assert answer.error_code == 6, answer
        assert "nested deeper than" in str(answer.json["msg"]), answer


# -- 5b: broken manifests never block a DEL ----------------------------------------------------------


@pytest.mark.parametrize("breakage", ["malformed", "duplicated"])
def test_del_without_cache_succeeds_when_a_manifest_is_broken(
    sim: Node, pod_ns: Netns, breakage: str
) -> None:
    conf = _pod_with_net1(sim)
    cid = unique_name("c")
    if breakage == "malformed":
        (sim.manifests / "zz-broken.yaml").write_text("kind: Pod\nmetadata: [unclosed\n")
    else:
        shutil.copy(sim.manifests / "pod-default-web.yaml", sim.manifests / "zz-copy.yaml")

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD)
    assert added.error_code == 7, added  # ADD reports the broken manifest
    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD)
    assert deleted.ok, deleted
    _assert_nothing_left(sim)


# -- 5c: one bad result cache does not stop the others -----------------------------------------------


def test_del_frees_the_good_attachments_when_one_result_cache_config_is_not_json(
    sim: Node, pod_ns: Netns
) -> None:
    conf = _pod_with_net1(sim)
    conf["logLevel"] = "error"  # to stderr, where the test reads it
    cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    assert len(sim.leases()) == 2
    (sim.cni_dir / cid).unlink()  # the delegate list is gone
    [bad] = [path for path in _result_caches(sim) if path.name.startswith("net-a-")]
    entry = json.loads(bad.read_text())
    entry["config"] = base64.b64encode(b"this is not JSON").decode()
    bad.write_text(json.dumps(entry))

    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD)
    assert deleted.ok, deleted
    # The cluster network was freed; net1 cannot be (its config is lost): its lease stays,
    # and the unusable entry is logged and removed, so a retry cannot fail on it forever.
    assert "eth0" not in pod_ns.links()
    assert [Path(lease).parent.name for lease in sim.leases()] == ["net-a"]
    assert sim.cache_files() == []
    assert "cannot be used and is removed" in deleted.stderr
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok


# -- 5d: a directory where the delegate list belongs -------------------------------------------------


def test_delegate_list_path_being_a_directory(sim: Node, pod_ns: Netns) -> None:
    conf = _pod_with_net1(sim)
    cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    (sim.cni_dir / cid).unlink()
    (sim.cni_dir / cid).mkdir()

    for _ in range(2):
        deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD)
        assert deleted.ok, deleted
    assert set(pod_ns.links()) == {"lo"}
    assert sim.leases() == []
    assert not (sim.cni_dir / "results").exists() or _result_caches(sim) == []

    # ADD cannot record its delegates there: a clear error naming the path, nothing attached.
    again = unique_name("c")
    (sim.cni_dir / again).mkdir()
    added = sim.run("ADD", conf, container_id=again, netns=pod_ns.path, pod=POD)
    assert added.error_code in (5, 7), added
    assert str(sim.cni_dir / again) in added.stdout, added
    assert set(pod_ns.links()) == {"lo"}
    assert sim.leases() == []


# -- 5e: long container IDs ------------------------------------------------------------------------


@pytest.mark.parametrize("length", [240, 300, 1200])
def test_long_container_ids_add_and_del(sim: Node, pod_ns: Netns, length: int) -> None:
    conf = _pod_with_net1(sim)
    cid = (unique_name("c") + "x" * length)[:length]

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD)
    assert added.ok, added
    assert {"eth0", "net1"} <= set(pod_ns.links())
    assert all(len(os.path.basename(path)) <= 255 for path in sim.cache_files())
    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD)
    assert deleted.ok, deleted
    assert set(pod_ns.links()) == {"lo"}
    _assert_nothing_left(sim)


def test_long_container_id_del_from_the_result_caches(sim: Node, pod_ns: Netns) -> None:
    conf = _pod_with_net1(sim)
    cid = (unique_name("c") + "y" * 400)[:400]
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    [entry] = [path for path in sim.cni_dir.iterdir() if path.is_file()]
    entry.unlink()  # the delegate list is gone: DEL finds the attachments by content
    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD)
    assert deleted.ok, deleted
    assert set(pod_ns.links()) == {"lo"}
    _assert_nothing_left(sim)


# -- 5f: a delegate whose binary went missing --------------------------------------------------------


def test_del_with_a_missing_delegate_binary_fails_and_keeps_it_recorded(
    sim: Node, pod_ns: Netns, tmp_path: Path
) -> None:
    extra = tmp_path / "extra-bin"
    extra.mkdir()
    shutil.copy(PLUGIN_DIR / "bridge", extra / "pmbridge")
    cluster = _cluster(sim)
    net = sim.bridge_conf("net-a", "10.10.1.0/24")
    net["type"] = "pmbridge"
    sim.add_nad("net-a", net)
    sim.add_pod("web", networks="net-a")
    conf = sim.multus_conf(clusterNetwork=str(cluster))
    env = {"CNI_PATH": f"{PLUGIN_DIR}:{extra}"}
    cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD, env=env).ok
    (extra / "pmbridge").rename(tmp_path / "pmbridge.away")

    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD, env=env)
    assert deleted.error_code == 7, deleted
    assert "net-a" in str(deleted.json["msg"]), deleted
    # eth0 was removed; net1, its lease and its result cache are still there and recorded.
    assert set(pod_ns.links()) == {"lo", "net1"}
    assert [Path(lease).parent.name for lease in sim.leases()] == ["net-a"]
    assert [path.name.startswith("net-a-") for path in _result_caches(sim)] == [True]

    (tmp_path / "pmbridge.away").rename(extra / "pmbridge")
    finished = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD, env=env)
    assert finished.ok, finished
    assert set(pod_ns.links()) == {"lo"}
    _assert_nothing_left(sim)


# -- 6: unbounded input ------------------------------------------------------------------------------


def test_cluster_network_naming_dev_zero_is_refused(sim: Node, pod_ns: Netns) -> None:
    conf = sim.multus_conf(clusterNetwork="/dev/zero")
    cid = unique_name("c")
    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, executable=_limited(sim))
    assert added.error_code == 5, added
    assert "/dev/zero: is a character device, not a regular file" in str(added.json["msg"]), added
    assert sim.cache_files() == []


@pytest.mark.parametrize("kind", ["dev-zero-symlink", "fifo"])
def test_del_without_delegate_list_ignores_special_files_in_the_result_cache(
    sim: Node, pod_ns: Netns, kind: str
) -> None:
    conf = _pod_with_net1(sim)
    cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    (sim.cni_dir / cid).unlink()
    special = sim.cni_dir / "results" / f"other-{cid}-net9"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        special.symlink_to("/dev/zero")

    deleted = sim.run(
        "DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD, executable=_limited(sim), timeout=60
    )
    assert deleted.ok, deleted
    assert set(pod_ns.links()) == {"lo"}
    assert sim.leases() == []
    assert not special.exists() and not special.is_symlink()  # the container's, unusable: removed


def test_yaml_alias_bomb_in_a_manifest_is_refused(sim: Node, pod_ns: Netns) -> None:
    conf = _pod_with_net1(sim)
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for index in range(1, 9):
        previous, name = chr(ord("a") + index - 1), chr(ord("a") + index)
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    bomb = "kind: ConfigMap\nmetadata: {name: bomb}\ndata:\n" + "".join(f"  {line}\n" for line in levels)
    assert len(bomb) < 1024
    (sim.manifests / "zz-bomb.yaml").write_text(bomb)
    cid = unique_name("c")

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD, executable=_limited(sim))
    assert added.error_code == 7, added
    assert "zz-bomb.yaml" in str(added.json["msg"]) and "aliases" in str(added.json["msg"]), added
    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD, executable=_limited(sim))
    assert deleted.ok, deleted
    _assert_nothing_left(sim)


# -- 7: the host's own network namespace --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/proc/self/ns/net", f"/proc/{os.getpid()}/ns/net"])
def test_the_callers_own_netns_is_refused(sim: Node, path: str) -> None:
    """/proc/self: multus's own; /proc/<pytest>: the same host namespace by another path."""
    conf = _pod_with_net1(sim)
    cid = unique_name("c")
    added = sim.run("ADD", conf, container_id=cid, netns=path, pod=POD)
    assert added.error_code == 4, added
    assert f'CNI_NETNS "{path}"' in str(added.json["msg"]) and "host" in str(added.json["msg"]), added
    assert sim.host_veths() == []
    assert sim.leases() == []
    assert sim.cache_files() == []
    assert not any(Path("/sys/class/net", bridge).exists() for bridge in sim.bridges)


# -- 8: codes for a cniDir that cannot be used --------------------------------------------------------


def test_cni_dir_pointing_at_a_file(sim: Node, pod_ns: Netns, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "cni-dir-file"
    not_a_dir.write_text("")
    conf = _pod_with_net1(sim)
    conf["cniDir"] = str(not_a_dir)
    cid = unique_name("c")

    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD)
    assert added.error_code == 7, added
    assert f"cniDir {not_a_dir} is not a directory" in str(added.json["msg"]), added
    assert set(pod_ns.links()) == {"lo"}
    assert sim.leases() == []
    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD)
    assert deleted.ok, deleted
    collected = sim.run("GC", conf, container_id=cid)
    assert collected.ok, collected


def test_read_only_cni_dir(sim: Node, pod_ns: Netns) -> None:
    """In a private mount namespace, so nothing on the host is remounted."""
    conf = _pod_with_net1(sim)
    script = (
        f"mount --make-rprivate / && mount --bind {sim.cni_dir} {sim.cni_dir} && "
        f'mount -o remount,bind,ro {sim.cni_dir} && exec "$0"'
    )
    wrapper = sim.bin_dir / "multus-ro"
    wrapper.write_text(f"#!/bin/sh\nexec unshare -m sh -c '{script}' \"{sim.bin_dir / 'multus'}\"\n")
    wrapper.chmod(0o755)

    never_added = unique_name("c")
    deleted = sim.run(
        "DEL", conf, container_id=never_added, netns=pod_ns.path, pod=POD, executable=wrapper.name
    )
    assert deleted.ok, deleted
    added = sim.run(
        "ADD", conf, container_id=never_added, netns=pod_ns.path, pod=POD, executable=wrapper.name
    )
    assert added.error_code == 5, added
    assert "Read-only file system" in str(added.json["msg"]), added
    assert str(sim.cni_dir) in str(added.json["msg"]), added
    assert set(pod_ns.links()) == {"lo"}
    assert sim.leases() == []


def test_the_daemons_own_netns_is_refused_in_thick_mode(tmp_path: Path) -> None:
    """The hostNetwork daemon runs the ADD: its own namespace is the host's."""
    from tests.integration.test_shim_daemon import make_node
    from tests.support.daemon import run_shim
    from tests.support.netns import delete_host_link

    node = make_node(tmp_path, 1)
    node.daemon.start(wait="readyz")
    try:
        env = {
            "CNI_CONTAINERID": unique_name("c"),
            "CNI_NETNS": "/proc/self/ns/net",
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod",
        }
        code, result, err = run_shim(node.shim, "ADD", node.conf(), env=env)
        assert code == 1 and result is not None, (result, err)
        assert result["code"] == 4 and "host" in str(result["msg"]), result
        assert node.leases() == []
        assert not any(Path("/sys/class/net", bridge).exists() for bridge in node.bridges)
        assert node.cache_files(env["CNI_CONTAINERID"]) == []
    finally:
        node.daemon.stop()
        for bridge in node.bridges:
            delete_host_link(bridge)
        shutil.rmtree(os.path.dirname(node.daemon.socket_dir.rstrip("/")), ignore_errors=True)


def test_a_fifo_in_place_of_the_events_file_does_not_hang_add(sim: Node, pod_ns: Netns) -> None:
    conf = _pod_with_net1(sim)
    (sim.manifests / "status").mkdir()
    os.mkfifo(sim.manifests / "status" / "events.jsonl")
    cid = unique_name("c")
    added = sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD, timeout=60)
    assert added.ok, added
    assert sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    _assert_nothing_left(sim)


def test_a_bad_item_in_the_delegate_list_is_recovered_from_its_result_cache(sim: Node, pod_ns: Netns) -> None:
    conf = _pod_with_net1(sim)
    cid = unique_name("c")
    assert sim.run("ADD", conf, container_id=cid, netns=pod_ns.path, pod=POD).ok
    record = json.loads((sim.cni_dir / cid).read_text())
    [item] = [item for item in record["delegates"] if item["ifname"] == "net1"]
    item["conf"] = {"cniVersion": "1.0.0", "name": "net-a"}  # no plugin type: unusable
    (sim.cni_dir / cid).write_text(json.dumps(record))

    deleted = sim.run("DEL", conf, container_id=cid, netns=pod_ns.path, pod=POD)
    assert deleted.ok, deleted
    assert set(pod_ns.links()) == {"lo"}
    _assert_nothing_left(sim)
