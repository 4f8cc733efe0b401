"""The model spec: what was trained, as data the verifier reads without torch (records.md §4).

A `ModelSpec` names the model kind (the trainer's registry key, trainer/registry.py),
its configuration as plain data (digested: `config_digest`), the base model's identity
(name, revision, file digests, state root), the tokenizer's identity (file digests) and
the trainable parameter names. The trainer records it in the start record's ``model``
field, which the training statement signs through the step-log digests; replay rebuilds
the model from it through the registry, never by assuming a kind.

``to_dict`` / ``from_dict`` round-trip (from_dict copies, pops the known keys, keeps the
rest as ``unrecognized``); constructors validate. Raises FormatError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .canonical import canonical_json
from .digest import check_hex32, sha256_hex
from .errors import FormatError

KINDS = ("tinylm", "hf-causal-lm", "hf-sequence-classification", "peft-lora")
_KIND = re.compile(r"[a-z][a-z0-9-]{0,63}")  # registry keys: other kinds may be registered
MAX_NAMES = 1_000_000  # trainable names: far above any model this trainer handles
MAX_FILES = 10_000  # digested files per base or tokenizer folder


def _str(v: object, where: str, *, empty: bool = False) -> str:
    if not isinstance(v, str) or (not v and not empty):
        raise FormatError(
            f"{where}: expected a{'' if empty else ' non-empty'} string, got {v!r:.60}"
        )
    return v


def _relpath(name: object, where: str) -> str:
    s = _str(name, where)
    parts = s.split("/")
    if s.startswith("/") or "\\" in s or any(p in ("", ".", "..") for p in parts):
        raise FormatError(f"{where}: expected a relative POSIX path without '..', got {s!r:.80}")
    return s


def _files(v: object, where: str) -> dict[str, str]:
    if not isinstance(v, Mapping):
        raise FormatError(f"{where}: expected a map of relative path -> sha256 hex")
    if len(v) > MAX_FILES:
        raise FormatError(f"{where}: expected at most {MAX_FILES} files, got {len(v)}")
    return {
        _relpath(k, f"{where} key"): check_hex32(h, f"{where}[{k!r:.60}]")
        for k, h in sorted(v.items())
    }


@dataclass(frozen=True)
class BaseIdentity:
    """The pretrained model a run starts from (an in-toto resolved dependency)."""

    name: str  # e.g. "sentence-transformers/all-MiniLM-L6-v2" or "govtune:tinylm-init(seed=0)"
    state_root: str  # hex: Merkle root over the base tensors' leaves (= start baseStateRoot)
    revision: str | None = None  # e.g. a hub commit, where known
    files: Mapping[str, str] = field(default_factory=dict)  # relpath -> sha256 hex
    unrecognized: Mapping[str, Any] = field(default_factory=dict)
    # hex: root over the base folder's *.safetensors tensors as stored, where the start
    # state is derived from them and differs (HF kinds: a seeded head, LoRA adapters;
    # records.md §4.1); what `verify --base FOLDER` recomputes. None: equal to state_root.
    weights_state_root: str | None = None

    def __post_init__(self) -> None:
        _str(self.name, "model.base.name")
        check_hex32(self.state_root, "model.base.stateRoot")
        if self.weights_state_root is not None:
            check_hex32(self.weights_state_root, "model.base.weightsStateRoot")
        if self.revision is not None:
            _str(self.revision, "model.base.revision")
        object.__setattr__(self, "files", _files(self.files, "model.base.files"))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {**self.unrecognized, "name": self.name, "stateRoot": self.state_root,
                             "files": dict(self.files)}  # fmt: skip
        if self.revision is not None:
            d["revision"] = self.revision
        if self.weights_state_root is not None:
            d["weightsStateRoot"] = self.weights_state_root
        return d

    @classmethod
    def from_dict(cls, d: object) -> BaseIdentity:
        if not isinstance(d, Mapping):
            raise FormatError("model.base: expected a map")
        d = dict(d)
        try:
            name, root = d.pop("name"), d.pop("stateRoot")
        except KeyError as e:
            raise FormatError(f"model.base: missing {e.args[0]}") from e
        revision, files, weights = (
            d.pop("revision", None),
            d.pop("files", {}),
            d.pop("weightsStateRoot", None),
        )
        return cls(name, root, revision, files, d, weights)


@dataclass(frozen=True)
class TokenizerIdentity:
    """The tokenizer's files, by digest (a byte-level model has none: no TokenizerIdentity)."""

    files: Mapping[str, str]  # relpath -> sha256 hex
    name: str | None = None
    unrecognized: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", _files(self.files, "model.tokenizer.files"))
        if not self.files:
            raise FormatError("model.tokenizer.files: expected at least one file, got none")
        if self.name is not None:
            _str(self.name, "model.tokenizer.name")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {**self.unrecognized, "files": dict(self.files)}
        if self.name is not None:
            d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: object) -> TokenizerIdentity:
        if not isinstance(d, Mapping):
            raise FormatError("model.tokenizer: expected a map")
        d = dict(d)
        return cls(d.pop("files", {}), d.pop("name", None), d)


