"""AdamW whose update overlaps the hashing of the tensors it has already updated (opt-in).

The step engine's default hashes after AdamW on every core (trainer/engine.py
`_hash_on_every_core`), which measured faster on a 2-core machine where AdamW keeps both
cores busy: MiniLM full fine-tune, AdamW + hashing 116 ms against 160 ms overlapped. This
overlap is ``StepEngine(overlap_hashing=True)``, for a machine where AdamW is memory-bound
and leaves cores idle. `hash_pool` (the hashing threads) serves both.

A governed step must hash every changed tensor after the optimizer step (the record
commits to the new leaves). Done after the step, that is one sequential SHA-256 pass
over the trainable bytes on one core: 0.1-0.3 s of a 0.65 s MiniLM step on 2 cores.
`OverlapAdamW.step` instead updates the tensors that have a gradient in a few chunks
(by bytes) and, after each chunk, hands that chunk to ``on_chunk``, which the step
engine uses to start hashing it on worker threads (hashlib releases the GIL) while the
main thread updates the next chunk; after the last chunk the main thread hashes what
the workers have not started (trainer.engine `_hash_changed`). So SHA-256
(compute-bound) runs beside AdamW (memory-bound), and the hashes are of exactly the
bytes after the step: a tensor is handed over only once its own update is done, and
nothing writes it again in the step.

The result is bitwise the result of one ``AdamW.step()``: AdamW updates each tensor from
its own gradient and state only, and a tensor whose ``grad`` is None is skipped, so
updating chunk by chunk (the other chunks' gradients set aside, then put back) changes
nothing but the order. tests/trainer/test_trainer_engine.py checks that against plain
AdamW. The state dict, checkpoints and hooks are AdamW's own (this is a subclass).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import nn

from attest.tensors import default_workers

CHUNKS = 8  # chunks per step: enough to overlap, few enough that AdamW's per-call cost stays small
MIN_CHUNK_BYTES = 4 << 20  # 4 MiB: below this a chunk's hashing is not worth a hand-off

OnChunk = Callable[[Sequence[nn.Parameter]], None]

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def hash_workers() -> int:
    """Threads of `hash_pool`: one per usable CPU but one (the main thread hashes beside them)."""
    return max(1, default_workers() - 1)


def hash_pool() -> ThreadPoolExecutor:
    """The process's hashing threads, shared by every step engine: one per usable CPU but
    one, since the main thread keeps a core for AdamW and then hashes beside them."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(hash_workers(), thread_name_prefix="govtune-leaf")
        return _pool


def chunks_by_bytes(params: Sequence[nn.Parameter], n: int = CHUNKS) -> list[list[nn.Parameter]]:
    """``params`` in order, cut into at most ``n`` runs of about equal bytes (each but the
    last >= MIN_CHUNK_BYTES)."""
    total = sum(p.numel() * p.element_size() for p in params)
    size = max(MIN_CHUNK_BYTES, -(-total // max(1, n)))
    out: list[list[nn.Parameter]] = [[]]
    filled = 0
    for p in params:
        if out[-1] and filled >= size:
            out.append([])
            filled = 0
        out[-1].append(p)
        filled += p.numel() * p.element_size()
    return out if out[0] else []


class OverlapAdamW(torch.optim.AdamW):
    """torch.optim.AdamW; with ``on_chunk`` set, `step` updates in chunks and reports each."""

    on_chunk: OnChunk | None = None

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        hand_off = self.on_chunk
        if hand_off is None or closure is not None:
            return super().step(closure)
        live = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        parts = chunks_by_bytes(live)
        if len(parts) <= 1:  # too small to overlap: the caller hashes after the step
            return super().step()
        grads = [p.grad for p in live]
        try:
            for part in parts:
                ids = {id(p) for p in part}
                for p, g in zip(live, grads, strict=True):
                    p.grad = g if id(p) in ids else None  # AdamW skips grad None: this part only
                super().step()
                hand_off(part)  # its bytes are final for this step: hashing may start
        finally:
            for p, g in zip(live, grads, strict=True):
                p.grad = g
        return None


__all__ = ["CHUNKS", "OverlapAdamW", "chunks_by_bytes", "hash_pool", "hash_workers"]
