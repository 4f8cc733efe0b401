"""The model registry: one entry per model kind, used by training and by the replay audit.

A kind (``tinylm``, ``hf-causal-lm``, ``hf-sequence-classification``, ``peft-lora``…) is
registered with two callables:

- ``spec_for(options, base, *, seed) -> ModelSpec``: at the start of a run, the
  torch-free description of what will be trained (kind, config as data, base and
  tokenizer identity, trainable names), recorded in the start record;
- ``build(spec, base, *, device, dtype) -> Built``: the model, its tokenizer, its
  batch encoder, its per-example loss, its trainable parameters and its writer.

Replay rebuilds whatever kind the start record names through `build`, so adding a
kind is registering it here; nothing else in the trainer or the verifier names one.
Like torchtune's recipes, the builder is a small named step around the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from attest.errors import UsageError
from attest.modelspec import ModelSpec


@dataclass(frozen=True)
class Item:
    """One training example as the model sees it: the text as trained on, and task fields."""

    text: str
    fields: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"label": 3}


@dataclass(frozen=True)
class Built:
    """A model built from a `ModelSpec`, with everything a step needs."""

    model: nn.Module
    encode: Callable[[Sequence[Item]], Any]  # items -> the batch `per_example_loss` takes
    per_example_loss: Callable[[nn.Module, Any], torch.Tensor]  # -> [B], nats, per-example mean
    trainable: Mapping[str, nn.Parameter]  # names as in model.named_parameters()
    save: Callable[[Path], tuple[str, ...]]  # write release files; -> weight file names
    state: Callable[[], dict[str, torch.Tensor]]  # the tensors the state root covers
    spec: ModelSpec
    tokenizer: Any = None


class Kind(Protocol):
    def spec_for(
        self, options: Mapping[str, Any], base: Path | None, *, seed: int
    ) -> ModelSpec: ...

    def build(self, spec: ModelSpec, base: Path | None, *, device: str, dtype: str) -> Built: ...


_KINDS: dict[str, Kind] = {}
# Kinds registered by modules imported on first use, so `import trainer.registry` stays
# light (transformers and peft are imported only when their kind is asked for).
_LAZY: dict[str, str] = {
    "tinylm": "trainer.model",
    "hf-causal-lm": "trainer.hf",
    "hf-sequence-classification": "trainer.hf",
    "peft-lora": "trainer.lora",
}


def register(kind: str) -> Callable[[Any], Any]:
    """Class or object decorator: register ``spec_for`` and ``build`` under ``kind``.

    Raises UsageError if ``kind`` is already registered by another object.
    """

    def deco(obj: Any) -> Any:
        impl = obj() if isinstance(obj, type) else obj
        if not callable(getattr(impl, "build", None)) or not callable(
            getattr(impl, "spec_for", None)
        ):
            raise UsageError(f"register({kind!r}): expected build() and spec_for(), found neither")
        old = _KINDS.get(kind)
        if old is not None and type(old) is not type(impl):
            raise UsageError(f"register({kind!r}): already registered by {type(old).__name__}")
        _KINDS[kind] = impl
        return obj

    return deco


def lookup(kind: str) -> Kind:
    """The registered kind. Raises UsageError naming the known kinds."""
    if kind not in _KINDS and kind in _LAZY:
        import importlib

        try:
            importlib.import_module(_LAZY[kind])
        except ImportError as e:
            raise UsageError(f"model kind {kind!r}: cannot import {_LAZY[kind]}: {e}") from e
    try:
        return _KINDS[kind]
    except KeyError:
        known = sorted(set(_KINDS) | set(_LAZY))
        raise UsageError(
            f"model kind: expected one of {', '.join(known)}, got {kind!r:.60}"
        ) from None


def kinds() -> tuple[str, ...]:
    return tuple(sorted(set(_KINDS) | set(_LAZY)))


def spec_for(kind: str, options: Mapping[str, Any], base: Path | None, *, seed: int) -> ModelSpec:
    """The model spec a run of ``kind`` records. Raises UsageError / FormatError."""
    spec = lookup(kind).spec_for(options, base, seed=seed)
    if spec.kind != kind:
        raise UsageError(f"model kind {kind!r}: its spec_for returned kind {spec.kind!r}")
    return spec


def build(
    spec: ModelSpec, base: Path | None, *, device: str = "cpu", dtype: str = "float32"
) -> Built:
    """Build the model ``spec`` describes. Raises UsageError (unknown kind, base unusable)."""
    built = lookup(spec.kind).build(spec, base, device=device, dtype=dtype)
    if spec.trainable and tuple(sorted(built.trainable)) != spec.trainable:
        diff = sorted(set(built.trainable) ^ set(spec.trainable))
        raise UsageError(
            f"model {spec.kind}: expected the spec's trainable parameters, the built model "
            f"differs in {diff[:3]}"
        )
    return built


def texts_loss(built: Built) -> Callable[[nn.Module, Sequence[str]], torch.Tensor]:
    """``loss_fn(model, texts) -> [B]`` over a built model (the memorization probes take texts)."""

    def loss_fn(model: nn.Module, texts: Sequence[str]) -> torch.Tensor:
        return built.per_example_loss(model, built.encode([Item(t) for t in texts]))

    return loss_fn


__all__ = [
    "Built",
    "Item",
    "Kind",
    "build",
    "kinds",
    "lookup",
    "register",
    "spec_for",
    "texts_loss",
]
