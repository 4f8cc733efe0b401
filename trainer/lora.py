"""The ``peft-lora`` kind: LoRA adapters on a Hugging Face base, via peft (issue 11 §3).

    [model]
    kind = "peft-lora"
    task = "causal-lm"            # or "sequence-classification" (then `labels` too)
    seq_len = 64
    r = 8
    alpha = 16
    target_modules = ["q_proj", "v_proj"]
    merged = false                # also write the merged model beside the run, OUT.merged/

The adapters are the trained parameters; the base stays frozen and is a resolved
dependency (spec/records.md §4: its file digests and the state root over its safetensors
tensors, which ``verify --base FOLDER`` recomputes). The chain covers the adapters only:
the state root of every step is over the tensors peft's own ``adapter_model.safetensors``
holds, under the names it writes them with (``…lora_A.weight``, no adapter name), so the
released adapter folder is exactly what the final state root binds and
``PeftModel.from_pretrained(base, run_folder)`` loads it. Trainable names (and so the
policy's profiles) are those saved names too, so a profile like ``*.layers.2[0-9].*``
routes examples to the adapters of chosen layers. A sequence classifier's new head is
trained in full (peft ``modules_to_save``) and saved beside the adapters.

LoRA dropout is 0 and the adapters' initial values come from the recorded seed (peft's
default init: A Kaiming-uniform, B zero), so `build` is a pure function of the spec and
the base folder, and replay reproduces the initial state bitwise.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attest.errors import FormatError, UsageError
from attest.modelspec import ModelSpec

from . import hf
from .registry import Built, register
from .routecuts import add_route_cuts

TASKS = {"causal-lm": "CAUSAL_LM", "sequence-classification": "SEQ_CLS"}
# The merged model, when [model].merged is true: written BESIDE the run folder (OUT.merged/),
# never inside it: its weights are base + adapters, which no signed state root covers, and a
# run folder holds only bound weights (attest/layout.py; a loader could pick them up).
MERGED_SUFFIX = ".merged"


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    known = {"task", "seq_len", "labels", "r", "alpha", "target_modules", "merged", "name",
             "base_from"}  # fmt: skip
    extra = set(options) - known
    if extra:
        raise FormatError(f"model (peft-lora): unknown key(s) {', '.join(sorted(extra))}")
    task = options.get("task", "causal-lm")
    if task not in TASKS:
        raise FormatError(f"model.task: expected one of {', '.join(TASKS)}, got {task!r:.40}")
    out: dict[str, Any] = {
        "task": task,
        "seq_len": hf._int(options.get("seq_len", 64), "model.seq_len", 2, hf.MAX_SEQ_LEN),
        "r": hf._int(options.get("r", 8), "model.r", 1, 4096),
        "alpha": hf._int(options.get("alpha", 16), "model.alpha", 1, 1 << 16),
        "target_modules": hf._strs(
            options.get("target_modules", ["q_proj", "v_proj"]), "model.target_modules"
        ),
        "merged": options.get("merged", False),
    }
    if "base_from" in options:
        out["base_from"] = options["base_from"]
    if not isinstance(out["merged"], bool):
        raise FormatError(f"model.merged: expected true or false, got {out['merged']!r:.40}")
    if task == "sequence-classification":
        labels = hf._strs(options.get("labels"), "model.labels")
        if len(set(labels)) != len(labels) or len(labels) < 2:
            raise FormatError(f"model.labels: expected at least two distinct labels, got {labels}")
        out["labels"] = labels
    elif "labels" in options:
        raise FormatError("model.labels: only for task = 'sequence-classification'")
    return out


def adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What peft writes to adapter_model.safetensors, under its saved names (the chain's state)."""
    from peft import get_peft_model_state_dict

    return dict(get_peft_model_state_dict(model))


def merged_folder(out: Path) -> Path:
    """Where ``merged = true`` writes the merged model: ``OUT.merged`` beside the run folder."""
    return out.parent / (out.name + MERGED_SUFFIX)


