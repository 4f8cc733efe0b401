"""Per-example routed gradient norms, without materialising per-example gradients (issue 11 §4).

``gradNorm[j]`` (spec/records.md §5) is the L2 norm, over the tensors example j's
profile allows, of example j's term ``∂(loss_j / B)/∂θ`` of the step's routed gradient.

How: a forward hook on every module that owns a trainable parameter keeps its input
and puts a hook on its output; during the routed backward (trainer.routing) the output
hook sees ``grad_output``, whose row j is example j's gradient (rows of examples whose
profile does not reach the module are zero: the router's stop-gradient masks and
signature passes already cut them). A per-module *rule* turns (input, grad_output)
into per-example squared norms:

- nn.Linear: ``‖Σ_t g_t a_tᵀ‖²`` either as ``Σ_{t,s} (a_t·a_s)(g_t·g_s)`` (the "ghost
  norm" of Goodfellow 2015 / Li et al. 2022, cost B·T²·(in+out)) or from the per-example
  gradient einsum (cost B·T·in·out), whichever is cheaper, chosen per call; where the
  einsum is the cheaper form a plain nn.Linear is "book-kept" (its weight gradient is the
  sum of the per-example ones, formed once); bias ``‖Σ_t g_t‖²``;
- nn.Embedding: ``Σ_{t,s} [i_t = i_s ≠ pad] (g_t·g_s)`` (no [B, V, d] tensor);
- nn.LayerNorm / RMSNorm: the per-example gradients are [B, d]: formed directly.

A module called more than once per step, or a parameter shared by two modules (tied
weights), sums its per-example gradients over the uses before squaring (materialised
once per parameter). A trainable parameter owned by a module with no rule makes the
norms not computable for the model: `GradNorms.reason` says which, and the trainer
records that (never a fake zero). More rules: `register_rule`. A parameter that gets a
gradient no rule measured (used only outside its module, e.g. by a functional call) fails
the step (GovtuneError). Known limit: a parameter used both by its module and by a
functional call elsewhere is measured through its module only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from attest.errors import GovtuneError

METHOD = "routed-l2-v1"  # recorded in the start record (extra.gradNorm.method)

# rule(module, x [B, N, ...], g [B, N, ...], names) -> {local name: per-example grad}
Materialise = Callable[[nn.Module, torch.Tensor, torch.Tensor, set[str]], dict[str, torch.Tensor]]
# fast rule -> {local name: per-example squared norm [B]} (single use only)
SquaredNorms = Callable[[nn.Module, torch.Tensor, torch.Tensor, set[str]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Rule:
    materialise: Materialise
    squared: SquaredNorms | None = None  # cheaper path for a module used once per step


_RULES: dict[type, Rule] = {}


def register_rule(
    module_type: type, *, squared: SquaredNorms | None = None
) -> Callable[[Materialise], Materialise]:
    """Decorator: per-example gradients of ``module_type``'s own parameters."""

    def deco(fn: Materialise) -> Materialise:
        _RULES[module_type] = Rule(fn, squared)
        return fn

    return deco


def rule_for(module: nn.Module) -> Rule | None:
    for t in type(module).__mro__:
        if t in _RULES:
            return _RULES[t]
    # Hugging Face RMSNorm variants (LlamaRMSNorm …) are not nn.RMSNorm subclasses.
    if type(module).__name__.endswith("RMSNorm") and isinstance(
        getattr(module, "weight", None), nn.Parameter
    ):
        return _RULES.get(nn.RMSNorm)
    return None


# --- rules -----------------------------------------------------------------------------


