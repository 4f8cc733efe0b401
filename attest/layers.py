"""Layer ranges of depth profiles (spec/policy.md §5.1): layers named by index, resolved to names.

A parameter's **layer index** is the first dot-separated component of its name that is a
decimal integer: ``bert.encoder.layer.3.attention.self.query.weight`` -> 3,
``base_model.model.model.layers.12.self_attn.q_proj.lora_A.weight`` -> 12,
``blocks.0.mlp.fc.weight`` -> 0; ``classifier.weight`` has none. The layer count ``L``
of a model is one more than the largest layer index among the names a profile is
resolved against (the trainable names), 0 if none has one.

A range is ``"A..B"`` (inclusive) or ``"N"``; an index below 0 counts from the end
(``-1`` is layer ``L - 1``), so ``"-2..-1"`` is the last two layers of any depth and
``"0..3"`` the first four. A range that selects no layer of the model selects nothing
(the trainer refuses a profile that resolves to no parameter, before training).
Torch-free: the verifier re-resolves the recorded names (GT-CHAIN-PROFILES).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .errors import PolicyError

_RANGE = re.compile(r"(-?\d{1,6})(?:\.\.(-?\d{1,6}))?")


def layer_index(name: str) -> int | None:
    """The first all-digit dot-separated component of ``name``, or None."""
    for part in name.split("."):
        if part.isdigit() and part.isascii():
            return int(part)
    return None


def parse_range(text: object, where: str) -> tuple[int, int]:
    """``"A..B"`` or ``"N"`` -> (A, B) as written (negatives unresolved). Raises PolicyError."""
    m = _RANGE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise PolicyError(
            f"{where}: expected a layer range 'A..B' or 'N' (integers), got {text!r:.40}"
        )
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) is not None else a
    if (a < 0) == (b < 0) and a > b:
        raise PolicyError(f"{where}: expected A <= B in 'A..B', got {text!r}")
    return a, b


def layer_count(names: Iterable[str]) -> int:
    idx = [i for i in (layer_index(n) for n in names) if i is not None]
    return max(idx) + 1 if idx else 0


def selected(ranges: Sequence[tuple[int, int]], count: int) -> frozenset[int]:
    """The layer indices ``ranges`` select in a model of ``count`` layers."""
    out: set[int] = set()
    for a, b in ranges:
        lo, hi = (a + count if a < 0 else a), (b + count if b < 0 else b)
        out.update(range(max(lo, 0), min(hi, count - 1) + 1))
    return frozenset(out)


__all__ = ["layer_count", "layer_index", "parse_range", "selected"]