@dataclass(frozen=True)
class ModelSpec:
    """What was trained: kind, config (as data), base and tokenizer identity, trainable names."""

    kind: str
    config: Mapping[str, Any]  # JSON data (RFC 8785-encodable): the model's own config
    base: BaseIdentity | None = None
    tokenizer: TokenizerIdentity | None = None
    trainable: tuple[str, ...] = ()  # sorted, distinct
    unrecognized: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not _KIND.fullmatch(self.kind):
            raise FormatError(
                f"model.kind: expected a registry key (e.g. {', '.join(KINDS)}), "
                f"got {self.kind!r:.60}"
            )
        if not isinstance(self.config, Mapping):
            raise FormatError(f"model.config: expected a map, got {type(self.config).__name__}")
        try:
            canonical_json(dict(self.config))  # FormatError unless plain, finite JSON data
        except FormatError as e:
            raise FormatError(f"model.config: {e}") from e
        names = tuple(self.trainable)
        if len(names) > MAX_NAMES:
            raise FormatError(f"model.trainable: expected at most {MAX_NAMES} names")
        for i, n in enumerate(names):
            _str(n, f"model.trainable[{i}]")
        if list(names) != sorted(set(names)):
            raise FormatError("model.trainable: expected sorted, distinct parameter names")
        object.__setattr__(self, "trainable", names)
        for name, typ in (("base", BaseIdentity), ("tokenizer", TokenizerIdentity)):
            v = getattr(self, name)
            if v is not None and not isinstance(v, typ):
                raise FormatError(f"model.{name}: expected a {typ.__name__} or none")

    @property
    def config_digest(self) -> str:
        """Hex SHA-256 of the RFC 8785 JSON of ``config``."""
        return sha256_hex(canonical_json(dict(self.config)))

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.unrecognized,
            "kind": self.kind,
            "config": dict(self.config),
            "configDigest": self.config_digest,
            "base": self.base.to_dict() if self.base is not None else None,
            "tokenizer": self.tokenizer.to_dict() if self.tokenizer is not None else None,
            "trainable": list(self.trainable),
        }

    @classmethod
    def from_dict(cls, d: object) -> ModelSpec:
        """Parse the start record's ``model`` map. Raises FormatError (also: digest mismatch)."""
        if not isinstance(d, Mapping):
            raise FormatError(f"model: expected a map, got {type(d).__name__}")
        d = dict(d)
        try:
            kind, config = d.pop("kind"), d.pop("config")
        except KeyError as e:
            raise FormatError(f"model: missing {e.args[0]}") from e
        digest = d.pop("configDigest", None)
        base, tok = d.pop("base", None), d.pop("tokenizer", None)
        trainable = d.pop("trainable", [])
        if not isinstance(trainable, list | tuple):
            raise FormatError("model.trainable: expected a list of parameter names")
        spec = cls(
            kind,
            config,
            BaseIdentity.from_dict(base) if base is not None else None,
            TokenizerIdentity.from_dict(tok) if tok is not None else None,
            tuple(trainable),
            d,
        )
        if digest != spec.config_digest:
            raise FormatError(
                f"model.configDigest: expected {spec.config_digest} (SHA-256 of the canonical "
                f"config), got {digest!r:.80}"
            )
        return spec


__all__ = ["KINDS", "BaseIdentity", "ModelSpec", "TokenizerIdentity"]
