"""The containerd fixture itself: it says clearly why containerd cannot run, and its pause image
is a valid OCI archive that names the image the CRI config uses."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.support.containerd import (
    PAUSE_IMAGE,
    Containerd,
    ContainerdUnavailable,
    missing_tools,
    private_containerd,
)


def test_missing_tools_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert missing_tools() == ["containerd", "ctr", "runc", "gcc"]
    with (
        pytest.raises(ContainerdUnavailable, match="not installed: containerd, ctr, runc, gcc"),
        private_containerd(tmp_path, bin_dir=tmp_path, conf_dir=tmp_path, pause_archive=tmp_path / "x"),
    ):
        pass


def test_pause_archive_names_the_sandbox_image(pause_archive: Path) -> None:
    with tarfile.open(pause_archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        (manifest,) = index["manifests"]
        assert manifest["annotations"]["io.containerd.image.name"] == PAUSE_IMAGE
        blob = tar.extractfile(f"blobs/sha256/{manifest['digest'].split(':')[1]}")
        layers = json.load(blob)["layers"]  # type: ignore[arg-type]
        assert len(layers) == 1


@pytest.mark.netns
def test_a_containerd_that_cannot_start_says_why(tmp_path: Path, pause_archive: Path) -> None:
    (tmp_path / "bin").mkdir()
    daemon = Containerd(
        tmp_path / "ctd", bin_dir=tmp_path / "bin", conf_dir=tmp_path, pause_archive=pause_archive
    )
    daemon.config_path.write_text("version = 2\n[this is not toml\n")
    try:
        with pytest.raises(ContainerdUnavailable, match="containerd exited with"):
            daemon.start()
    finally:
        daemon.cleanup()
