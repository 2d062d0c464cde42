"""The libcni result cache: format, crash-safe writes, permissions, legacy and corrupt files."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from pymultus.cni import cache
from pymultus.errors import InvalidConfig, InvalidEnvironment


def _entry(**changes: object) -> cache.CachedAttachment:
    values: dict[str, object] = {
        "network_name": "mynet",
        "container_id": "c0ffee",
        "ifname": "eth0",
        "netns": "/var/run/netns/x",
        "config": b'{"cniVersion":"1.0.0","name":"mynet","type":"bridge"}',
        "cni_args": [("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")],
        "capability_args": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]},
        "result": {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}], "dns": {}},
    }
    values.update(changes)
    return cache.CachedAttachment(**values)  # type: ignore[arg-type]


def test_write_produces_libcni_cni_cache_v1_with_private_modes(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cni"
    cache.write(str(cache_dir), _entry())
    path = cache_dir / "results" / "mynet-c0ffee-eth0"
    doc = json.loads(path.read_text())
    assert doc == {
        "kind": "cniCacheV1",
        "containerId": "c0ffee",
        "config": base64.b64encode(b'{"cniVersion":"1.0.0","name":"mynet","type":"bridge"}').decode(),
        "ifName": "eth0",
        "networkName": "mynet",
        "netns": "/var/run/netns/x",
        "cniArgs": [["IgnoreUnknown", "1"], ["K8S_POD_NAME", "web"]],
        "capabilityArgs": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]},
        "result": {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}], "dns": {}},
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((cache_dir / "results").stat().st_mode) == 0o700
    assert [p.name for p in (cache_dir / "results").iterdir()] == ["mynet-c0ffee-eth0"]  # no temp left


def test_read_round_trips(tmp_path: Path) -> None:
    cache.write(str(tmp_path), _entry())
    got = cache.read(str(tmp_path), "mynet", "c0ffee", "eth0")
    assert got is not None and not got.legacy
    assert got.to_json() == _entry().to_json()
    assert got.cni_args == [("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")]


def test_reads_a_file_written_by_libcni(tmp_path: Path) -> None:
    # As containerd's libcni writes it (Go field order, base64 config, omitempty fields absent).
    (tmp_path / "results").mkdir()
    conf = b'{"cniVersion":"0.4.0","name":"cbr0","plugins":[{"type":"bridge"}]}'
    libcni_doc = (
        '{"kind":"cniCacheV1","containerId":"8a5c0d2e","config":"' + base64.b64encode(conf).decode() + '",'
        '"ifName":"eth0","networkName":"cbr0","netns":"/var/run/netns/cni-1",'
        '"cniArgs":[["K8S_POD_NAMESPACE","default"]],'
        '"result":{"cniVersion":"0.4.0","interfaces":[{"name":"eth0"}],"ips":[{"version":"4","address":"10.4.0.9/24"}],'
        '"dns":{}}}'
    )
    (tmp_path / "results" / "cbr0-8a5c0d2e-eth0").write_text(libcni_doc)
    got = cache.read(str(tmp_path), "cbr0", "8a5c0d2e", "eth0")
    assert got is not None and got.config == conf and got.capability_args == {}
    assert got.result is not None and got.result["cniVersion"] == "0.4.0"
    assert [e.container_id for e in cache.list_attachments(str(tmp_path), "cbr0")] == ["8a5c0d2e"]


def test_reads_the_legacy_bare_result_form(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    legacy = {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.3/24"}]}
    (tmp_path / "results" / "old-abc-eth0").write_text(json.dumps(legacy))
    got = cache.read(str(tmp_path), "old", "abc", "eth0")
    assert got is not None and got.legacy and got.result == legacy
    assert (got.network_name, got.container_id, got.ifname) == ("old", "abc", "eth0")
    assert cache.list_attachments(str(tmp_path)) == []  # a legacy file names no network


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b'{"kind":"cniCacheV1","containerId":"c0ffee","ifName":"eth0","networkName":"mynet","result":{"ips"',
        b"[1,2]",
        b'{"kind":"cniCacheV2"}',
        b'{"kind":"cniCacheV1","ifName":"eth0","networkName":"mynet"}',
        b'{"kind":"cniCacheV1","containerId":"c0ffee","ifName":"eth0","networkName":"mynet","config":"***"}',
        b'{"kind":"cniCacheV1","containerId":"c0ffee","ifName":"eth0","networkName":"mynet","cniArgs":[["a"]]}',
        b'{"kind":"cniCacheV1","containerId":"c0ffee","ifName":"eth0","networkName":"mynet","result":[]}',
        b'{"kind":"cniCacheV1","containerId":"c0ffee","ifName":"eth0","networkName":"mynet","capabilityArgs":1}',
        b"\xff\x00garbage",
    ],
)
def test_a_corrupt_or_truncated_file_reads_as_none_and_is_reported(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "mynet-c0ffee-eth0").write_bytes(content)
    reports: list[tuple[str, str]] = []
    assert (
        cache.read(str(tmp_path), "mynet", "c0ffee", "eth0", on_corrupt=lambda p, r: reports.append((p, r)))
        is None
    )
    assert len(reports) == 1 and reports[0][0].endswith("mynet-c0ffee-eth0") and reports[0][1]
    assert cache.list_attachments(str(tmp_path)) == []


def test_missing_entries_read_as_none_and_remove_is_idempotent(tmp_path: Path) -> None:
    assert cache.read(str(tmp_path), "mynet", "c0ffee", "eth0") is None
    cache.write(str(tmp_path), _entry())
    assert cache.remove(str(tmp_path), "mynet", "c0ffee", "eth0") is True
    assert cache.remove(str(tmp_path), "mynet", "c0ffee", "eth0") is False
    assert cache.read(str(tmp_path), "mynet", "c0ffee", "eth0") is None


@pytest.mark.parametrize(
    ("network", "container_id", "ifname", "error"),
    [
        ("mynet", "../x", "eth0", InvalidEnvironment),
        ("mynet", "a/b", "eth0", InvalidEnvironment),
        ("mynet", "c0ffee", "../e", InvalidEnvironment),
        ("../etc", "c0ffee", "eth0", InvalidConfig),
        ("mynet", "", "eth0", InvalidEnvironment),
    ],
)
def test_path_like_ids_never_become_paths(
    tmp_path: Path, network: str, container_id: str, ifname: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        cache.result_path(str(tmp_path), network, container_id, ifname)
    with pytest.raises(error):
        cache.write(str(tmp_path), _entry(network_name=network, container_id=container_id, ifname=ifname))
    assert not os.path.exists(tmp_path / "results")


def test_list_attachments_filters_and_skips_temp_files(tmp_path: Path) -> None:
    cache.write(str(tmp_path), _entry())
    cache.write(str(tmp_path), _entry(container_id="other", ifname="net1"))
    cache.write(str(tmp_path), _entry(network_name="second"))
    (tmp_path / "results" / ".mynet-x-eth0.123.tmp").write_text("{partial")
    assert {(e.network_name, e.container_id) for e in cache.list_attachments(str(tmp_path))} == {
        ("mynet", "c0ffee"),
        ("mynet", "other"),
        ("second", "c0ffee"),
    }
    assert len(cache.list_attachments(str(tmp_path), "mynet")) == 2
    assert [e.ifname for e in cache.list_attachments(str(tmp_path), "mynet", container_id="other")] == [
        "net1"
    ]
    assert cache.list_attachments(str(tmp_path / "nowhere")) == []


def test_an_existing_cache_dir_keeps_its_mode(tmp_path: Path) -> None:
    cache_dir = tmp_path / "shared"
    cache_dir.mkdir(mode=0o755)
    cache_dir.chmod(0o755)
    cache.write(str(cache_dir), _entry())
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o755


def test_entries_are_written_without_fsync_but_the_delegate_list_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymultus.store import delegates

    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr("posix.fsync", counting_fsync)  # what fileio calls
    cache.write(str(tmp_path), _entry())
    assert synced == []  # see cache.write: what a power loss can leave reads as no entry
    delegates.save(str(tmp_path), "c0ffee", {"delegates": []})
    assert len(synced) == 1  # the record DEL relies on is durable before any delegate runs


def test_whatever_a_power_loss_leaves_of_an_entry_reads_as_no_entry(tmp_path: Path) -> None:
    """Without fsync a power loss may leave the name with part of the content, or with zeros
    where the content was not written yet (xfs): every such file reads as no entry, like a
    lost rename, never as a different one."""
    cache.write(str(tmp_path), _entry())
    path = tmp_path / "results" / "mynet-c0ffee-eth0"
    content = path.read_bytes()
    leftovers = [content[:size] for size in range(len(content))]
    leftovers += [bytes(len(content)), content[: len(content) // 2] + bytes(len(content) - len(content) // 2)]
    for leftover in leftovers:
        path.write_bytes(leftover)
        assert cache.read(str(tmp_path), "mynet", "c0ffee", "eth0") is None, leftover
