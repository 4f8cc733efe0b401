"""The tolerant-mode calibration rule (spec/verification.md §V9.3), shared by trainer and verifier.

The trainer records ``tolerance = calibrated(observed, minimum)``; the verifier re-derives
it from the recorded calibration and refuses an environment that disagrees
(GT-REPLAY-ENVIRONMENT). The number is informational either way: a replay is tolerant only
when the auditor passes ``--replay-tolerance``.
"""

from __future__ import annotations

# One step's drift underestimates the drift accumulated over the steps between two
# stored states, hence the factor; the floor (a few float32 ulps at weight magnitudes
# ~1-8) keeps a calibration that reproduced bitwise from demanding bitwise equality.
TOLERANCE_FACTOR = 10.0
TOLERANCE_FLOOR = 1e-6


def calibrated(observed: float, minimum: float = 0.0) -> float:
    """max(observed × TOLERANCE_FACTOR, TOLERANCE_FLOOR, minimum)."""
    return max(float(observed) * TOLERANCE_FACTOR, TOLERANCE_FLOOR, float(minimum))


__all__ = ["TOLERANCE_FACTOR", "TOLERANCE_FLOOR", "calibrated"]
