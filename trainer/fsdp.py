"""Sharded training with FSDP2 (``torch.distributed.fsdp.fully_shard``), issue 12 §2.

    shard(built, mesh) -> Built          fully_shard per block, then the root
    ShardedStepEngine(built, ...)        the StepEngine contract, on sharded parameters
    full_leaves(built) / full_leaf(...)  leaf hashes from full tensors, gathered one at a time
    iter_full_state / save_full_weights  full tensors one at a time (rank 0 writes)
    save_hf_folder(built, out)           a from_pretrained folder, the same way

Every rank holds 1/N of each parameter, gradient and AdamW moment (DTensor shards).
The records are those of a non-sharded run: each leaf hash is computed by
trainer.leaves.leaf (the one rule, spec/format.md §5.1) over the *full* tensor, which
``DTensor.full_tensor()`` all-gathers; tensors are gathered one at a time and dropped
after hashing, so hashing never holds more than one full tensor beyond the shards.

Every function here that gathers is a collective: all ranks call it, in the same order,
with the same arguments (state names are the same on every rank, so the order is too).

Routing (trainer.routing) under FSDP2. Measured on torch 2.13 (CPU, gloo), see
/work/notes/fsdp.md: ``torch.autograd.grad`` w.r.t. the sharded parameters returns None
for every parameter of a resharded block (autograd sees the all-gathered unsharded
tensors, not the DTensor leaves), so the router's passes cannot be used as they are.
``.backward()`` works and is bitwise the single-process gradient; so here

- fast path (stop-gradient masks, TinyLM): one ``.backward()`` of ``sum(loss)/B``, then
  ``grad = None`` for every parameter outside the union of the batch's profiles;
- signature passes: one ``.backward(retain_graph=True)`` per signature of the *global*
  batch, keeping only that signature's gradients. Exact, but each pass runs the whole
  backward (no pruning to the signature's parameters) and reduce-scatters every block.

Gradients are reduce-scattered as a **sum** over ranks (divide factor 1), each rank's
slice loss weighted as StepEngine.routed_grads weights it (``loss·k/B``, then ``/k``):
the gradient is the global ``sum(loss)/B``. When all of a step's examples sit on one
rank the others add exact zeros and the step is bitwise that of a single process
(TinyLM and the MiniLM classifier, tested). When the batch is split, the addition order
differs from one process (gradients ≈2e-8 apart on TinyLM), but for 2 ranks it is what
trainer.dist.replay_step computes on one process, bitwise (tested).

Known limits: the model is built whole on every rank before sharding (the registry has
no meta-device build), so only training, hashing and writing are bounded, not loading;
``grad_accum`` must be 1; a trainable parameter that the forward never uses gets a zero
gradient (``set_reduce_scatter_unused_params``) rather than None, so AdamW decays it if
the batch's profiles allow it (none of TinyLM's or MiniLM's parameters is such).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from attest.atomic import fsync_dir
from attest.errors import FormatError, UsageError
from attest.tensors import state_root

from . import leaves as lv
from .engine import OPTIM_KEYS, OptimizerConfig, StepEngine, StepOutcome, finite
from .gradnorm import GradNorms
from .overlap import OverlapAdamW
from .registry import Built, Item
from .routing import Router

TINYLM_WEIGHTS = "model.safetensors"  # trainer.model.WEIGHTS (not imported: keeps kinds lazy)
HF_KINDS = ("hf-causal-lm", "hf-sequence-classification")  # trainer/hf.py
HF_WEIGHTS = "model.safetensors"  # transformers' SAFE_WEIGHTS_NAME, one file (hf.save_folder)
SAVES = ("tinylm", *HF_KINDS)  # the kinds a sharded Built can save (`shard`)


def init_mesh(device_type: str = "cpu") -> DeviceMesh:
    """A 1-D mesh over all ranks of the initialized default group. Raises UsageError."""
    if not dist.is_available() or not dist.is_initialized():
        raise UsageError("fsdp: expected an initialized torch.distributed process group")
    return init_device_mesh(device_type, (dist.get_world_size(),))


def block_modules(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: the children of the nn.ModuleList that
    holds the most parameters (TinyLM ``blocks``, a Hugging Face ``layers``); [] if none."""
    best: list[nn.Module] = []
    best_count = 0
    for mod in model.modules():
        if isinstance(mod, nn.ModuleList) and len(mod):
            count = sum(p.numel() for p in mod.parameters())
            if count > best_count:
                best, best_count = list(mod), count
    return best


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def shard(
    built: Built, mesh: DeviceMesh | None = None, *, reshard_after_forward: bool = True
) -> Built:
    """Apply ``fully_shard`` to each block and then to the root; -> the Built to train with.

    The returned Built's ``trainable`` maps the same names to the sharded (DTensor)
    parameters (fully_shard replaces the Parameter objects: the old mapping is stale), and
    its ``save(out)`` is a collective writing the kind's files from full tensors gathered one
    at a time (tinylm: `save_full_weights`; Hugging Face kinds: `save_hf_folder`).
    Collective: every rank calls it. Raises UsageError (a kind whose sharded release
    cannot be written, i.e. peft-lora; no process group; already sharded; a tied parameter
    split across blocks).
    """
    model = built.model
    kind = built.spec.kind
    if kind not in SAVES:  # refused before training, not at the release after it
        raise UsageError(
            f"fsdp: expected a model kind whose sharded release is written "
            f"({', '.join(SAVES)}), got {kind!r} (peft's adapter writer wants full tensors)"
        )
    if is_sharded(model):
        raise UsageError("fsdp.shard: expected an unsharded model, got one already sharded")
    mesh = mesh if mesh is not None else init_mesh()
    blocks = block_modules(model)
    owners: dict[int, int] = {}  # why: FSDP2 needs a tied parameter inside one unit
    for i, b in enumerate(blocks):
        for p in b.parameters():
            if owners.setdefault(id(p), i) != i:
                raise UsageError(
                    f"fsdp.shard: a parameter is shared by blocks {owners[id(p)]} and {i}"
                )
    for b in blocks:
        fully_shard(b, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    for unit in [*blocks, model]:  # neither setting recurses into the blocks
        # Sum, not mean, over ranks: each rank's loss is already divided by the global
        # batch. Forced to a plain SUM (gloo has no PREMUL_SUM), with no division after.
        cast(FSDPModule, unit).set_gradient_divide_factor(1.0)
        cast(FSDPModule, unit).set_force_sum_reduction_for_comms(True)
    # A rank may leave some of a block's parameters without a gradient that another rank
    # gives one (a rank with no examples skips the gradient-norm hooks, whose bookkept
    # linears return None outside the pass's names): each block's reduce-scatter must
    # still carry the same tensors on every rank, so unused ones send zeros. Which
    # gradients are kept is decided afterwards from the global batch's profiles.
    cast(FSDPModule, model).set_reduce_scatter_unused_params(True)
    live = dict(model.named_parameters())
    trainable = {n: cast(nn.Parameter, live[n]) for n in built.trainable}

    def save(out: Path) -> tuple[str, ...]:
        """Collective: every rank calls it, rank 0 writes (one tensor gathered at a time)."""
        if kind in HF_KINDS:
            return save_hf_folder(result, Path(out))  # `result`: bound below
        save_full_weights(result, Path(out) / TINYLM_WEIGHTS)
        return (TINYLM_WEIGHTS,)

    result = dataclasses.replace(built, trainable=trainable, save=save)
    return result


# -- full tensors, one at a time -----------------------------------------------------------


def gather(t: torch.Tensor) -> torch.Tensor:
    """The full CPU tensor of ``t`` (all-gathered if it is a DTensor). Collective for DTensors.

    The single place that materialises a full tensor (tests instrument it)."""
    if isinstance(t, DTensor):
        return t.full_tensor().detach().cpu()  # sync: all-gather of one tensor
    return t.detach().cpu()


def full_leaf(name: str, t: torch.Tensor) -> bytes:
    """trainer.leaves.leaf of the full tensor; the gathered copy is dropped on return."""
    full = gather(t)
    try:
        return lv.leaf(name, full)  # cost: SHA-256 over the full tensor's bytes
    finally:
        del full


def full_leaves(built: Built, names: Sequence[str] | None = None) -> dict[str, bytes]:
    """Leaf hash of every state tensor (of ``names`` only, if given), the same on every rank.

    ``state_root(full_leaves(built))`` is the state root of the non-sharded model with the
    same values. Collective; at most one full tensor is alive at a time."""
    state = built.state()
    keys = list(state) if names is None else list(names)
    return {n: full_leaf(n, state[n]) for n in keys}


def iter_full_state(built: Built) -> Iterator[tuple[str, torch.Tensor]]:
    """(state name, full CPU tensor) one at a time, in ``built.state()`` order.

    Collective: every rank must consume the whole iterator in step (rank 0 writes, the
    others discard). Drop each tensor before asking for the next to keep the bound."""
    for name, t in built.state().items():
        yield name, gather(t)


def iter_full_optimizer(engine: ShardedStepEngine) -> Iterator[tuple[str, torch.Tensor]]:
    """The AdamW state as ``optim/KEY/NAME`` full tensors, one at a time (checkpoint layout).

    Collective like `iter_full_state`; parameters without state (never touched) are absent
    on every rank alike (AdamW creates state on the first gradient, which has the same
    None-ness on every rank)."""
    for name, p in engine.params.items():
        st = engine.optimizer.state.get(p)
        if not st:
            continue
        for k in OPTIM_KEYS:
            if k in st:
                v = st[k]
                yield (
                    f"optim/{k}/{name}",
                    (gather(v) if isinstance(v, torch.Tensor) else torch.tensor(float(v))),
                )


def _header(
    entries: Sequence[tuple[str, torch.Tensor]], metadata: Mapping[str, str] | None
) -> bytes:
    """safetensors header (8-byte length + JSON) for ``entries`` in file order; a DTensor's
    dtype and global shape are known on every rank without gathering it."""
    head: dict[str, Any] = {}
    if metadata:
        head["__metadata__"] = dict(metadata)
    pos = 0
    for name, t in entries:
        nbytes = t.numel() * t.element_size()
        head[name] = {"dtype": lv.dtype_name(t), "shape": list(t.shape),
                      "data_offsets": [pos, pos + nbytes]}  # fmt: skip
        pos += nbytes
    raw = json.dumps(head, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes with spaces
    return struct.pack("<Q", len(raw)) + raw


def write_full_safetensors(
    path: Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    *,
    rank: int | None = None,
) -> str | None:
    """Write (possibly sharded) ``tensors`` as one safetensors file on rank 0, gathering one
    tensor at a time; -> the file's sha256 hex on rank 0, None on the others.

    Hand-written on purpose: safetensors' ``save`` takes the whole dict of full tensors,
    which is what a sharded run must not hold. Tensors are laid out largest element size
    first, then by name, header padded with spaces: for the F32/U8 tensors govtune writes,
    byte-identical to safetensors' own writer (tests/trainer/test_fsdp.py). Temp file +
    fsync + rename on rank 0. Collective: every rank calls it with the same names.
    Raises UsageError when the file cannot be written.
    """
    rank = dist.get_rank() if rank is None else rank
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    head = _header([(n, tensors[n]) for n in order], metadata)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    digest = hashlib.sha256(head)
    f = None
    try:
        if rank == 0:
            f = open(tmp, "wb")  # noqa: SIM115 - closed below, renamed on success
            f.write(head)
        for n in order:  # the same order on every rank: the gathers line up
            full = gather(tensors[n]).contiguous()
            if f is not None:
                data = lv.raw_bytes(full)
                digest.update(data)
                f.write(data)
                del data
            del full
        if f is None:
            return None
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
        fsync_dir(path.parent)
        return digest.hexdigest()
    except OSError as e:
        raise UsageError(f"{path}: cannot write sharded tensors: {e.strerror or e}") from e
    finally:
        if f is not None and not f.closed:
            f.close()
            tmp.unlink(missing_ok=True)


def save_full_weights(
    built: Built, path: Path, metadata: Mapping[str, str] | None = None
) -> str | None:
    """The full model state as one safetensors file (rank 0); see `write_full_safetensors`."""
    return write_full_safetensors(path, built.state(), metadata)


def save_hf_folder(built: Built, out: Path) -> tuple[str, ...]:
    """A sharded Hugging Face model as the folder ``from_pretrained`` loads: config.json (and
    generation_config.json for a model that generates), the tokenizer files and one
    ``model.safetensors`` holding ``built.state()`` (tied copies once, trainer.hf.released_state);
    -> the weight file names (on every rank). Collective: every rank calls it, rank 0 writes.

    Not ``save_pretrained`` for the weights: it takes the model's whole state dict, and under
    FSDP2 transformers' own path (``gather_sharded_state_dict_for_save``) gathers the full
    state dict on rank 0 at once, or, with no ``distributed_config`` on the model, hands the
    DTensors to safetensors. Here each tensor is gathered alone (`write_full_safetensors`)
    with the metadata transformers writes (``format = pt``); the config is written as
    save_pretrained writes it (class name without FSDP2's ``FSDP`` prefix, dtype). The
    loop's release check (trainer.loop._release) then compares the file's leaves with the
    chain's final state root. Raises UsageError when the folder cannot be written.
    """
    model: Any = built.model  # a transformers PreTrainedModel (trainer/hf.py)
    lead = dist.get_rank() == 0
    if lead:
        try:
            out.mkdir(parents=True, exist_ok=True)
            cfg = model.config
            cfg.architectures = [type(model).__name__.removeprefix("FSDP")]  # as transformers
            cfg.dtype = str(next(iter(built.state().values())).dtype).split(".")[1]
            cfg.save_pretrained(str(out))
            if model.can_generate():
                model.generation_config.save_pretrained(str(out))
            if built.tokenizer is not None:
                built.tokenizer.save_pretrained(str(out))
        except OSError as e:
            raise UsageError(f"{out}: cannot write the model folder: {e.strerror or e}") from e
    save_full_weights(built, out / HF_WEIGHTS, {"format": "pt"})  # sync: one gather a tensor
    return (HF_WEIGHTS,)


def save_full_checkpoint(path: Path, engine: ShardedStepEngine) -> str | None:
    """trainer.checkpoint's layout (state, ``optim/KEY/NAME``, ``rng/torch``) from a sharded
    engine, one tensor at a time; -> sha256 hex on rank 0, None elsewhere. Collective.

    The AdamW moments are sharded like their parameters; ``step`` is a replicated scalar."""
    tensors: dict[str, torch.Tensor] = dict(engine.built.state())
    for name, p in engine.params.items():
        for k, v in engine.optimizer.state.get(p, {}).items():
            if k in OPTIM_KEYS:
                tensors[f"optim/{k}/{name}"] = (
                    v if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                )
    tensors["rng/torch"] = torch.get_rng_state()
    return write_full_safetensors(path, tensors)


def load_full_state(built: Built, tensors: Mapping[str, torch.Tensor]) -> None:
    """Set every state tensor from full tensors (each rank keeps its own shard; no traffic).

    ``tensors`` may be lazy (e.g. a safetensors ``safe_open`` view): read one at a time.
    Raises FormatError when a tensor is missing or does not fit."""
    live = built.state()
    missing = set(live) - set(tensors)
    if missing:
        raise FormatError(f"state: missing tensor(s) {', '.join(sorted(missing))[:200]}")
    with torch.no_grad():
        for n, t in live.items():
            _copy_full(f"state: tensor {n!r}", t, tensors[n])


def _copy_full(where: str, t: torch.Tensor, v: torch.Tensor) -> None:
    if tuple(v.shape) != tuple(t.shape) or v.dtype != t.dtype:
        raise FormatError(
            f"{where}: expected {t.dtype} {tuple(t.shape)}, got {v.dtype} {tuple(v.shape)}"
        )
    if isinstance(t, DTensor):
        # src_data_rank=None: every rank slices its own shard from the full tensor it holds.
        local = distribute_tensor(v, t.device_mesh, t.placements, src_data_rank=None)
        t.to_local().copy_(local.to_local())
    else:
        t.copy_(v)


# -- the step ------------------------------------------------------------------------------


class ShardedStepEngine(StepEngine):
    """`StepEngine` on a `shard`ed Built: same calls, same outcome, every rank in step.

    ``step(items, profiles, lr)`` takes this rank's examples (any split of the global batch,
    possibly none); the global batch is the ranks' lists in rank order (one small
    all-gather per step). Losses and gradient norms in the outcome are this rank's; the
    changed leaves and the state root are global and the same on every rank.
    Raises UsageError for ``grad_accum`` > 1 (ranks would run different numbers of passes).
    """

    def __init__(
        self,
        built: Built,
        optim: OptimizerConfig,
        profiles: Mapping[str, Sequence[str]],
        *,
        grad_norms: bool = True,
        grad_accum: int = 1,
    ) -> None:
        # Not StepEngine.__init__: it finds tied aliases by data_ptr and hashes local bytes,
        # neither of which means anything for a DTensor shard.
        if not is_sharded(built.model):
            raise UsageError("fsdp: expected a Built returned by fsdp.shard")
        if grad_accum != 1:
            raise UsageError(f"fsdp: expected grad_accum = 1 under sharding, got {grad_accum}")
        self.grad_accum = 1
        self.built, self.model = built, built.model
        self.params: dict[str, nn.Parameter] = dict(built.trainable)
        self.names_by_id = {id(p): n for n, p in self.params.items()}
        # plain AdamW (no on_chunk): shard bytes are not what the leaves hash
        self.optimizer = OverlapAdamW(
            list(self.params.values()), lr=optim.lr, betas=optim.betas,
            weight_decay=optim.weight_decay,
        )  # fmt: skip
        self.router = Router(self.params, profiles)
        self.norms = GradNorms(self.model, self.params) if grad_norms else None
        # Tied names from parameter identity (the same on every rank, unlike shard pointers).
        self.aliases: dict[str, list[str]] = {n: [] for n in self.params}
        state = built.state()
        for name, p in self.model.named_parameters(remove_duplicate=False):
            canon = self.names_by_id.get(id(p))
            if canon is not None and name in state and p.numel():
                self.aliases[canon].append(name)
        self.current: dict[str, bytes] = full_leaves(built)  # cost: one gather+hash pass
        self._global: list[str] = []
        self._template: Item | None = None
        self.model.train()

    def load_state(
        self,
        tensors: Mapping[str, torch.Tensor] | None = None,
        optimizer_state: Mapping[str, torch.Tensor] | None = None,
        rng: torch.Tensor | None = None,
    ) -> None:
        """As StepEngine.load_state, from full tensors (each rank keeps its shard)."""
        if tensors is not None:
            load_full_state(self.built, tensors)
        self.optimizer.state.clear()
        for name, p in self.params.items():
            if optimizer_state is None:
                break
            keys = [k for k in OPTIM_KEYS if f"optim/{k}/{name}" in optimizer_state]
            if not keys:
                continue
            st: dict[str, torch.Tensor] = {}
            for k in keys:
                v = optimizer_state[f"optim/{k}/{name}"]
                if k == "step" or not isinstance(p, DTensor):
                    st[k] = v.clone()
                else:  # the moments are sharded like their parameter
                    st[k] = distribute_tensor(v, p.device_mesh, p.placements, src_data_rank=None)
            self.optimizer.state[p] = st
        for p in self.params.values():
            p.grad = None
        if rng is not None:
            torch.set_rng_state(rng)
        self.current = full_leaves(self.built)

    def optimizer_tensors(self) -> dict[str, torch.Tensor]:
        """The full AdamW state (holds it all: prefer `iter_full_optimizer` for checkpoints)."""
        return dict(iter_full_optimizer(self))

    reduces_in_backward = True  # trainer/dist.py: FSDP2 reduce-scatters; pass no `reduce`

    def step(
        self,
        items: Sequence[Item],
        profiles: Sequence[str],
        lr: float,
        *,
        total: int | None = None,
        reduce: Callable[[StepEngine], None] | None = None,
    ) -> StepOutcome:
        """One governed step over the ranks' examples; see the class docstring. ``total``, if
        given, must be the global batch size. Raises UsageError when ``reduce`` is given (the
        gradients are already reduce-scattered in the backward) or ``total`` is wrong."""
        if reduce is not None:
            raise UsageError("fsdp: expected no reduce (FSDP2 reduce-scatters in the backward)")
        # sync: the global batch's profiles, and one example per rank (a rank with none
        # encodes another's and keeps no rows of it: the forward needs a batch's shape).
        everyone: list[tuple[list[str], list[Item]] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, (list(profiles), list(items[:1])))
        self._global = [p for part in everyone if part for p in part[0]]
        self._template = next((it for part in everyone if part for it in part[1]), None)
        if total is not None and total != len(self._global):
            raise UsageError(
                f"fsdp: total = {total}, but the ranks hold {len(self._global)} examples"
            )
        unknown = sorted(set(self._global) - set(self.router.allowed))
        if unknown:
            raise UsageError(f"fsdp: profile {unknown[0]!r} is not among the policy's profiles")
        # Not StepEngine.step: a rank with no examples must still run the forward and the
        # backward passes (their all-gathers and reduce-scatters are collective).
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        # The weighting of StepEngine.routed_grads for a slice (loss·k/B, then /k), so a
        # single-process replay of the slices (trainer.dist.replay_step) does the same
        # arithmetic; None when this rank holds the whole batch: exactly the unsplit step.
        k = len(items)
        losses = self._micro(
            items, profiles, None if k == len(self._global) else k / len(self._global)
        )
        got: tuple[float, ...] | None = None
        if self.norms is not None:  # no examples here: nothing to measure (the hooks need B > 0)
            got = self.norms.result() if items else (() if self.norms.enabled else None)
        self.optimizer.step()  # tensors with grad None are skipped by AdamW: unchanged, bitwise
        changed = self._hash_changed()
        return StepOutcome(
            tuple(finite(x) for x in losses.tolist()),  # sync: tensor -> Python
            None if got is None else tuple(finite(x) for x in got),
            changed,
            state_root(self.current),
            losses,
        )

    def _micro(
        self, items: Sequence[Item], profiles: Sequence[str], scale: float | None
    ) -> torch.Tensor:
        # A rank with no examples still runs the forward and backward (their all-gathers and
        # reduce-scatters are collective). Not on zero rows: Hugging Face attention cannot
        # reshape an empty batch. It runs another rank's first example with weight 0, so it
        # contributes gradients of ±0 (x + 0 = x: the sum over ranks is unchanged).
        stand_in = not items and self._template is not None
        batch = self.built.encode([self._template] if stand_in else items)  # type: ignore[list-item]
        if stand_in:
            scale = 0.0
        norms = self.norms if items else None
        if norms is not None:
            norms.arm(len(items))
        try:
            # The fast path is decided on the global batch (every rank must run the same
            # passes: each backward reduce-scatters); its masks are set for the local rows.
            fast = self.router.prepare(self.model, self._global)
            if fast:
                self.router.prepare(self.model, profiles)  # a subset: also the fast path
            else:
                self.router.release(self.model)
            try:
                losses = self.built.per_example_loss(self.model, batch)  # cost: one forward
            finally:
                self.router.release(self.model)
            weighted = losses if scale is None else losses * scale
            self._backward(weighted, profiles, fast, norms.activate if norms else None)
        finally:
            if norms is not None:
                norms.disarm()
        return losses.detach()[:0] if stand_in else losses.detach()

    def _backward(self, losses: torch.Tensor, profiles: Sequence[str], fast: bool,
                  on_pass: Any) -> None:  # fmt: skip
        n = max(1, len(profiles))  # this rank's examples, as Router.backward divides
        allowed = self.router.allowed
        for p in self.params.values():
            p.grad = None
        if fast:
            union = frozenset().union(*(allowed[p] for p in set(self._global)))
            if on_pass is not None:
                on_pass([m for m in self.params if m in union])
            (losses.sum() / n).backward()  # cost: one backward; sync: reduce-scatter per block
            for m, p in self.params.items():
                if m not in union:
                    p.grad = None  # no example of the global batch may touch it: AdamW skips it
            return
        plan = self.router.plan(frozenset(self._global))
        kept: dict[str, torch.Tensor | None] = {}
        for i, (sig, names) in enumerate(plan):
            rows = torch.tensor([j for j, prof in enumerate(profiles) if prof in sig],
                                dtype=torch.long)  # fmt: skip
            part = losses.sum() if len(rows) == len(profiles) else losses[rows].sum()
            if on_pass is not None:
                on_pass(names)
            # cost: a whole backward per signature (no pruning under FSDP2, see module doc)
            (part / n).backward(retain_graph=i < len(plan) - 1)
            for m in names:
                kept[m] = self.params[m].grad
            for p in self.params.values():
                p.grad = None
        for m, g in kept.items():
            self.params[m].grad = g

    def _hash_changed(self) -> dict[str, bytes]:
        """New leaves of the changed tensors; None-ness of grads is the same on every rank."""
        changed: dict[str, bytes] = {}
        state = self.built.state()
        for n, p in self.params.items():
            if p.grad is None:
                continue
            for alias in self.aliases[n]:
                h = full_leaf(alias, state[alias])  # sync: one all-gather per changed tensor
                if h != self.current[alias]:
                    changed[alias] = self.current[alias] = h
        return changed

    def state_root(self) -> bytes:
        return state_root(self.current)


__all__ = [
    "ShardedStepEngine",
    "block_modules",
    "full_leaf",
    "full_leaves",
    "gather",
    "init_mesh",
    "is_sharded",
    "iter_full_optimizer",
    "iter_full_state",
    "load_full_state",
    "save_full_checkpoint",
    "save_full_weights",
    "save_hf_folder",
    "write_full_safetensors",
    "shard",
]
