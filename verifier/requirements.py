"""Layer V11, the consumer's requirements (spec/requirements.md): the bar a run must clear.

Without them the verifier checks a run against the producer's own policy, whatever
that policy says: a lax policy with a reassuring name passes. `Requirements`
(verifier/requirements_model.py) is the consumer's side, in the spirit of
sigstore-python's `VerificationPolicy` and cosign's `--certificate-identity`: a
pinned producer policy digest (``--policy-digest HEX``) and/or minimum requirements
on the policy and the run (``--require FILE``, TOML).

`check_requirements` runs after every other layer and reads only what those layers
verified: the `Policy` object that passed GT-POLICY-DIGEST, the canary count that
passed GT-ADMIT-CANARIES, the replay result that passed every GT-REPLAY-* check. A
requirement whose fact is absent or unverified FAILS, saying why (fail closed); a
requirement the consumer did not state is "skip".

Example::

    from verifier import api
    from verifier.requirements import Requirements
    req = Requirements.from_toml(b'version = "0.1"\n[pii]\nreject = ["email"]\n')
    result = api.verify("run", keys=["producer.pub"], requirements=req)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from attest.glob import glob_match
from attest.policy import Policy

from .policy_terms import license_profiles, policy_terms
from .requirements_model import ACTION_RANK, REQUIREMENTS_VERSION, Requirements, load_requirements
from .result import Result

__all__ = [
    "NONE_GIVEN",
    "REQUIREMENT_CODES",
    "REQUIREMENTS_VERSION",
    "Requirements",
    "check_requirements",
    "load_requirements",
    "requirements_note",
]

REQUIREMENT_CODES = (
    "GT-REQ-POLICY-DIGEST",
    "GT-REQ-PII",
    "GT-REQ-LICENSE",
    "GT-REQ-CANARIES",
    "GT-REQ-MEMORIZATION",
    "GT-REQ-REPLAY",
    "GT-REQ-STRICT",
)
NONE_GIVEN = "no consumer requirement given (--policy-digest, --require)"


# -- V11: evaluation ----------------------------------------------------------------------


def _passed(result: Result, codes: Iterable[str]) -> list[str]:
    """The ``codes`` that did not pass (a fail, a skip or no finding at all)."""
    ok = {f.code for f in result.findings if f.status == "pass"}
    bad = {f.code for f in result.findings if f.status == "fail"}
    return [c for c in codes if c not in ok or c in bad]


def _unverified(what: str, missing: list[str]) -> str:
    return f"no verified {what} ({', '.join(missing)} did not pass)"


# SPDX ids the SPDX License List deprecated in favour of an "-only" id: a requirement naming
# the new id covers the old spelling too (spec/requirements.md §3.3), so a policy cannot
# admit "GPL-3.0" while the consumer refuses "GPL-3.0-only".
DEPRECATED_ONLY = {
    f"{fam}-{v}": f"{fam}-{v}-only"
    for fam, versions in (
        ("GPL", ("1.0", "2.0", "3.0")),
        ("LGPL", ("2.0", "2.1", "3.0")),
        ("AGPL", ("1.0", "3.0")),
        ("GFDL", ("1.1", "1.2", "1.3")),
    )
    for v in versions
}


def family(policy: Policy, license_id: str) -> list[str]:
    """``license_id`` and every license the policy names (class keys, ``assign`` conditions)
    that a requirement on it covers: the
    same id under a ``WITH`` exception, and deprecated spellings of it (case-insensitive,
    as SPDX ids match). A consumer refusing GPL-3.0-only refuses "GPL-3.0-only WITH
    GCC-exception-3.1" and "GPL-3.0" too: an exception adds permissions, it is still the
    license the consumer named (spec/requirements.md §3.3)."""
    want = license_id.lower()
    out = [license_id]
    named = [str(a.when["license"]) for a in policy.assign if "license" in a.when]
    for key in dict.fromkeys([*policy.license_classes, *named]):
        base = key.split(" WITH ")[0].strip()
        base = DEPRECATED_ONLY.get(base, base)
        if base.lower() == want and key.lower() != want:
            out.append(key)
    return out


def _check_licenses(req: Requirements, policy: Policy) -> list[str]:
    problems = []
    for lic in req.license_refuse:
        for key in family(policy, lic):
            got = license_profiles(policy, key, None)
            if got is not None:
                via = "" if key == lic else f" (as {key!r})"
                problems.append(
                    f"license {lic!r}{via}: expected refused, found admitted as class "
                    f"{policy.license_class(key)!r} (profiles {', '.join(sorted(got))})"
                )
    for c in req.license_refuse_classes:
        got = license_profiles(policy, None, c)
        if got is not None:
            problems.append(
                f"license class {c!r}: expected refused, found allowed "
                f"(profiles {', '.join(sorted(got)) or 'none'})"
            )
    for what, limits, by_id in (
        ("license", req.license_limit, True),
        ("license class", req.license_limit_classes, False),
    ):
        for name, allowed in sorted(limits.items()):
            keys = family(policy, name) if by_id else [name]
            for key in keys:
                got = license_profiles(policy, key if by_id else None, None if by_id else key)
                extra = sorted((got or set()) - set(allowed))
                if extra:
                    via = "" if key == name else f" (as {key!r})"
                    problems.append(
                        f"{what} {name!r}{via}: expected only profiles "
                        f"{', '.join(allowed)}, found also {', '.join(extra)}"
                    )
    return problems  # fmt: skip


def _check_license_tensors(
    req: Requirements, policy: Policy, tensors: tuple[str, ...] | None
) -> list[str]:
    """limit_tensors: what each possible profile of a license resolves to, by the consumer's
    own patterns. ``tensors``: the verified model tensor names (None: not verified)."""
    problems = []
    for lic, patterns in sorted(req.license_limit_tensors.items()):
        profiles = set().union(*(license_profiles(policy, k, None) or set()
                                 for k in family(policy, lic))) or None  # fmt: skip
        if profiles is None:
            continue  # refused: it changes nothing
        if tensors is None:
            problems.append(f"license {lic!r}: limit_tensors required, but no verified tensor "
                            "names (GT-CHAIN-PROFILES did not pass)")  # fmt: skip
            continue
        for p in sorted(profiles):
            outside = [n for n in policy.profiles[p].resolve(tensors)
                       if not any(glob_match(n, pat) for pat in patterns)]  # fmt: skip
            if outside:
                more = f" and {len(outside) - 1} more" if len(outside) > 1 else ""
                problems.append(
                    f"license {lic!r}: expected only tensors matching {', '.join(patterns)}, "
                    f"found profile {p!r} allowing {outside[0]!r}{more}"
                )
    return problems


def _check_memorization(req: Requirements, policy: Policy) -> list[str]:
    m = policy.memorization
    out = []
    if (
        req.memorization_action is not None
        and ACTION_RANK[m.action] < ACTION_RANK[req.memorization_action]
    ):
        out.append(f"action: expected {req.memorization_action!r} or stronger, found {m.action!r}")

    def at_most(key: str, want: float | None, got: float, unit: str) -> None:
        if want is not None and (got <= 0 or got > want):
            shown = "disabled (0)" if got <= 0 else f"{got:g}{unit}"
            out.append(f"{key}: expected enabled and at most {want:g}{unit}, found {shown}")

    at_most("loss_drop_max", req.loss_drop_max, m.loss_drop_max, " nats")
    at_most("exposure_max", req.exposure_max, m.exposure_max, " bits")
    # A threshold the signal can never exceed is no threshold: exposure is at most
    # log2 |R| with |R| = candidates + 1 (the canary among its sampled candidates).
    c = policy.canaries
    if req.exposure_max is not None and c.count and m.exposure_max >= math.log2(c.candidates + 1):
        out.append(
            f"exposure_max: expected a threshold the exposure can exceed, found "
            f"{m.exposure_max:g} bits with {c.candidates} candidates (at most "
            f"log2({c.candidates + 1}) = {math.log2(c.candidates + 1):.3g} bits)"
        )
    at_most("eval_every", req.eval_every_max, m.eval_every, " steps")
    if req.reference_quantile_min is not None and m.reference_quantile < req.reference_quantile_min:
        shown = "disabled (0)" if m.reference_quantile <= 0 else f"{m.reference_quantile:g}"
        out.append(f"reference_quantile: expected at least {req.reference_quantile_min:g}, "
                   f"found {shown}")  # fmt: skip
    if req.reference_quantile_min is not None and m.holdout <= 0:
        out.append("reference_quantile: expected a reference set the signal compares with, "
                   "found holdout 0 (the flag can never fire)")  # fmt: skip
    if req.holdout_min is not None and m.holdout < req.holdout_min:
        out.append(f"holdout: expected at least {req.holdout_min} examples, found {m.holdout}")
    return out


def _replay_fact(result: Result) -> tuple[Mapping[str, Any] | None, str]:
    """The verified replay result, or None and why not."""
    flags = result.scope.get("flags") if isinstance(result.scope, Mapping) else None
    if not (isinstance(flags, Mapping) and flags.get("replay")):
        return None, "no replay ran (--replay N not given)"
    missing = _passed(result, ("GT-REPLAY-SELECT", "GT-REPLAY-CHECKPOINT", "GT-REPLAY-STEP"))
    rep = result.verified.get("replay")
    if missing or not isinstance(rep, Mapping):
        return None, _unverified("replay result", missing or ["replay"])
    return rep, ""


def _fraction(rep: Mapping[str, Any], key: str) -> float | None:
    v = rep.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _check_replay(req: Requirements, rep: Mapping[str, Any]) -> list[str]:
    out = []
    for key, want, label in (("coverage", req.replay_coverage_min, "min_coverage"),
                             ("detectionProbability", req.replay_detection_min,
                              "min_detection_probability")):  # fmt: skip
        if want is None:
            continue
        got = _fraction(rep, key)
        if got is None:
            out.append(f"{label}: expected at least {want:g}, found no {key} in the replay result")
        elif got < want:
            out.append(f"{label}: expected at least {want:g}, found {got:.4g}")
    return out


def _check_strict(req: Requirements, rep: Mapping[str, Any]) -> list[str]:
    mode, tol = rep.get("mode"), rep.get("tolerance")
    if mode == "bitwise" or (mode == "strict" and tol is None):  # "strict": v0.1 replay's name
        return []
    if req.replay_strict:
        return [f"strict: expected bitwise replay, found {mode!r} replay"]
    value = tol.get("value") if isinstance(tol, Mapping) else tol
    chosen = tol.get("chosenBy") if isinstance(tol, Mapping) else None
    limit = req.replay_tolerance_max or 0.0  # set: stated() said GT-REQ-STRICT applies
    if chosen != "auditor":
        return [f"max_tolerance: expected a tolerance chosen by the auditor, found one chosen by "
                f"{chosen or 'nobody named'}"]  # fmt: skip
    if not isinstance(value, int | float) or isinstance(value, bool) or value > limit:
        return [f"max_tolerance: expected at most {limit:g}, found {value!r}"]
    return []


def check_requirements(
    result: Result,
    requirements: Requirements | None,
    policy: Policy | None,
    tensors: Iterable[str] = (),
) -> None:
    """Layer V11: the consumer's requirements against verified facts only; never raises.

    ``policy`` is the policy object that passed GT-POLICY-DIGEST (None otherwise);
    ``tensors`` the model's tensor names from the verified start record, used (for the
    plain terms of the profiles and ``licenses.limit_tensors``) only if GT-CHAIN-PROFILES
    passed. Also publishes ``result.verified["policyTerms"]`` (the verified policy in plain
    terms, for the report) and ``result.scope["requirements"]``.
    """
    tensors = tuple(tensors)
    policy_ok = policy is not None and not _passed(result, ("GT-POLICY-FORMAT", "GT-POLICY-DIGEST"))
    vpolicy = policy if policy_ok else None
    if vpolicy is not None:
        result.verified["policyTerms"] = policy_terms(
            vpolicy, tensors if not _passed(result, ("GT-CHAIN-PROFILES",)) else ()
        )
    req = requirements if requirements else None
    result.scope["requirements"] = {
        "checked": req is not None,
        "source": req.source if req is not None else None,
        "stated": req.to_dict() if req is not None else None,
    }
    if req is None:
        for code in REQUIREMENT_CODES:
            result.add(code, "skip", NONE_GIVEN)
        return
    stated = req.stated()
    no_policy = _unverified(
        "producer policy", _passed(result, ("GT-POLICY-FORMAT", "GT-POLICY-DIGEST")) or ["policy"]
    )
    rep, no_replay = _replay_fact(result)
    for code in REQUIREMENT_CODES:
        if not stated[code]:
            result.add(code, "skip", f"not required by {req.source}")
            continue
        problems: list[str] = []
        note = ""
        if code in ("GT-REQ-REPLAY", "GT-REQ-STRICT"):
            if rep is None:
                problems = [
                    f"{'replay' if code == 'GT-REQ-REPLAY' else 'strict replay'} "
                    f"required, but {no_replay}"
                ]
            else:
                problems = (_check_replay if code == "GT-REQ-REPLAY" else _check_strict)(req, rep)
                note = (
                    f"coverage {_fraction(rep, 'coverage')}, detection probability "
                    f"{_fraction(rep, 'detectionProbability')}"
                    if code == "GT-REQ-REPLAY"
                    else f"replay mode {rep.get('mode')}"
                )
        elif vpolicy is None:
            problems = [f"required, but {no_policy}"]
        elif code == "GT-REQ-POLICY-DIGEST":
            got = vpolicy.digest()
            if got != req.policy_digest:
                problems = [
                    f"expected the pinned policy digest {req.policy_digest}, found "
                    f"{got} (policy {vpolicy.name!r})"
                ]
            note = f"policy {vpolicy.name!r} is the pinned one ({got})"
        elif code == "GT-REQ-PII":
            for kind in req.pii_reject:
                if kind not in vpolicy.pii_detect:
                    problems.append(
                        f"pii {kind!r}: expected detected with action reject, found "
                        f"not detected (pii.detect: {', '.join(vpolicy.pii_detect)})"
                    )
                elif vpolicy.pii_action != "reject":
                    problems.append(
                        f"pii {kind!r}: expected action reject, found {vpolicy.pii_action!r}"
                    )
            note = f"{', '.join(req.pii_reject)} detected and rejected"
        elif code == "GT-REQ-LICENSE":
            names = tuple(tensors) if not _passed(result, ("GT-CHAIN-PROFILES",)) else None
            problems = _check_licenses(req, vpolicy) + _check_license_tensors(req, vpolicy, names)
            note = "every named license or class is refused or limited as required"
        elif code == "GT-REQ-CANARIES":
            missing = _passed(result, ("GT-ADMIT-CANARIES",))
            planted, want = vpolicy.canaries.count, req.canaries_min or 0
            if missing:
                problems = [f"min_count: required, but {_unverified('canary count', missing)}"]
            elif planted < want:
                problems = [
                    f"min_count: expected at least {want} canaries, found "
                    f"{planted} (policy canaries.count)"
                ]
            note = f"{planted} canaries planted, as the admission log holds"
        elif code == "GT-REQ-MEMORIZATION":
            problems = _check_memorization(req, vpolicy)
            note = "memorization thresholds and action no laxer than required"
        for p in problems:
            result.fail(code, f"requirement {_KIND[code]} ({req.source}): {p}")
        if not problems:
            result.add(code, "pass", note)  # fmt: skip


NOTE_NONE = (
    "conforms to the producer's own policy; no consumer requirement was checked "
    "(--policy-digest, --require)"
)


def requirements_note(result: Result) -> str:
    """What a PASS means for the consumer's bar, in one phrase (the CLI verdict and the report)."""
    scope = result.scope.get("requirements") if isinstance(result.scope, Mapping) else None
    if not (isinstance(scope, Mapping) and scope.get("checked")):
        return NOTE_NONE
    met = [f.code for f in result.findings if f.layer == "requirements" and f.status == "pass"]
    failed = sorted({f.code for f in result.failures if f.layer == "requirements"})
    if failed:
        return f"consumer requirements NOT met ({scope.get('source')}): {', '.join(failed)}"
    return f"meets the consumer's requirements ({scope.get('source')}): {', '.join(met)}"


_KIND = {
    "GT-REQ-POLICY-DIGEST": "policy_digest",
    "GT-REQ-PII": "pii.reject",
    "GT-REQ-LICENSE": "licenses",
    "GT-REQ-CANARIES": "canaries",
    "GT-REQ-MEMORIZATION": "memorization",
    "GT-REQ-REPLAY": "replay",
    "GT-REQ-STRICT": "replay.strict",
}
