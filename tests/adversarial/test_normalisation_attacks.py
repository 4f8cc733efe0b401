"""Attacks that hide what a rule judges behind Unicode or an unknown name (issue 9 §6).

A run is trained for real with one example of each attack in its dataset. The honest
trainer must refuse each, for the right reason (the evaluator normalises before it
judges). Then a malicious producer, holding its own key, re-signs the run as a lenient
(v0.1-style) evaluator would have decided it: the verifier re-evaluates with the same
normalising evaluator and must FAIL with the exact code, while the honest run passes
under the same flags.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path
from typing import Any

import mutate
import pytest
import tinyrun

from attest.admission import Findings, Metadata, decide
from attest.canonical import canonical_json
from attest.errors import PolicyError
from attest.log import iter_log
from attest.policy import Policy
from attest.predicates import ADMISSIONS_FILE, POLICY_TYPE
from verifier.api import verify

HOMOGLYPH_MPL = "MPL\u20102.0"  # U+2010 HYPHEN, not U+002D
FULLWIDTH_CARD = " ".join(
    "".join(chr(0xFF10 + int(c)) for c in group) for group in ("4111", "1111", "1111", "1111")
)
ARABIC_INDIC_CARD = "".join(chr(0x0660 + int(c)) for c in "5500000000000004")

# attack -> (dataset row fields, the refusal the honest evaluator must record)
ATTACKS: dict[str, tuple[dict[str, str], tuple[str, dict[str, Any]]]] = {
    "homoglyph-license": (
        {"license": HOMOGLYPH_MPL, "text": "a text under a look-alike license identifier"},
        ("license", {"reason": "license-invalid", "license": HOMOGLYPH_MPL}),
    ),
    "unknown-spdx-id": (
        {"license": "Apache-2", "text": "a text under a license name that is not on SPDX"},
        ("license", {"reason": "license-invalid", "license": "Apache-2"}),
    ),
    "fullwidth-card": (
        {"license": "MIT", "text": f"charge the card {FULLWIDTH_CARD} for the order"},
        ("pii", {"reason": "pii-found", "kinds": ["credit-card"]}),
    ),
    "arabic-indic-card": (
        {"license": "MIT", "text": f"the card on file is {ARABIC_INDIC_CARD} for billing"},
        ("pii", {"reason": "pii-found", "kinds": ["credit-card"]}),
    ),
    "zero-width-card": (
        {"license": "MIT", "text": "card 4111\u200d1111\u200d1111\u200d1111 kept in the notes"},
        ("pii", {"reason": "pii-found", "kinds": ["credit-card"]}),
    ),
    "nbsp-phone": (
        {"license": "MIT", "text": "call the owner on +1\u00a0415\u00a0555\u00a02671 tonight"},
        ("pii", {"reason": "pii-found", "kinds": ["phone"]}),
    ),
    "confusable-email": (
        {"license": "MIT", "text": "write to j\u0430ne.doe@ex\u0430mple.com for the keys"},
        ("pii", {"reason": "pii-found", "kinds": ["email"]}),
    ),
}


def _rows() -> list[dict[str, object]]:
    rows = tinyrun.training_texts()
    for i, (fields, _) in enumerate(ATTACKS.values()):
        rows.append(
            {"source": f"test:corpus/attack-{i}", "data_class": "public", "consent": False} | fields
        )
    return rows


INDEX = {name: len(tinyrun.training_texts()) + i for i, name in enumerate(ATTACKS)}


@pytest.fixture(scope="module")
def attack_run(tmp_path_factory: pytest.TempPathFactory) -> tinyrun.TinyRun:
    """The tiny run with one example of each attack appended to its dataset, trained honestly."""
    t = tinyrun.prepare(tmp_path_factory.mktemp("normalisation"))
    tinyrun.write_inputs(t.folder, _rows(), tinyrun.POLICY)
    proc = tinyrun.train(t)
    if proc.returncode != 0:
        raise RuntimeError(f"govtune train failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return t


def _records(run: Path) -> list[dict[str, Any]]:
    return [r.value for r in iter_log(run / "provenance" / ADMISSIONS_FILE)]


def _audit_flags(work: Path, t: tinyrun.TinyRun) -> dict[str, Any]:
    return {"data": t.dataset, "openings": work / "private"}


def _copy(tmp_path: Path, t: tinyrun.TinyRun) -> Path:
    work = tmp_path / "run"
    shutil.copytree(t.run, work)
    return work


def _codes(result: Any) -> set[str]:
    return {f.code for f in result.failures}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_honest_trainer_refuses_each_attack(attack_run: tinyrun.TinyRun, name: str) -> None:
    rec = _records(attack_run.run)[INDEX[name]]
    rule, detail = ATTACKS[name][1]
    assert rec["decision"] == "refuse" and rec["profile"] is None
    (outcome,) = [o for o in rec["outcomes"] if o["rule"] == rule]
    assert (outcome["outcome"], outcome["detail"]) == ("fail", detail)


def test_honest_attack_run_passes_a_full_audit(attack_run: tinyrun.TinyRun) -> None:
    result = verify(
        attack_run.run, keys=[attack_run.pub], **_audit_flags(attack_run.run, attack_run)
    )
    assert result, [(f.code, f.message[:160]) for f in result.failures]


def _admit_as_lenient(ev: mutate.Evidence, index: int, *, findings: dict[str, Any]) -> None:
    """Rewrite record ``index`` as a v0.1-style evaluator decided it: admitted, all pass."""
    rec = ev.admissions[index]
    rec["findings"] = findings
    rec["outcomes"] = [
        {"rule": o["rule"], "outcome": "pass", "detail": {}} for o in rec["outcomes"]
    ]
    rec["decision"], rec["profile"] = "admit", "deep"


def _forge_and_verify(tmp_path: Path, t: tinyrun.TinyRun, edit: Any, **flags: Any) -> Any:
    work = _copy(tmp_path, t)
    ev = mutate.Evidence.load(work, t.pub)
    edit(ev, work)
    ev.write(work, mutate.signer(t))
    return verify(work, keys=[t.pub], **(flags or {}))


@pytest.mark.parametrize("name", ["homoglyph-license", "unknown-spdx-id"])
def test_unknown_spdx_id_in_dataset(tmp_path: Path, attack_run: tinyrun.TinyRun, name: str) -> None:
    """A look-alike or unknown license id re-signed as admitted: re-evaluation refuses it."""

    def edit(ev: mutate.Evidence, work: Path) -> None:
        rec = ev.admissions[INDEX[name]]
        _admit_as_lenient(ev, INDEX[name], findings=rec["findings"])

    result = _forge_and_verify(tmp_path, attack_run, edit)
    assert not result and "GT-ADMIT-DECISION" in _codes(result), result.failures
    assert verify(attack_run.run, keys=[attack_run.pub])  # the honest run still passes


def test_homoglyph_license_id_admitted_as_permissive(
    tmp_path: Path, attack_run: tinyrun.TinyRun
) -> None:
    """The producer's policy maps `MPL‐2.0` (U+2010) to permissive and admits its example."""
    old = Policy.from_toml(attack_run.run.joinpath("provenance", "policy.toml").read_bytes())
    lax_toml = tinyrun.POLICY.replace(
        b"[licenses.classes]\n", f'[licenses.classes]\n"{HOMOGLYPH_MPL}" = "permissive"\n'.encode()
    )
    with pytest.raises(PolicyError, match=r"licenses\.classes\.MPL.2\.0: expected printable ASCII"):
        Policy.from_toml(lax_toml)  # one line at load, before any example is judged

    def edit(ev: mutate.Evidence, work: Path) -> None:
        ev.policy_bytes = lax_toml
        # what a lenient producer would sign: its own normal form, digested as such
        lax = copy.deepcopy(old.to_dict())
        lax["licenses"]["classes"][HOMOGLYPH_MPL] = "permissive"
        digest = hashlib.sha256(canonical_json(lax)).hexdigest()
        ev.predicates[POLICY_TYPE]["policy"] = lax
        for pred in ev.predicates.values():
            pred["policyDigest"] = digest
        for rec in ev.steps[:1]:
            rec["policyDigest"] = digest
        rec = ev.admissions[INDEX["homoglyph-license"]]
        _admit_as_lenient(ev, INDEX["homoglyph-license"], findings=rec["findings"])

    result = _forge_and_verify(tmp_path, attack_run, edit)
    assert not result and "GT-POLICY-FORMAT" in _codes(result), result.failures
    assert verify(attack_run.run, keys=[attack_run.pub])


