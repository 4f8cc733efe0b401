"""The trainer configuration: one frozen dataclass, loaded from TOML, digested into record 0.

Paths in the TOML are relative to the TOML file. The digest covers `to_dict()`
(RFC 8785 JSON), so comments and key order in the file do not change it. Every key is
documented in `DOCS` below; docs/config.md is generated from the dataclasses and `DOCS`
by scripts/gen-config-docs (a test keeps the two equal).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from attest.canonical import canonical_json
from attest.digest import sha256_hex
from attest.errors import FormatError, UsageError
from attest.schedule import SCHEDULES


@dataclass(frozen=True)
class ModelConfig:
    """The built-in byte-level causal transformer (trainer.model.TinyLM)."""

    vocab: int = 256  # bytes
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    seq_len: int = 64  # tokens per example (longer texts are cut, shorter padded)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise FormatError(f"model.{f.name}: expected a positive integer, got {v!r}")
        if self.d_model % self.n_heads:
            raise FormatError(
                f"model.d_model: expected a multiple of n_heads={self.n_heads}, got {self.d_model}"
            )


@dataclass(frozen=True)
class KindConfig:
    """The ``[model]`` table of a registered kind other than tinylm (trainer/registry.py).

    ``options`` are passed to the kind's ``spec_for`` as they are; the kind validates them.
    """

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise FormatError(f"model.kind: expected a model kind, got {self.kind!r}")
        if not isinstance(self.options, Mapping):
            raise FormatError("model: expected a table")
        canonical_json(dict(self.options))  # FormatError unless plain data


def model_kind(model: ModelConfig | KindConfig) -> str:
    return model.kind if isinstance(model, KindConfig) else "tinylm"


def model_options(model: ModelConfig | KindConfig) -> dict[str, Any]:
    """The ``[model]`` table without ``kind``: what the kind's ``spec_for`` takes."""
    return dict(model.options) if isinstance(model, KindConfig) else asdict(model)


