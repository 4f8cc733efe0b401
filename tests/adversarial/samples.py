"""Valid sample inputs for every untrusted-input parser, built with the real attest code.

The fuzzers start from these (a mutated valid document reaches far deeper into a
parser than random bytes do). Shared by test_fuzz_parsers.py, test_resource_bounds.py
and the atheris harness fuzz_atheris.py.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from attest import keys
from attest.admission import Findings, Metadata, Outcome
from attest.bundle import encode_bundle
from attest.envelope import sign_statement
from attest.log import LogWriter
from attest.predicates import (
    POLICY_TYPE,
    STATE_ROOT_ALG,
    STATE_ROOT_SUBJECT,
    TRAINING_TYPE,
)
from attest.records import AdmissionRecord, Event, StartRecord, StepRecord
from attest.statement import Statement, Subject
from attest.tensors import tensor_leaf_hash

POLICY_TOML = b"""\
version = "0.1"
name = "fuzz-sample"

[licenses]
classes = { "MIT" = "permissive", "Apache-2.0" = "permissive", "GPL-3.0-only" = "copyleft" }
allow = ["permissive"]
deny = ["copyleft"]

[consent]
required = ["personal"]

[sources]
allow = ["*"]
deny = ["evil:*"]

[pii]
detect = ["email", "phone", "credit-card"]
action = "mask"

[optout]
digests = ["0000000000000000000000000000000000000000000000000000000000000000"]

[duplicates]
action = "reject"

[length]
min = 1
max = 4096

[profiles.shallow]
patterns = ["head.*"]

[profiles.deep]
patterns = ["*"]
exclude = ["emb.*"]

[[assign]]
when = { license_class = "permissive" }
profile = "deep"

[[assign]]
profile = "shallow"

[memorization]
action = "quarantine"
loss_drop_max = 2.0
holdout = 2

[canaries]
count = 2
profile = "shallow"
"""


def statement(predicate_type: str = POLICY_TYPE) -> Statement:
    return Statement(
        (
            Subject("policy.toml", {"sha256": hashlib.sha256(POLICY_TOML).hexdigest()}),
            Subject(STATE_ROOT_SUBJECT, {STATE_ROOT_ALG: "ab" * 32}),
        ),
        predicate_type,
        {"runId": "0" * 32, "policyDigest": "cd" * 32, "policy": {"name": "fuzz", "n": 3}},
    )


def envelope_dict(signer: Any) -> dict[str, Any]:
    return sign_statement(statement(), [signer])


def bundle_bytes(signer: Any) -> bytes:
    return encode_bundle(
        [envelope_dict(signer), sign_statement(statement(TRAINING_TYPE), [signer])]
    )


def admission_record(index: int = 0) -> AdmissionRecord:
    return AdmissionRecord(
        index,
        bytes(range(32)),
        Metadata("MIT", "docs:x", "public", True, 12, False),
        Findings(("email",), False, False),
        (
            Outcome("license", "pass"),
            Outcome("pii", "masked", {"reason": "pii-masked", "kinds": ["email"]}),
        ),
        True,
        "deep",
    )


def start_record() -> StartRecord:
    leaf = tensor_leaf_hash("head.w", "F32", (2,), b"\0" * 8)
    return StartRecord(
        "11" * 32,
        "22" * 32,
        {"head.w": leaf, "emb.w": leaf},
        b"\x33" * 32,
        {"head.w": ("F32", (2,)), "emb.w": ("F32", (2,))},
        {"deep": ("head.w",), "shallow": ("head.w",)},
        ("head.w",),
        (5,),
        {"seed": 1},
    )


def step_record(step: int = 1) -> StepRecord:
    return StepRecord(
        step,
        (0, 1),
        ("deep", "shallow"),
        (1.5, 2.0),
        (0.1, 0.0),
        0.001,
        {"head.w": b"\x44" * 32},
        b"\x55" * 32,
        (Event("memorization-flag", 1, "loss-drop", 2.5, 2.0, ""),),
        {
            "file": "checkpoints/step-000001.safetensors",
            "sha256": "66" * 32,
            "stateRoot": "77" * 32,
        },
        b"\x88" * 32,
    )


def records() -> list[dict[str, Any]]:
    return [
        admission_record(0).to_record(),
        start_record().to_record(),
        step_record(1).to_record(),
        step_record(2).to_record(),
    ]


def write_log(path: Path, recs: list[dict[str, Any]] | None = None) -> bytes:
    """Write a valid hash-chained log of ``recs``; returns its bytes."""
    with LogWriter(path) as w:
        for r in records() if recs is None else recs:
            w.append(r)
    return path.read_bytes()


def safetensors_bytes(tensors: dict[str, tuple[str, list[int], bytes]] | None = None) -> bytes:
    """A safetensors file built by hand from its README layout."""
    if tensors is None:
        tensors = {
            "head.w": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
            "emb.w": ("BF16", [3], b"\x01\x02" * 3),
            "empty": ("I64", [0, 4], b""),
        }
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    buf = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [len(buf), len(buf) + len(raw)],
        }
        buf += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + buf


def key_files(folder: Path) -> dict[str, bytes]:
    """PEM key files of both supported types, as written by `govtune keygen`."""
    out = {}
    for kt in ("ecdsa", "ed25519"):
        priv, pub = keys.write_keypair(folder / kt, kt, force=True)
        out[f"{kt}.key"] = priv.read_bytes()
        out[f"{kt}.pub"] = pub.read_bytes()
    return out
