"""Checkpoints for replay and resume: safetensors only (weights, AdamW state, RNG), no pickle.

Layout of ``checkpoints/step-000050.safetensors``:
- every tensor of the model's state (``Built.state()``) under its own name (so its state
  root, computed by the verifier over the start record's tensor names, equals the step
  record's ``stateRoot``);
- ``optim/exp_avg/NAME``, ``optim/exp_avg_sq/NAME``, ``optim/step/NAME`` for each
  parameter AdamW holds state for (``/`` never occurs in torch parameter names);
- ``rng/torch``: the torch CPU generator state, uint8.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from attest.atomic import fsync_dir, write_atomic
from attest.digest import sha256_hex
from attest.errors import FormatError, UsageError

from .engine import StepEngine


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


def stamp_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Merge ``metadata`` into the ``__metadata__`` of the safetensors file ``path`` in place.

    The model kinds save through their own libraries (save_pretrained, peft), which take no
    metadata of ours; so the header is rewritten afterwards: the tensor data is copied as
    is (offsets are relative to the data section, safetensors README), the header padded
    to 8 bytes with spaces as safetensors writes it, then temp file, fsync, rename.
    Raises UsageError when the file cannot be read or written, FormatError when it is not
    safetensors.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            try:
                header = json.loads(f.read(n))
            except (ValueError, UnicodeDecodeError) as e:
                raise FormatError(f"{path}: expected a safetensors JSON header") from e
            meta = dict(header.get("__metadata__") or {})
            meta.update(metadata)
            header["__metadata__"] = meta
            raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
            raw += b" " * (-len(raw) % 8)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(struct.pack("<Q", len(raw)) + raw)
                    shutil.copyfileobj(f, out, 1 << 20)  # cost: one copy of the weights
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        fsync_dir(path.parent)
    except OSError as e:
        raise UsageError(f"{path}: cannot stamp the provenance metadata: {e.strerror or e}") from e


def save_checkpoint(path: Path, engine: StepEngine) -> str:
    """Model state + AdamW state + RNG state of ``engine``. Returns the file's sha256."""
    tensors: dict[str, torch.Tensor] = dict(engine.built.state())
    tensors.update(engine.optimizer_tensors())
    tensors["rng/torch"] = torch.get_rng_state()
    return save_weights(path, tensors)


@dataclass(frozen=True)
class CheckpointState:
    model: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]  # optim/KEY/NAME
    rng: torch.Tensor | None


def parse_checkpoint(data: bytes, where: str) -> CheckpointState:
    """Split checkpoint bytes (already read, and checked by the caller) into its parts.

    Raises FormatError."""
    try:
        tensors = st_load(data)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type
        raise FormatError(f"{where}: expected a safetensors checkpoint, got {e}") from e
    model = {k: v for k, v in tensors.items() if not k.startswith(("optim/", "rng/"))}
    optim = {k: v for k, v in tensors.items() if k.startswith("optim/")}
    return CheckpointState(model, optim, tensors.get("rng/torch"))


def load_checkpoint(path: Path, engine: StepEngine) -> None:
    """Restore weights, AdamW state and RNG from a checkpoint. Raises UsageError/FormatError."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"{path}: cannot read checkpoint: {e.strerror or e}") from e
    cp = parse_checkpoint(data, str(path))
    engine.load_state(cp.model, cp.optimizer, cp.rng)
