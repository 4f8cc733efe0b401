"""The benchmark runner's parts: figures, interleaved timing, whole-process runs, the machine.

A figure is a pair of sample lists, baseline and govtune, measured in the same run and
interleaved (baseline, govtune, baseline, govtune, ...), so that a change in machine
load biases neither side; its ratio is taken pair by pair and quoted as the median
with min and max. Absolute times on a shared machine are noisy; the ratios much less.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Figure:
    """One measured figure. ``lower_is_better`` says how to read ``ratio`` (govtune/baseline).

    Without a baseline (``base`` empty) the figure is a plain value (records/s, bytes).
    """

    section: str
    name: str
    unit: str  # "s", "records/s", "MB", ...
    mine: tuple[float, ...]
    base: tuple[float, ...] = ()
    baseline: str = ""  # what the baseline is, in words
    lower_is_better: bool = True
    target: str = ""  # e.g. "<= 0.8"
    target_value: float | None = None  # the bound on the median ratio (or value)
    command: str = ""
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.mine:
            raise ValueError(f"{self.name}: expected at least one sample, got none")
        if self.base and len(self.base) != len(self.mine):
            raise ValueError(
                f"{self.name}: expected paired samples, got {len(self.base)} vs {len(self.mine)}"
            )

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(m / b for m, b in zip(self.mine, self.base, strict=True) if b > 0)

    @property
    def headline(self) -> float:
        """The number the target is about: the median ratio, or the median value."""
        return statistics.median(self.ratios) if self.base else statistics.median(self.mine)

    @property
    def met(self) -> bool | None:
        if self.target_value is None:
            return None
        v = self.headline
        return v <= self.target_value if self.lower_is_better else v >= self.target_value


def spread(xs: Sequence[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return min(xs), statistics.median(xs), max(xs)


def interleave(
    baseline: Callable[[], float], mine: Callable[[], float], runs: int, warmup: int = 1
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Run baseline, mine, baseline, mine, ... ``runs`` times after ``warmup`` uncounted pairs.

    Each callable returns the figure of one run (seconds, usually). The order within a
    pair alternates, so neither side always runs on a warm (or cold) cache.
    """
    b: list[float] = []
    m: list[float] = []
    for i in range(warmup + runs):
        if i % 2:
            x, y = mine(), baseline()
        else:
            y, x = baseline(), mine()
        if i >= warmup:
            b.append(y)
            m.append(x)
    return tuple(b), tuple(m)


def timed(
    fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter
) -> Callable[[], float]:
    """``fn`` as a callable that returns its time in seconds: wall time by default;
    ``clock=time.thread_time`` for single-threaded work, whose CPU time other
    processes' load does not inflate."""

    def run() -> float:
        t0 = clock()
        fn()
        return clock() - t0

    return run


@dataclass(frozen=True)
class ChildRun:
    wall: float  # seconds
    max_rss: int  # bytes: the child's own peak (VmHWM), after exec
    cpu: float  # seconds, user + system, of the child and everything it waited for
    rc: int
    output: str  # the tail of stdout+stderr


def _vm_hwm(pid: int) -> int:
    """Peak resident set of a live process, bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_child(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 3600.0) -> ChildRun:  # fmt: skip
    """Run ``cmd`` as a whole process: wall time, its own peak RSS, exit code.

    The peak is the child's VmHWM, read while it runs: exec gives the child a fresh
    address space, so this is its own peak. (wait4's ru_maxrss is not: Linux starts a
    forked child's high-water mark at the parent's size, so every small child would
    report the runner's RSS.) VmHWM only grows, and it is read every 10 ms up to the
    exit, so the figure misses at most the last 10 ms of growth.
    """
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        deadline = t0 + timeout
        peak = 0
        while True:
            peak = max(peak, _vm_hwm(p.pid))
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                p.kill()
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
        out.seek(0)
        text = out.read()[-4000:].decode("utf-8", "replace")
    if not peak:  # not Linux, or it ended before the first read: fall back to rusage
        peak = usage.ru_maxrss * 1024
    return ChildRun(wall, peak, usage.ru_utime + usage.ru_stime, p.returncode, text)


def env_for_children() -> dict[str, str]:
    """The environment for child processes: this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def bin_path(name: str) -> str:
    """A console script of the running interpreter's environment (govtune, model_signing)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def machine() -> dict[str, str]:
    """What the figures were measured on: cores, CPU model and flags, versions, load."""
    info: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "model name":
                model = v.strip()
            elif k.strip() == "flags":
                flags = set(v.split())
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    info["cores"] = f"{usable} usable of {os.cpu_count()}"
    info["cpu"] = model
    wanted = ("sha_ni", "avx2", "avx512f", "aes", "bmi2")
    info["cpu flags"] = ", ".join(f for f in wanted if f in flags) or "none of " + ", ".join(wanted)
    info["platform"] = platform.platform()
    info["python"] = platform.python_version()
    for mod in ("torch", "msgpack", "model_signing"):
        try:
            from importlib.metadata import version

            info[mod] = version(mod.replace("_", "-"))
        except Exception:  # noqa: BLE001 - absent is a fact to report, not an error
            info[mod] = "not installed"
    try:
        import hashlib
        import ssl

        info["hashlib"] = f"{ssl.OPENSSL_VERSION}; sha256 from {type(hashlib.sha256()).__name__}"
    except ImportError:
        pass
    info["load average at start"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    info["max RSS of this runner"] = (
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB"
    )
    return info
