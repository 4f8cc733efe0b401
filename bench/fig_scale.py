"""Structural verification at scale: `govtune verify` on runs grown to N steps / N admissions.

Each size is a real signed run (bench/synthetic.py `scale_run`) verified by a child
`govtune verify` process; wall time and that child's own peak RSS (VmHWM) are
recorded. Besides whole-process records/s, the marginal rate is (N − demo's records) /
(time at N − time of the reference run, the demo's run rebuilt without growth), so
process start-up and the fixed layers do not flatter small sizes. Linearity is the
marginal CPU time per record at the largest size over that at the smallest (CPU
time: the structural layers are single-threaded, and load from other processes
inflates wall time, not CPU time).
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path

from .fig_verify import govtune_verify_cmd
from .runner import Figure, env_for_children, run_child
from .synthetic import scale_run

SECTION = "structural verification at scale"
RSS_LIMIT_MB = 300
MB = 2**20


def _verify(run: Path, pub: Path, runs: int) -> tuple[list[float], list[int], list[float]]:
    walls, rss, cpus = [], [], []
    for _ in range(runs):
        r = run_child(govtune_verify_cmd(run, pub), env=env_for_children())
        if r.rc != 0:
            raise RuntimeError(f"govtune verify {run} exited {r.rc}: {r.output[-800:]}")
        walls.append(r.wall)
        rss.append(r.max_rss)
        cpus.append(r.cpu)
    return walls, rss, cpus


def figures(demo: Path, tmp: Path, steps: Sequence[int], admissions: Sequence[int], runs: int,
            command: str, combined: tuple[int, int] | None = None) -> list[Figure]:  # fmt: skip
    pub = demo / "producer.pub"
    out: list[Figure] = []
    # The reference: the demo's run rebuilt the same way, without growth (and, like the
    # grown runs, without checkpoint files), so that the difference is the records.
    ref_folder = tmp / "scale-reference"
    try:
        ref_walls, ref_rss, ref_cpus = _verify(scale_run(demo, ref_folder), pub, max(runs, 3))
    finally:
        shutil.rmtree(ref_folder, ignore_errors=True)
    t_ref = statistics.median(ref_walls)
    c_ref = statistics.median(ref_cpus)
    ref_peak = statistics.median(ref_rss) / MB
    from attest.log import iter_log

    prov = demo / "run" / "provenance"
    n_steps0 = sum(1 for _ in iter_log(prov / "steps.msgpack")) - 1
    n_adm0 = sum(1 for _ in iter_log(prov / "admissions.msgpack"))
    for kind, sizes, n0 in (("steps", steps, n_steps0), ("admissions", admissions, n_adm0)):
        per_record: list[tuple[int, float]] = []
        points: list[tuple[int, float, float, float]] = []  # (n, wall, CPU, peak RSS MB)
        for n in sizes:
            folder = tmp / f"scale-{kind}-{n}"
            try:
                kw = {kind: n}
                run = scale_run(demo, folder, **kw)  # type: ignore[arg-type]
                n = _count(run, kind)
                walls, rss, cpus = _verify(run, pub, runs)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            points.append((n, statistics.median(walls), statistics.median(cpus),
                           statistics.median(rss) / MB))  # fmt: skip
            extra = {
                "wall s (min/median/max)": "/".join(f"{x:.2f}" for x in _mmm(walls)),
                "CPU s (median)": f"{statistics.median(cpus):.2f}",
                "reference run wall / CPU s (median)": f"{t_ref:.2f} / {c_ref:.2f}",
            }
            # Marginal cost in CPU seconds: the structural layers are single-threaded, and
            # CPU time is not inflated by other processes' load as wall time is.
            marginal = statistics.median(cpus) - c_ref
            if n <= n0:  # a size not above the demo's is the demo's log: nothing marginal
                extra["marginal records/s"] = "not resolved (no more records than the demo's)"
            elif marginal > 0.05 * c_ref:
                per_record.append((n, marginal / (n - n0)))
                extra["marginal records per CPU second (over the reference run)"] = (
                    f"{(n - n0) / marginal:,.0f}"
                )
            else:
                extra["marginal records/s"] = "not resolved (difference within the noise)"
            out.append(
                Figure(
                    SECTION,
                    f"{n:,} {kind}: {kind[:-1]} records/s, whole process (records / wall)",
                    "records/s",
                    tuple(n / w for w in walls),
                    command=command,
                    lower_is_better=False,
                    extra=extra,
                )
            )
            out.append(
                Figure(
                    SECTION,
                    f"{n:,} {kind}: peak RSS of the verifier process",
                    "MB",
                    tuple(x / MB for x in rss),
                    command=command,
                    target=f"< {RSS_LIMIT_MB} MB",
                    target_value=RSS_LIMIT_MB,
                    extra={"reference run peak RSS (median)": f"{ref_peak:.0f} MB"},
                )
            )
        if len(per_record) >= 2:
            (n_lo, lo), (n_hi, hi) = per_record[0], per_record[-1]
            out.append(
                Figure(
                    SECTION,
                    f"{kind}: linearity, marginal CPU seconds per record at {n_hi:,} / at {n_lo:,}",
                    "ratio",
                    (hi / lo,),
                    command=command,
                    target="<= 1.5 (1.0 is linear)",
                    target_value=1.5,
                    extra=_curve(points),
                )
            )
        if len(points) >= 2:
            (n_lo, _, _, rss_lo), (n_hi, _, _, rss_hi) = points[0], points[-1]
            slope = (rss_hi - rss_lo) * MB / (n_hi - n_lo) if n_hi > n_lo else 0.0
            out.append(
                Figure(
                    SECTION,
                    f"{kind}: flatness, peak RSS at {n_hi:,} / at {n_lo:,}",
                    "ratio",
                    (rss_hi / rss_lo,),
                    command=command,
                    target="<= 1.5 (1.0 is flat), and every size < 300 MB",
                    target_value=1.5,
                    extra={
                        "RSS growth per record": f"{slope:,.1f} B",
                        "every size under 300 MB": "yes"
                        if all(p[3] < RSS_LIMIT_MB for p in points)
                        else "no",
                        **_curve(points),
                    },
                )
            )
    if combined is not None:
        out.append(_combined(demo, tmp, pub, combined, runs, command))
    return out


def _combined(demo: Path, tmp: Path, pub: Path, sizes: tuple[int, int], runs: int,
              command: str) -> Figure:  # fmt: skip
    """One run with both logs grown (issue 12 item 4: 100k steps and 1M admissions)."""
    folder = tmp / "scale-combined"
    try:
        run = scale_run(demo, folder, steps=sizes[0], admissions=sizes[1])
        n_steps, n_adm = _count(run, "steps"), _count(run, "admissions")
        walls, rss, cpus = _verify(run, pub, runs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Figure(
        SECTION,
        f"one run of {n_steps:,} steps and {n_adm:,} admissions: peak RSS of the verifier process",
        "MB",
        tuple(x / MB for x in rss),
        command=command,
        target=f"< {RSS_LIMIT_MB} MB",
        target_value=RSS_LIMIT_MB,
        extra={
            "wall s (median)": f"{statistics.median(walls):.1f}",
            "CPU s (median)": f"{statistics.median(cpus):.1f}",
        },
    )


def _curve(points: list[tuple[int, float, float, float]]) -> dict[str, str]:
    """The scale curve in one line per size: wall, CPU, peak RSS."""
    return {
        f"{n:,} records": f"wall {w:.1f} s, CPU {c:.1f} s, peak RSS {rss:.0f} MB"
        for n, w, c, rss in points
    }


def _count(run: Path, kind: str) -> int:
    """Records actually written (a grown run may add a few steps, bench/synthetic.py
    `_write_steps`; a size not above the demo's keeps the demo's log)."""
    from attest.log import iter_log

    name = "steps.msgpack" if kind == "steps" else "admissions.msgpack"
    n = sum(1 for _ in iter_log(run / "provenance" / name))
    return n - 1 if kind == "steps" else n


def _mmm(xs: Sequence[float]) -> tuple[float, float, float]:
    return min(xs), statistics.median(xs), max(xs)
