"""The CNI executables' logger: levels and logOptions rotation."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import pytest

from pymultus.cli.logsink import make_logger, rotate, write_line
from pymultus.config.multus import LogOptions


def test_levels_follow_go_multus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "multus.log"
    log = make_logger(level="error", log_file=str(path), to_stderr=True, component="multus")
    log("debug", "hidden")
    log("verbose", "hidden too")
    log("warning", "shown")
    log("error", "shown too")
    text = path.read_text()
    assert "hidden" not in text and "shown" in text and "shown too" in text
    assert "shown too" in capsys.readouterr().err
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_panic_level_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "multus.log"
    make_logger(level="panic", log_file=str(path), to_stderr=False, component="multus")("error", "x")
    assert not path.exists()


def test_file_is_rotated_past_max_size_and_backups_are_compressed(tmp_path: Path) -> None:
    path = tmp_path / "multus.log"
    options = LogOptions(max_age=0, max_size=1, max_backups=2, compress=True)
    chunk = b"x" * (600 * 1024)
    for _ in range(5):
        write_line(str(path), chunk, options)
    assert path.stat().st_size == len(chunk)
    backups = sorted(p.name for p in tmp_path.iterdir() if p.name != "multus.log")
    assert backups == ["multus.log.1.gz", "multus.log.2.gz"]
    assert gzip.decompress((tmp_path / "multus.log.1.gz").read_bytes()) == chunk


def test_backups_older_than_max_age_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "multus.log"
    path.write_bytes(b"new")
    old = tmp_path / "multus.log.1"
    old.write_bytes(b"old")
    past = time.time() - 10 * 86400
    os.utime(old, (past, past))
    rotate(str(path), LogOptions(max_age=5, max_size=1, max_backups=3, compress=False))
    assert (tmp_path / "multus.log.1").read_bytes() == b"new"
    assert not (tmp_path / "multus.log.2").exists()


def test_an_unwritable_log_file_never_raises(tmp_path: Path) -> None:
    log = make_logger(
        level="debug", log_file=str(tmp_path / "missing-dir" / "x.log"), to_stderr=False, component="multus"
    )
    log("error", "goes nowhere")


def test_a_fifo_in_place_of_the_log_file_never_blocks(tmp_path: Path) -> None:
    """No reader on the FIFO: the open would block every ADD and DEL forever without O_NONBLOCK."""
    import threading

    fifo = tmp_path / "multus.log"
    os.mkfifo(fifo)
    writer = threading.Thread(target=write_line, args=(str(fifo), b"line\n", None), daemon=True)
    writer.start()
    writer.join(5)
    assert not writer.is_alive(), "write_line blocked on a FIFO without a reader"
