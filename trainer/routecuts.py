"""Stop-gradient cuts for Hugging Face layer stacks: the router's fast path (trainer.routing).

`add_route_cuts` gives a transformers (or peft) model the ``route_cuts()`` /
``route_masks`` pair that trainer.model.TinyLM has natively, by forward pre-hooks on the
layers of its layer stack.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from attest.layers import layer_index


def add_route_cuts(model: nn.Module, trainable: Mapping[str, nn.Parameter]) -> bool:
    """Give ``model`` the stop-gradient cuts of trainer.routing's fast path; -> whether it could.

    Boundary k is the input of layer k of the model's layer stack (the nn.ModuleList whose
    element i owns every trainable parameter of layer index i, attest.layers). A profile
    that is exactly "everything at or after boundary k" (e.g. the last two layers and the
    head) is then routed by ``torch.where(mask, h, h.detach())`` on the hidden states
    entering layer k (Cloud et al. 2024): one backward instead of one per signature, and
    forward values bit-identical. Not installed (the router falls back to its exact
    signature passes) when no such stack exists or a trainable tensor is used by two
    modules (tied embeddings: a masked row would reach the embedding through the head).
    """
    by_id = {id(p): n for n, p in trainable.items()}
    owners: dict[int, int] = {}
    for _, mod in model.named_modules(remove_duplicate=False):
        for _, p in mod.named_parameters(recurse=False):
            if id(p) in by_id:
                owners[id(p)] = owners.get(id(p), 0) + 1
    if any(c > 1 for c in owners.values()):
        return False
    indexed = {n: layer_index(n) for n in trainable}
    count = 1 + max((i for i in indexed.values() if i is not None), default=-1)
    if count < 2:
        return False
    stack = None
    for _, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == count:
            owned = [{id(p) for p in layer.parameters()} for layer in mod]
            if all(i is None or id(trainable[n]) in owned[i] for n, i in indexed.items()):
                stack = mod
                break
    if stack is None:
        return False
    order = [id(p) for _, p in model.named_parameters()]
    first = min(order.index(id(trainable[n])) for n, i in indexed.items() if i is not None)

    def depth(name: str) -> int:  # forward position: -1 before the stack, count after it
        i = indexed[name]
        if i is not None:
            return i
        return -1 if order.index(id(trainable[name])) < first else count

    cuts = {k: frozenset(n for n in trainable if depth(n) >= k) for k in range(count)}
    routed: Any = model
    routed.route_masks = None
    routed.route_cuts = lambda: cuts

    def pre_hook(k: int) -> Callable[..., Any]:
        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            masks = routed.route_masks
            m = masks.get(k) if masks else None
            if m is None:
                return None
            if args:
                x = args[0]
                x = torch.where(m.to(x.device).view(-1, *([1] * (x.dim() - 1))), x, x.detach())
                return (x, *args[1:]), kwargs
            x = kwargs["hidden_states"]
            x = torch.where(m.to(x.device).view(-1, *([1] * (x.dim() - 1))), x, x.detach())
            return args, {**kwargs, "hidden_states": x}

        return hook

    for k, layer in enumerate(stack):
        layer.register_forward_pre_hook(pre_hook(k), with_kwargs=True)
    return True


__all__ = ["add_route_cuts"]