def _per_example_weight(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """[B, out, in]: example j's ``Σ_t g_t a_tᵀ``. One bmm; einsum("bno,bni->boi") is the
    same product but measured 1.2-1.5x slower here (it copies to a contiguous layout)."""
    return torch.bmm(g.transpose(1, 2), a)


def squared_norms(pe: torch.Tensor) -> torch.Tensor:
    """Per-example squared L2 norms of ``pe`` [B, ...]: one reduction pass, where
    ``pe.pow(2).sum()`` writes and reads back a [B, ...] temporary first."""
    return torch.linalg.vector_norm(pe.flatten(1), dim=1).square()


def _linear_materialise(m: nn.Module, a: torch.Tensor, g: torch.Tensor, names: set[str]) -> Any:
    out = {}
    if "weight" in names:
        out["weight"] = _per_example_weight(a, g)
    if "bias" in names:
        out["bias"] = g.sum(1)
    return out


def ghost_cheaper(n: int, d_in: int, d_out: int) -> bool:
    """Whether the ghost norm of a Linear weight (cost per example T²·(in+out)) is cheaper
    than forming the per-example gradient (T·in·out), for T = ``n`` rows per example."""
    return n * (d_in + d_out) < d_in * d_out


def _linear_squared(m: nn.Module, a: torch.Tensor, g: torch.Tensor, names: set[str]) -> Any:
    out = {}
    if "weight" in names:
        if ghost_cheaper(a.shape[1], a.shape[2], g.shape[2]):  # cost: the cheaper form
            out["weight"] = (a @ a.transpose(1, 2) * (g @ g.transpose(1, 2))).sum((1, 2))
        else:
            out["weight"] = squared_norms(_per_example_weight(a, g))
    if "bias" in names:
        out["bias"] = g.sum(1).pow(2).sum(1)
    return out


register_rule(nn.Linear, squared=_linear_squared)(_linear_materialise)


def _ids(m: nn.Module, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ids = x.reshape(g.shape[0], -1)
    pad = getattr(m, "padding_idx", None)
    if pad is not None:  # the padding row never gets a gradient
        g = g * (ids != pad).unsqueeze(-1).to(g.dtype)
    return ids, g


def _embedding_materialise(m: nn.Module, x: torch.Tensor, g: torch.Tensor, names: set[str]) -> Any:
    ids, g = _ids(m, x, g)
    w: torch.Tensor = cast(Any, m).weight
    out = torch.zeros((g.shape[0], *w.shape), dtype=g.dtype, device=g.device)
    out.scatter_add_(1, ids.unsqueeze(-1).expand(-1, -1, g.shape[-1]), g)
    return {"weight": out}


def _embedding_squared(m: nn.Module, x: torch.Tensor, g: torch.Tensor, names: set[str]) -> Any:
    ids, g = _ids(m, x, g)
    b, n, d = g.shape
    rows = cast(Any, m).weight.shape[0]
    if 16 * rows < n * n:
        # cost: a small table (TinyLM's 256 bytes, its positions): sum each example's rows
        # into its own [V, d] table (B·V·d) instead of the pairwise products (B·N²·d);
        # measured 3x faster at V = 256, N = 128, and slower from about 16·V = N² on.
        table = torch.zeros((b * rows, d), dtype=g.dtype, device=g.device)
        offsets = torch.arange(b, device=ids.device).unsqueeze(1) * rows
        table.index_add_(0, (ids + offsets).reshape(-1), g.reshape(-1, d))
        return {"weight": squared_norms(table.view(b, -1))}
    same = (ids.unsqueeze(2) == ids.unsqueeze(1)).to(g.dtype)  # [B, N, N]
    return {"weight": (same * (g @ g.transpose(1, 2))).sum((1, 2))}


register_rule(nn.Embedding, squared=_embedding_squared)(_embedding_materialise)


def _norm_materialise(normed: torch.Tensor, g: torch.Tensor, names: set[str]) -> Any:
    out = {}
    if "weight" in names:
        out["weight"] = (g * normed).sum(1)
    if "bias" in names:
        out["bias"] = g.sum(1)
    return out


@register_rule(nn.LayerNorm)
def _layernorm(m: nn.Module, x: torch.Tensor, g: torch.Tensor, names: set[str]) -> Any:
    ln = cast(Any, m)
    normed = F.layer_norm(x, tuple(ln.normalized_shape), None, None, ln.eps)
    return _norm_materialise(normed.flatten(2), g.flatten(2), names)


@register_rule(nn.RMSNorm)
def _rmsnorm(m: nn.Module, x: torch.Tensor, g: torch.Tensor, names: set[str]) -> Any:
    eps = getattr(m, "eps", None) or getattr(m, "variance_epsilon", None)
    xf = x.float()
    var = xf.pow(2).mean(-1, keepdim=True)
    normed = xf * torch.rsqrt(var + (eps if eps is not None else torch.finfo(xf.dtype).eps))
    return _norm_materialise(normed.to(g.dtype).flatten(2), g.flatten(2), names)


# --- the tracker -----------------------------------------------------------------------


class _BookLinear(torch.autograd.Function):
    """F.linear whose backward forms per-example weight gradients once (book-keeping).

    Forward values are F.linear's, bit for bit. The weight and bias gradients are the sums
    of the per-example gradients, returned only for parameters of the current backward
    pass (GradNorms.activate); the input gradient is ``g @ W`` as autograd's.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
        tracker: GradNorms, mod: nn.Module, locals_: dict[str, str],
    ) -> torch.Tensor:  # fmt: skip
        ctx.save_for_backward(x, weight)
        ctx.tracker, ctx.mod, ctx.locals_ = tracker, mod, locals_
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        gx = g @ weight if ctx.needs_input_grad[0] else None
        with torch.no_grad():
            gw, gb = ctx.tracker._book_backward(ctx.mod, ctx.locals_, x.detach(), g)
        return gx, gw, gb, None, None, None


class GradNorms:
    """Per-example routed gradient norms of one step, collected by hooks during the backward.

    Use: ``arm(batch_size)`` before the forward, ``activate(names)`` before each backward
    pass (the router calls it), ``result()`` after the backward, ``disarm()``.
    """

    def __init__(
        self, model: nn.Module, trainable: Mapping[str, nn.Parameter], *, ghost: bool = True
    ) -> None:
        # ghost=False: every plain nn.Linear call is book-kept (the reference path the tests
        # compare the ghost-norm choice against).
        self.ghost = ghost
        by_id = {id(p): n for n, p in trainable.items()}
        self.owners: dict[int, list[tuple[nn.Module, str]]] = {}  # param id -> (module, local)
        self.reason = ""
        modules: dict[int, tuple[nn.Module, dict[str, str]]] = {}  # id(module) -> locals
        for _mname, mod in model.named_modules(remove_duplicate=False):
            for local, p in mod.named_parameters(recurse=False):
                if id(p) not in by_id:
                    continue
                self.owners.setdefault(id(p), [])
                if all(m is not mod for m, _ in self.owners[id(p)]):
                    self.owners[id(p)].append((mod, local))
                    modules.setdefault(id(mod), (mod, {}))[1][local] = by_id[id(p)]
        for mod, locals_ in modules.values():
            if rule_for(mod) is None:
                self.reason = (
                    f"module {type(mod).__name__} (parameter {next(iter(locals_.values()))!r}) "
                    "has no per-example gradient rule (trainer.gradnorm)"
                )
                break
        self.enabled = not self.reason
        self.modules = list(modules.values())
        self.param_of = {n: trainable[n] for n in trainable}
        self.shared = {pid for pid, owners in self.owners.items() if len(owners) > 1}
        # Book-keeping (Bu et al. 2022, "Differentially private optimization on large
        # model at small cost"): a plain nn.Linear whose parameters are its own computes
        # its per-example gradients once in its backward (`_BookLinear`) and hands autograd
        # their sum as the weight gradient, so the norms cost no second weight-gradient pass.
        # Per call, where the ghost norm is cheaper (`ghost_cheaper`), the call takes the
        # hook path instead: autograd's one-GEMM weight gradient plus the ghost norm, so
        # no [B, out, in] tensor is written and read back (Bu et al. 2022 choose per layer
        # the same way; for MiniLM at T = 64 every Linear is a ghost layer).
        self.bookkept = {
            id(mod) for mod, locals_ in self.modules
            if type(mod) is nn.Linear and "forward" not in mod.__dict__
            and not any(id(self.param_of[f]) in self.shared for f in locals_.values())
        }  # fmt: skip
        self._handles: list[Any] = []
        self._calls: dict[int, int] = {}
        self._active: set[str] = set()
        self._sq: list[torch.Tensor] = []  # per-example squared norms, one tensor a rule call
        self._mat: dict[str, torch.Tensor] = {}
        self._seen: set[str] = set()  # names whose per-example grads were measured
        self._b = 0

    @property
    def method(self) -> str | None:
        return METHOD if self.enabled else None

    def arm(self, batch_size: int) -> None:
        """Install the hooks for one step's forward and backward."""
        if not self.enabled:
            return
        self._b, self._calls, self._mat, self._sq = batch_size, {}, {}, []
        self._seen = set()
        for mod, locals_ in self.modules:
            if id(mod) in self.bookkept:
                mod.forward = self._book_forward(mod, locals_)  # type: ignore[method-assign]
            else:
                self._handles.append(mod.register_forward_hook(self._forward_hook(mod, locals_)))

    def disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for mod, _ in self.modules:
            if id(mod) in self.bookkept:
                mod.__dict__.pop("forward", None)  # back to nn.Linear.forward

    def _book_forward(self, mod: nn.Module, locals_: dict[str, str]) -> Callable[..., Any]:
        lin = cast(nn.Linear, mod)

        def forward(x: torch.Tensor) -> torch.Tensor:
            if (
                x.dim() < 2 or x.shape[0] != self._b  # not one row per example
                or (self.ghost and ghost_cheaper(x[0].numel() // lin.in_features,
                                                 lin.in_features, lin.out_features))
            ):  # fmt: skip
                # The generic hook path for this call: autograd's own weight gradient (one
                # GEMM) plus the ghost norm, cheaper here than forming per-example gradients
                # (for T rows per example: T² (in + out) < T in out, e.g. BERT at T = 64).
                out = F.linear(x, lin.weight, lin.bias)
                replaced = self._forward_hook(mod, locals_)(mod, (x,), out)
                return out if replaced is None else replaced
            self._calls[id(mod)] = self._calls.get(id(mod), 0) + 1
            return cast(
                torch.Tensor, _BookLinear.apply(x, lin.weight, lin.bias, self, mod, locals_)
            )

        return forward

    def _book_backward(
        self, mod: nn.Module, locals_: dict[str, str], x: torch.Tensor, g: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(weight grad, bias grad) for the active parameters, recording their norms."""
        names = {loc for loc, full in locals_.items() if full in self._active}
        if not names:
            return None, None
        self._seen.update(locals_[n] for n in names)
        b = x.shape[0]
        a3, g3 = x.reshape(b, -1, x.shape[-1]).to(g.dtype), g.reshape(b, -1, g.shape[-1])
        single = self._calls.get(id(mod), 0) == 1
        gw = gb = None
        for loc, pe in _linear_materialise(mod, a3, g3, names).items():  # cost: one bmm
            if single:
                self._add_sq(squared_norms(pe))
            else:  # several calls: sum per-example gradients before squaring
                full = locals_[loc]
                self._mat[full] = pe if full not in self._mat else self._mat[full] + pe
            summed = pe.sum(0)  # the batch gradient: the sum of the per-example ones
            if loc == "weight":
                gw = summed
            else:
                gb = summed
        return gw, gb

    def activate(self, names: Iterable[str]) -> None:
        """The parameter names the next backward pass takes gradients for."""
        self._active = set(names)

    def _forward_hook(self, mod: nn.Module, locals_: dict[str, str]) -> Callable[..., Any]:
        rule = rule_for(mod)
        assert rule is not None
        b = self._b

        def hook(_m: nn.Module, inputs: tuple[Any, ...], output: Any) -> Any:
            if not isinstance(output, torch.Tensor) or not inputs:
                return None
            x = inputs[0]
            replaced = None
            if output.dim() >= 1 and output.shape[0] == 1 and b > 1:
                # A call shared by the whole batch (e.g. position embeddings of shape
                # [1, T, d], broadcast later): give each example its own rows, same values.
                output = replaced = output.expand(b, *output.shape[1:])
                x = x.expand(b, *x.shape[1:])
            if output.shape[0] != b or output.requires_grad is False:
                return replaced
            self._calls[id(mod)] = self._calls.get(id(mod), 0) + 1
            output.register_hook(self._grad_hook(mod, locals_, rule, x.detach()))
            return replaced

        return hook

    def _grad_hook(
        self, mod: nn.Module, locals_: dict[str, str], rule: Rule, x: torch.Tensor
    ) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            names = {loc for loc, full in locals_.items() if full in self._active}
            if not names:
                return
            self._seen.update(locals_[n] for n in names)
            b = grad.shape[0]
            with torch.no_grad():
                g = grad.reshape(b, -1, grad.shape[-1]) if grad.dim() > 1 else grad.view(b, 1, 1)
                if isinstance(mod, nn.Embedding):
                    xx = x
                elif x.dim() > 1:
                    xx = x.reshape(b, -1, x.shape[-1])
                else:
                    xx = x.view(b, 1, 1)
                single = self._calls.get(id(mod), 0) == 1 and not any(
                    id(self.param_of[locals_[n]]) in self.shared for n in names
                )
                if single and rule.squared is not None:
                    for _loc, sq in rule.squared(mod, xx.to(g.dtype) if xx.is_floating_point()
                                                 else xx, g, names).items():  # fmt: skip
                        self._add_sq(sq)
                    return
                if xx.is_floating_point():
                    xx = xx.to(g.dtype)
                for loc, pe in rule.materialise(mod, xx, g, names).items():
                    full = locals_[loc]
                    if single:
                        self._add_sq(squared_norms(pe))
                    elif full in self._mat:
                        self._mat[full] = self._mat[full] + pe
                    else:
                        self._mat[full] = pe

        return hook

    def _add_sq(self, sq: torch.Tensor) -> None:
        self._sq.append(sq)  # summed once, in float64, by `result`

    def result(self) -> tuple[float, ...] | None:
        """Per-example norms of the step just taken (None when not computable)."""
        if not self.enabled:
            return None
        # Fail closed: a parameter with a gradient whose per-example part no rule saw was
        # used outside its module (e.g. a functional call on another module's weight); its
        # contribution would be missing from the norms, which must never understate.
        unseen = sorted(n for n, p in self.param_of.items() if p.grad is not None
                        and n not in self._seen)  # fmt: skip
        if unseen:
            raise GovtuneError(
                f"gradient norms: parameter {unseen[0]!r} got a gradient no per-example rule "
                "measured (used outside its module?); register a rule (trainer.gradnorm) or "
                "set grad_norms = false"
            )
        total = torch.zeros(self._b, dtype=torch.float64)
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for sq in self._sq:
            by_dtype.setdefault(sq.dtype, []).append(sq)
        for part in by_dtype.values():  # cost: one stack and one sum a dtype, not one a call
            total = total + torch.stack(part).to(torch.float64).sum(0)
        for pe in self._mat.values():
            total = total + pe.flatten(1).to(torch.float64).pow(2).sum(1)
        self._mat = {}
        self._sq = []
        return tuple(float(v) for v in total.sqrt().tolist())  # sync: tensor -> Python


__all__ = ["METHOD", "GradNorms", "Rule", "register_rule", "rule_for"]
