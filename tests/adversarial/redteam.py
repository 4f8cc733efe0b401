"""The red team's shared harness (issue 9): the forger that re-signs with the producer's
own key and the audit calls (the ``honest`` and ``work`` fixtures are in conftest.py).

Used by tests/adversarial/test_redteam_*.py, which were written from README.md and spec/
alone; this module holds only the harness, never a check.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mutate
import tinyrun

from verifier.api import verify
from verifier.result import Result


def failing(result: Result) -> set[str]:
    return {f.code for f in result.failures}


def audit(run: Path, t: tinyrun.TinyRun, **flags: Any) -> Result:
    return verify(run, keys=[t.pub], **flags)


def full(run: Path, t: tinyrun.TinyRun, **flags: Any) -> Result:
    return audit(run, t, base=t.base, data=t.dataset, openings=run / "private", **flags)


def forge(
    work: Path, t: tinyrun.TinyRun, edit: Callable[[mutate.Evidence], None], **kw: Any
) -> None:
    """Edit the evidence, rebuild everything consistent except the lie, re-sign (producer key)."""
    ev = mutate.Evidence.load(work, t.pub)
    edit(ev)
    ev.write(work, mutate.signer(t), **kw)


def resign(work: Path, t: tinyrun.TinyRun, edit: Callable[[mutate.Evidence], None]) -> None:
    """Edit signed predicates/subjects only and re-sign with the producer key."""
    ev = mutate.Evidence.load(work, t.pub)
    edit(ev)
    ev.sign_bundle(work, mutate.signer(t))


def step_where(ev: mutate.Evidence, pred: Callable[[dict[str, Any]], bool]) -> int:
    """The first step whose record satisfies ``pred`` (the batches are the derived data
    order's, records.md §5.2, so attacks find their step by what it holds, not by number)."""
    for rec in ev.steps[1:]:
        if pred(rec):
            return int(rec["step"])
    raise AssertionError("the honest run has no step the attack needs")


def all_surface(rec: dict[str, Any]) -> bool:
    return set(rec["profiles"]) == {"surface"}


def set_policy(ev: mutate.Evidence, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in policy.toml; the start record follows the new digest (the
    forger re-signs the statements' policyDigest); an invalid policy keeps the old digest."""
    from attest.errors import GovtuneError
    from attest.policy import Policy

    text = ev.policy_bytes.decode()
    assert old in text, old
    ev.policy_bytes = text.replace(old, new, 1).encode()
    try:
        ev.steps[0]["policyDigest"] = Policy.from_toml(ev.policy_bytes).digest()
    except GovtuneError:
        return  # an invalid policy on purpose: nothing to follow
