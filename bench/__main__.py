"""Run every benchmark and write docs/PERFORMANCE.md.

    python -m bench --quick        # ~15 minutes on 2 cores: small sizes, 3 runs a figure
    python -m bench --full         # the issue's sizes (1 and 4 GiB, 1M steps, 10M admissions,
                                   # one run of 100k steps + 1M admissions); 2-3 hours on 2 cores
    python -m bench --quick --only hashing canonical --out /tmp/perf.md

Sections: demo, canonical, hashing, verify, cli, scale, storage, replay, training,
distributed.
Every figure is measured against its baseline in the same run (interleaved); large
temporary files go under --tmp (default: the system temp folder) and are deleted.
A benchmark that fails is listed as failed in the output, never left out silently.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from . import fig_canonical, fig_hashing, fig_models, fig_scale, fig_verify, report
from .runner import ROOT, Figure, bin_path, env_for_children, machine, run_child

ADMISSIONS, STEPS = "admissions.msgpack", "steps.msgpack"
SECTIONS = ("demo", "canonical", "hashing", "verify", "cli", "scale", "storage", "replay",
            "training", "distributed")  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    runs: int
    demo_runs: int
    hash_mib: tuple[int, ...]
    shards: tuple[int, int]  # count, MiB each
    verify_mib: tuple[int, ...]
    scale_steps: tuple[int, ...]
    scale_admissions: tuple[int, ...]
    replay: tuple[int, int, tuple[int, ...]]  # steps, checkpoint every, q values
    train_steps: int
    # One run with both logs grown (issue 12: 100k steps and 1M admissions), or None.
    scale_combined: tuple[int, int] | None = None


QUICK = Sizes(3, 1, (256,), (4, 64), (256,), (1_000, 10_000, 100_000),
              (10_000, 100_000, 300_000),
              (40, 10, (1, 2)), 12)  # fmt: skip
SMOKE = Sizes(1, 1, (8,), (2, 4), (8,), (100, 300), (3_000, 6_000), (6, 3, (1,)), 3, (300, 6_000))
FULL = Sizes(5, 3, (1024, 4096), (8, 512), (1024, 4096), (1_000, 10_000, 100_000, 1_000_000),
             (10_000, 100_000, 1_000_000, 10_000_000), (120, 20, (1, 2, 4, 8)), 40,
             (100_000, 1_000_000))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes (the default)")
    mode.add_argument("--full", action="store_true", help="the issue's sizes (about an hour)")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes: checks the runner only")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, help="run these sections only")
    ap.add_argument("--demo", type=Path, help="reuse this `govtune demo` output (no demo timing)")
    ap.add_argument("--out", type=Path, help="default: docs/PERFORMANCE.md (none with --only)")
    ap.add_argument("--tmp", type=Path, help="folder for large temporary files")
    args = ap.parse_args(argv)
    sizes = FULL if args.full else SMOKE if args.smoke else QUICK
    mode_name = "full" if args.full else "smoke" if args.smoke else "quick"
    wanted = set(args.only or SECTIONS)
    out_path = args.out or (None if args.only else ROOT / "docs" / "PERFORMANCE.md")
    cmd = "python -m bench --" + mode_name
    command = " ".join(["python -m bench", *(shlex.quote(a) for a in (argv or sys.argv[1:]))])

    t_start = time.perf_counter()
    info = machine()
    figures: list[Figure] = []
    failures: list[str] = []
    unavailable: list[str] = []

    done: list[str] = []

    def flush() -> None:
        """Write what is measured so far: an interrupted run still leaves its figures."""
        if out_path is None:
            return
        todo = [s for s in SECTIONS if s in wanted and s not in done]
        text = report.render(figures, info, mode=mode_name, command=command,
                             seconds=time.perf_counter() - t_start, unavailable=unavailable,
                             failures=failures, pending=todo)  # fmt: skip
        report.write(out_path, text)

    def section(name: str, fn):  # type: ignore[no-untyped-def]
        if name not in wanted:
            return
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            got = fn()
            figures.extend(got)
            for f in got:
                print(f"[bench]   {f.name}: {f.headline:.3g}", file=sys.stderr, flush=True)
        except Exception as e:  # noqa: BLE001 - one failed benchmark must not hide the others
            failures.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            traceback.print_exc()
        print(f"[bench]   {name} took {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        done.append(name)
        flush()

    if args.tmp is not None:
        Path(args.tmp).mkdir(parents=True, exist_ok=True)  # a new folder is what one means
    tmp_root = Path(tempfile.mkdtemp(prefix="govtune-bench-", dir=args.tmp))
    try:
        demo = args.demo
        if demo is not None and "demo" in wanted:
            unavailable.append(
                f"govtune demo wall time: not measured in this run (--demo {demo} reused an "
                "existing demo output); run without --demo to measure it"
            )
            done.append("demo")
        needs_demo = wanted & {"demo", "canonical", "verify", "cli", "scale", "storage"}
        if demo is None and needs_demo:
            demo = tmp_root / "demo"
            section("demo", lambda: _demo_figures(demo, sizes.demo_runs, f"{cmd} --only demo"))
            if not (demo / "run").is_dir():
                failures.append("demo: no demo output; the sections that need it were skipped")
                wanted -= {"canonical", "verify", "cli", "scale", "storage"}
        if demo is not None:
            prov = demo / "run" / "provenance"
            logs = {"demo admissions": prov / ADMISSIONS, "demo steps": prov / STEPS}
            section("canonical", lambda: fig_canonical.figures(
                logs, max(5, sizes.runs), f"{cmd} --only canonical"))  # fmt: skip
        section("hashing", lambda: fig_hashing.figures(
            tmp_root, sizes.hash_mib, sizes.shards, sizes.runs,
            f"{cmd} --only hashing"))  # fmt: skip
        if demo is not None:
            section("verify", lambda: fig_verify.verify_figures(
                demo, tmp_root, sizes.verify_mib, sizes.runs, f"{cmd} --only verify"))  # fmt: skip
            section("cli", lambda: fig_verify.cli_figures(
                demo, tmp_root, max(5, sizes.runs), f"{cmd} --only cli"))  # fmt: skip
            section("scale", lambda: fig_scale.figures(
                demo, tmp_root, sizes.scale_steps, sizes.scale_admissions, 1,
                f"{cmd} --only scale", combined=sizes.scale_combined))  # fmt: skip
            section("storage", lambda: fig_models.storage_figures(demo, f"{cmd} --only storage"))
        steps, every, qs = sizes.replay
        section(
            "replay", lambda: fig_models.replay_figures(steps, every, qs, f"{cmd} --only replay")
        )

        def training() -> list[Figure]:
            figs, missing = fig_models.training_figures(
                sizes.train_steps, not args.full, f"{cmd} --only training"
            )
            why = (
                "quick mode: about 20 s a step on 2 cores; `python -m bench --full` runs it"
                if not args.full
                else "no SmolLM2 cache: run scripts/convert-smollm2"
            )
            unavailable.extend(f"training: {m} ({why})" for m in missing)
            return figs

        section("training", training)
        section("distributed", lambda: fig_models.dist_figures(
            sizes.train_steps, f"{cmd} --only distributed"))  # fmt: skip
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    seconds = time.perf_counter() - t_start
    if out_path is not None:
        done.extend(s for s in SECTIONS if s not in done)
        flush()
        print(f"[bench] wrote {out_path} ({seconds / 60:.1f} min)", file=sys.stderr)
    else:
        print(report.render(figures, info, mode=mode_name, command=command, seconds=seconds,
                            unavailable=unavailable, failures=failures))  # fmt: skip
    return 1 if failures else 0


def _demo_figures(out: Path, runs: int, command: str) -> list[Figure]:
    """`govtune demo` wall time, whole process; the last run's output is kept for the others."""
    walls = []
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        r = run_child(
            [bin_path("govtune"), "demo", "--out", str(out), "--quiet"], env=env_for_children()
        )
        if r.rc != 0:
            raise RuntimeError(f"govtune demo exited {r.rc}: {r.output[-600:]}")
        walls.append(r.wall)
    return [
        Figure("govtune demo", "`govtune demo` wall time (admit, train, sign, verify)", "s",
               tuple(walls), target="<= 300 s", target_value=300.0, command=command)
    ]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
