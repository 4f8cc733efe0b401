"""Data-parallel governed training on torch.distributed (issue 12; spec/records.md §5.3).

Every rank draws the same global batch from the signed data order (attest.order), trains
its contiguous slice of it (attest.ranks, the one split rule), routes each example's
gradient to its profile (trainer.routing) with the loss weighted by 1/B_global, and then

    one all-reduce (SUM) per gradient group

for exactly the tensors some example of the *global* batch may touch (the router's plan
over the global batch's profiles, known on every rank). A rank none of whose examples
reaches such a tensor contributes zeros; one presence flag per tensor rides along in the
same buffer, so a tensor no rank's example actually reached keeps ``grad = None`` exactly
as in a single process, and a tensor outside every global profile is never reduced at
all: AdamW skips it on every rank and it stays bitwise unchanged.

`pack` / `unpack` / `sum_in_order` are shared with the replay audit (`replay_step`), which
re-executes a distributed step on one process: each rank's slice in turn, the packed
buffers summed in rank order. For two ranks that is the all-reduce's own arithmetic
(IEEE addition is commutative: a+b = b+a), so CPU replay is bitwise; beyond two ranks the
backends' reduction trees differ (spec/verification.md §V9).

Costs and sync points are marked ``# cost:`` and ``# sync:``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

from attest.errors import GovtuneError, UsageError
from attest.ranks import REDUCE, REDUCE_FSDP, Distributed, positions, ranks_for

from .engine import StepEngine, StepOutcome
from .registry import Item
from .routing import Router

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets in every worker


class RankMismatch(GovtuneError):
    """Ranks disagree on the state root (or the batch): raised on every rank at once."""


class LeadStopped(GovtuneError):
    """Raised on the other ranks when the lead refused to go on (e.g. a resume it could not
    match) and said why itself: they stop quietly instead of waiting in a collective."""


@dataclass(frozen=True)
class World:
    """This worker's place in the job, as torchrun's environment says."""

    rank: int
    size: int
    local_rank: int

    def __post_init__(self) -> None:
        if not (0 <= self.rank < self.size and self.local_rank >= 0):
            raise UsageError(
                f"RANK/WORLD_SIZE/LOCAL_RANK: expected 0 <= rank < world size, got "
                f"{self.rank}/{self.size}/{self.local_rank}"
            )


def world_from_env(env: Any = None) -> World | None:
    """The torchrun worker's World, or None outside torchrun. Raises UsageError."""
    env = os.environ if env is None else env
    if not all(k in env for k in ENV_KEYS):
        return None
    try:
        return World(*(int(env[k]) for k in ENV_KEYS))
    except ValueError as e:
        raise UsageError(f"RANK/WORLD_SIZE/LOCAL_RANK: expected integers, got {e}") from e


def backend_for(device: str) -> str:
    """gloo on CPU, NCCL on CUDA (torch.distributed's own backends)."""
    return "nccl" if device == "cuda" else "gloo"


# -- the reduction, shared by training and replay ---------------------------------------------


def reduce_groups(router: Router, profiles: Sequence[str]) -> list[list[str]]:
    """The gradient groups of a global batch: per routing signature (Router.plan), split by
    dtype so each group is one flat buffer; tensors no global example may touch are in none."""
    groups: list[list[str]] = []
    for _sig, names in router.plan(frozenset(profiles)):
        by_dtype: dict[torch.dtype, list[str]] = {}
        for n in names:
            by_dtype.setdefault(router.params[n].dtype, []).append(n)
        groups += list(by_dtype.values())
    return groups


def pack(params: dict[str, nn.Parameter], names: Sequence[str]) -> torch.Tensor:
    """One flat buffer: each tensor's local gradient (zeros where this rank has none), then one
    presence flag per tensor (1 where it has one). cost: one copy of the group's gradients."""
    ref = params[names[0]]
    parts = []
    for n in names:
        g = params[n].grad
        parts.append((g if g is not None else torch.zeros_like(params[n])).reshape(-1))
    flags = torch.tensor(
        [params[n].grad is not None for n in names], dtype=ref.dtype, device=ref.device
    )
    return torch.cat([*parts, flags])


def unpack(params: dict[str, nn.Parameter], names: Sequence[str], flat: torch.Tensor) -> None:
    """Set each tensor's ``.grad`` from a reduced buffer; None where no rank had a gradient."""
    flags = flat[len(flat) - len(names) :].tolist()  # sync: device -> host (k flags)
    off = 0
    for n, present in zip(names, flags, strict=True):
        p = params[n]
        m = p.numel()
        p.grad = flat[off : off + m].view_as(p) if present else None  # a view: no copy
        off += m


def sum_in_order(buffers: Sequence[torch.Tensor]) -> torch.Tensor:
    """The buffers summed in rank order: what one process computes for an all-reduce SUM."""
    total = buffers[0]
    for b in buffers[1:]:
        total = total + b
    return total


def replay_step(
    engine: StepEngine, items: Sequence[Item], profiles: Sequence[str], lr: float, world: int
) -> StepOutcome:
    """Re-execute one step of a ``world``-rank run on this one process (verifier/replay.py):
    each rank's slice in turn, the packed gradients summed in rank order, one AdamW step.
    The outcome's losses and gradient norms are the global batch's, in batch order."""
    n = len(items)
    groups = reduce_groups(engine.router, profiles)
    packs: list[list[torch.Tensor]] = []
    losses: list[float] = []
    norms: list[float] | None = []
    for r in range(world):  # cost: one forward/backward per rank's slice
        rows = positions(n, world, r)
        loss, got = engine.routed_grads([items[j] for j in rows], [profiles[j] for j in rows], n)
        losses += loss.tolist()
        norms = None if got is None or norms is None else norms + list(got)
        packs.append([pack(engine.params, names) for names in groups])

    def reduce(e: StepEngine) -> None:
        for g, names in enumerate(groups):
            unpack(e.params, names, sum_in_order([p[g] for p in packs]))

    out = engine.step([], [], lr, total=n, reduce=reduce)  # empty slice: the packs hold it all
    from .engine import finite

    return replace(
        out,
        losses=tuple(finite(x) for x in losses),
        grad_norms=None if norms is None else tuple(finite(x) for x in norms),
        raw_losses=torch.tensor(losses),
    )


