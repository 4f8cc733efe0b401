"""The folder layouts, owned once (spec/README.md "The run folder", "The release folder").

A run folder (what `govtune train` writes) and a release folder (what `govtune release`
builds) may hold only the entries named here; the trainer, the release builder and the
verifier all read these tables, so "what may be there" is one rule. Anything else a
verifier finds is an error, not something to ignore: a consumer's loader may pick up a
stray ``pytorch_model.bin`` or a second ``*.safetensors`` instead of the verified file.

`walk` lists every entry under a folder with ``os.scandir`` and ``lstat`` (never
``os.walk``, which silently skips symlinked folders and follows symlinked files), and
`problems` says which entries are not regular files or folders and which the layout
does not allow. Example::

    >>> from attest.layout import classify, RUN
    >>> classify("provenance/steps.msgpack", RUN).role
    'provenance'
    >>> classify("pytorch_model.bin", RUN) is None
    True
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import FormatError

RUN = "run"
RELEASE = "release"
KINDS = (RUN, RELEASE)

PROVENANCE_DIR = "provenance"
CHECKPOINTS_DIR = "checkpoints"
PRIVATE_DIR = "private"

BUNDLE_FILE = "bundle.intoto.jsonl"
POLICY_FILE = "policy.toml"
ADMISSIONS_FILE = "admissions.msgpack"
STEPS_FILE = "steps.msgpack"
# The public provenance: the bundle and the three sidecars it commits to by digest.
PROVENANCE_FILES = (BUNDLE_FILE, POLICY_FILE, ADMISSIONS_FILE, STEPS_FILE)

RUN_SECRET_FILE = "run-secret"
OPENINGS_FILE = "openings.jsonl"
CANARIES_FILE = "canaries.jsonl"
# Never public: the run secret and the auditor's openings (a run folder only).
PRIVATE_FILES = (RUN_SECRET_FILE, OPENINGS_FILE, CANARIES_FILE)

WEIGHTS_FILE = "model.safetensors"  # the trainer's one weight file
# checkpoints/step-NNNNNN.safetensors (at least six digits, the step after which it was written)
CHECKPOINT_PATTERN = re.compile(r"checkpoints/step-[0-9]{6,}\.safetensors")


def checkpoint_name(step: int) -> str:
    """The checkpoint file of ``step``, relative to the run folder."""
    return f"{CHECKPOINTS_DIR}/step-{step:06d}.safetensors"


# A release folder: what a model hub takes (DESIGN "Releases speak the ecosystem's formats").
MODEL_CARD_FILE = "README.md"
OMS_SIGNATURE_FILE = "model.sig"
BOM_FILE = "bom.cdx.json"
RELEASE_FILES = (MODEL_CARD_FILE, OMS_SIGNATURE_FILE, BOM_FILE)
# Hugging Face model files a release may carry beside the weights (covered by model.sig).
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "adapter_config.json",
    "model.safetensors.index.json",
)
# Ignored by OMS (model_signing's default ignore list) and by the verifier: a hub clone
# carries them and they are not part of the model.
OMS_IGNORED = (".gitattributes", ".git", ".github", ".gitignore", OMS_SIGNATURE_FILE)

# File name endings a model loader may take for weights: never allowed unless bound.
WEIGHT_LIKE = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".gguf",
    ".ggml",
    ".onnx",
    ".h5",
    ".keras",
    ".pkl",
    ".pickle",
    ".npz",
    ".npy",
    ".msgpack",
    ".tflite",
    ".mlmodel",
)


@dataclass(frozen=True)
class Role:
    """What an allowed entry is: ``role`` one of the ROLES, ``public`` False only for private/."""

    role: str
    public: bool = True


ROLES = ("folder", "provenance", "weights", "checkpoint", "private", "release", "model-file")


def weight_like(rel: str) -> bool:
    """Whether a loader could take ``rel`` for model weights (by its name's ending)."""
    return rel.lower().endswith(WEIGHT_LIKE)


def classify(
    rel: str,
    kind: str,
    weights: Collection[str] = (WEIGHTS_FILE,),
    checkpoints: Collection[str] | None = None,
    *,
    model_files: Collection[str] = (),
) -> Role | None:
    """The role of the entry ``rel`` ('/'-separated, relative to the folder) in a ``kind``
    folder, or None when the layout does not allow it.

    ``weights`` are the weight files the run's training statement names (top level),
    ``model_files`` its other model files (``modelFiles``: config, tokenizer, adapter
    config; top level, bound by digest like the weights);
    ``checkpoints``, when given, the checkpoint files it names (else any name of
    CHECKPOINT_PATTERN is a checkpoint, as the trainer writes them). Raises FormatError
    for an unknown ``kind``.
    """
    if kind not in KINDS:
        raise FormatError(f"layout: expected a kind in {KINDS}, got {kind!r}")
    if rel in (PROVENANCE_DIR, CHECKPOINTS_DIR):
        return Role("folder")
    if rel == PRIVATE_DIR:
        return Role("folder", public=False) if kind == RUN else None
    head, _, tail = rel.partition("/")
    if head == PROVENANCE_DIR:
        return Role("provenance") if tail in PROVENANCE_FILES else None
    if head == PRIVATE_DIR:
        return Role("private", public=False) if kind == RUN and tail in PRIVATE_FILES else None
    if head == CHECKPOINTS_DIR:
        listed = CHECKPOINT_PATTERN.fullmatch(rel) if checkpoints is None else rel in checkpoints
        return Role("checkpoint") if listed else None
    if rel in weights and "/" not in rel and rel.endswith(".safetensors"):
        return Role("weights")
    if rel in model_files and "/" not in rel and not weight_like(rel):
        return Role("model-file")
    if kind == RELEASE and rel in RELEASE_FILES:
        return Role("release")
    if kind == RELEASE and rel in MODEL_FILES:
        return Role("model-file")
    return None


@dataclass(frozen=True)
class Entry:
    """One entry under a folder, as ``lstat`` saw it (symlinks are not followed)."""

    rel: str  # '/'-separated, relative to the folder
    mode: int  # st_mode
    nlink: int  # st_nlink

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    def refusal(self) -> str | None:
        """Why this entry may not be in a run or release folder, or None.

        Only folders and regular files with a single link are allowed: a symlink or a
        hard link can make a checked name show other bytes to a later reader (or point
        outside the folder), and a FIFO or device blocks or changes on every read.
        """
        if self.is_dir:
            return None
        if self.is_file:
            return None if self.nlink == 1 else f"a hard link ({self.nlink} links)"
        kind = (
            "a symbolic link"
            if stat.S_ISLNK(self.mode)
            else "a FIFO"
            if stat.S_ISFIFO(self.mode)
            else "a socket"
            if stat.S_ISSOCK(self.mode)
            else "a device"
            if stat.S_ISCHR(self.mode) or stat.S_ISBLK(self.mode)
            else "not a regular file"
        )
        return kind


def walk(root: Path, max_entries: int = 100_000, max_depth: int = 8) -> Iterator[Entry]:
    """Every entry under ``root`` (not ``root`` itself), sorted by name, depth first.

    Never follows a symlink (scandir + lstat). Raises FormatError when there are more than
    ``max_entries`` entries or folders deeper than ``max_depth`` (a bound, STYLE 9), and
    OSError when a folder cannot be listed.
    """
    count = 0

    def _walk(folder: Path, prefix: str, depth: int) -> Iterator[Entry]:
        nonlocal count
        if depth > max_depth:
            raise FormatError(f"{prefix.rstrip('/')}: folders nested deeper than {max_depth}")
        with os.scandir(folder) as it:
            items = sorted(it, key=lambda e: e.name)
        for de in items:
            count += 1
            if count > max_entries:
                raise FormatError(f"{root}: more than {max_entries} entries")
            st = de.stat(follow_symlinks=False)
            e = Entry(prefix + de.name, st.st_mode, st.st_nlink)
            yield e
            if e.is_dir:
                yield from _walk(Path(de.path), e.rel + "/", depth + 1)

    yield from _walk(root, "", 1)


def folder_kind(root: Path) -> str:
    """RELEASE when ``root`` holds the OMS signature ``model.sig`` (by lstat), else RUN."""
    try:
        os.lstat(root / OMS_SIGNATURE_FILE)
    except FileNotFoundError:
        return RUN
    return RELEASE


def problems(
    entries: Collection[Entry],
    kind: str,
    weights: Collection[str] = (WEIGHTS_FILE,),
    checkpoints: Collection[str] | None = None,
    *,
    model_files: Collection[str] = (),
) -> tuple[list[str], list[str]]:
    """(refused, unexpected): messages for entries that are not regular files or folders,
    and for entries the ``kind`` layout does not allow (see `classify`)."""
    refused: list[str] = []
    unexpected: list[str] = []
    for e in entries:
        why = e.refusal()
        if why is not None:
            refused.append(f"{e.rel}: expected a regular file or a folder, found {why}")
            continue
        role = classify(e.rel, kind, weights, checkpoints, model_files=model_files)
        if role is None:
            what = (
                "a weight-like file the signed statements do not bind"
                if (weight_like(e.rel))
                else "an entry the layout does not allow"
            )
            unexpected.append(f"{e.rel}: expected only the files of a {kind} folder, found {what}")
        elif role.role == "folder" and not e.is_dir:
            unexpected.append(f"{e.rel}: expected a folder, found a file")
        elif role.role != "folder" and not e.is_file:
            unexpected.append(f"{e.rel}: expected a file, found a folder")
    return refused, unexpected


# The release folder's names as one object (spec/release.md §1), for the release builder
# and the verifier's release layer, and the weights' metadata pointers (§6).
@dataclass(frozen=True)
class ReleaseLayout:
    """Names of a release folder (paths relative to its root, ``/``-separated)."""

    signature: str  # the OMS v1.0 signature, excluded from its own manifest
    card: str  # Hugging Face model card
    bom: str  # CycloneDX 1.6 ML-BOM
    provenance_dir: str
    provenance_files: tuple[str, ...]  # public provenance, copied from the run as is
    checkpoints_dir: str  # only with `govtune release --with-checkpoints`
    # Model-side files a Hugging Face / peft folder carries beside its weights; they are
    # covered by model.sig like every file (the weights are also bound by govtune's statements).
    model_side_files: tuple[str, ...]
    # Ignored by OMS (model_signing's default ignore list) and by the verifier: a hub
    # clone carries them and they are not part of the model.
    oms_ignored: tuple[str, ...]
    # Names that only a run's private/ holds: a release (or a public part of a run)
    # holding any of them leaks the openings (GT-RELEASE-PRIVATE).
    private_dir: str
    private_files: tuple[str, ...]


RELEASE_LAYOUT = ReleaseLayout(
    signature=OMS_SIGNATURE_FILE,
    card=MODEL_CARD_FILE,
    bom=BOM_FILE,
    provenance_dir=PROVENANCE_DIR,
    provenance_files=PROVENANCE_FILES,
    checkpoints_dir=CHECKPOINTS_DIR,
    model_side_files=MODEL_FILES,
    oms_ignored=OMS_IGNORED,
    private_dir=PRIVATE_DIR,
    private_files=PRIVATE_FILES,
)

# safetensors ``__metadata__`` keys the trainer writes before hashing the weights
# (spec/release.md §6): pointers from a loose weights file back to its provenance.
METADATA_RUN_ID = "govtune.runId"
METADATA_BUNDLE = "govtune.provenance"
METADATA_TYPES = "govtune.predicateTypes"


def weights_metadata(run_id: str) -> dict[str, str]:
    """The ``__metadata__`` entries of a run's released weights (strings only)."""
    from .predicates import REQUIRED_TYPES  # predicates imports this module's names

    return {
        METADATA_RUN_ID: run_id,
        METADATA_BUNDLE: f"{RELEASE_LAYOUT.provenance_dir}/{BUNDLE_FILE}",
        METADATA_TYPES: ",".join(REQUIRED_TYPES),
    }