DEVICES = ("cpu", "cuda")
PARALLEL = ("ddp", "fsdp")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str  # JSONL path
    policy: str  # TOML path
    base: str = (
        ""  # safetensors of the base weights; "" = the built-in model initialized from `seed`
    )
    model: ModelConfig | KindConfig = field(default_factory=ModelConfig)
    steps: int = 100
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    seed: int = 0  # model init, data order, canary secrets' sampling of candidates
    threads: int = 1  # torch intra-op threads (fixed for reproducibility)
    deterministic: bool = True  # strict mode: CPU + torch.use_deterministic_algorithms(True)
    checkpoint_every: int = 50  # steps; 0 = only the final weights
    # Tolerant mode: the least replay tolerance (max abs diff) to record; the trainer records
    # the larger of this and its own calibration (trainer.loop.calibrate_tolerance).
    tolerance: float = 0.0
    device: str = "cpu"  # "cpu" or "cuda" (strict, bitwise replay: cpu only)
    dtype: str = "float32"  # parameter dtype: float32, bfloat16 or float16 (where supported)
    grad_norms: bool = True  # per-example routed gradient norms (trainer.gradnorm)
    grad_accum: int = 1  # micro-batches per optimizer step (the batch is split, grads summed)
    schedule: str = "constant"  # learning rate after warmup: constant, linear or cosine decay
    warmup_steps: int = 0  # steps of linear warmup from lr/warmup_steps to lr (attest.schedule)
    eval_examples: int = 0  # held-out eval split (admitted, never trained); its mean loss recorded
    # Distributed runs (torchrun / --nproc-per-node; trainer/dist.py); ignored by one process.
    parallel: str = "ddp"  # "ddp" (data parallel) or "fsdp" (sharded, trainer/fsdp.py)
    dist_timeout: int = 300  # seconds a collective may wait for a dead or hung rank
    state_check_every: int = 10  # steps between cross-rank state-root checks (0: at the end)
    # Folder that relative paths resolve against; not digested (no local paths in public files).
    base_dir: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise FormatError(f"config.{name}: expected a positive integer, got {v!r}")
        for name in ("seed", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise FormatError(f"config.{name}: expected a non-negative integer, got {v!r}")
        for name in ("lr", "weight_decay", "tolerance"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise FormatError(f"config.{name}: expected a non-negative number, got {v!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise FormatError(f"config.betas: expected two numbers in [0, 1), got {self.betas!r}")
        if self.device not in DEVICES:
            raise FormatError(f"config.device: expected one of {DEVICES}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise FormatError(f"config.dtype: expected one of {DTYPES}, got {self.dtype!r}")
        for name in ("grad_accum",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= self.batch_size:
                raise FormatError(
                    f"config.{name}: expected an integer in [1, batch_size={self.batch_size}], "
                    f"got {v!r}"
                )
        for name in ("warmup_steps", "eval_examples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise FormatError(f"config.{name}: expected a non-negative integer, got {v!r}")
        if self.parallel not in PARALLEL:
            raise FormatError(f"config.parallel: expected one of {PARALLEL}, got {self.parallel!r}")
        v = self.dist_timeout
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise FormatError(f"config.dist_timeout: expected a positive integer, got {v!r}")
        v = self.state_check_every
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise FormatError(
                f"config.state_check_every: expected a non-negative integer, got {v!r}"
            )
        if self.schedule not in SCHEDULES:
            raise FormatError(
                f"config.schedule: expected one of {SCHEDULES}, got {self.schedule!r}"
            )
        if not isinstance(self.grad_norms, bool):
            raise FormatError(f"config.grad_norms: expected true or false, got {self.grad_norms!r}")

    @property
    def mode(self) -> str:
        return "strict" if self.deterministic else "tolerant"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["base_dir"]
        d["model"] = {"kind": model_kind(self.model), **model_options(self.model)}
        d["betas"] = list(self.betas)
        d["lr"], d["weight_decay"], d["tolerance"] = (
            float(self.lr),
            float(self.weight_decay),
            float(self.tolerance),
        )
        return d

    def path(self, name: str) -> Path:
        """The file named by field ``name`` ("dataset", "policy", "base"), resolved."""
        return Path(self.base_dir or ".") / getattr(self, name)

    def digest(self) -> str:
        """Hex SHA-256 of the RFC 8785 JSON of `to_dict()` (StartRecord.configDigest)."""
        return sha256_hex(canonical_json(self.to_dict()))

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, base_dir: Path | None = None) -> TrainConfig:
        """Raises FormatError on unknown keys or bad values. Paths stay relative to base_dir."""
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise FormatError(f"config: unknown key(s) {', '.join(sorted(unknown))}")
        for name in ("dataset", "policy"):
            if not isinstance(d.get(name), str) or not d[name]:
                raise FormatError(f"config.{name}: expected a path string")
        d.pop("base_dir", None)
        if base_dir is not None:
            d["base_dir"] = str(Path(base_dir).resolve())
        m = d.pop("model", {})
        if not isinstance(m, dict):
            raise FormatError("config.model: expected a table")
        m = dict(m)
        kind = m.pop("kind", "tinylm")
        mk = {f.name for f in fields(ModelConfig)}
        if kind != "tinylm":
            model: ModelConfig | KindConfig = KindConfig(kind, m)
        elif set(m) - mk:
            raise FormatError(f"config.model: unknown key(s) {', '.join(sorted(set(m) - mk))}")
        else:
            model = ModelConfig(**m)
        if "betas" in d:
            if not isinstance(d["betas"], list | tuple) or len(d["betas"]) != 2:
                raise FormatError(f"config.betas: expected two numbers, got {d['betas']!r}")
            d["betas"] = tuple(float(b) for b in d["betas"])
        return cls(model=model, **d)

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Read a config TOML. Raises UsageError (unreadable) or FormatError (invalid,
        including a built-in model with neither ``base`` nor ``init = "random"``)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UsageError(f"{path}: cannot read config: {e.strerror or e}") from e
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise FormatError(f"{path.name}: expected UTF-8 TOML, got {e}") from e
        try:
            return cls.from_dict(_start_from(doc), base_dir=path.parent)
        except FormatError as e:
            raise FormatError(f"{path.name}: {e}") from e
        except TypeError as e:
            raise FormatError(f"{path.name}: {e}") from e


INIT_RANDOM = "random"


def _start_from(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without its load-time ``init`` key, once the starting point is explicit.

    A config file that names no ``base`` used to train the built-in model from a random
    start without a word (issue 14); now it must say ``init = "random"``. Other kinds name
    their base in ``[model] base_from``. Raises FormatError."""
    doc = dict(doc)
    init = doc.pop("init", None)
    model = doc.get("model")
    kind = model.get("kind", "tinylm") if isinstance(model, dict) else "tinylm"
    if init is not None and init != INIT_RANDOM:
        raise FormatError(f'init: expected "{INIT_RANDOM}" (or no init key), got {init!r:.40}')
    if init is not None and (doc.get("base") or kind != "tinylm"):
        raise FormatError(
            'init = "random" trains the built-in model from a random start: '
            "expected no base and no [model] kind, found them"
        )
    if init is None and not doc.get("base") and kind == "tinylm":
        raise FormatError(
            "base: expected the base weights (a .safetensors path), or "
            'init = "random" to train the built-in model from a random start, found neither'
        )
    return doc


@dataclass(frozen=True)
class Doc:
    """One config key's documentation: its unit (or "" for none) and what it does."""

    unit: str
    text: str


# The documentation of every key (docs/config.md is generated from it and the dataclasses;
# tests/trainer/test_commands_ux.py checks that every field has an entry and no more).
DOCS: dict[str, Doc] = {
    "dataset": Doc(
        "path",
        "the training data: JSON Lines, one example object a line (`text`, `license`, "
        "`source`, `data_class`, `consent`; optional `label`, or `prompt`/`response`: "
        'spec/README.md "Dataset file")',
    ),
    "policy": Doc("path", "the governance policy (TOML, spec/policy.md)"),
    "base": Doc(
        "path",
        "the base weights (.safetensors) of the built-in model; required unless "
        '`init = "random"`. Hugging Face kinds: a transformers model folder, or name it in '
        "`[model] base_from`",
    ),
    "init": Doc(
        "",
        'load-time only, not recorded: `"random"` trains the built-in model from a '
        "random start drawn from `seed` (and then `base` must be absent)",
    ),
    "model": Doc("table", "the model: the built-in TinyLM's sizes, or `kind` and its options"),
    "steps": Doc("optimizer steps", "how many optimizer steps to take (`--steps` overrides)"),
    "batch_size": Doc("examples", "examples per optimizer step"),
    "lr": Doc("per step", "AdamW learning rate (peak, after warmup)"),
    "weight_decay": Doc("", "AdamW decoupled weight decay"),
    "betas": Doc("", "AdamW (beta1, beta2), each in [0, 1)"),
    "seed": Doc("", "model init, data order, held-out split and canary sampling"),
    "threads": Doc("threads", "torch intra-op threads (fixed, for reproducibility)"),
    "deterministic": Doc(
        "", "strict mode: CPU and torch.use_deterministic_algorithms(True), bitwise replay"
    ),
    "checkpoint_every": Doc(
        "steps",
        "weights + optimizer checkpoint interval (resume and replay start there); "
        "0 = only the final weights",
    ),
    "tolerance": Doc(
        "max abs difference",
        "tolerant mode: the least replay tolerance to record (the trainer records the "
        "larger of this and its own calibration)",
    ),
    "device": Doc("", "`cpu` or `cuda` (strict, bitwise replay: cpu only)"),
    "dtype": Doc("", "parameter dtype: `float32`, `bfloat16` or `float16`"),
    "grad_norms": Doc("", "record per-example routed gradient norms"),
    "grad_accum": Doc("micro-batches", "micro-batches per optimizer step (grads summed)"),
    "schedule": Doc("", "learning rate after warmup: `constant`, `linear` or `cosine` decay"),
    "warmup_steps": Doc("steps", "linear warmup from lr/warmup_steps to lr"),
    "eval_examples": Doc(
        "examples", "held-out evaluation split (admitted, never trained); its mean loss recorded"
    ),
    "parallel": Doc(
        "",
        "distributed runs: `ddp` (data parallel, every rank holds the whole model) or `fsdp` "
        "(sharded, FSDP2); a single process ignores it",
    ),
    "dist_timeout": Doc(
        "seconds",
        "distributed runs: how long a collective waits for a dead or hung rank before the "
        "whole run stops with a one-line error",
    ),
    "state_check_every": Doc(
        "steps",
        "distributed runs: every K steps (and at the end) all ranks compare their state root "
        "with rank 0's; 0 = only at the end",
    ),
    "base_dir": Doc("path", "not a TOML key: the config file's folder, set when it is loaded"),
    "model.vocab": Doc("tokens", "vocabulary size (256: one token per byte)"),
    "model.d_model": Doc("", "width of the residual stream; a multiple of n_heads"),
    "model.n_layers": Doc("blocks", "transformer blocks (`blocks.0.*` … in parameter names)"),
    "model.n_heads": Doc("heads", "attention heads per block"),
    "model.seq_len": Doc("tokens", "tokens per example (longer texts are cut, shorter padded)"),
}
