"""SLSA Verification Summary Attestations (slsa.dev/verification_summary/v1), spec/release.md §6.

`govtune verify PATH --key PUB --vsa OUT --sign-key KEY` writes one signed statement
saying who verified which weights, under which verification policy (the consumer's keys,
threshold and flags, digested), with which inputs and with what result, so a release
gate can forward one verdict. `govtune verify --vsa-only OUT --key VERIFIER.pub [PATH]`
checks one: signature, predicate, a PASSED result, and with PATH that the subjects are
that folder's files, byte for byte.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key, Signer

from attest.bundle import read_bundle, write_bundle
from attest.canonical import canonical_json
from attest.digest import sha256_file, sha256_hex
from attest.envelope import sign_statement, verify_envelope
from attest.errors import FormatError, UsageError, VerificationError
from attest.layout import RELEASE_LAYOUT
from attest.limits import DEFAULT_LIMITS, Limits
from attest.predicates import BUNDLE_FILE
from attest.statement import Statement, Subject

from .result import Result

VSA_TYPE = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID = "https://govtune.dev/verifier"
POLICY_URI = "https://govtune.dev/verification-policy/v0.3"
LEVEL_PREFIX = "GOVTUNE_"  # org-specific verifiedLevels (VSA v1: "<ORG>_<PROPERTY>")
REQUIRED = ("verifier", "timeVerified", "resourceUri", "policy", "verificationResult",
            "verifiedLevels")  # fmt: skip


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("govtune")
    except Exception:  # noqa: BLE001 - a frozen binary carries no distribution metadata
        return "0.3.0"


def verification_policy(result: Result) -> dict[str, Any]:
    """What the consumer required: trusted keys, threshold and flags (from the result)."""
    flags = dict(result.scope.get("flags") or {})
    return {"keyids": sorted(result.verified.get("keyids") or []), "flags": flags}


def build_vsa(result: Result, root: Path) -> Statement:
    """The VSA statement over ``result``'s verified weights. Raises UsageError without any."""
    weights = result.verified.get("weights") or []
    if not weights:
        raise UsageError("--vsa: the verification established no weight files to name as subjects")
    subjects = tuple(Subject(w["name"], {"sha256": w["sha256"]}) for w in weights)
    inputs = []
    for rel in (f"{RELEASE_LAYOUT.provenance_dir}/{BUNDLE_FILE}", RELEASE_LAYOUT.signature):
        p = Path(root) / rel
        if p.is_file():
            inputs.append({"uri": rel, "digest": {"sha256": sha256_file(p)}})
    policy = verification_policy(result)
    passed = bool(result)
    levels = sorted(
        LEVEL_PREFIX + layer.upper()
        for layer in result.scope.get("layers", [])
        if not any(f.layer == layer for f in result.failures)
    )
    predicate = {
        "verifier": {"id": VERIFIER_ID, "version": {"govtune": _version()}},
        "timeVerified": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resourceUri": f"file:{Path(root).name}",
        "policy": {
            "uri": POLICY_URI,
            "digest": {"sha256": sha256_hex(canonical_json(policy))},
            "annotations": policy,
        },
        "inputAttestations": inputs,
        "verificationResult": "PASSED" if passed else "FAILED",
        "verifiedLevels": levels if passed else [],
        "slsaVersion": "1.0",
    }
    return Statement(subjects, VSA_TYPE, predicate)


def write_vsa(result: Result, root: Path, out: Path, signers: Sequence[Signer]) -> Statement:
    """Sign the VSA and write it as a one-line ``*.intoto.jsonl`` bundle. Raises UsageError."""
    st = build_vsa(result, root)
    write_bundle(Path(out), [sign_statement(st, list(signers))])
    return st


def check_vsa(
    path: Path,
    keys: Sequence[Key],
    threshold: int = 1,
    folder: Path | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Result:
    """Check a VSA file; the finding is GT-RELEASE-VSA. Raises UsageError for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: expected a verification summary file, found none")
    result = Result(str(path))
    result.scope = {"layers": ["release"], "flags": {"vsaOnly": str(path), "threshold": threshold}}
    try:
        lines = read_bundle(path, limits=limits)
        if len(lines) != 1:
            raise FormatError(f"{path.name}: expected one envelope, found {len(lines)}")
        signed = verify_envelope(lines[0].envelope, keys, threshold, where=path.name)
        facts = _check_statement(signed.statement, folder)
    except (FormatError, VerificationError) as e:
        result.fail("GT-RELEASE-VSA", str(e))
        return result
    result.add("GT-RELEASE-VSA", "pass", f"PASSED for {', '.join(facts['subjects'])}")
    result.verified.update(facts)
    result.verified["keyids"] = list(signed.keyids)
    return result


def _check_statement(st: Statement, folder: Path | None) -> dict[str, Any]:
    code = "GT-RELEASE-VSA"
    if st.predicate_type != VSA_TYPE:
        raise VerificationError(
            code, f"expected predicateType {VSA_TYPE}, found {st.predicate_type!r:.80}"
        )
    pred: Mapping[str, Any] = st.predicate
    missing = [k for k in REQUIRED if k not in pred]
    if missing:
        raise VerificationError(code, f"VSA predicate: missing {', '.join(missing)}")
    if pred["verificationResult"] != "PASSED":
        raise VerificationError(
            code,
            f"verificationResult: expected PASSED, found {pred['verificationResult']!r:.20}",
        )
    if folder is not None:
        for s in st.subjects:
            p = Path(folder) / s.name
            got = sha256_file(p) if p.is_file() else "no such file"
            if got != s.digest.get("sha256"):
                raise VerificationError(
                    code, f"{s.name}: the VSA says sha256:{s.digest.get('sha256')}, found {got}"
                )
    return {
        "subjects": [s.name for s in st.subjects],
        "vsa": {"verifier": pred["verifier"], "timeVerified": pred["timeVerified"],
                "verifiedLevels": pred["verifiedLevels"], "policy": pred["policy"]},
    }  # fmt: skip