# -- the process group ------------------------------------------------------------------------


class Dist:
    """The worker's process group: split, reduce, gather, compare. Rank 0 is the lead: it alone
    writes under --out and signs (trainer.loop)."""

    def __init__(self, world: World, device: str, timeout_s: int, parallel: str = "ddp") -> None:
        self.world, self.rank, self.size = world, world.rank, world.size
        # "fsdp": the model is sharded (trainer/fsdp.py); every forward, checkpoint and
        # release gathers, so the loop runs them on every rank (`collective`).
        self.parallel = parallel
        self.backend = backend_for(device)
        if device == "cuda":
            torch.cuda.set_device(world.local_rank)  # "cuda" below means this rank's GPU
        # A rank that dies or hangs makes every collective of the others fail after
        # timeout_s (config.dist_timeout); torchrun's agent then stops the whole job.
        tdist.init_process_group(
            self.backend, rank=world.rank, world_size=world.size,
            timeout=dt.timedelta(seconds=timeout_s),
        )  # fmt: skip
        self.device = device

    @property
    def lead(self) -> bool:
        return self.rank == 0

    @property
    def collective(self) -> bool:
        """True when forwards, checkpoints and the release are collectives (FSDP)."""
        return self.parallel == "fsdp"

    def info(self) -> Distributed:
        return Distributed(
            self.size, self.backend, reduce=REDUCE_FSDP if self.collective else REDUCE
        )

    def close(self) -> None:
        if tdist.is_initialized():
            tdist.destroy_process_group()

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (run secret, resume decision). sync: broadcast."""
        box = [value]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank. sync: all-gather."""
        out: list[Any] = [None] * self.size
        tdist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        tdist.barrier()

    def step(
        self, engine: StepEngine, items: Sequence[Item], profiles: Sequence[str], lr: float
    ) -> tuple[StepOutcome, tuple[int, ...]]:
        """One global step: this rank's slice, the all-reduce, AdamW; -> (the global outcome:
        every example's loss and gradient norm in batch order, the ranks of the batch)."""
        n = len(items)
        rows = positions(n, self.size, self.rank)
        groups = reduce_groups(engine.router, profiles)

        def reduce(e: StepEngine) -> None:
            for names in groups:  # sync: one all-reduce per gradient group
                flat = pack(e.params, names)
                tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
                unpack(e.params, names, flat)

        # An engine whose backward reduces the gradients itself (trainer.fsdp's sharded
        # engine: FSDP2 reduce-scatters) takes no reduce; every other engine gets ours.
        own = getattr(engine, "reduces_in_backward", False)
        local = engine.step([items[j] for j in rows], [profiles[j] for j in rows], lr,
                            total=n, reduce=None if own else reduce)  # fmt: skip
        losses, norms = self._gather_values(n, local)  # sync: to every rank
        return replace(local, losses=losses, grad_norms=norms, raw_losses=None), ranks_for(
            n, self.size
        )

    def _gather_values(
        self, n: int, local: StepOutcome
    ) -> tuple[tuple[float, ...], tuple[float, ...] | None]:
        """Every example's loss and gradient norm in batch order, on every rank: one tensor
        all-gather (float64 holds the recorded Python floats exactly; slices padded to the
        largest, whose sizes every rank knows from the split rule)."""
        sizes = [len(positions(n, self.size, r)) for r in range(self.size)]
        width = max(sizes)
        mine = torch.zeros(2, width, dtype=torch.float64)
        k = len(local.losses)
        mine[0, :k] = torch.tensor(local.losses, dtype=torch.float64)
        if local.grad_norms is not None:  # None on every rank alike (the same model kind)
            mine[1, :k] = torch.tensor(local.grad_norms, dtype=torch.float64)
        if self.backend == "nccl":
            mine = mine.cuda()
        out = [torch.empty_like(mine) for _ in range(self.size)]
        tdist.all_gather(out, mine)
        rows = [t.cpu().tolist() for t in out]  # sync: device -> host
        losses = tuple(x for r, size in enumerate(sizes) for x in rows[r][0][:size])
        if local.grad_norms is None:
            return losses, None
        return losses, tuple(x for r, size in enumerate(sizes) for x in rows[r][1][:size])

    def compare(self, step: int, root: bytes, batch: Sequence[int]) -> None:
        """Every rank's state root (and batch) against rank 0's; raises GovtuneError naming the
        ranks that differ, on every rank, so the whole run halts. sync: all-gather."""
        mine = (root.hex(), hashlib.sha256(repr(tuple(batch)).encode()).hexdigest())
        seen = self.gather(mine)
        bad = [r for r, v in enumerate(seen) if v != seen[0]]
        if bad:
            which = ", ".join(map(str, bad))
            raise RankMismatch(
                f"step {step}: rank(s) {which} hold state root {seen[bad[0]][0][:16]}… where "
                f"rank 0 holds {seen[0][0][:16]}… (or drew another batch); the run is halted"
            )


__all__ = [
    "Dist",
    "LeadStopped",
    "RankMismatch",
    "World",
    "backend_for",
    "pack",
    "reduce_groups",
    "replay_step",
    "sum_in_order",
    "unpack",
    "world_from_env",
]
