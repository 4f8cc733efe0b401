"""attest/atomic.py: atomic replacement is for regular files only (issue 14)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from attest.atomic import write_atomic, write_output
from attest.errors import UsageError


def test_new_and_regular_files_are_written_with_mode(tmp_path: Path) -> None:
    p = tmp_path / "out.bin"
    write_atomic(p, b"one", mode=0o600)
    assert p.read_bytes() == b"one" and (p.stat().st_mode & 0o777) == 0o600
    write_atomic(p, b"two")
    assert p.read_bytes() == b"two"
    assert [q.name for q in tmp_path.iterdir()] == ["out.bin"]  # no temporary file left


def test_symlink_is_never_replaced(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_bytes(b"keep")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with pytest.raises(UsageError, match=r"link\.txt: expected a regular file .*found a symlink"):
        write_atomic(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"keep"


def test_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="found a folder"):
        write_atomic(tmp_path, b"x")


def test_fifo_refused_without_stream_and_written_with_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="found a FIFO"):
        write_atomic(fifo, b"x")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_output(fifo, b"through the pipe")
    reader.join(timeout=10)
    assert got == [b"through the pipe"]
    assert fifo.exists() and not fifo.is_file()  # still the FIFO, not a regular file


def test_dev_null_symlinked_device_written_in_place(tmp_path: Path) -> None:
    link = tmp_path / "sink"
    link.symlink_to("/dev/null")
    write_output(link, b"discarded")
    assert link.is_symlink() and os.readlink(link) == "/dev/null"


def test_dash_writes_stdout(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    write_output("-", b"to stdout\n")
    assert capfdbinary.readouterr().out == b"to stdout\n"


def test_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot write"):
        write_atomic(tmp_path / "no" / "such" / "file", b"x")
