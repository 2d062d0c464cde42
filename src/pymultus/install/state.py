"""What ``pymultus install`` put on the node, so ``pymultus uninstall`` removes exactly that.

The record lives in the CNI bin dir (``.pymultus-install.json``: every mode writes that dir, and
the thick DaemonSet's init container mounts nothing else). It lists every file with the sha256
of what we wrote, every bundle directory and every directory we created. Uninstall removes a file
only if it still has our content (a file changed since is someone else's now and is left in
place, with a warning), bundle directories only if they carry our ``BUNDLE.json``, and created
directories only when empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil

from pymultus import fileio
from pymultus.install.bundle import BUNDLE_MARKER

STATE_NAME = ".pymultus-install.json"
STATE_SCHEMA = 1

log = logging.getLogger("pymultus.install")


def sha256_file(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


class InstallState:
    """The install record; ``files`` maps a path to the sha256 of the content we wrote."""

    __slots__ = ("bundles", "dirs", "files", "path", "version")

    def __init__(self, path: str) -> None:
        self.path = path
        self.version = ""
        self.files: dict[str, str] = {}
        self.bundles: list[str] = []  # newest last
        self.dirs: list[str] = []

    @classmethod
    def load(cls, bin_dir: str) -> InstallState:
        state = cls(os.path.join(bin_dir, STATE_NAME))
        try:
            doc = json.loads(fileio.read_file(state.path))
        except FileNotFoundError:
            return state
        except (OSError, ValueError) as exc:
            # A corrupt record must not make uninstall remove the wrong things: start empty.
            log.warning("ignoring unreadable install record %s: %s", state.path, exc)
            return state
        if isinstance(doc, dict) and doc.get("schema") == STATE_SCHEMA:
            state.version = str(doc.get("pymultus", ""))
            state.files = {str(k): str(v) for k, v in dict(doc.get("files", {})).items()}
            state.bundles = [str(b) for b in doc.get("bundles", [])]
            state.dirs = [str(d) for d in doc.get("dirs", [])]
        return state

    @property
    def exists(self) -> bool:
        return os.path.exists(self.path)

    def save(self) -> None:
        doc = {
            "schema": STATE_SCHEMA,
            "pymultus": self.version,
            "files": dict(sorted(self.files.items())),
            "bundles": self.bundles,
            "dirs": self.dirs,
        }
        fileio.write_atomically(
            self.path, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o600, dir_mode=None
        )

    def make_dirs(self, path: str, mode: int) -> None:
        """Create ``path`` and missing parents with ``mode``, recording the ones we created."""
        missing: list[str] = []
        current = os.path.abspath(path)
        while not os.path.isdir(current):
            missing.append(current)
            current = os.path.dirname(current)
        for directory in reversed(missing):
            os.mkdir(directory, mode)
            os.chmod(directory, mode)  # mkdir's mode is filtered by the umask
            if directory not in self.dirs:
                self.dirs.append(directory)

    def write(self, path: str, data: bytes, mode: int) -> bool:
        """Write ``path`` atomically and record it; returns whether it changed."""
        changed = fileio.write_atomically(path, data, mode=mode, dir_mode=None)
        self.files[path] = hashlib.sha256(data).hexdigest()
        return changed

    def owns(self, path: str) -> bool:
        """Whether ``path`` still holds what we wrote there."""
        recorded = self.files.get(path)
        return recorded is not None and sha256_file(path) == recorded

    def remove(self, path: str) -> bool:
        """Remove ``path`` if it still holds our content; forget it either way."""
        removed = False
        if self.owns(path):
            removed = fileio.remove_durably(path)
        elif os.path.exists(path) and path in self.files:
            log.warning("leaving %s in place: it changed since pymultus wrote it", path)
        self.files.pop(path, None)
        return removed

    def remove_bundle(self, path: str) -> None:
        if os.path.isfile(os.path.join(path, BUNDLE_MARKER)):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            log.warning("leaving %s in place: it has no %s, so pymultus did not make it", path, BUNDLE_MARKER)
        if path in self.bundles:
            self.bundles.remove(path)

    def uninstall(self) -> list[str]:
        """Remove everything recorded; returns the paths left in place because they changed."""
        kept = [p for p in self.files if os.path.exists(p) and not self.owns(p)]
        for path in list(self.files):
            self.remove(path)
        for bundle in list(self.bundles):
            self.remove_bundle(bundle)
        fileio.remove_durably(self.path)
        for directory in sorted(self.dirs, key=len, reverse=True):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError:
                log.warning("leaving directory %s in place: it is not empty", directory)
                kept.append(directory)
        self.dirs = []
        return kept
