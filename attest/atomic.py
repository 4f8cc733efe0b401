"""Crash-safe file writes: temporary file, fsync, rename, fsync the folder.

A reader never sees a half-written file, and an earlier version survives a crash.
Atomic replacement is for regular files only: a target that is a symlink, a FIFO, a
device or a folder is never replaced (replacing ``/dev/stdout``, a symlink, with a
regular file is the classic bug). Output that may go to a pipe or a terminal asks for
it with ``stream=True`` (then FIFOs and character devices are written in place).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from pathlib import Path

from .errors import UsageError

STDOUT = "-"  # the conventional name for standard output on a command line


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _write_stream(path: Path, data: bytes) -> None:
    """Write into an existing FIFO or character device (no rename is possible there)."""
    try:
        with open(path, "wb", buffering=0) as f:
            view = memoryview(data)
            while view:
                n = f.write(view)
                view = view[n or 0 :]
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {e.strerror or e}") from e


def write_output(target: str | Path, data: bytes) -> None:
    """Write command output: ``-`` is standard output, else :func:`write_atomic` with streams.

    Raises UsageError as :func:`write_atomic` does.
    """
    if str(target) == STDOUT:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:  # `| head`: the reader left; nothing more to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    write_atomic(Path(target), data, stream=True)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, stream: bool = False) -> None:
    """Write ``data`` to ``path`` atomically with permission ``mode``.

    ``path`` must be absent or a regular file. With ``stream=True`` a path that is (or
    is a symlink to) a FIFO or a character device is written in place instead.
    Raises UsageError naming the path when it is of another kind (a symlink, a folder,
    a device), when the folder is not writable or when the disk is full.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {e.strerror or e}") from e
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stream:
            with contextlib.suppress(OSError):
                target = os.stat(path)  # follows the symlink (/dev/stdout -> /proc/self/fd/1)
                if stat.S_ISFIFO(target.st_mode) or stat.S_ISCHR(target.st_mode):
                    _write_stream(path, data)
                    return
        raise UsageError(
            f"{path}: expected a regular file or a new path, found {_kind(st.st_mode)} "
            "(it is never replaced)"
        )
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {e.strerror or e}") from e
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UsageError(f"{path}: cannot write: {e.strerror or e}") from e
