"""V4 distributed checks: world size, ranks and the split of each global batch (issue 12).

spec/verification.md §V4 (GT-DIST-WORLD, GT-DIST-RANKS, GT-DIST-DUPLICATE). Streamed with
the step chain (verifier/checks_chain.py): one `DistCheck` per run, `step` per record.
The split rule is attest.ranks, the very code the trainer splits with. A single-process
run (no ``extra.distributed``, no ``worldSize`` in the environment, no ``ranks``) passes
all three unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from attest.errors import FormatError
from attest.predicates import STEPS_FILE
from attest.ranks import Distributed, ranks_for
from attest.records import StartRecord, StepRecord

from .context import Tally

DIST_CODES = ("GT-DIST-WORLD", "GT-DIST-RANKS", "GT-DIST-DUPLICATE")
ENV_KEYS = ("worldSize", "backend", "deviceTypes")  # the environment's distributed facts


class DistCheck:
    """GT-DIST-*: the signed environment, the start record and every step's ranks agree."""

    def __init__(self, t: Tally, environment: Mapping[str, Any], start: StartRecord) -> None:
        self.t = t
        self.world: int | None = None  # None: a single-process run
        self.steps = 0
        raw = start.extra.get("distributed")
        where = f"{STEPS_FILE}: start extra.distributed"
        env = {k: environment[k] for k in ENV_KEYS if k in environment}
        if raw is None:
            if env:
                t.fail(
                    "GT-DIST-WORLD",
                    f"training-run environment: names {', '.join(sorted(env))} of a distributed "
                    f"run, found no {where} (a single-process start record)",
                )
            return
        try:
            d = Distributed.from_dict(raw, where)
        except FormatError as e:
            t.fail("GT-DIST-WORLD", str(e))
            return
        self.world = d.world_size
        if env.get("worldSize") != d.world_size:
            t.fail(
                "GT-DIST-WORLD",
                f"training-run environment.worldSize: expected {d.world_size} ({where}), "
                f"found {env.get('worldSize')!r:.40}",
            )
        if env.get("backend") != d.backend:
            t.fail(
                "GT-DIST-WORLD",
                f"training-run environment.backend: expected {d.backend!r} ({where}), found "
                f"{env.get('backend')!r:.40}",
            )
        types = env.get("deviceTypes")
        if (
            not isinstance(types, list)
            or len(types) != d.world_size
            or not all(isinstance(x, str) and x for x in types)
        ):
            t.fail(
                "GT-DIST-WORLD",
                f"training-run environment.deviceTypes: expected one device type per rank "
                f"({d.world_size}), found {types!r:.80}",
            )

    def step(self, rec: StepRecord) -> int:
        """Check one step record; returns how many batch examples are duplicates (a batch
        defect GT-BATCH-ORDER then does not report again: one defect, one code)."""
        s, ranks = rec.step, rec.ranks
        self.steps += 1
        if self.world is None:
            if ranks is not None:
                self.t.fail(
                    "GT-DIST-RANKS",
                    f"step {s}: expected no ranks (a single-process run), "
                    f"found {list(ranks)!r:.60}",
                )
            return 0
        if ranks is None:
            self.t.fail(
                "GT-DIST-RANKS",
                f"step {s}: expected the rank of each batch example (worldSize {self.world}), "
                "found none",
            )
        else:
            bad = [r for r in ranks if r >= self.world]
            want = ranks_for(len(rec.batch), self.world)
            if bad:
                self.t.fail(
                    "GT-DIST-RANKS",
                    f"step {s}: expected ranks in [0, {self.world}), found rank {bad[0]}",
                )
            elif ranks != want:
                self.t.fail(
                    "GT-DIST-RANKS",
                    f"step {s}: expected ranks {list(want)} (split contiguous-v1 of "
                    f"{len(rec.batch)} examples over {self.world} ranks), found {list(ranks)}",
                )
        dup = 0
        for x, n in Counter(rec.batch).items():
            if n > 1:
                dup += n - 1
                on = sorted({ranks[j] for j, y in enumerate(rec.batch) if y == x} if ranks else ())
                self.t.fail(
                    "GT-DIST-DUPLICATE",
                    f"step {s}: example {x} appears {n} times in the global batch"
                    + (f" (on ranks {', '.join(map(str, on))})" if on else "")
                    + "; every example of a global batch is trained exactly once",
                )
        return dup

    def passes(self) -> dict[str, str]:
        if self.world is None:
            return {c: "a single-process run" for c in DIST_CODES}
        return {
            "GT-DIST-WORLD": f"worldSize {self.world}: environment and start record agree",
            "GT-DIST-RANKS": f"{self.steps} step(s) split contiguous-v1 over {self.world} ranks",
            "GT-DIST-DUPLICATE": "every example appears once in its global batch",
        }


__all__ = ["DIST_CODES", "DistCheck"]
