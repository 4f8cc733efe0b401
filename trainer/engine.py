"""The step engine: one governed step, driven by the training loop and by the replay audit.

    load_state -> step(items, profiles, lr): forward -> route -> AdamW -> hash -> StepOutcome

A `StepEngine` is built from a registry `Built` (any registered model kind), the
optimizer settings and the policy's resolved profiles. `step` returns what the step
record needs: the per-example losses before the step, the per-example routed gradient
norms (trainer.gradnorm; None when the kind cannot compute them), the changed tensors'
new leaves and the new state root. The replay audit (verifier/replay.py) drives the
same object from recorded inputs, so "replay re-executes the trainer's step" holds by
construction. Costs and sync points are marked ``# cost:`` and ``# sync:``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import torch
from torch import nn

from attest.errors import FormatError
from attest.tensors import balance, state_root

from . import leaves as lv
from .gradnorm import GradNorms
from .overlap import OverlapAdamW, hash_pool, hash_workers
from .registry import Built, Item
from .routing import Router

OPTIM_KEYS = ("exp_avg", "exp_avg_sq", "step")  # AdamW state per parameter (checkpoints)


def finite(x: float) -> float:
    """A float canonical msgpack accepts: finite, and never -0.0 (non-finite -> 0.0)."""
    v = float(x) + 0.0
    return v if math.isfinite(v) else 0.0


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW settings (the signed config's ``lr``, ``betas``, ``weight_decay``)."""

    lr: float
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise FormatError(f"optimizer.lr: expected a finite number >= 0, got {self.lr!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise FormatError(
                f"optimizer.betas: expected two numbers in [0, 1), got {self.betas!r}"
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise FormatError(
                f"optimizer.weight_decay: expected a finite number >= 0, got {self.weight_decay!r}"
            )


@dataclass(frozen=True)
class StepOutcome:
    losses: tuple[float, ...]  # per example, before the step (nats; recorded as finite floats)
    grad_norms: tuple[float, ...] | None  # per example, routed (None: not computable)
    changed: Mapping[str, bytes]  # tensor name -> new leaf hash
    state_root: bytes
    raw_losses: torch.Tensor | None = None  # the loss tensor (tolerant comparisons)


class StepEngine:
    def __init__(
        self,
        built: Built,
        optim: OptimizerConfig,
        profiles: Mapping[str, Sequence[str]],
        *,
        grad_norms: bool = True,
        grad_accum: int = 1,  # micro-batches per optimizer step (config.grad_accum)
        overlap_hashing: bool = False,  # True: hash each AdamW chunk while the next updates
    ) -> None:
        self.grad_accum = grad_accum
        self.built, self.model = built, built.model
        self.params: dict[str, nn.Parameter] = dict(built.trainable)
        self.names_by_id = {id(p): n for n, p in self.params.items()}
        self.optimizer = OverlapAdamW(
            list(self.params.values()), lr=optim.lr, betas=optim.betas,
            weight_decay=optim.weight_decay,
        )  # fmt: skip
        # cost: the changed tensors are hashed after AdamW on every core (`_hash_changed`).
        # Overlapping the hashing with AdamW (trainer.overlap) is the opt-in: where AdamW
        # keeps every core busy it is slower (MiniLM full fine-tune, 2 cores: AdamW + hashing
        # 160 ms overlapped, 116 ms one after the other on both cores; step ratio 1.47 ->
        # 1.32), and it can only win where AdamW leaves cores idle (memory-bound).
        self._hashing: dict[str, Future[bytes]] = {}  # state name -> its leaf, this step
        self._hash_state: dict[str, torch.Tensor] | None = None
        if overlap_hashing:
            self.optimizer.on_chunk = self._start_hashing
        self.router = Router(self.params, profiles)
        self.norms = GradNorms(self.model, self.params) if grad_norms else None
        # Names under which each trainable parameter appears in the state (tied weights
        # appear twice): a changed parameter re-hashes all of them.
        state = built.state()
        ptr = {p.data_ptr(): n for n, p in self.params.items()}
        self.aliases: dict[str, list[str]] = {n: [] for n in self.params}
        for name, t in state.items():
            if t.data_ptr() in ptr and t.numel():
                self.aliases[ptr[t.data_ptr()]].append(name)
        self.current: dict[str, bytes] = lv.leaves(state)  # cost: one SHA-256 pass, once
        self.model.train()

    @property
    def grad_norm_method(self) -> str | None:
        return self.norms.method if self.norms is not None else None

    @property
    def grad_norm_reason(self) -> str:
        if self.norms is None:
            return "per-example gradient norms switched off"
        return self.norms.reason

    def state_root(self) -> bytes:
        return state_root(self.current)

    # -- state -----------------------------------------------------------------------------

    def load_state(
        self,
        tensors: Mapping[str, torch.Tensor] | None = None,
        optimizer_state: Mapping[str, torch.Tensor] | None = None,
        rng: torch.Tensor | None = None,
    ) -> None:
        """Set the model tensors (by state name), the AdamW state (``optim/KEY/NAME``; None:
        empty) and the torch generator. Raises FormatError when a tensor does not fit."""
        live = self.built.state()
        if tensors is not None:
            missing = set(live) - set(tensors)
            if missing:
                raise FormatError(f"state: missing tensor(s) {', '.join(sorted(missing))[:200]}")
            with torch.no_grad():
                for n, t in live.items():
                    v = tensors[n]
                    if v.shape != t.shape or v.dtype != t.dtype:
                        raise FormatError(
                            f"state: tensor {n!r}: expected {t.dtype} {tuple(t.shape)}, "
                            f"got {v.dtype} {tuple(v.shape)}"
                        )
                    t.copy_(v)
        self.optimizer.state.clear()
        for name, p in self.params.items():
            st = {
                k: optimizer_state[f"optim/{k}/{name}"]
                for k in OPTIM_KEYS
                if optimizer_state is not None and f"optim/{k}/{name}" in optimizer_state
            }
            if st:
                self.optimizer.state[p] = {k: v.clone() for k, v in st.items()}
        for p in self.params.values():
            p.grad = None
        if rng is not None:
            torch.set_rng_state(rng)
        self.current = lv.leaves(self.built.state())

    def optimizer_tensors(self) -> dict[str, torch.Tensor]:
        """The AdamW state as ``optim/KEY/NAME`` tensors (checkpoint layout)."""
        out: dict[str, torch.Tensor] = {}
        for p, st in self.optimizer.state.items():
            name = self.names_by_id[id(p)]
            for k in OPTIM_KEYS:
                if k in st:
                    v = st[k]
                    out[f"optim/{k}/{name}"] = (
                        v if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                    )
        return out

    # -- the step --------------------------------------------------------------------------

    def step(
        self,
        items: Sequence[Item],
        profiles: Sequence[str],
        lr: float,
        *,
        total: int | None = None,
        reduce: Callable[[StepEngine], None] | None = None,
    ) -> StepOutcome:
        """forward -> route -> [reduce] -> AdamW -> hash; the per-example losses are from before
        the step.

        With ``grad_accum`` = k > 1 the batch is split into k micro-batches (in order), each
        forward/backward alone, their routed gradients summed before the one AdamW step; each
        micro-batch's loss is weighted by its share of the batch, so the gradient is the
        batch's ``sum(loss) / B`` as without accumulation (to float rounding).

        Distributed seam (trainer/dist.py): ``items`` is this rank's slice of a global batch
        of ``total`` examples (each loss weighted by 1/total), and ``reduce(self)`` runs
        between the routed backward and AdamW (the all-reduce of the gradients)."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        losses, grad_norms = self.routed_grads(items, profiles, total)
        if reduce is not None:  # sync: the distributed all-reduce (trainer/dist.py)
            reduce(self)
        self.optimizer.step()  # tensors with grad None are skipped by AdamW: unchanged, bitwise
        changed = self._hash_changed()
        values = tuple(finite(x) for x in losses.detach().tolist())  # sync: tensor -> Python
        return StepOutcome(
            values,
            None if grad_norms is None else tuple(finite(x) for x in grad_norms),
            changed,
            state_root(self.current),
            losses.detach(),
        )

    def routed_grads(
        self, items: Sequence[Item], profiles: Sequence[str], total: int | None = None
    ) -> tuple[torch.Tensor, list[float] | None]:
        """Set ``.grad`` from the routed backward of ``items`` (None where no example reaches a
        tensor); -> (per-example losses, per-example gradient norms or None). ``total``: the
        batch size the losses are divided by (default ``len(items)``)."""
        n = len(items)
        total = n if total is None else total
        if n == 0:  # a rank with an empty slice of the global batch: no gradient at all
            for p in self.params.values():
                p.grad = None
            return torch.zeros(0), [] if self.norms is not None else None
        size = -(-n // max(1, min(self.grad_accum, n)))  # ceil(B / k)
        chunks = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
        acc: dict[str, torch.Tensor] = {}
        parts: list[torch.Tensor] = []
        norm_parts: list[float] | None = [] if self.norms is not None else None
        split = len(chunks) > 1 or total != n  # one unweighted pass: exactly the unsplit step
        for rows in chunks:
            parts.append(self._micro([items[j] for j in rows], [profiles[j] for j in rows],
                                     len(rows) / total if split else None))  # fmt: skip
            got = self.norms.result() if self.norms is not None else None
            norm_parts = None if got is None or norm_parts is None else norm_parts + list(got)
            if len(chunks) > 1:  # router.backward resets .grad: keep this micro-batch's sum
                for name, p in self.params.items():
                    if p.grad is not None:
                        acc[name] = p.grad if name not in acc else acc[name] + p.grad
        if len(chunks) > 1:
            for name, p in self.params.items():
                p.grad = acc.get(name)  # None where no micro-batch reached it: AdamW skips it
        return (parts[0] if len(parts) == 1 else torch.cat(parts)), norm_parts

    def _micro(
        self, items: Sequence[Item], profiles: Sequence[str], scale: float | None
    ) -> torch.Tensor:
        """Forward and routed backward of one (micro-)batch; -> its per-example losses."""
        batch = self.built.encode(items)
        norms = self.norms
        if norms is not None:
            norms.arm(len(items))
        try:
            self.router.prepare(self.model, profiles)  # stop-gradient masks where supported
            try:
                losses = self.built.per_example_loss(self.model, batch)  # cost: one forward
            finally:
                self.router.release(self.model)
            # cost: one backward (fast path) or one per signature; hooks measure the norms
            weighted = losses if scale is None else losses * scale
            self.router.backward(weighted, profiles, norms.activate if norms else None)
        finally:
            if norms is not None:
                norms.disarm()
        return losses.detach()

    def _start_hashing(self, part: Sequence[nn.Parameter]) -> None:
        """OverlapAdamW's hand-off: start hashing tensors whose update for this step is done."""
        if self._hash_state is None:
            self._hash_state = self.built.state()
        state, pool = self._hash_state, hash_pool()
        for p in part:
            for alias in self.aliases[self.names_by_id[id(p)]]:
                self._hashing[alias] = pool.submit(lv.leaf, alias, state[alias])

    def _hash_changed(self) -> dict[str, bytes]:
        """New leaves of the tensors whose bytes changed (only tensors that had a gradient).

        Leaves whose hashing `_start_hashing` began during AdamW are joined here; every other
        tensor with a gradient is hashed now, on every core (`_hash_on_every_core`). Either
        way: SHA-256 of the bytes after the step.
        """
        pending, self._hashing = self._hashing, {}
        state, self._hash_state = self._hash_state, None
        if state is None:
            state = self.built.state()
        # The main thread hashes, last first, what no worker has started (cancel() fails
        # once a worker runs it), so after AdamW every core hashes.
        done = {a: lv.leaf(a, state[a]) for a in reversed(pending)
                if pending[a].cancel()}  # fmt: skip
        touched = [a for n, p in self.params.items() if p.grad is not None
                   for a in self.aliases[n]]  # fmt: skip
        done.update(_hash_on_every_core(state, [a for a in touched if a not in pending]))
        changed: dict[str, bytes] = {}
        for alias in touched:
            h = done[alias] if alias in done else pending[alias].result()  # sync: join
            if h != self.current[alias]:
                changed[alias] = self.current[alias] = h
        for a, f in pending.items():  # (none after an engine step; be tidy after a bare one)
            if a not in done:
                f.result()
        return changed


PARALLEL_HASH_BYTES = 8 << 20  # below this one thread beats the hand-off (TinyLM's 3.5 MB:
# 3.23 ms on this thread, 3.47 ms on two)


def _hash_on_every_core(
    state: Mapping[str, torch.Tensor], names: Sequence[str]
) -> dict[str, bytes]:
    """Leaves of ``names``: byte-balanced bins (largest tensor first), one per hashing thread
    and one for this thread. One tensor's SHA-256 is one sequential stream, so the largest
    tensor bounds the time. cost: the changed bytes / (cores x SHA-256 rate)."""
    size = {a: state[a].numel() * state[a].element_size() for a in names}
    n_bins = 1 + hash_workers() if sum(size.values()) >= PARALLEL_HASH_BYTES else 1
    bins: list[list[str]] = [[] for _ in range(n_bins)]
    for a, i in balance(size, n_bins).items():
        bins[i].append(a)
    pool = hash_pool()
    futures = [pool.submit(lv.leaves, state, b) for b in bins[1:] if b]
    out = lv.leaves(state, bins[0])
    for f in futures:
        out.update(f.result())  # sync: join the hashing threads
    return out


__all__ = ["OptimizerConfig", "StepEngine", "StepOutcome", "finite"]
