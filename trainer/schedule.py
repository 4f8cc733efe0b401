"""The learning-rate schedule: warmup, then constant, linear or cosine decay (config fields).

    lr_t = lr * t / W                        for 1 <= t <= W (warmup_steps W)
    lr_t = lr * f(p),  p = (t - W - 1) / (T - W)   for W < t <= T (steps T)

with f = 1 (constant), 1 - p (linear) or (1 + cos(pi p)) / 2 (cosine), so the first step
after warmup runs at ``lr`` and the last one above 0. The rate of every step is recorded
in its step record (``lr``), which replay uses, so the schedule needs no replay support.
"""

from __future__ import annotations

import math


def lr_at(
    step: int, *, lr: float, steps: int, schedule: str = "constant", warmup: int = 0
) -> float:
    """The learning rate of optimizer step ``step`` (1-based). Raises ValueError for a bad
    schedule name (configs are validated before: trainer.config.SCHEDULES)."""
    if warmup and step <= warmup:
        return lr * step / warmup
    if schedule == "constant":
        return lr
    p = max(0.0, min(1.0, (step - warmup - 1) / max(1, steps - warmup)))
    if schedule == "linear":
        return lr * (1.0 - p)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"schedule: expected constant, linear or cosine, got {schedule!r}")


__all__ = ["lr_at"]
