"""Checkpoints for replay and resume: safetensors only (weights, AdamW state, RNG), no pickle.

Layout of ``checkpoints/step-000050.safetensors``:
- every model tensor under its own name (so its state root, computed by the verifier
  over the start record's tensor names, equals the step record's ``stateRoot``);
- ``optim/exp_avg/NAME``, ``optim/exp_avg_sq/NAME``, ``optim/step/NAME`` for each
  parameter AdamW holds state for (``/`` never occurs in torch parameter names);
- ``rng/torch``: the torch CPU generator state, uint8.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from attest.atomic import write_atomic
from attest.digest import sha256_hex
from attest.errors import FormatError, UsageError

OPTIM_KEYS = ("exp_avg", "exp_avg_sq", "step")


def checkpoint_name(step: int) -> str:
    return f"checkpoints/step-{step:06d}.safetensors"


def save_weights(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> str:
    """Write tensors as safetensors atomically (temp file + rename). Returns the file's sha256.

    ``metadata`` goes into the header's ``__metadata__`` (strings only, safetensors README):
    written here, before the file is hashed, so the signed digests cover it.
    """
    data = st_save({n: t.detach().contiguous() for n, t in tensors.items()}, metadata=metadata)
    write_atomic(Path(path), data)
    return sha256_hex(data)


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, names: dict[int, str]
) -> str:
    """Weights + AdamW state + RNG state. ``names`` maps id(param) -> name. Returns sha256."""
    tensors: dict[str, torch.Tensor] = dict(model.state_dict())
    for p, st in optimizer.state.items():
        name = names[id(p)]
        for k in OPTIM_KEYS:
            if k in st:
                v = st[k]
                tensors[f"optim/{k}/{name}"] = (
                    v if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                )
    tensors["rng/torch"] = torch.get_rng_state()
    return save_weights(path, tensors)


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, names: dict[int, str]
) -> None:
    """Restore weights, AdamW state and RNG from a checkpoint. Raises UsageError/FormatError."""
    try:
        tensors = st_load(Path(path).read_bytes())
    except OSError as e:
        raise UsageError(f"{path}: cannot read checkpoint: {e.strerror or e}") from e
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type
        raise FormatError(f"{path}: expected a safetensors checkpoint, got {e}") from e
    state = model.state_dict()
    missing = set(state) - set(tensors)
    if missing:
        raise FormatError(f"{path}: missing model tensor(s) {', '.join(sorted(missing))[:200]}")
    model.load_state_dict({n: tensors[n] for n in state})
    by_name = {
        n: p
        for p in (q for g in optimizer.param_groups for q in g["params"])
        if (n := names[id(p)])
    }
    for name, p in by_name.items():
        st = {k: tensors[f"optim/{k}/{name}"] for k in OPTIM_KEYS if f"optim/{k}/{name}" in tensors}
        if st:
            optimizer.state[p] = st
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
