"""The pymultus image as ``scripts/image.sh`` leaves it: a ``docker save`` archive, read here
without any container engine (the tests that run it import it into a private containerd).

``build()`` runs the script, which reuses its cached archive when neither the Dockerfile nor the
build context changed, so only the first run of a session after a source change pays the build.
"""

from __future__ import annotations

import json
import posixpath
import subprocess
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image.sh"
BUILD_TIMEOUT = 900.0  # a cold build (mmdebstrap base + image) takes ~1.5 min on 2 busy cores


class ImageArchive:
    """The manifest, config and layers of a one-image ``docker save`` archive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with tarfile.open(path) as tar:
            (self.manifest,) = self._json(tar, "manifest.json")
            self.config: dict[str, Any] = self._json(tar, self.manifest["Config"])
        self.layers: list[str] = list(self.manifest["Layers"])
        self._files: dict[str, tarfile.TarInfo] | None = None

    @staticmethod
    def _json(tar: tarfile.TarFile, name: str) -> Any:
        member = tar.extractfile(name)
        assert member is not None, f"{name} is not a file in the archive"
        return json.loads(member.read())

    @property
    def tags(self) -> list[str]:
        return list(self.manifest.get("RepoTags") or [])

    @property
    def runtime(self) -> dict[str, Any]:
        """The image's run config (User, Entrypoint, Cmd, Env, ...)."""
        config: dict[str, Any] = self.config["config"]
        return config

    def layer_files(self, index: int) -> dict[str, tarfile.TarInfo]:
        """Path (without the leading ./ or /) -> entry, for one layer."""
        with tarfile.open(self.path) as tar:
            member = tar.extractfile(self.layers[index])
            assert member is not None
            with tarfile.open(fileobj=member, mode="r|") as layer:
                return {info.name.lstrip("./"): info for info in layer}

    def files(self) -> dict[str, tarfile.TarInfo]:
        """The union of all layers (later layers win; whiteouts are not used by this image)."""
        if self._files is None:
            self._files = {}
            for index in range(len(self.layers)):
                self._files.update(self.layer_files(index))
        return self._files

    def resolve(self, path: str) -> str:
        """``path`` with every symlink in the image followed (paths without the leading /)."""
        files = self.files()
        for _ in range(40):
            info = files.get(path)
            if info is None or not info.issym():
                return path
            target = info.linkname
            path = (
                target.lstrip("/")
                if target.startswith("/")
                else posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            )
        raise AssertionError(f"symlink loop at {path}")


def build() -> ImageArchive:
    """Build the image (or reuse the cached archive) and read it; fails with the build's log."""
    proc = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"scripts/image.sh failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return ImageArchive(Path(proc.stdout.strip().splitlines()[-1]))
