"""Progress of a long operation, in one place: a bar on a terminal, periodic lines in logs.

Used by training (trainer/commands.py), admission (trainer/data.py), hashing of large
files (attest/tensors.py, attest/digest.py), verification (verifier/api.py, per layer) and
replay (verifier/replay.py). On a TTY it draws a `rich.progress` bar; otherwise (a log
file, CI, a pipe) it prints one plain line every ``every_s`` seconds and one at the end,
so a log shows that work goes on without a line per step. Nothing is printed before the
first update: an operation that fails while reading its inputs leaves no stray progress
line above its error.

Whether the library shows progress at all is the caller's choice, made once per command:
the CLI turns it on (``with enabled():``) unless ``--quiet`` or ``--format json`` asks for
a quiet stderr; a library call shows none. So the deep helpers (hashing, admission) need
no flag threaded through every signature. A bar started inside another (hashing inside
the verifier's layer bar) pauses the outer one: one terminal draws one bar at a time.

rich is a core dependency but not one of attest's format libraries, so it is imported
only when a bar is drawn (attest stays importable with the format's dependencies alone).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TextIO

_ENABLED: ContextVar[bool] = ContextVar("govtune_progress", default=False)
BIG_BYTES = 128 << 20  # bytes: a smaller file hashes in well under a second, so no progress
MIB = 1 << 20
_live: list[Progress] = []  # rich bars on screen now, innermost last
_bytes_lock = threading.Lock()
_bytes_open = [0]  # byte progresses shown now: one at a time (files hashed in parallel)


@contextmanager
def enabled(on: bool = True) -> Iterator[None]:
    """Within the block, `is_enabled()` is ``on``: the CLI's choice for one command."""
    token = _ENABLED.set(on)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def is_enabled() -> bool:
    """Whether the current command shows progress (off in library calls; see `enabled`)."""
    return _ENABLED.get()


def _seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """``with Progress("training", total=250, unit="steps") as p: p.update(k, loss=0.3)``.

    ``quiet`` prints nothing. ``total`` None: a count without a bar or an ETA."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        unit: str = "steps",
        quiet: bool = False,
        stream: TextIO | None = None,
        every_s: float = 10.0,  # seconds between plain lines (non-TTY)
        closing_line: bool = True,  # non-TTY: a last line at the end (if any update came)
        delay_s: float = 0.0,  # seconds: nothing at all for an operation done sooner
        scale: int = 1,  # units shown per count (MIB: byte counts shown in MiB)
    ) -> None:
        self.label, self.total, self.unit, self.quiet = label, total, unit, quiet
        self.stream = stream if stream is not None else sys.stderr
        self.every_s, self.closing_line = every_s, closing_line
        self.delay_s, self.scale = delay_s, scale
        self._lock = threading.Lock()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.fields: dict[str, Any] = {}
        self._start = time.monotonic()
        self._last_line = self._start
        self._bar: Any = None
        self._task: Any = None
        self._sub: tuple[str, int, int, float] | None = None  # label, done, total, start

    def __enter__(self) -> Progress:
        self._start = self._last_line = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._stop_bar()
        elif (
            self.closing_line
            and not self.quiet
            and not self.tty
            and not exc_type
            and self.done
            and time.monotonic() - self._start >= self.delay_s
        ):
            self._line()  # the closing line of a log

    def _stop_bar(self) -> None:
        self._bar.stop()
        self._bar = None
        if self in _live:
            _live.remove(self)

    def line(self) -> str:
        """The plain progress line: count, percentage, elapsed time, ETA and fields."""
        elapsed = time.monotonic() - self._start
        text = f"{self.label}: {self.done // self.scale}"
        if self.total:
            text += f"/{self.total // self.scale} {self.unit} ({100 * self.done // self.total}%)"
        else:
            text += f" {self.unit}"
        text += f", {_seconds(elapsed)} elapsed"
        if self._sub is None and self.total and 0 < self.done < self.total:
            text += f", ETA {_seconds(elapsed / self.done * (self.total - self.done))}"
        for k, v in self.fields.items():
            text += f", {k} {v:.3f}" if isinstance(v, float) else f", {k} {v}"
        return text + self._sub_text()

    def _sub_text(self) -> str:
        if self._sub is None:
            return ""
        label, done, total, start = self._sub
        text = f", {label} {done:,}/{total:,}" if total else f", {label} {done:,}"
        if total and 0 < done < total:
            took = time.monotonic() - start
            text += f" ({100 * done // total}%, ETA {_seconds(took / done * (total - done))})"
        return text

    def _line(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last_line = time.monotonic()

    def update(self, done: int, **fields: Any) -> None:
        """``done`` units finished so far; ``fields`` are shown beside the count."""
        if done != self.done:
            self._sub = None  # the unit it counted is over
        self.done, self.fields = done, {**self.fields, **fields}
        self._show()

    def sub(self, label: str, done: int, total: int | None) -> None:
        """Progress inside the current unit (a layer's records): shown after the fields
        with its own ETA, in place of the overall one, until ``update`` moves on."""
        start = self._sub[3] if self._sub is not None and self._sub[0] == label else None
        self._sub = (label, done, total or 0, time.monotonic() if start is None else start)
        self._show()

    def _show(self) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if now - self._start < self.delay_s:
            return
        if not self.tty:
            if now - self._last_line >= self.every_s:
                self._line()
            return
        if self._bar is None:  # started on the first update: no bar above an input error
            if _live:  # one bar at a time: the outer one resumes at its next update
                _live[-1]._stop_bar()
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False,
            )  # fmt: skip
            total = None if self.total is None else self.total // self.scale
            # a resumed bar (after an inner one) starts where it was, not at 0
            self._task = self._bar.add_task(
                self.label, total=total, completed=self.done // self.scale, info=""
            )
            self._bar.start()
            _live.append(self)
        info = " ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in self.fields.items()
        )
        self._bar.update(
            self._task, completed=self.done // self.scale, info=info + self._sub_text()
        )

    def advance(self, n: int = 1, **fields: Any) -> None:
        with self._lock:  # hashing threads may report at once
            self.update(self.done + n, **fields)


class _BytesProgress(Progress):
    """Byte progress of one file; a second one at once (parallel files) stays quiet."""

    def __enter__(self) -> Progress:
        with _bytes_lock:
            if not self.quiet and _bytes_open[0]:
                self.quiet = True
            self._counted = not self.quiet
            _bytes_open[0] += self._counted
        return super().__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, tb)
        with _bytes_lock:
            _bytes_open[0] -= self._counted


def for_bytes(label: str, size: int) -> Progress:
    """Progress of reading ``size`` bytes (``advance(n)`` per chunk), shown in MiB.

    Quiet for a file under BIG_BYTES, outside an `enabled` command, or while another
    file's byte progress is shown; on a terminal nothing is drawn in the first second."""
    quiet = size < BIG_BYTES or not is_enabled()
    return _BytesProgress(label, size, unit="MiB", quiet=quiet, scale=MIB, delay_s=1.0)


__all__ = ["BIG_BYTES", "Progress", "enabled", "for_bytes", "is_enabled"]
