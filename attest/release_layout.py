"""The release folder's layout, as data (spec/release.md §1), and the weights' metadata pointers.

One place names every file a release folder may hold, so `govtune release` (which writes
it) and the verifier's release layer (which refuses anything else) cannot drift. Written
to move into attest/layout.py beside the run folder's layout when that module lands.

A release holds what a model hub takes and nothing private: the model files as trained,
the model card, the ML-BOM, the public provenance and the OMS signature. Everything of a
run's ``private/`` (run secret, openings, canary texts) is forbidden anywhere in it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .predicates import ADMISSIONS_FILE, BUNDLE_FILE, POLICY_FILE, REQUIRED_TYPES, STEPS_FILE


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
    signature="model.sig",
    card="README.md",
    bom="bom.cdx.json",
    provenance_dir="provenance",
    provenance_files=(BUNDLE_FILE, POLICY_FILE, ADMISSIONS_FILE, STEPS_FILE),
    checkpoints_dir="checkpoints",
    model_side_files=(
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
    ),
    oms_ignored=(".gitattributes", ".git", ".github", ".gitignore", "model.sig"),
    private_dir="private",
    private_files=("run-secret", "openings.jsonl", "canaries.jsonl"),
)

# safetensors ``__metadata__`` keys the trainer writes before hashing the weights
# (spec/release.md §6): pointers from a loose weights file back to its provenance.
METADATA_RUN_ID = "govtune.runId"
METADATA_BUNDLE = "govtune.provenance"
METADATA_TYPES = "govtune.predicateTypes"


def weights_metadata(run_id: str) -> dict[str, str]:
    """The ``__metadata__`` entries of a run's released weights (strings only)."""
    return {
        METADATA_RUN_ID: run_id,
        METADATA_BUNDLE: f"{RELEASE_LAYOUT.provenance_dir}/{BUNDLE_FILE}",
        METADATA_TYPES: ",".join(REQUIRED_TYPES),
    }