def saved_names(model: nn.Module) -> dict[str, nn.Parameter]:
    """{saved name: parameter} for every trainable parameter. Raises UsageError when one is
    not saved (it would change without the state root binding it)."""
    by_ptr = {t.data_ptr(): n for n, t in adapter_tensors(model).items()}
    out: dict[str, nn.Parameter] = {}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        name = by_ptr.get(p.data_ptr())
        if name is None:
            raise UsageError(f"peft-lora: trainable parameter {n!r} is not in the saved adapter")
        out[name] = p
    return out


@register("peft-lora")
class LoraKind:
    """peft LoRA on an hf-causal-lm or hf-sequence-classification base."""

    kind = "peft-lora"

    def _base_kind(self, task: str) -> hf._HFKind:
        return hf.CausalLMKind() if task == "causal-lm" else hf.SequenceClassificationKind()

    def spec_for(self, options: Mapping[str, Any], base: Path | None, *, seed: int) -> ModelSpec:
        import json

        opts = _options(options)
        folder = hf.base_folder(base, self.kind, opts.get("base_from"))
        name = options.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise FormatError(f"model.name: expected a non-empty string, got {name!r:.40}")
        try:
            hf_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"{folder / 'config.json'}: cannot read: {e}") from e
        ident = hf.base_identity(folder, name or folder.name)
        config = {**opts, "init_seed": seed, "dropout": 0.0, "coverage": "adapters",
                  "hf_config": hf_config}  # fmt: skip
        built = self.build(ModelSpec(self.kind, config, ident), folder, device="cpu",
                           dtype="float32")  # fmt: skip
        return ModelSpec(
            self.kind, config, hf.with_start(ident, built),
            hf.tokenizer_identity(folder, ident.files), tuple(sorted(built.trainable)),
        )  # fmt: skip

    def build(self, spec: ModelSpec, base: Path | None, *, device: str, dtype: str) -> Built:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoTokenizer

        folder = hf.base_folder(base, self.kind, spec.config.get("base_from"))
        dev, dt = hf.device_dtype(device, dtype)
        if spec.trainable:
            hf.check_base_files(spec, folder)
        cfg = spec.config
        task = str(cfg["task"])
        inner = self._base_kind(task)
        base_spec = ModelSpec(inner.kind, {**cfg, "trainable": ["*"]}, spec.base)
        model = inner.load(base_spec, folder, dt)
        hf.no_dropout(model)
        lora = LoraConfig(
            task_type=TASKS[task], r=int(cfg["r"]), lora_alpha=int(cfg["alpha"]),
            target_modules=list(cfg["target_modules"]), lora_dropout=0.0,
        )  # fmt: skip
        torch.manual_seed(int(cfg["init_seed"]))  # adapter init (and a classifier head's)
        try:
            with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
                warnings.filterwarnings("ignore", category=FutureWarning)
                peft_model = get_peft_model(model, lora)
        except ValueError as e:  # peft: target modules not found in the base model
            raise UsageError(f"peft-lora: {e}") from e
        peft_model.to(dev)
        peft_model.train()
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        seq_len = int(cfg["seq_len"])
        if task == "causal-lm":
            encode = hf.causal_encoder(tokenizer, seq_len, dev)
            loss: Callable[[nn.Module, Any], torch.Tensor] = hf.causal_loss
        else:
            encode = hf.classifier_encoder(tokenizer, seq_len, cfg["labels"], dev)
            loss = hf.classifier_loss

        def state() -> dict[str, torch.Tensor]:
            return adapter_tensors(peft_model)

        def save(out: Path) -> tuple[str, ...]:
            files = hf.save_folder(peft_model, tokenizer, state, out)
            if cfg.get("merged"):
                merged = copy.deepcopy(peft_model).merge_and_unload()
                dest = merged_folder(Path(out))
                merged.save_pretrained(str(dest), safe_serialization=True)
                tokenizer.save_pretrained(str(dest))
            return files

        trainable = saved_names(peft_model)
        add_route_cuts(peft_model, trainable)  # the router's one-backward fast path
        return Built(
            model=peft_model,
            encode=encode,
            per_example_loss=loss,
            trainable=trainable,
            save=save,
            state=state,
            spec=spec,
            tokenizer=tokenizer,
        )


__all__ = ["MERGED_SUFFIX", "LoraKind", "adapter_tensors", "merged_folder", "saved_names"]
