"""Gradient routing by depth profile (DESIGN.md, "Gradient routing makes attribution exact").

Each example's gradient may reach only the parameters of its profile. Rather than one
backward pass per example or per profile, parameters are partitioned by *signature*:
the set of batch profiles that allow them. For each signature S the gradient of
``sum(loss[e] for e with profile in S) / B`` is taken w.r.t. exactly the parameters
with signature S. One forward, one ``autograd.grad`` per signature; autograd prunes
each pass to the part of the graph between the loss and those parameters, so a
surface profile costs a shallow pass.

Fast path (one backward): a model that exposes ``route_cuts()`` and ``route_masks``
(trainer.model.TinyLM) lets every batch profile that is either "all parameters" or
exactly "everything after boundary k" be routed by a stop-gradient mask at boundary k
(Cloud et al. 2024), set by `prepare` before the forward. Other profiles fall back to
the signature passes. Either way the result equals the sum of per-example
gradients masked by profile (tests/trainer/test_routing.py) and parameters no batch
example may touch keep ``grad = None``, so AdamW skips them (no momentum, no decay).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn


class Router:
    def __init__(
        self, params: Mapping[str, nn.Parameter], profiles: Mapping[str, Sequence[str]]
    ) -> None:
        self.params = dict(params)
        self.allowed = {p: frozenset(names) for p, names in profiles.items()}
        self._plans: dict[frozenset[str], list[tuple[frozenset[str], list[str]]]] = {}
        self._cuts: dict[int, frozenset[str]] | None = None
        self._prepared: tuple[str, ...] | None = None

    def prepare(self, model: nn.Module, profiles: Sequence[str]) -> bool:
        """Before the forward: set the model's stop-gradient masks if the fast path applies."""
        self._prepared = None
        routed = cast(Any, model)  # duck-typed: route_cuts() and route_masks (TinyLM has them)
        if not hasattr(routed, "route_cuts") or not hasattr(routed, "route_masks"):
            return False
        everything = frozenset(self.params)
        if self._cuts is None:
            self._cuts = {k: s & everything for k, s in routed.route_cuts().items()}
        levels: list[int | None] = []
        for p in profiles:
            allowed = self.allowed[p]
            if allowed == everything:
                levels.append(None)
                continue
            k = next((k for k, s in self._cuts.items() if s == allowed), None)
            if k is None:
                return False
            levels.append(k)
        routed.route_masks = {
            k: torch.tensor([lv != k for lv in levels])
            for k in {lv for lv in levels if lv is not None}
        } or None
        self._prepared = tuple(profiles)
        return True

    @staticmethod
    def release(model: nn.Module) -> None:
        """After the forward: later forwards (evaluation) run without masks."""
        if hasattr(model, "route_masks"):
            cast(Any, model).route_masks = None

    def plan(self, batch_profiles: frozenset[str]) -> list[tuple[frozenset[str], list[str]]]:
        """[(signature, parameter names)] for a batch using these profiles (cached)."""
        cached = self._plans.get(batch_profiles)
        if cached is None:
            by_sig: dict[frozenset[str], list[str]] = {}
            for name in self.params:
                sig = frozenset(p for p in batch_profiles if name in self.allowed[p])
                if sig:
                    by_sig.setdefault(sig, []).append(name)
            # Widest signature first: its pass is the shallow one when profiles nest.
            cached = sorted(by_sig.items(), key=lambda kv: (-len(kv[0]), sorted(kv[0])))
            self._plans[batch_profiles] = cached
        return cached

    def backward(
        self,
        losses: torch.Tensor,
        profiles: Sequence[str],
        on_pass: Callable[[Sequence[str]], None] | None = None,
    ) -> set[str]:
        """Set ``.grad`` of every parameter from per-example ``losses`` [B]; return touched names.

        Parameters outside every batch profile get ``grad = None``. ``on_pass(names)`` is
        called before each backward pass with the names it takes gradients for (the
        per-example gradient norms, trainer.gradnorm, attribute what the pass sees).
        """
        n = len(profiles)
        for p in self.params.values():
            p.grad = None
        touched: set[str] = set()
        if self._prepared == tuple(profiles):  # fast path: the masks did the routing
            self._prepared = None
            union = frozenset().union(*(self.allowed[p] for p in set(profiles)))
            names = [m for m in self.params if m in union]
            if on_pass is not None:
                on_pass(names)
            grads = torch.autograd.grad(
                losses.sum() / n, [self.params[m] for m in names], allow_unused=True
            )
            for m, g in zip(names, grads, strict=True):
                if g is not None:
                    self.params[m].grad = g
                    touched.add(m)
            return touched
        plan = self.plan(frozenset(profiles))
        for i, (sig, names) in enumerate(plan):
            rows = [j for j, prof in enumerate(profiles) if prof in sig]
            part = losses.sum() if len(rows) == n else losses[torch.tensor(rows)].sum()
            if on_pass is not None:
                on_pass(names)
            grads = torch.autograd.grad(
                part / n,
                [self.params[m] for m in names],
                retain_graph=i < len(plan) - 1,
                allow_unused=True,
            )
            for m, g in zip(names, grads, strict=True):
                if g is not None:
                    self.params[m].grad = g
                    touched.add(m)
        return touched


def masked_reference_grads(
    loss_fn_rows: torch.Tensor,
    params: Mapping[str, nn.Parameter],
    allowed: Mapping[str, frozenset[str]],
    profiles: Sequence[str],
) -> dict[str, torch.Tensor]:
    """Naive oracle for tests: per-example gradients, masked by profile, summed (divided by B)."""
    n = len(profiles)
    out = {name: torch.zeros_like(p) for name, p in params.items()}
    names = list(params)
    for j in range(n):
        grads = torch.autograd.grad(
            loss_fn_rows[j] / n, [params[m] for m in names], retain_graph=True, allow_unused=True
        )
        for m, g in zip(names, grads, strict=True):
            if g is not None and m in allowed[profiles[j]]:
                out[m] += g
    return out
