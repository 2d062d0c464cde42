"""The bounded record of containers whose DEL completed (pymultus.store.deleted)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pymultus.errors import InvalidEnvironment
from pymultus.store import deleted


def test_mark_then_was_deleted(tmp_path: Path) -> None:
    cni_dir = str(tmp_path / "cni")
    assert not deleted.was_deleted(cni_dir, "abc")
    assert deleted.mark(cni_dir, "abc")
    assert deleted.was_deleted(cni_dir, "abc")
    assert not deleted.was_deleted(cni_dir, "abd")
    assert deleted.mark(cni_dir, "abc")  # marking twice is fine
    directory = tmp_path / "cni" / deleted.DELETED_DIR
    assert directory.stat().st_mode & 0o777 == 0o700
    assert (directory / "abc").stat().st_mode & 0o777 == 0o600


def test_a_long_container_id_gets_a_bounded_name(tmp_path: Path) -> None:
    long_id = "c" * 300
    assert deleted.mark(str(tmp_path), long_id)
    assert deleted.was_deleted(str(tmp_path), long_id)
    assert not deleted.was_deleted(str(tmp_path), "c" * 299)


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-a"])
def test_container_ids_are_validated_before_they_become_a_path(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidEnvironment):
        deleted.mark(str(tmp_path), bad)
    with pytest.raises(InvalidEnvironment):
        deleted.was_deleted(str(tmp_path), bad)
    assert list(tmp_path.iterdir()) == []


def test_cannot_record_is_not_an_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert deleted.mark(str(not_a_dir), "abc") is False
    assert not deleted.was_deleted(str(not_a_dir), "abc")


def test_a_symlink_in_place_of_an_entry_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    directory = tmp_path / deleted.DELETED_DIR
    directory.mkdir()
    (directory / "abc").symlink_to(target)
    assert deleted.mark(str(tmp_path), "abc") is False
    assert not target.exists()


def test_pruning_keeps_the_newest(tmp_path: Path) -> None:
    directory = tmp_path / deleted.DELETED_DIR
    directory.mkdir()
    for index in range(11):
        path = directory / f"c{index:02d}"
        path.write_text("")
        os.utime(path, ns=(index * 10**9, index * 10**9))
    assert deleted.prune(str(directory), limit=10) == 11 - 7
    assert sorted(p.name for p in directory.iterdir()) == [f"c{i:02d}" for i in range(4, 11)]
    assert deleted.prune(str(directory), limit=10) == 0


def test_mark_prunes_past_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deleted, "LIMIT", 8)
    for index in range(9):
        assert deleted.mark(str(tmp_path), f"c{index}")
    assert len(list((tmp_path / deleted.DELETED_DIR).iterdir())) == 6
