"""Evidence surgery for mutation tests, and the mutation table printed at the end of a session.

The forger itself (load a run's evidence, edit, rewrite and re-sign with the producer's
key) is `support.evidence`, shared with the replay tests; its names are re-exported here
because every mutation test reaches it as ``mutate.Evidence``.
"""

from __future__ import annotations

from typing import Any

from support.evidence import (
    Evidence,
    _write_log,
    payload_of,
    sha256_file,
    sign_foreign,
    weights_root,
)

from attest.keys import load_signer

__all__ = [
    "TABLE",
    "Evidence",
    "_write_log",
    "payload_of",
    "record",
    "sha256_file",
    "sign_foreign",
    "signer",
    "weights_root",
]

# mutation class -> [mutants, detected]; printed by conftest at the end of the session
TABLE: dict[str, list[int]] = {}


def record(label: str, count: int, detected: int) -> None:
    row = TABLE.setdefault(label, [0, 0])
    row[0] += count
    row[1] += detected


def signer(run: Any) -> Any:
    """The producer's signer of a tinyrun.TinyRun."""
    return load_signer(run.key)
