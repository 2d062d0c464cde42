"""pymultus.paths gives what os / os.path give for the paths and environment the hot path uses."""

from __future__ import annotations

import os
import posixpath
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pymultus import paths

# Paths made of the pieces whose handling differs between implementations.
_pieces = st.sampled_from(["", "/", "//", ".", "..", "a", "b.c", "a/", "/a", ".../"])
_path = st.lists(_pieces, max_size=8).map("".join)


@given(_path)
def test_dirname_basename_normpath_abspath_match_posixpath(path: str) -> None:
    assert paths.dirname(path) == posixpath.dirname(path)
    assert paths.basename(path) == posixpath.basename(path)
    assert paths.normpath(path) == posixpath.normpath(path)
    assert paths.abspath(path or ".") == posixpath.abspath(path or ".")


@given(_path, st.lists(_path, max_size=4))
def test_join_matches_posixpath(first: str, rest: list[str]) -> None:
    assert paths.join(first, *rest) == posixpath.join(first, *rest)


def test_file_kind_checks_match_os_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link-to-file").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    names = ["file", "dir", "link-to-file", "dangling", "fifo", "missing", "file/below", "x\x00y"]
    for name in names:
        path = str(tmp_path / name)
        for check in ("exists", "lexists", "isdir", "isfile", "islink"):
            try:
                expected = getattr(os.path, check)(path)
            except ValueError:
                expected = False  # an embedded NUL: os.path answers False too in 3.11
            assert getattr(paths, check)(path) == expected, (name, check)


def test_makedirs_creates_parents_and_gives_the_mode_to_the_leaf_only(tmp_path: Path) -> None:
    leaf = tmp_path / "a" / "b" / "c"
    old = os.umask(0o022)
    try:
        paths.makedirs(str(leaf) + "/", 0o700)
        paths.makedirs(str(leaf), 0o700)  # exists already: fine
    finally:
        os.umask(old)
    assert stat.S_IMODE(leaf.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755  # 0o777 minus the umask
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        paths.makedirs(str(tmp_path / "file"))
    with pytest.raises(NotADirectoryError):
        paths.makedirs(str(tmp_path / "file" / "below"))


def test_environ_decodes_the_starting_environment_like_os_environ() -> None:
    """In a fresh process (``paths.environ`` reads the environment the process started with),
    undecodable bytes included: they must reach the delegates unchanged."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(paths.__file__).parents[1])!r})\n"
        "import os\nfrom pymultus import paths\n"
        "env = paths.environ()\n"
        "print(env == dict(os.environ), os.fsencode(env['RAW']) == b'\\xff-\\xc3\\xa9')\n"
    )
    env = {b"RAW": b"\xff-\xc3\xa9", b"PLAIN": b"value", b"EMPTY": b""}
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], env=env, capture_output=True, check=False)
    assert out.stdout.split() == [b"True", b"True"], out.stderr
