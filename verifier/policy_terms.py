"""A verified policy in plain terms: which licenses reach which profiles, what is refused.

Used by the consumer requirements (V11, verifier/requirements.py) to decide whether a
license is refused or limited, and by the report, which shows the policy the way a
compliance officer reads it (issue 14): license classes admitted, limited or refused;
the PII action; the profiles and the layers they cover; memorization thresholds and
action; canaries. Input is a `Policy` that passed GT-POLICY-DIGEST; nothing here
reads a file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from attest.policy import Policy

__all__ = ["license_profiles", "policy_terms"]


def license_profiles(policy: Policy, license_id: str | None, cls: str | None) -> set[str] | None:
    """The profiles an admitted example of ``license_id`` (or of any license of class ``cls``)
    could be assigned; None when every such example is refused.

    Assignment is the first matching rule over (license_class, data_class, license,
    source), policy.md §5. A rule is possible when its license keys agree; the data class
    and source of an example can be anything, so only a rule with no other condition (or
    ``source = "*"``) makes the later rules unreachable.
    """
    if license_id is not None:
        cls = policy.license_class(license_id)
    if cls is None or cls in policy.license_deny or cls not in policy.license_allow:
        return None
    out: set[str] = set()
    for a in policy.assign:
        when = dict(a.when)
        if "license_class" in when and when.pop("license_class") != cls:
            continue
        if "license" in when:
            lic = when.pop("license")
            if license_id is not None and lic != license_id:
                continue
            if license_id is None and policy.license_class(lic) != cls:
                continue
        out.add(a.profile)
        if all(k == "source" and v == "*" for k, v in when.items()):
            break  # matches every example of this license: later rules are unreachable
    return out


def layer_of(name: str) -> str:
    """The layer of a tensor name: ``blocks.3.mlp.w`` -> ``blocks.3``, ``ln_f.w`` -> ``ln_f``.

    The first dotted component, plus the next one when it is a layer index (digits), which
    is how the built-in model, Hugging Face and peft name their layers.
    """
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p.isdigit():
            return ".".join(parts[: i + 1])
    return parts[0]


def _layers(names: Iterable[str]) -> list[list[Any]]:
    c = Counter(layer_of(n) for n in names)
    return [[layer, n] for layer, n in sorted(c.items())]


def policy_terms(policy: Policy, tensors: Iterable[str] = ()) -> dict[str, Any]:
    """The plain-terms view of ``policy`` (JSON-safe). ``tensors``: the model's tensor names,
    from the verified start record (empty when the chain did not verify them)."""
    names = sorted(tensors)
    profiles = []
    full = set()
    for pname, prof in sorted(policy.profiles.items()):
        resolved = prof.resolve(names) if names else ()
        covers_all = bool(names) and len(resolved) == len(names)
        if covers_all or (not names and "*" in prof.patterns and not prof.exclude):
            full.add(pname)
        profiles.append({
            "name": pname, "patterns": list(prof.patterns), "exclude": list(prof.exclude),
            "tensors": len(resolved) if names else None, "ofTensors": len(names) or None,
            "layers": _layers(resolved), "coversAll": covers_all if names else None,
        })  # fmt: skip
    by_class: dict[str, list[str]] = {}
    for lic, cls in sorted(policy.license_classes.items()):
        by_class.setdefault(cls, []).append(lic)
    classes = []
    for cls in sorted(set(by_class) | set(policy.license_allow) | set(policy.license_deny)):
        reach = license_profiles(policy, None, cls)
        if reach is None:
            treatment = "refused"
        elif not reach:
            treatment = "refused"  # allowed, but no assignment rule can give it a profile
        elif reach <= full:
            treatment = "admitted"
        else:
            treatment = "limited"
        classes.append({"class": cls, "treatment": treatment, "profiles": sorted(reach or ()),
                        "licenses": by_class.get(cls, [])})  # fmt: skip
    m, c = policy.memorization, policy.canaries
    return {
        "name": policy.name,
        "digest": policy.digest(),
        "licenseClasses": classes,
        "unclassifiedLicenses": "refused",  # decide(): a license with no class is refused
        "pii": {"detect": list(policy.pii_detect), "action": policy.pii_action},
        "consentRequired": list(policy.consent_required),
        "sources": {"allow": list(policy.source_allow), "deny": list(policy.source_deny)},
        "optOutDigests": len(policy.optout_digests),
        "duplicates": policy.duplicates,
        "length": {"min": policy.length_min, "max": policy.length_max},
        "profiles": profiles,
        "memorization": {
            "action": m.action,
            "lossDropMax": m.loss_drop_max or None,  # None: the signal is disabled (0)
            "referenceQuantile": m.reference_quantile or None,
            "holdout": m.holdout,
            "exposureMax": m.exposure_max or None,
            "evalEvery": m.eval_every or None,
        },
        "canaries": {"count": c.count, "repeats": c.repeats, "digits": c.digits,
                     "candidates": c.candidates, "profile": c.profile or None},
    }  # fmt: skip
