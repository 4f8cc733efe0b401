"""The built-in model: a tiny byte-level causal transformer LM, and its per-example loss.

Parameter names are chosen for depth profiles: ``tok_emb.weight``, ``pos_emb.weight``,
``blocks.{i}.{ln1,attn.qkv,attn.proj,ln2,mlp.fc,mlp.proj}.*``, ``ln_f.*``,
``lm_head.weight``. The embedding and the LM head are not tied: a tied weight would
belong to the deepest and the shallowest layer at once, and no surface-only profile
could leave the embedding alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attest.digest import sha256_file
from attest.errors import FormatError, UsageError
from attest.modelspec import BaseIdentity, ModelSpec
from attest.tensors import state_root

from . import leaves as lv
from .base_fit import first_mismatch
from .config import ModelConfig
from .registry import Built, register

PAD = -100  # target value ignored by the loss


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = MLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    """Byte-level causal LM: input token ids [B, T] -> logits [B, T, vocab].

    Gradient routing fast path (trainer.routing): boundary k is the input of block k
    (k = n_layers: the input of ``ln_f``). When ``route_masks[k]`` is set, rows whose mask
    is False pass the same values forward but no gradient backward across boundary k
    (the stop-gradient mask of Cloud et al. 2024, "Gradient Routing", via torch.where,
    so forward values are bit-identical).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.route_masks: dict[int, torch.Tensor] | None = None
        self.tok_emb = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        # Positions indexed per row ([B, T], same values as a broadcast [T]) so every
        # embedding call has one row per example: per-example gradient norms
        # (trainer.gradnorm) read each example's own gradient from it.
        pos = torch.arange(idx.shape[1], device=idx.device).expand(idx.shape[0], -1)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        for k, block in enumerate(self.blocks):
            x = block(self._cut(x, k))
        return self.lm_head(self.ln_f(self._cut(x, len(self.blocks))))

    def _cut(self, x: torch.Tensor, k: int) -> torch.Tensor:
        m = self.route_masks.get(k) if self.route_masks else None
        return x if m is None else torch.where(m.view(-1, 1, 1), x, x.detach())

    def route_cuts(self) -> dict[int, frozenset[str]]:
        """Boundary k -> names of the parameters at or after it (what a cut at k leaves)."""
        last = len(self.blocks)

        def depth(name: str) -> int:  # position in forward order; embeddings before block 0
            if name.startswith("blocks."):
                return int(name.split(".")[1])
            return last if name.startswith(("ln_f.", "lm_head.")) else -1

        names = [n for n, _ in self.named_parameters()]
        return {k: frozenset(n for n in names if depth(n) >= k) for k in range(last + 1)}


def encode(texts: Sequence[str], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """UTF-8 bytes, first ``seq_len + 1`` of each text: inputs and targets [B, T], T <= seq_len.

    Every visit of an example sees the same window, so its loss on re-visit is comparable
    (the loss-drop signal of spec/memorization).
    """
    data = [t.encode("utf-8")[: seq_len + 1] for t in texts]
    # Pad only to the longest text of the batch (cost: attention and MLP scale with T).
    width = max(2, max((len(b) for b in data), default=2))
    buf = torch.full((len(data), width), PAD, dtype=torch.long)
    for i, b in enumerate(data):
        if b:
            buf[i, : len(b)] = torch.tensor(list(b), dtype=torch.long)
    inputs = buf[:, :-1].clamp(min=0)  # padding positions read byte 0; their targets are ignored
    return inputs, buf[:, 1:]


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per-example mean next-byte cross entropy (nats), shape [B]: the trainer's loss_fn."""
    inputs, targets = batch
    logits = model(inputs)
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=PAD,
        reduction="none",
    ).view(targets.shape)
    counts = (targets != PAD).sum(dim=1).clamp(min=1)
    return nll.sum(dim=1) / counts


# --- the registry entry (trainer/registry.py) -------------------------------------------
WEIGHTS = "model.safetensors"


def _base_file(base: Path | None) -> Path | None:
    """The base weights: ``base`` itself (a .safetensors file) or ``base/model.safetensors``."""
    if base is None:
        return None
    return base / WEIGHTS if base.is_dir() else base


def _model_config(config: Mapping[str, Any]) -> ModelConfig:
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    extra = set(config) - known - {"initSeed"}
    if extra:
        raise FormatError(f"model (tinylm): unknown key(s) {', '.join(sorted(extra))}")
    return ModelConfig(**{k: v for k, v in config.items() if k in known})


@register("tinylm")
class TinyLMKind:
    """The built-in byte-level LM: from a base safetensors file or initialized from a seed."""

    def spec_for(self, options: Mapping[str, Any], base: Path | None, *, seed: int) -> ModelSpec:
        cfg = _model_config(options)
        config: dict[str, Any] = dataclasses.asdict(cfg)
        path = _base_file(base)
        if path is None:
            config["initSeed"] = seed  # the base is a pure function of the spec
        probe = ModelSpec("tinylm", config)
        built = self.build(probe, base, device="cpu", dtype="float32")
        root = state_root(lv.leaves(built.state())).hex()
        if path is None:
            ident = BaseIdentity(f"govtune:tinylm-init(seed={seed})", root)
        else:
            ident = BaseIdentity(path.name, root, files={WEIGHTS: sha256_file(path)})
        return ModelSpec("tinylm", config, ident, None, tuple(sorted(built.trainable)))

    def build(self, spec: ModelSpec, base: Path | None, *, device: str, dtype: str) -> Built:
        if device != "cpu" or dtype != "float32":
            raise UsageError(f"tinylm: expected device cpu and dtype float32, got {device}/{dtype}")
        cfg = _model_config(spec.config)
        path = _base_file(base)
        if path is None:
            # No base file: initialized from initSeed. A spec whose base is a file, built
            # without it (a replay without --base), gets seed 0: a skeleton whose values the
            # caller must replace (its state root does not match the recorded base).
            seed = spec.config.get("initSeed", 0)
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise UsageError(f"tinylm: config.initSeed: expected an integer, got {seed!r}")
            torch.manual_seed(seed)
        model = TinyLM(cfg)
        if path is not None:
            from safetensors.torch import load_file

            try:
                state = load_file(str(path))
            except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
                raise UsageError(f"{path}: cannot load base weights: {e}") from e
            if why := first_mismatch(model.state_dict(), state):  # one line, not torch's list
                raise UsageError(f"{path}: base weights do not fit the model: {why}")
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise UsageError(f"{path}: base weights do not fit model {cfg}: {e}") from e
        seq_len = cfg.seq_len

        def save(out: Path) -> tuple[str, ...]:
            from .checkpoint import save_weights

            save_weights(Path(out) / WEIGHTS, model.state_dict())
            return (WEIGHTS,)

        return Built(
            model=model,
            encode=lambda items: encode([it.text for it in items], seq_len),
            per_example_loss=lm_loss,
            trainable={n: p for n, p in model.named_parameters() if p.requires_grad},
            save=save,
            state=lambda: dict(model.state_dict()),
            spec=spec,
        )
