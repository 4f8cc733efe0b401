"""One short line for base weights that do not fit the model (issue 14).

torch's `load_state_dict` error, and transformers' loading report, list every missing,
unexpected and mis-shaped tensor (thousands of characters for a real model); the user
needs the first difference and the totals. One rule for every kind: TinyLM compares the
state dicts itself (`first_mismatch`), the Hugging Face kinds pass transformers' loading
info (`describe`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Shape = Sequence[int]


def describe(
    shaped: Sequence[tuple[str, Shape, Shape]],
    missing: Sequence[str],
    extra: Sequence[str],
    total: int,
) -> str:
    """The first difference and the totals; "" if there is none.

    ``shaped``: (name, expected shape, found shape); ``missing``: names the model expects
    and the base lacks; ``extra``: names the base has and the model does not; ``total``:
    the model's tensor count. A shape difference is named first (it says most about what
    differs), then a missing name, then an unexpected one; the first by name of each."""
    if shaped:
        n, want, got = min(shaped, key=lambda x: x[0])
        what = f"tensor {n!r}: expected shape {list(want)}, found {list(got)}"
    elif missing:
        what = f"tensor {min(missing)!r}: expected, not in the base"
    elif extra:
        what = f"tensor {min(extra)!r}: in the base, not in this model"
    else:
        return ""
    return (f"{what} ({len(shaped)} mis-shaped, {len(missing)} missing, {len(extra)} "
            f"unexpected of {total} tensors)")  # fmt: skip


def first_mismatch(model: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """`describe` of two state dicts (name -> anything with ``.shape``); "" if they fit."""
    both = sorted(set(model) & set(base))
    shaped = [(n, tuple(model[n].shape), tuple(base[n].shape)) for n in both
              if tuple(model[n].shape) != tuple(base[n].shape)]  # fmt: skip
    return describe(shaped, sorted(set(model) - set(base)), sorted(set(base) - set(model)),
                    len(model))  # fmt: skip


__all__ = ["describe", "first_mismatch"]