def _hide_pii(name: str) -> Any:
    """Findings re-signed as a detector without normalisation reported them: no PII."""

    def edit(ev: mutate.Evidence, work: Path) -> None:
        rec = ev.admissions[INDEX[name]]
        findings = dict(rec["findings"], pii=[])
        d = decide(
            Policy.from_toml(ev.policy_bytes),
            Metadata.from_dict(rec["metadata"]),
            Findings.from_dict(findings),
        )
        assert d.admitted  # consistent under the policy: only the content exposes the lie
        rec["findings"] = findings
        rec["outcomes"] = [o.to_dict() for o in d.outcomes]
        rec["decision"], rec["profile"] = "admit", d.profile

    return edit


def _pii_attack(tmp_path: Path, t: tinyrun.TinyRun, name: str) -> None:
    work_flags = {"data": t.dataset, "openings": tmp_path / "run" / "private"}
    result = _forge_and_verify(tmp_path, t, _hide_pii(name), **work_flags)
    assert not result and "GT-DATA-FINDINGS" in _codes(result), result.failures
    assert verify(t.run, keys=[t.pub], **_audit_flags(t.run, t))


def test_fullwidth_digits_card_number(tmp_path: Path, attack_run: tinyrun.TinyRun) -> None:
    _pii_attack(tmp_path, attack_run, "fullwidth-card")


def test_confusable_email_evades_pii(tmp_path: Path, attack_run: tinyrun.TinyRun) -> None:
    _pii_attack(tmp_path, attack_run, "confusable-email")


@pytest.mark.parametrize("name", ["arabic-indic-card", "zero-width-card", "nbsp-phone"])
def test_unicode_separators_and_digits_evade_pii(
    tmp_path: Path, attack_run: tinyrun.TinyRun, name: str
) -> None:
    _pii_attack(tmp_path, attack_run, name)
