"""Tolerant mode's replay tolerance, calibrated on an honest reproduction (verification.md §V9.3).

The rule (factor, floor) is attest.tolerance, which the verifier re-derives. The verifier
never takes this number as a licence: it is informational, and a tolerant replay happens
only when the auditor asks for one (``--replay-tolerance``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attest.tolerance import TOLERANCE_FACTOR, TOLERANCE_FLOOR, calibrated

from .engine import StepEngine
from .registry import Item


def calibrate_tolerance(
    engine: StepEngine,
    items: Sequence[Item],
    profiles: Sequence[str],
    lr: float,
    minimum: float = 0.0,
) -> dict[str, float]:
    """Run one step twice from the same state; {"observed", "factor", "tolerance"}.

    ``observed`` is the largest per-tensor max |difference| between the two runs' weights;
    ``tolerance`` = max(observed * TOLERANCE_FACTOR, TOLERANCE_FLOOR, ``minimum``). The
    model tensors, AdamW state, gradients and the torch generator are restored afterwards,
    so training starts from exactly the state it would have without calibration.
    """
    weights = {k: v.detach().clone() for k, v in engine.built.state().items()}
    optim = {k: v.clone() for k, v in engine.optimizer_tensors().items()}
    rng = torch.get_rng_state()
    runs: list[dict[str, torch.Tensor]] = []
    try:
        for _ in range(2):  # cost: two extra steps, once per run
            engine.load_state(weights, optim, rng)
            engine.step(items, profiles, lr)
            runs.append({k: v.detach().clone() for k, v in engine.built.state().items()})
    finally:
        engine.load_state(weights, optim, rng)
    a, b = runs
    observed = max(
        (float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()),
        default=0.0,
    )
    return {
        "observed": observed,
        "factor": TOLERANCE_FACTOR,
        "tolerance": calibrated(observed, minimum),
    }


__all__ = ["TOLERANCE_FACTOR", "TOLERANCE_FLOOR", "calibrate_tolerance"]
