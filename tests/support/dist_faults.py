"""A govtune worker with one fault injected, for the distributed tests only.

    python -m torch.distributed.run --nproc-per-node 2 -m support.dist_faults \
        kill|hang RANK STEP train CONFIG --out DIR --key KEY

Rank RANK kills itself (SIGKILL: no handler, no flush) or hangs (sleeps) when it reaches
global step STEP (the STEP-th call of trainer.dist.Dist.step); the other ranks run on
into the step's all-reduce, as they would against a real crash or hang.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import trainer.dist as td
from verifier.cli import main


def inject(kind: str, rank: int, step: int) -> None:
    original = td.Dist.step
    calls = {"n": 0}

    def faulty(self: td.Dist, *args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if self.rank == rank and calls["n"] == step:
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)  # hang: only the others' dist_timeout ends this
        return original(self, *args, **kw)

    td.Dist.step = faulty  # type: ignore[method-assign]


if __name__ == "__main__":
    inject(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    sys.exit(main(sys.argv[4:]))
