"""Bounded inputs (issue 9 defects 5-6, 8): JSON nesting, file reads, long names, YAML aliases."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from pymultus import errors, fileio, jsonio
from pymultus.cni import cache
from pymultus.errors import (
    DECODING_FAILURE,
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    InvalidAnnotation,
    InvalidConfig,
    MultusError,
)
from pymultus.kube.annotations import parse_networks
from pymultus.kube.manifests import ManifestPodSource
from pymultus.store import delegates

# -- JSON nesting ------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 100, jsonio.MAX_DEPTH])
def test_nesting_up_to_the_limit_decodes(depth: int) -> None:
    value = jsonio.loads("[" * depth + "]" * depth)
    for _ in range(depth - 1):
        assert isinstance(value, list)
        value = value[0]
    assert value == []


@pytest.mark.parametrize(
    "text",
    [
        "[" * (jsonio.MAX_DEPTH + 1) + "]" * (jsonio.MAX_DEPTH + 1),
        '{"a":' * 600 + "1" + "}" * 600,  # past the limit, below the interpreter's
        "[" * 50_000 + "]" * 50_000,  # past the interpreter's recursion limit
        "[" * 50_000,  # invalid as well as too deep
    ],
)
def test_nesting_past_the_limit_is_a_decoding_error_with_its_own_type(text: str) -> None:
    with pytest.raises(errors.JSONNestingError) as info:
        jsonio.loads(text, what="the thing")
    assert info.value.code == DECODING_FAILURE
    assert (
        str(info.value) == f"the thing is nested deeper than {jsonio.MAX_DEPTH} levels of arrays and objects"
    )
    assert isinstance(info.value, errors.JSONDecodeError)


def test_many_brackets_that_do_not_nest_are_fine() -> None:
    text = json.dumps({"items": [{"a": [1]} for _ in range(1000)], "s": "[[[[" * 100})
    assert len(jsonio.loads_object(text)["items"]) == 1000  # type: ignore[arg-type]


def test_a_deeply_nested_annotation_is_an_annotation_error() -> None:
    with pytest.raises(InvalidAnnotation) as info:
        parse_networks("[" * 50_000 + "]" * 50_000, pod_namespace="default")
    assert info.value.code == INVALID_NETWORK_CONFIG
    assert "nested deeper than" in info.value.msg


# -- read_file ---------------------------------------------------------------------------------------


def test_read_file_reads_a_regular_file_and_follows_symlinks_by_default(tmp_path: Path) -> None:
    target = tmp_path / "conf"
    target.write_bytes(b"12345")
    (tmp_path / "link").symlink_to(target)
    assert fileio.read_file(str(target)) == b"12345"
    assert fileio.read_file(str(tmp_path / "link")) == b"12345"
    assert fileio.read_file(str(target), limit=5) == b"12345"


@pytest.mark.parametrize(
    ("make", "kwargs", "reason"),
    [
        (os.mkfifo, {}, "is a FIFO, not a regular file"),
        (lambda p: p.symlink_to("/dev/zero"), {}, "is a character device, not a regular file"),
        (lambda p: p.mkdir(), {}, "is a directory, not a regular file"),
        (lambda p: p.write_bytes(b"123456"), {"limit": 5}, "is larger than 5 bytes"),
        (
            lambda p: p.symlink_to(p.with_name("elsewhere")),
            {"follow_symlinks": False},
            "is a symbolic link, not a regular file",
        ),
    ],
)
def test_read_file_refuses_what_is_not_a_bounded_regular_file(
    tmp_path: Path, make: object, kwargs: dict[str, object], reason: str
) -> None:
    path = tmp_path / "entry"
    (tmp_path / "elsewhere").write_text("{}")
    make(path)  # type: ignore[operator]
    with pytest.raises(errors.UnreadableFile) as info:
        fileio.read_file(str(path), **kwargs)  # type: ignore[arg-type]
    assert info.value.strerror == reason
    assert str(info.value) == f"{path} {reason}"
    assert info.value.code == IO_FAILURE
    assert isinstance(info.value, OSError)


def test_read_file_missing_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fileio.read_file(str(tmp_path / "missing"))


# -- long names --------------------------------------------------------------------------------------


def test_bounded_name_keeps_short_names_and_hashes_long_ones() -> None:
    assert fileio.bounded_name("a" * 255) == "a" * 255
    long_a, long_b = "a" * 256, "a" * 255 + "b"
    assert len(fileio.bounded_name(long_a)) == 255
    assert fileio.bounded_name(long_a) == fileio.bounded_name(long_a)
    assert fileio.bounded_name(long_a) != fileio.bounded_name(long_b)
    assert len(fileio.bounded_name("é" * 300).encode()) <= 255


def test_write_atomically_to_a_name_of_255_bytes(tmp_path: Path) -> None:
    path = tmp_path / ("n" * 255)
    assert fileio.write_atomically(str(path), b"data")
    assert path.read_bytes() == b"data"
    assert not fileio.write_atomically(str(path), b"data")


def test_delegate_list_of_a_long_container_id(tmp_path: Path) -> None:
    cid = "c" * 1000
    delegates.save(str(tmp_path), cid, {"delegates": []})
    [name] = os.listdir(tmp_path)
    assert len(name) == 255
    record = delegates.load(str(tmp_path), cid)
    assert record is not None and record["containerId"] == cid
    assert delegates.remove(str(tmp_path), cid)
    assert delegates.load(str(tmp_path), cid) is None


def test_delegate_cache_in_a_cni_dir_that_is_a_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert delegates.load(str(not_a_dir), "c1") is None
    assert not delegates.remove(str(not_a_dir), "c1")
    with pytest.raises(InvalidConfig, match=f"cniDir {not_a_dir} is not a directory"):
        delegates.save(str(not_a_dir), "c1", {"delegates": []})


def test_delegate_cache_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "c1").mkdir()
    with pytest.raises(errors.CorruptEntry, match="is a directory"):
        delegates.load(str(tmp_path), "c1")
    assert not delegates.remove(str(tmp_path), "c1")
    assert (tmp_path / "c1").is_dir()  # not ours: left alone


# -- result caches ------------------------------------------------------------------------------------


def _entry(
    network: str, cid: str, ifname: str, config: bytes = b'{"type":"bridge"}'
) -> cache.CachedAttachment:
    return cache.CachedAttachment(network_name=network, container_id=cid, ifname=ifname, config=config)


def test_list_attachments_reports_the_containers_unusable_files_and_skips_them(tmp_path: Path) -> None:
    for entry in (_entry("good", "c1", "eth0"), _entry("other", "c2", "eth0")):
        cache.write(str(tmp_path), entry)
    results = tmp_path / "results"
    os.mkfifo(results / "fifo-c1-net1")
    (results / "zero-c1-net2").symlink_to("/dev/zero")
    (results / "garbage-c1-net3").write_text("{not json")
    (results / "garbage-c2-net3").write_text("{not json")  # another container's: not reported
    corrupt: list[tuple[str, str]] = []
    found = cache.list_attachments(
        str(tmp_path), container_id="c1", on_corrupt=lambda path, why: corrupt.append((path, why))
    )
    assert [(e.network_name, e.container_id) for e in found] == [("good", "c1")]
    assert sorted(os.path.basename(path) for path, _ in corrupt) == [
        "fifo-c1-net1",
        "garbage-c1-net3",
        "zero-c1-net2",
    ]


def test_list_attachments_finds_a_long_container_id_by_content(tmp_path: Path) -> None:
    cid = "x" * 600
    cache.write(str(tmp_path), _entry("net", cid, "eth0"))
    [found] = cache.list_attachments(str(tmp_path), container_id=cid)
    assert found.container_id == cid
    assert cache.read(str(tmp_path), "net", cid, "eth0") is not None
    assert cache.remove(str(tmp_path), "net", cid, "eth0")


def test_result_cache_read_refuses_special_files(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "net-c1-eth0").symlink_to("/dev/zero")
    corrupt: list[str] = []
    assert (
        cache.read(str(tmp_path), "net", "c1", "eth0", on_corrupt=lambda p, why: corrupt.append(why)) is None
    )
    assert corrupt == ["is a symbolic link, not a regular file"]


def test_a_result_cache_with_a_config_that_is_not_json_is_still_listed(tmp_path: Path) -> None:
    # Decoding the config is the caller's business (DEL reports and removes such an entry).
    doc = _entry("net", "c1", "eth0").to_json()
    doc["config"] = base64.b64encode(b"not json").decode()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "net-c1-eth0").write_text(json.dumps(doc))
    [found] = cache.list_attachments(str(tmp_path), container_id="c1")
    assert found.config == b"not json"


# -- YAML manifests -------------------------------------------------------------------------------------

BOMB = "".join(
    [
        "kind: ConfigMap\nmetadata: {name: bomb}\ndata:\n",
        "  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        *(
            f"  {chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n"
            for i in range(8)
        ),
    ]
)


def test_a_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    assert len(BOMB) < 1024
    (tmp_path / "bomb.yaml").write_text(BOMB)
    with pytest.raises(InvalidConfig) as info:
        ManifestPodSource(str(tmp_path)).get_pod("default", "web", uid=None)
    assert "bomb.yaml" in info.value.msg and "aliases" in info.value.msg


def test_modest_yaml_aliases_still_work(tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(
        "kind: Pod\nmetadata:\n  name: web\n  labels: &labels {app: web, tier: front}\n"
        "  annotations:\n    copy: yes\nspec:\n  nodeSelector: *labels\n"
    )
    pod = ManifestPodSource(str(tmp_path)).get_pod("default", "web", uid=None)
    assert pod is not None and pod["spec"] == {"nodeSelector": {"app": "web", "tier": "front"}}


def test_deeply_nested_yaml_is_refused(tmp_path: Path) -> None:
    depth = jsonio.MAX_DEPTH + 5
    (tmp_path / "deep.yaml").write_text("kind: ConfigMap\ndata: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(InvalidConfig, match=r"deep\.yaml nests deeper than"):
        ManifestPodSource(str(tmp_path)).get_pod("default", "web", uid=None)


def test_a_manifest_that_is_a_fifo_is_skipped_and_a_dev_zero_link_too(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    assert ManifestPodSource(str(tmp_path)).get_pod("default", "web", uid=None) is None


# -- kubeconfig files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["ca_file", "client_cert_file", "token_file"])
def test_kubeconfig_files_that_are_devices_are_refused(key: str) -> None:
    from pymultus.kube.auth import Credentials

    credentials = Credentials("https://10.0.0.1:6443", **{key: "/dev/zero"})  # type: ignore[arg-type]
    with pytest.raises(MultusError) as info:
        credentials.ssl_context()
        credentials.authorization()
    assert "/dev/zero" in info.value.msg and "is a character device, not a regular file" in info.value.msg


def test_kubeconfig_itself_must_be_a_regular_file(tmp_path: Path) -> None:
    from pymultus.kube.auth import load_kubeconfig

    os.mkfifo(tmp_path / "kubeconfig")
    with pytest.raises(InvalidConfig, match="is a FIFO, not a regular file"):
        load_kubeconfig(str(tmp_path / "kubeconfig"))
