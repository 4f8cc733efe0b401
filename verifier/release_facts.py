"""The facts a release's model card and ML-BOM state, derived once from verified evidence.

`govtune release` renders the card and the BOM from `release_facts(...)` of the run it
just verified; the verifier's release layer (GT-RELEASE-CARD, GT-RELEASE-BOM) derives the
same facts from what *it* verified and compares them with what the documents say. One
function, so the writer and the checker cannot disagree on what a fact is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from attest.errors import FormatError
from attest.policy import Policy

# The model's own license and the dataset's public identifier are declared by the
# publisher (`govtune release --license --dataset-id`): nothing in the evidence derives
# them, so the verifier checks that the card and the BOM declare the same ones.
DECLARED = ("model license", "dataset id")


@dataclass(frozen=True)
class ReleaseFacts:
    """Label -> one-line value, in the order the card's facts table lists them."""

    facts: Mapping[str, str]
    base_model: str  # the attested base model's name
    relation: str  # "finetune" | "adapter"
    dataset_sha256: str
    weights: Mapping[str, str] = field(default_factory=dict)  # file -> sha256

    def __post_init__(self) -> None:
        if self.relation not in ("finetune", "adapter"):
            raise FormatError(
                f"base_model_relation: expected finetune or adapter, got {self.relation!r}"
            )
        object.__setattr__(self, "facts", MappingProxyType(dict(self.facts)))
        object.__setattr__(self, "weights", MappingProxyType(dict(self.weights)))

    def derived(self) -> dict[str, str]:
        """The facts the verifier recomputes (the declared ones left out)."""
        return {k: v for k, v in self.facts.items() if k not in DECLARED}


def _join(items: Any) -> str:
    return ", ".join(str(i) for i in items) if items else "none"


def _num(v: float) -> str:
    return f"{v:g}"


def relation_of(weights: Mapping[str, str]) -> str:
    """peft saves adapters as ``adapter_model.safetensors``; anything else is a fine-tune."""
    return (
        "adapter" if any(n.endswith("adapter_model.safetensors") for n in weights) else "finetune"
    )


def release_facts(
    verified: Mapping[str, Any],
    attested: Mapping[str, Any],
    policy: Policy,
    *,
    license_id: str,
    dataset_id: str,
) -> ReleaseFacts:
    """Facts from a verification result's ``verified``/``attested`` maps and the verified
    policy. Raises FormatError when a fact the card needs is missing (a layer failed)."""
    need = ("runId", "policy", "admissions", "steps", "finalStateRoot", "weights")
    missing = [k for k in need if not verified.get(k)]
    if missing or not attested.get("baseModel") or not attested.get("dataset"):
        raise FormatError(
            f"release facts: expected verified {', '.join(need)} and the attested base model "
            f"and dataset, missing {', '.join(missing) or 'baseModel/dataset'}"
        )
    adm = verified["admissions"]
    mem = policy.memorization
    weights = {w["name"]: w["sha256"] for w in verified["weights"]}
    profiles = "; ".join(f"{n}: {_join(p.patterns)}" for n, p in sorted(policy.profiles.items()))
    facts = {
        "run id": verified["runId"],
        "verdict": "PASS",
        "policy": f"{verified['policy']['name']} (sha256 {verified['policy']['digest']})",
        "admitted license classes": _join(policy.license_allow),
        "refused license classes": _join(policy.license_deny),
        "consent required for": _join(policy.consent_required),
        "PII": f"{policy.pii_action} ({_join(policy.pii_detect)})",
        "profiles": profiles or "none",
        "memorization": (
            f"action {mem.action}; loss drop max {_num(mem.loss_drop_max)} nats; "
            f"reference quantile {_num(mem.reference_quantile)}; exposure max "
            f"{_num(mem.exposure_max)} bits"
        ),
        "examples": (
            f"{adm['total']} ({adm['admitted']} admitted, {adm['refused']} refused, "
            f"{adm['canaries']} canary copies)"
        ),
        "steps": str(verified["steps"]),
        "base model": str(attested["baseModel"].get("name", "")),
        "dataset sha256": str(attested["dataset"].get("sha256", "")),
        "final state root": verified["finalStateRoot"],
        "weights": _join(f"{n} sha256 {d}" for n, d in sorted(weights.items())),
        "model license": license_id,
        "dataset id": dataset_id,
    }
    return ReleaseFacts(
        facts,
        base_model=facts["base model"],
        relation=relation_of(weights),
        dataset_sha256=facts["dataset sha256"],
        weights=weights,
    )
