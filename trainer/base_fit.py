"""One short line for base weights that do not fit the model (issue 14).

torch's `load_state_dict` error lists every missing, unexpected and mis-shaped tensor
(thousands of characters for a real model); the user needs the first difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def first_mismatch(model: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """The first (by name) tensor whose presence or shape differs, and the totals; "" if none.

    ``model`` and ``base`` map tensor names to tensors (anything with ``.shape``)."""
    missing = sorted(set(model) - set(base))
    extra = sorted(set(base) - set(model))
    shaped = sorted(n for n in set(model) & set(base)
                    if tuple(model[n].shape) != tuple(base[n].shape))  # fmt: skip
    firsts = []
    if shaped:
        n = shaped[0]
        firsts.append((n, f"tensor {n!r}: expected shape {list(model[n].shape)}, "
                          f"found {list(base[n].shape)}"))  # fmt: skip
    if missing:
        firsts.append((missing[0], f"tensor {missing[0]!r}: expected, not in the base"))
    if extra:
        firsts.append((extra[0], f"tensor {extra[0]!r}: in the base, not in this model"))
    if not firsts:
        return ""
    what = min(firsts)[1]
    return (f"{what} ({len(shaped)} mis-shaped, {len(missing)} missing, {len(extra)} "
            f"unexpected of {len(model)} tensors)")  # fmt: skip
