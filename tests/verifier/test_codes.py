"""The check catalog (verifier/codes.py) is the spec's, in the spec's order (issue 10 item 14)."""

from __future__ import annotations

import re
from pathlib import Path

from verifier import checks_admissions, checks_bundle, checks_chain, checks_data, checks_weights
from verifier.checks_memorization import MEM_CODES
from verifier.codes import CHECKS, LAYERS

SPEC = Path(__file__).resolve().parents[2] / "spec" / "verification.md"


def test_catalog_order_equals_the_spec_tables() -> None:
    rows = re.findall(r"^\| `(GT-[A-Z0-9-]+)` \|", SPEC.read_text(), re.M)
    assert rows == [c.code for c in CHECKS]


def test_each_code_belongs_to_one_layer_and_each_layer_emits_its_own() -> None:
    emitted = {
        "bundle": checks_bundle.CODES,
        "policy": checks_admissions.POLICY_CODES,
        "admissions": checks_admissions.ADMIT_CODES,
        "chain": checks_chain.CHAIN_CODES,
        "memorization": MEM_CODES,
        "weights": checks_weights.WEIGHT_CODES,
        "base": checks_weights.BASE_CODES,
        "data": checks_data.DATA_CODES,
    }
    for layer, codes in emitted.items():
        assert sorted(codes) == sorted(c.code for c in CHECKS if c.layer == layer), layer
    assert len({c.code for c in CHECKS}) == len(CHECKS)
    # V9 replay, V10 release, V11 the consumer's requirements last (they judge the others)
    assert LAYERS[0] == "bundle" and LAYERS[-3:] == ("replay", "release", "requirements")
    # One code per log (no code shared by the admission and the step layers).
    assert {"GT-ADMIT-LOG-FORMAT", "GT-STEP-LOG-FORMAT"} <= {c.code for c in CHECKS}


def test_an_honest_audit_reports_each_code_exactly_once() -> None:
    # v0.1 reported the two shared log codes twice (once per log): 51 findings for 49 codes.
    from collections import Counter

    from verifier import verify

    basic = SPEC.parent / "vectors" / "valid" / "basic"
    r = verify(
        basic / "run",
        keys=[SPEC.parent / "vectors" / "keys" / "vector.pub"],
        base=basic / "base",
        data=basic / "dataset.jsonl",
        openings=basic / "run" / "private",
    )
    assert r
    counts = Counter(f.code for f in r.findings)
    assert sorted(counts) == sorted(c.code for c in CHECKS)
    assert set(counts.values()) == {1}
