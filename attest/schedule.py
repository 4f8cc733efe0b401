"""The learning-rate schedule: warmup, then constant, linear or cosine decay (config fields).

    lr_t = lr * t / W                        for 1 <= t <= W (warmup_steps W)
    lr_t = lr * f(p),  p = (t - W - 1) / (T - W)   for W < t <= T (steps T)

with f = 1 (constant), 1 - p (linear) or (1 + cos(pi p)) / 2 (cosine), so the first step
after warmup runs at ``lr`` and the last one above 0. The rate of every step is recorded
in its step record (``lr``); the trainer sets it with this function and the verifier
re-derives it from the signed config with the same one (spec/records.md §5,
GT-CHAIN-LR), so a recorded rate is never taken on the producer's word.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "linear", "cosine")
# cos() is not correctly rounded in every libm: a second implementation may differ from
# this one in the last bits of a cosine rate, so the verifier compares within this
# relative bound (spec/records.md §5); constant and linear rates are exact IEEE arithmetic.
LR_RELATIVE_TOLERANCE = 1e-12


def lr_at(
    step: int, *, lr: float, steps: int, schedule: str = "constant", warmup: int = 0
) -> float:
    """The learning rate of optimizer step ``step`` (1-based). Raises ValueError for a bad
    schedule name (configs are validated before against SCHEDULES)."""
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


__all__ = ["LR_RELATIVE_TOLERANCE", "SCHEDULES", "lr_at"]
