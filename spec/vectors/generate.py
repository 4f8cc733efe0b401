"""Generate govtune's test vectors (spec/vectors/README.md): deterministic, pure Python.

    python spec/vectors/generate.py [--out spec/vectors]

Builds a tiny synthetic run with attest only (no torch): fake F32 tensors written
as safetensors by hand with `struct`, an admission log with admitted, refused and
canary examples, a step log whose changes respect the depth profiles, the four
predicates and a signed bundle. Then one invalid variant per reachable check code,
each built by the same pipeline with one stage altered and everything after it
recomputed and re-signed, so that it fails exactly that check (its ``expected.json``
names the code). Signatures are ed25519 (deterministic, RFC 8032) or, for the ECDSA
vectors, ECDSA P-256 with RFC 6979 nonces, with keys derived from fixed seeds and stored
in ``keys/``: regenerating gives identical bytes.

THE KEYS IN keys/ ARE PUBLIC TEST KEYS. Never trust them for anything else.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import os
import shutil
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, Signature, SSlibKey

from attest.admission import Findings, Metadata, decide, inspect_content
from attest.bundle import encode_bundle
from attest.canary import canary_metadata, heldout_indices
from attest.canary import canary_text as derive_canary_text
from attest.canonical import canonical_json, canonical_msgpack
from attest.commitment import commit, derive_salt
from attest.envelope import PAYLOAD_TYPE
from attest.keys import keyid_input
from attest.log import GENESIS, LogSummary, record_hash
from attest.merkle import MerkleBuilder
from attest.order import ORDER, DataOrder
from attest.policy import Policy
from attest.predicates import (
    ADMISSIONS_FILE,
    ADMISSIONS_TYPE,
    BUNDLE_FILE,
    MEMORIZATION_TYPE,
    POLICY_FILE,
    POLICY_TYPE,
    STEPS_FILE,
    TRAINING_TYPE,
    file_subject,
    state_root_subject,
)
from attest.statement import Statement
from attest.tensors import state_root, tensor_leaf_hash

HERE = Path(__file__).resolve().parent
WEIGHTS = "model.safetensors"
RUN_SECRET = hashlib.sha256(b"govtune test vector run secret").digest()
RUN_ID = hashlib.sha256(b"govtune test vector run").hexdigest()[:32]
TIME_START, TIME_END = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"

# -- inputs -------------------------------------------------------------------

OPTOUT_TEXT = "Please do not train on this paragraph of mine."
POLICY_TOML = f"""\
# govtune test-vector policy (spec/policy.md)
version = "0.1"
name = "govtune-vectors"

[licenses]
classes = {{ "MIT" = "permissive", "Apache-2.0" = "permissive", "CC-BY-SA-4.0" = "copyleft", \
"LicenseRef-Proprietary" = "proprietary" }}
allow = ["permissive", "copyleft"]
deny = ["proprietary"]

[consent]
required = ["personal"]

[sources]
allow = ["docs:*", "forum:*"]
deny = ["forum:banned*"]

[pii]
detect = ["email", "phone", "credit-card"]
action = "mask"

[optout]
digests = ["{hashlib.sha256(canonical_json(OPTOUT_TEXT)).hexdigest()}"]

[duplicates]
action = "reject"

[length]
min = 5
max = 400

[profiles.deep]
patterns = ["h.*", "head.*"]

[profiles.shallow]
patterns = ["h.1.*", "head.*"]

[profiles.canary]
patterns = ["head.*"]

[[assign]]
when = {{ license_class = "permissive" }}
profile = "deep"

[[assign]]
when = {{ license_class = "copyleft" }}
profile = "shallow"

[memorization]
action = "quarantine"
loss_drop_max = 2.0
holdout = 1

[canaries]
count = 1
repeats = 2
profile = "canary"
"""


def _ex(
    text: str, lic: str = "MIT", source: str = "docs:a", dc: str = "public", consent: bool = False
) -> dict[str, Any]:
    return {"text": text, "license": lic, "source": source, "data_class": dc, "consent": consent}


DATASET: list[dict[str, Any]] = [
    _ex("The merge function combines two sorted lists into one."),  # 0 deep
    _ex(
        "Copyleft notes on building the parser from source.", "CC-BY-SA-4.0", "forum:b"
    ),  # 1 shallow
    _ex("Internal design memo, all rights reserved.", "LicenseRef-Proprietary"),  # 2 license
    _ex("My own notes about my daily schedule.", dc="personal"),  # 3 consent
    _ex("Write to jane.doe@example.com for access to the mirror."),  # 4 deep, PII masked
    _ex("The merge function combines two sorted lists into one."),  # 5 duplicate of 0
    _ex(OPTOUT_TEXT),  # 6 opt-out
    _ex("A post copied from a banned board.", source="forum:banned-1"),  # 7 source
    _ex("hi"),  # 8 length
    _ex("Held-out reference text about binary search trees."),  # 9 deep, held out
    _ex("Shared answer on configuring the logger.", "CC-BY-SA-4.0", "forum:c"),  # 10 shallow
    _ex("Apache licensed explanation of the retry loop.", "Apache-2.0"),  # 11 deep
]
EXPECTED_ADMITTED = {0: "deep", 1: "shallow", 4: "deep", 9: "deep", 10: "shallow", 11: "deep"}

TENSORS: dict[str, tuple[int, ...]] = {
    "embed.weight": (4, 2),  # not trainable
    "h.0.attn.w": (2, 2),
    "h.0.mlp.w": (2, 2),
    "h.1.attn.w": (2, 2),
    "h.1.mlp.w": (2, 2),
    "head.bias": (4,),
    "head.weight": (2, 4),
}
TRAINABLE = tuple(n for n in TENSORS if n != "embed.weight")
# seed 1064: the held-out set derived from it (attest.canary.heldout_indices) is example 9,
# and its data order (attest.order, records.md §5.2) draws the batches of default_plan:
# example 11 twice (steps 2 and 4, then quarantined), and a batch without a deep example
# at step 5.
CONFIG = {
    "model": "vector-tiny",
    "steps": 6,
    "batch_size": 2,
    "lr": 0.125,
    "seed": 1064,
    "holdout": 1,
}
HELDOUT = heldout_indices(CONFIG["seed"], sorted(EXPECTED_ADMITTED), 1)
assert HELDOUT == (9,), "the vector plan trains every admitted example but 9"
CHECKPOINT_STEP = 3
CHECKPOINT_FILE = f"checkpoints/step-{CHECKPOINT_STEP:06d}.safetensors"


@dataclass
class StepPlan:
    batch: list[int]
    changes: list[str]  # tensors this step changes
    events: list[dict[str, Any]] = field(default_factory=list)
    loss: list[float] | None = None  # per-example losses; default 3.0 - 0.25 s + 0.5 k


def default_loss(step: int, k: int) -> float:
    # Between two visits this never drops by more than 1.75 nats (< loss_drop_max 2.0):
    # the only loss-drop flag is the one step 3's explicit losses make.
    return 3.0 - 0.25 * step + 0.5 * k


def _ev(
    kind: str,
    example: int | None,
    signal: str = "",
    value: float | None = None,
    threshold: float | None = None,
    detail: str = "",
) -> dict[str, Any]:
    return {
        "kind": kind,
        "example": example,
        "signal": signal,
        "value": value,
        "threshold": threshold,
        "detail": detail,
    }


def default_plan() -> list[StepPlan]:
    plan = [
        StepPlan([12, 0], ["h.0.attn.w", "h.1.mlp.w", "head.weight"]),
        StepPlan([10, 11], ["h.0.mlp.w", "head.bias"]),
        StepPlan([4, 1], ["h.0.attn.w", "head.weight"]),
        # Example 11's loss 3.0 at step 2 -> 0.5 at step 4: a drop of 2.5 > loss_drop_max
        # 2.0, so the loss-drop signal flags it and the policy action quarantines it
        # (verification.md V5, GT-MEM-SIGNAL re-derives this flag from the losses).
        StepPlan(
            [13, 11],
            ["h.1.attn.w", "head.weight"],
            [
                _ev(
                    "memorization-flag",
                    11,
                    "loss-drop",
                    2.5,
                    2.0,
                    "loss fell 2.5 nats between visits",
                ),
                _ev("quarantine", 11, "loss-drop", 2.5, 2.0, "policy action quarantine"),
            ],
            [default_loss(4, 0), 0.5],
        ),
        StepPlan([10, 13], ["h.1.mlp.w", "head.bias"]),  # shallow and canary: no h.0.*
        StepPlan(
            [12, 4],
            ["h.0.mlp.w", "head.weight"],
            [
                # exposure_max is 0 (off): the threshold is nil (records.md §5.1)
                _ev("canary-exposure", 12, "canary-exposure", 1.5, None, "exposure of canary 0"),
            ],
        ),
    ]
    order = DataOrder(sorted(set(EXPECTED_ADMITTED) - set(HELDOUT)) + [12, 13], CONFIG["seed"],
                      CONFIG["batch_size"])  # fmt: skip
    quarantined: set[int] = set()
    for p in plan:  # the plan follows the derived data order (GT-BATCH-ORDER)
        assert p.batch == order.next_batch(quarantined), p.batch
        quarantined |= {e["example"] for e in p.events if e["kind"] == "quarantine"}
    return plan


# -- deterministic keys -----------------------------------------------------------


def signer_from_seed(label: bytes) -> CryptoSigner:
    priv = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label).digest())
    return CryptoSigner(priv)


class Rfc6979Signer:
    """ECDSA P-256 / SHA-256 signer with RFC 6979 deterministic nonces, so that regenerating
    the vectors is byte for byte. Producers (securesystemslib) draw random nonces; a verifier
    cannot tell the two apart and MUST NOT try (spec/format.md §1.1.1). ``high_s`` rewrites
    each signature to the s > n/2 form, equally valid, that libraries with a low-s rule refuse.
    """

    def __init__(self, label: bytes, *, high_s: bool = False) -> None:
        scalar = int.from_bytes(hashlib.sha256(label).digest(), "big") % (P256_N - 1) + 1
        self._private_key = ec.derive_private_key(scalar, ec.SECP256R1())
        self.public_key = SSlibKey.from_crypto(self._private_key.public_key())
        self.high_s = high_s

    def sign(self, payload: bytes) -> Signature:
        der = self._private_key.sign(payload, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        if self.high_s:
            r, s = decode_dss_signature(der)
            der = encode_dss_signature(r, s if s > P256_N // 2 else P256_N - s)
        return Signature(self.public_key.keyid, der.hex())


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # the group order
SIGNER = signer_from_seed(b"govtune spec vector key 1")
UNTRUSTED = signer_from_seed(b"govtune spec vector untrusted key")
ECDSA_SIGNER = Rfc6979Signer(b"govtune spec vector ecdsa key 1")
SIGNERS: dict[str, Any] = {
    "vector": SIGNER,
    "vector-ecdsa": ECDSA_SIGNER,
    "vector-ecdsa-high-s": Rfc6979Signer(b"govtune spec vector ecdsa key 1", high_s=True),
}
KEY_FILES = {"vector-ecdsa-high-s": "vector-ecdsa"}  # same key, other signature form


def write_keys(out: Path) -> None:
    kdir = out / "keys"
    kdir.mkdir(parents=True, exist_ok=True)
    for name, s in (("vector", SIGNER), ("untrusted", UNTRUSTED), ("vector-ecdsa", ECDSA_SIGNER)):
        priv = s._private_key.private_bytes(  # noqa: SLF001 - test-vector key export
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pub = s.public_key._crypto_key().public_bytes(  # noqa: SLF001
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (kdir / f"{name}.key").write_bytes(priv)
        (kdir / f"{name}.pub").write_bytes(pub)


# -- tiny safetensors -----------------------------------------------------------


def base_values() -> dict[str, list[float]]:
    out = {}
    for k, (name, shape) in enumerate(TENSORS.items()):
        n = 1
        for d in shape:
            n *= d
        out[name] = [((k * 7 + j * 3) % 13) / 8.0 - 0.75 for j in range(n)]
    return out


def raw_f32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def safetensors_bytes(
    values: dict[str, list[float]],
    metadata: dict[str, str] | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> bytes:
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    for name in sorted(values):
        nbytes = 4 * len(values[name])
        header[name] = {
            "dtype": "F32",
            "shape": list({**TENSORS, **(shapes or {})}[name]),
            "data_offsets": [off, off + nbytes],
        }
        off += nbytes
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)  # safetensors pads the header to 8 bytes with spaces
    return struct.pack("<Q", len(hj)) + hj + b"".join(raw_f32(values[n]) for n in sorted(values))


def leaves_of(values: dict[str, list[float]]) -> dict[str, bytes]:
    return {n: tensor_leaf_hash(n, "F32", TENSORS[n], raw_f32(v)) for n, v in values.items()}


# -- logs -------------------------------------------------------------------------


def encode_log(records: list[dict[str, Any]]) -> tuple[bytes, LogSummary, list[bytes]]:
    prev = GENESIS
    merkle = MerkleBuilder()
    out, hashes = [], []
    for rec in records:
        raw = canonical_msgpack({**rec, "prev": prev})
        prev = record_hash(raw)
        merkle.add(prev)
        hashes.append(prev)
        out.append(raw)
    data = b"".join(out)
    return (
        data,
        LogSummary(len(records), prev.hex(), merkle.root().hex(), hashlib.sha256(data).hexdigest()),
        hashes,
    )


# -- the pipeline -----------------------------------------------------------------

Hook = Callable[..., Any]


@dataclass
class Variant:
    """One vector: which stages to alter. Each hook gets the stage's value and returns it."""

    name: str
    code: str | None  # None for a valid vector
    description: str
    hooks: dict[str, Hook] = field(default_factory=dict)
    flags: dict[str, Any] = field(
        default_factory=dict
    )  # {"threshold": 2, "base": true, "data": true}

    def apply(self, stage: str, value: Any, *extra: Any) -> Any:
        h = self.hooks.get(stage)
        return value if h is None else h(value, *extra)


def canary_text() -> str:
    """Canary 0's text, derived from the run secret (policy.md §7; attest.canary)."""
    return derive_canary_text(RUN_SECRET, Policy.from_toml(POLICY_TOML.encode()).canaries, 0)


def build(v: Variant, dest: Path) -> dict[str, Any]:
    """Build vector ``v`` into ``dest`` (created fresh). Returns the intermediates."""
    inter: dict[str, Any] = {}
    policy_toml = v.apply("policy_toml", POLICY_TOML)
    policy = Policy.from_toml(policy_toml.encode())
    dataset = v.apply("dataset", copy.deepcopy(DATASET))
    dataset_bytes = b"".join(
        json.dumps(e, sort_keys=True, separators=(",", ":")).encode() + b"\n" for e in dataset
    )

    # Admission: content inspection in dataset order, then the shared evaluator.
    seen: set[str] = set()
    examples = []
    for i, e in enumerate(dataset):
        findings, trained = inspect_content(policy, e["text"], seen)
        meta = Metadata(e["license"], e["source"], e["data_class"], e["consent"], len(trained))
        examples.append({"index": i, "trained": trained, "metadata": meta, "findings": findings})
    canary = canary_text()
    for rep in range(policy.canaries.count * policy.canaries.repeats):
        meta = canary_metadata(policy.canaries)  # records.md §3 rule 2
        assert meta.length == len(canary)
        examples.append(
            {
                "index": len(dataset) + rep,
                "trained": canary,
                "metadata": meta,
                "findings": Findings(),
            }
        )
    examples = v.apply("examples", examples)
    records = []
    for ex in examples:
        d = decide(policy, ex["metadata"], ex["findings"])
        salt = derive_salt(RUN_SECRET, ex["index"])
        records.append(
            {
                "v": 1,
                "kind": "admission",
                "index": ex["index"],
                "commitment": commit(salt, ex["trained"]),
                "metadata": ex["metadata"].to_dict(),
                "findings": ex["findings"].to_dict(),
                "outcomes": [o.to_dict() for o in d.outcomes],
                "decision": "admit" if d.admitted else "refuse",
                "profile": d.profile,
            }
        )
    records = v.apply("admission_records", records)
    adm_bytes, adm_summary, adm_hashes = encode_log(records)
    adm_file = v.apply("admissions_bytes", adm_bytes)
    if v.code is None:
        assert {r["index"]: r["profile"] for r in records if r["decision"] == "admit"} == {
            **EXPECTED_ADMITTED,
            12: "canary",
            13: "canary",
        }, "the vector dataset no longer admits as designed"

    # Training: apply the plan to fake tensors.
    values = base_values()
    base_leaves = leaves_of(values)
    base_root = state_root(base_leaves)
    admitted = {r["index"]: r["profile"] for r in records}
    start = {
        "v": 1,
        "kind": "start",
        "configDigest": hashlib.sha256(canonical_json(CONFIG)).hexdigest(),
        "policyDigest": policy.digest(),
        "baseLeaves": [[n, base_leaves[n]] for n in sorted(base_leaves)],
        "baseStateRoot": base_root,
        "tensors": [[n, "F32", list(TENSORS[n])] for n in sorted(TENSORS)],
        "profiles": {p: list(ns) for p, ns in policy.resolve_profiles(TRAINABLE).items()},
        "trainable": list(TRAINABLE),
        "heldout": list(HELDOUT),
        "extra": {"dataOrderSeed": CONFIG["seed"], "order": ORDER},
    }
    step_records: list[dict[str, Any]] = [start]
    leaves = dict(base_leaves)
    checkpoint: dict[str, Any] | None = None
    checkpoint_bytes = b""
    for s, plan in enumerate(v.apply("plan", default_plan()), 1):
        changed = {}
        for name in plan.changes:
            values[name][0] += 0.125 * s
            leaves[name] = changed[name] = tensor_leaf_hash(
                name, "F32", TENSORS[name], raw_f32(values[name])
            )
        cp = None
        if s == CHECKPOINT_STEP:  # the model's tensors after this step (no optimizer state)
            checkpoint_bytes = v.apply("checkpoint_bytes", safetensors_bytes(values))
            cp = {
                "file": CHECKPOINT_FILE,
                "sha256": hashlib.sha256(checkpoint_bytes).hexdigest(),
                "stateRoot": state_root(leaves).hex(),
            }
            checkpoint = {"step": s, **cp}
        step_records.append(
            {
                "v": 1,
                "kind": "step",
                "step": s,
                "batch": list(plan.batch),
                "profiles": [admitted[x] or "" for x in plan.batch],
                "loss": plan.loss or [default_loss(s, k) for k in range(len(plan.batch))],
                "gradNorm": [1.0 + 0.5 * k for k in range(len(plan.batch))],
                "lr": CONFIG["lr"],
                "changed": [[n, changed[n]] for n in sorted(changed)],
                "stateRoot": state_root(leaves),
                "events": plan.events,
                "checkpoint": cp,
                "rng": None,
            }
        )
    step_records = v.apply("step_records", step_records)
    steps_bytes, steps_summary, _ = encode_log(step_records)
    steps_file = v.apply("steps_bytes", steps_bytes)
    final_root = state_root(leaves)
    weights_bytes = v.apply("weights_bytes", safetensors_bytes(values))
    base_bytes = v.apply("base_bytes", safetensors_bytes(base_values()))

    # Predicates: derived from the (possibly altered) records above.
    n_can = sum(1 for r in records if r["metadata"]["canary"])
    n_adm = sum(1 for r in records if r["decision"] == "admit")
    dataset_ref = {
        "sha256": hashlib.sha256(dataset_bytes).hexdigest(),
        "examples": len(records) - n_can,
    }
    events = [{**e, "step": r["step"]} for r in step_records[1:] for e in r["events"]]
    weights_sha = hashlib.sha256(weights_bytes).hexdigest()
    policy_file = v.apply("policy_file", policy_toml.encode())
    preds = {
        POLICY_TYPE: {"runId": RUN_ID, "policyDigest": policy.digest(), "policy": policy.to_dict()},
        ADMISSIONS_TYPE: {
            "runId": RUN_ID,
            "policyDigest": policy.digest(),
            "log": adm_summary.to_dict(),
            "counts": {
                "total": len(records),
                "admitted": n_adm,
                "refused": len(records) - n_adm,
                "canaries": n_can,
            },
            "dataset": dataset_ref,
        },
        TRAINING_TYPE: {
            "runId": RUN_ID,
            "policyDigest": policy.digest(),
            "baseModel": {"name": "govtune-vector-base", "stateRoot": base_root.hex()},
            "dataset": dataset_ref,
            "admissionHead": adm_summary.head,
            "config": CONFIG,
            "configDigest": start["configDigest"],
            "environment": {
                "python": "3.11",
                "torch": "none (synthetic test vector)",
                "platform": "any",
                "deterministic": True,
            },
            # sha256 of the file as written (a vector may alter it after encoding)
            "stepLog": {
                **steps_summary.to_dict(),
                "sha256": hashlib.sha256(steps_file).hexdigest(),
            },
            "steps": len(step_records) - 1,
            "baseStateRoot": base_root.hex(),
            "finalStateRoot": final_root.hex(),
            "weights": [{"name": WEIGHTS, "sha256": weights_sha}],
            "checkpoints": [checkpoint] if checkpoint else [],
            "startedOn": TIME_START,
            "finishedOn": TIME_END,
            "builder": "spec/vectors/generate.py",
            "extra": {},
        },
        MEMORIZATION_TYPE: {
            "runId": RUN_ID,
            "policyDigest": policy.digest(),
            "stepLogHead": steps_summary.head,
            "events": events,
            "quarantined": sorted({e["example"] for e in events if e["kind"] == "quarantine"}),
            "halted": any(e["kind"] == "halt" for e in events),
            # the step log's canary-exposure events (GT-MEM-EVENTS compares them)
            "canaries": [
                {"index": e["example"], "exposure": e["value"], "step": e["step"]}
                for e in events
                if e["kind"] == "canary-exposure"
            ],
            "reference": {"count": 1, "quantiles": {"0.05": 1.25, "0.5": 2.0}},
        },
    }
    preds = v.apply("predicates", preds)
    tp = preds[TRAINING_TYPE]
    subjects = {
        POLICY_TYPE: [file_subject(POLICY_FILE, hashlib.sha256(policy_file).hexdigest())],
        ADMISSIONS_TYPE: [file_subject(ADMISSIONS_FILE, hashlib.sha256(adm_file).hexdigest())],
        TRAINING_TYPE: [file_subject(w["name"], w["sha256"]) for w in tp.get("weights", [])]
        + [state_root_subject(tp.get("finalStateRoot", final_root.hex()))],
        MEMORIZATION_TYPE: [file_subject(WEIGHTS, weights_sha)],
    }
    payloads = {
        t: canonical_json(Statement(tuple(subjects[t]), t, preds[t]).to_dict()) for t in preds
    }
    payloads = v.apply("payloads", payloads)
    envelopes = [
        sign(payloads[t], [SIGNERS[v.flags.get("signer", "vector")]])
        for t in (POLICY_TYPE, ADMISSIONS_TYPE, TRAINING_TYPE, MEMORIZATION_TYPE)
    ]
    envelopes = v.apply("envelopes", envelopes)
    bundle = v.apply("bundle_bytes", encode_bundle(envelopes))

    # Files.
    if dest.exists():
        shutil.rmtree(dest)
    run = dest / "run"
    prov = run / "provenance"
    prov.mkdir(parents=True)
    (run / WEIGHTS).write_bytes(weights_bytes)
    if checkpoint is not None:
        (run / "checkpoints").mkdir()
        (run / CHECKPOINT_FILE).write_bytes(checkpoint_bytes)
    (prov / BUNDLE_FILE).write_bytes(bundle)
    (prov / POLICY_FILE).write_bytes(policy_file)
    (prov / ADMISSIONS_FILE).write_bytes(adm_file)
    (prov / STEPS_FILE).write_bytes(steps_file)
    if v.flags.get("base"):
        (dest / "base").mkdir()
        (dest / "base" / WEIGHTS).write_bytes(base_bytes)
    if v.flags.get("data"):
        (dest / "dataset.jsonl").write_bytes(dataset_bytes)
        priv = run / "private"
        priv.mkdir()
        (priv / "run-secret").write_text(RUN_SECRET.hex() + "\n")
        openings = [
            {"index": ex["index"], "salt": derive_salt(RUN_SECRET, ex["index"]).hex()}
            for ex in examples
        ]
        openings = v.apply("openings", openings)
        (priv / "openings.jsonl").write_bytes(
            b"".join(
                json.dumps(o, sort_keys=True, separators=(",", ":")).encode() + b"\n"
                for o in openings
            )
        )
        (priv / "canaries.jsonl").write_bytes(
            b"".join(
                json.dumps(
                    {"index": ex["index"], "text": ex["trained"]},
                    sort_keys=True,
                    separators=(",", ":"),
                ).encode()
                + b"\n"
                for ex in examples
                if ex["metadata"].canary
            )
        )
    v.apply("files", run)
    expected: dict[str, Any] = {
        "verdict": "PASS" if v.code is None else "FAIL",
        "description": v.description,
    }
    if v.code is not None:
        expected["code"] = v.code
    expected["flags"] = _cli_flags(v)
    (dest / "expected.json").write_bytes(
        json.dumps(expected, indent=2, sort_keys=True).encode() + b"\n"
    )

    inter.update(
        {
            "policyDigest": policy.digest(),
            "baseLeaves": {n: base_leaves[n].hex() for n in sorted(base_leaves)},
            "baseStateRoot": base_root.hex(),
            "finalStateRoot": final_root.hex(),
            "admissionRecordHashes": [h.hex() for h in adm_hashes],
            "admissionLog": adm_summary.to_dict(),
            "stepLog": steps_summary.to_dict(),
            "commitment": {
                "index": 0,
                "salt": derive_salt(RUN_SECRET, 0).hex(),
                "content": examples[0]["trained"],
                "commitment": records[0]["commitment"].hex(),
            },
            "weightsSha256": weights_sha,
            "checkpoint": checkpoint,
        }
    )
    pay = payloads[POLICY_TYPE]
    pae = b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(pay), pay)
    assert pae == Envelope(pay, PAYLOAD_TYPE, {}).pae()
    inter["policyStatement"] = {
        "canonicalJson": pay.decode(),
        "paeHex": pae.hex(),
        "keyid": SIGNER.public_key.keyid,
        "envelope": envelopes[0],
    }
    inter["keyids"] = {
        f"keys/{n}.pub": _keyid_example(SIGNERS[n]) for n in ("vector", "vector-ecdsa")
    }
    der = bytes.fromhex(ECDSA_SIGNER.sign(pae).signature)
    r, s = decode_dss_signature(der)
    inter["ecdsaSignature"] = {
        "key": "keys/vector-ecdsa.pub",
        "signs": "policyStatement.paeHex",
        "nonce": "RFC 6979 (deterministic, for reproducible vectors); any valid nonce verifies",
        "derHex": der.hex(),
        "r": f"{r:064x}",
        "s": f"{s:064x}",
        "sig": base64.b64encode(der).decode(),
    }
    return inter


def _keyid_example(signer: Any) -> dict[str, str]:
    """The keyid worked example of spec/format.md §1.1.2 for one key."""
    key = signer.public_key
    data = keyid_input(key)
    return {
        "keytype": key.keytype,
        "scheme": key.scheme,
        "public": key.keyval["public"],
        "keyidInput": data.decode("ascii"),
        "keyidInputHex": data.hex(),
        "keyid": hashlib.sha256(data).hexdigest(),
    }


def _cli_flags(v: Variant) -> dict[str, Any]:
    """The verify arguments of this vector, relative to its folder."""
    signer = v.flags.get("signer", "vector")
    flags: dict[str, Any] = {
        "key": [f"../../keys/{KEY_FILES.get(signer, signer)}.pub"],
        "threshold": v.flags.get("threshold", 1),
    }
    if v.flags.get("base"):
        flags["base"] = "base"
    if v.flags.get("data"):
        flags["data"] = "dataset.jsonl"
        flags["openings"] = "run/private"
    return flags


def sign(
    payload: bytes, signers: list[CryptoSigner], payload_type: str = PAYLOAD_TYPE
) -> dict[str, Any]:
    env = Envelope(payload, payload_type, {})
    for s in signers:
        env.sign(s)
    return env.to_dict()


# -- variants ----------------------------------------------------------------------


def _payload_of(env: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(env["payload"]))  # type: ignore[no-any-return]


def _resign(t: str, edit: Callable[[dict[str, Any]], None]) -> Hook:
    def hook(preds: dict[str, Any]) -> dict[str, Any]:
        preds = copy.deepcopy(preds)
        edit(preds[t])
        return preds

    return hook


def _step_edit(edit: Callable[[list[dict[str, Any]]], None]) -> Hook:
    def hook(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        recs = copy.deepcopy(recs)
        edit(recs)
        return recs

    return hook


def _duplicate_on_two_ranks(recs: list[dict[str, Any]]) -> None:
    """A 2-rank run (records.md §5.3) whose step 1 trains one example on both ranks."""
    from attest.ranks import Distributed, ranks_for

    recs[0]["extra"] = {**recs[0]["extra"], "distributed": Distributed(2, "gloo").to_dict()}
    for r in recs[1:]:
        r["ranks"] = list(ranks_for(len(r["batch"]), 2))
    r = recs[1]  # [12 (canary), 0 (deep)]: the deep one on both ranks, so routing still holds
    deep = r["profiles"].index("deep")
    other = 1 - deep
    r["batch"][other], r["profiles"][other] = r["batch"][deep], r["profiles"][deep]


def _add_to_batch(step: int, example: int, profile: str) -> Hook:
    def edit(recs: list[dict[str, Any]]) -> None:
        r = recs[step]
        r["batch"].append(example)
        r["profiles"].append(profile)
        r["loss"].append(2.0)
        r["gradNorm"].append(1.0)

    return _step_edit(edit)


def _choose_batch(recs: list[dict[str, Any]]) -> None:
    r = recs[3]
    assert r["batch"] == [4, 1], r["batch"]
    r["batch"], r["profiles"] = [4, 0], ["deep", "deep"]


def _plan_edit(edit: Callable[[list[StepPlan]], None]) -> Hook:
    def hook(plan: list[StepPlan]) -> list[StepPlan]:
        edit(plan)
        return plan

    return hook


def _envelope_edit(edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None]) -> Hook:
    def hook(envs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        envs = copy.deepcopy(envs)
        out = edit(envs)
        return envs if out is None else out

    return hook


def _flip_sig(envs: list[dict[str, Any]]) -> None:
    sig = bytearray(base64.b64decode(envs[1]["signatures"][0]["sig"]))
    sig[0] ^= 0x01
    envs[1]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


def _ecdsa_sig_edit(edit: Callable[[bytes], bytes]) -> Hook:
    """Rewrite the ECDSA signature of the admission-log envelope (bundle line 2)."""

    def change(envs: list[dict[str, Any]]) -> None:
        sig = envs[1]["signatures"][0]
        sig["sig"] = base64.b64encode(edit(base64.b64decode(sig["sig"]))).decode()

    return _envelope_edit(change)


def _der_flip_last(der: bytes) -> bytes:
    return der[:-1] + bytes([der[-1] ^ 0x01])  # still DER; s is off by one bit


def _der_to_raw(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # IEEE P1363 r || s


def _der_to_ber(der: bytes) -> bytes:
    """The same (r, s) with one more leading zero byte in r: valid BER, not DER."""
    r_len = der[3]
    body = b"\x02" + bytes([r_len + 1]) + b"\x00" + der[4 : 4 + r_len] + der[4 + r_len :]
    return b"\x30" + bytes([len(body)]) + body


def _keyid_json_escaped(envs: list[dict[str, Any]]) -> None:
    """The policy envelope's keyid computed with the PEM's line feeds escaped as JSON ``\\n``
    (a JSON library's spelling), not raw as format.md §1.1.2 says; signature unchanged."""
    key = ECDSA_SIGNER.public_key
    text = json.dumps(
        {"keytype": key.keytype, "keyval": {"public": key.keyval["public"]}, "scheme": key.scheme},
        sort_keys=True,
        separators=(",", ":"),
    )
    assert text.encode() != keyid_input(key)
    envs[0]["signatures"][0]["keyid"] = hashlib.sha256(text.encode()).hexdigest()


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64_pad_bits(envs: list[dict[str, Any]]) -> None:
    """The policy signature (64 bytes, so its base64 ends in 'X==' with 4 unused bits) with
    one unused bit set: a lenient decoder returns the very same bytes."""
    sig = envs[0]["signatures"][0]["sig"]
    i = B64.index(sig[-3])
    assert sig.endswith("==") and i % 16 == 0, sig
    envs[0]["signatures"][0]["sig"] = sig[:-3] + B64[i + 1] + "=="


def _stock_jcs(t: str, edit: Callable[[dict[str, Any]], None]) -> Hook:
    """Edit statement ``t``'s predicate and serialize it with the stock RFC 8785 library
    (not attest.canonical, which refuses what the format forbids), then sign as usual."""

    def hook(payloads: dict[str, bytes]) -> dict[str, bytes]:
        st = json.loads(payloads[t])
        edit(st["predicate"])
        return {**payloads, t: rfc8785.dumps(st)}

    return hook


def _nested(levels: int) -> Callable[[dict[str, Any]], None]:
    """Add member ``nested``: ``levels`` arrays one inside the other, the innermost empty,
    to the object given, or to its ``extra`` object where it has one (a predicate)."""

    def edit(obj: dict[str, Any]) -> None:
        v: list[Any] = []
        for _ in range(levels - 1):
            v = [v]
        obj.get("extra", obj)["nested"] = v

    return edit


def _untrusted(envs: list[dict[str, Any]]) -> None:
    envs[2] = sign(base64.b64decode(envs[2]["payload"]), [UNTRUSTED])


def _payload_type(envs: list[dict[str, Any]]) -> None:
    envs[0] = sign(base64.b64decode(envs[0]["payload"]), [SIGNER], "application/json")


def _no_sigs(envs: list[dict[str, Any]]) -> None:
    envs[0]["signatures"] = []


def _extra_statements(envs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    foreign = canonical_json(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [
                {
                    "name": WEIGHTS,
                    "digest": {"sha256": _payload_of(envs[2])["predicate"]["weights"][0]["sha256"]},
                }
            ],
            "predicateType": "https://example.com/model-card/v1",
            "predicate": {"note": "not govtune's"},
        }
    )
    good = sign(foreign, [SIGNER])
    bad = sign(foreign, [UNTRUSTED])
    return [envs[3], good, envs[1], bad, envs[0], envs[2]]


def _truncate(b: bytes) -> bytes:
    return b[:-1]


def _drop_quarantine(plan: list[StepPlan]) -> None:
    plan[3].events = [e for e in plan[3].events if e["kind"] != "quarantine"]


def _drop_flag_and_quarantine(plan: list[StepPlan]) -> None:
    plan[3].events = []


def _flip_last_byte(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 0x01])


def _violate(plan: list[StepPlan]) -> None:
    plan[4].changes.append("h.0.attn.w")  # step 5's batch is shallow-only


def _weights_meta(run: Path) -> None:
    (run / WEIGHTS).write_bytes(safetensors_bytes(_final_values(), {"format": "pt"}))


def _final_values() -> dict[str, list[float]]:
    values = base_values()
    for s, plan in enumerate(default_plan(), 1):
        for name in plan.changes:
            values[name][0] += 0.125 * s
    return values


def _tampered_tensor(_b: bytes) -> bytes:
    values = _final_values()
    values["head.bias"][1] += 1.0
    return safetensors_bytes(values)


def _base_tampered(_b: bytes) -> bytes:
    values = base_values()
    values["embed.weight"][0] += 1.0
    return safetensors_bytes(values)


def _swap_first(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    recs = copy.deepcopy(recs)
    recs[0], recs[1] = recs[1], recs[0]
    return recs


def _flip_decision(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    recs = copy.deepcopy(recs)
    recs[2]["decision"], recs[2]["profile"] = "admit", "deep"
    return recs


def _claim_no_pii(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A lie that keeps every decision and profile (so the data order is unchanged): only
    # the dataset (V8) shows it.
    ex = examples[4]
    assert ex["findings"].pii, ex["findings"]
    ex["findings"] = Findings((), ex["findings"].optout, ex["findings"].duplicate)
    return examples


def _other_source(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    m = examples[0]["metadata"]
    examples[0]["metadata"] = Metadata(
        m.license, "docs:elsewhere", m.data_class, m.consent, m.length, m.canary
    )
    return examples


def _drop_opening(openings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in openings if o["index"] != 3]


def _wrong_salt(openings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**o, "salt": "ab" * 32} if o["index"] == 1 else o for o in openings]


def _renumber(recs: list[dict[str, Any]]) -> None:
    for r in recs[4:]:
        r["step"] += 1


def _unknown_tensor(recs: list[dict[str, Any]]) -> None:
    recs[2]["changed"] = sorted(
        recs[2]["changed"] + [["ghost.weight", bytes(range(32))]], key=lambda x: x[0].encode()
    )


def _symlink(path: str, target: str) -> Hook:
    def hook(run: Path) -> None:
        (run / path).unlink()
        os.symlink(target, run / path)

    return hook


def _canary_source(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    recs = copy.deepcopy(recs)
    recs[12]["metadata"]["source"] = "docs:a"
    return recs


def _reshape_bias(recs: list[dict[str, Any]]) -> None:
    for item in recs[0]["tensors"]:
        if item[0] == "head.bias":
            item[2] = [2, 2]


def _other_canary_text(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(examples)
    for ex in out:
        if ex["metadata"].canary:
            ex["trained"] = "the secret code is 271828"  # same length, not the derived secret
    return out


def _write(path: str, data: bytes) -> Hook:
    def hook(run: Path) -> None:
        (run / path).write_bytes(data)

    return hook


def _append(path: str, data: bytes) -> Hook:
    def hook(run: Path) -> None:
        with open(run / path, "ab") as f:
            f.write(data)

    return hook


def _flip_in(path: str) -> Hook:
    def hook(run: Path) -> None:
        (run / path).write_bytes(_flip_last_byte((run / path).read_bytes()))

    return hook


def _base_extra(name: str, tensors: list[str]) -> Hook:
    def hook(run: Path) -> None:
        values = base_values()
        (run.parent / "base" / name).write_bytes(safetensors_bytes({n: values[n] for n in tensors}))

    return hook


def _delete(path: str) -> Hook:
    def hook(run: Path) -> None:
        (run / path).unlink()
        parent = (run / path).parent
        if parent != run and not any(parent.iterdir()):
            parent.rmdir()  # git keeps no empty folders: the committed vector has none either

    return hook


def variants() -> list[Variant]:
    T, M, A = TRAINING_TYPE, MEMORIZATION_TYPE, ADMISSIONS_TYPE
    full = {"base": True, "data": True}
    data = {"data": True}
    return [
        Variant(
            "basic",
            None,
            "a complete synthetic run; PASS with --base, --data and --openings",
            flags=full,
        ),
        Variant(
            "checkpoint-not-shipped",
            None,
            "the checkpoint file is left out of the release (allowed without --replay)",
            {"files": _delete(CHECKPOINT_FILE)},
        ),
        Variant(
            "extra-statements",
            None,
            "bundle lines reordered, plus a verified and an unverifiable statement "
            "of a foreign predicate type (both ignored)",
            {"envelopes": _envelope_edit(_extra_statements)},
        ),
        # V1 bundle
        Variant(
            "bundle-missing",
            "GT-BUNDLE-MISSING",
            "provenance/bundle.intoto.jsonl removed",
            {"files": _delete(f"provenance/{BUNDLE_FILE}")},
        ),
        Variant(
            "bundle-format",
            "GT-BUNDLE-FORMAT",
            "a bundle line that is not JSON",
            {"bundle_bytes": lambda b: b + b"{not json}\n"},
        ),
        Variant(
            "sig-threshold",
            "GT-SIG-THRESHOLD",
            "threshold 2 with a single trusted key",
            flags={"threshold": 2},
        ),
        Variant(
            "sig-payload-type",
            "GT-SIG-PAYLOAD-TYPE",
            "policy envelope signed with payloadType application/json",
            {"envelopes": _envelope_edit(_payload_type)},
        ),
        Variant(
            "sig-none",
            "GT-SIG-NONE",
            "policy envelope without signatures",
            {"envelopes": _envelope_edit(_no_sigs)},
        ),
        Variant(
            "sig-untrusted",
            "GT-SIG-UNTRUSTED",
            "training-run envelope signed by an untrusted key",
            {"envelopes": _envelope_edit(_untrusted)},
        ),
        Variant(
            "sig-invalid",
            "GT-SIG-INVALID",
            "admission-log signature with one bit flipped",
            {"envelopes": _envelope_edit(_flip_sig)},
        ),
        # ECDSA P-256 (the default key type): DER signatures, no low-s rule (format.md §1.1.1)
        Variant(
            "ecdsa",
            None,
            "the basic run signed with the ECDSA P-256 key keys/vector-ecdsa (DER signatures)",
            flags={"signer": "vector-ecdsa"},
        ),
        Variant(
            "ecdsa-high-s",
            None,
            "signed with keys/vector-ecdsa, every signature in its high-s form (s > n/2): "
            "valid, there is no low-s rule",
            flags={"signer": "vector-ecdsa-high-s"},
        ),
        Variant(
            "ecdsa-sig-invalid",
            "GT-SIG-INVALID",
            "ECDSA admission-log signature with the last bit of s flipped (still DER)",
            {"envelopes": _ecdsa_sig_edit(_der_flip_last)},
            flags={"signer": "vector-ecdsa"},
        ),
        Variant(
            "ecdsa-sig-raw",
            "GT-SIG-INVALID",
            "ECDSA admission-log signature written as raw r || s (64 bytes), not DER",
            {"envelopes": _ecdsa_sig_edit(_der_to_raw)},
            flags={"signer": "vector-ecdsa"},
        ),
        Variant(
            "ecdsa-sig-ber",
            "GT-SIG-INVALID",
            "ECDSA admission-log signature with a superfluous leading zero byte in r: "
            "the same (r, s) in BER, not DER",
            {"envelopes": _ecdsa_sig_edit(_der_to_ber)},
            flags={"signer": "vector-ecdsa"},
        ),
        Variant(
            "keyid-json-escaped",
            "GT-SIG-UNTRUSTED",
            "policy envelope signed by keys/vector-ecdsa under a keyid computed with the PEM "
            "line feeds escaped as \\n (JSON), not raw: no trusted key has that keyid",
            {"envelopes": _envelope_edit(_keyid_json_escaped)},
            flags={"signer": "vector-ecdsa"},
        ),
        # Encodings (format.md §1.1, §1.4, §2)
        Variant(
            "bundle-base64-bits",
            "GT-BUNDLE-FORMAT",
            "policy signature in base64 with a non-zero unused (padding) bit; it decodes "
            "to the valid signature",
            {"envelopes": _envelope_edit(_b64_pad_bits)},
        ),
        Variant(
            "bundle-crlf",
            "GT-BUNDLE-FORMAT",
            "bundle lines end with CR LF instead of LF",
            {"bundle_bytes": lambda b: b.replace(b"\n", b"\r\n")},
        ),
        Variant(
            "stmt-unsafe-number",
            "GT-STMT-FORMAT",
            "training-run predicate extra.tokensSeen = 1e16, written by a stock RFC 8785 "
            "library as 10000000000000000 (signed): magnitude above 2^53 - 1",
            {"payloads": _stock_jcs(T, lambda p: p["extra"].update(tokensSeen=1e16))},
        ),
        Variant(
            "stmt-depth-64",
            None,
            "training-run payload nested exactly json_depth_max (64) levels deep, the "
            "statement object counting as level 1",
            {"payloads": _stock_jcs(T, _nested(64 - 3))},
        ),
        Variant(
            "bundle-depth-64",
            None,
            "policy envelope with an unknown member that nests its bundle line exactly 64 "
            "levels deep, the envelope object counting as level 1 (ignored, as unknown "
            "envelope members are)",
            {"envelopes": _envelope_edit(lambda e: _nested(64 - 1)(e[0]))},
        ),
        Variant(
            "bundle-depth-65",
            "GT-BUNDLE-FORMAT",
            "policy envelope with an unknown member that nests its bundle line 65 levels deep",
            {"envelopes": _envelope_edit(lambda e: _nested(65 - 1)(e[0]))},
        ),
        Variant(
            "stmt-format",
            "GT-STMT-FORMAT",
            "training-run predicate without 'steps' (signed)",
            {"predicates": _resign(T, lambda p: p.pop("steps"))},
        ),
        Variant(
            "stmt-missing",
            "GT-STMT-MISSING",
            "memorization-report statement left out",
            {"envelopes": _envelope_edit(lambda e: e[:3])},
        ),
        Variant(
            "stmt-duplicate",
            "GT-STMT-DUPLICATE",
            "policy statement included twice",
            {"envelopes": _envelope_edit(lambda e: [e[0], *e])},
        ),
        Variant(
            "stmt-binding",
            "GT-STMT-BINDING",
            "memorization-report names another runId (signed)",
            {"predicates": _resign(M, lambda p: p.update(runId="f" * 32))},
        ),
        Variant(
            "file-uncovered",
            "GT-FILE-UNCOVERED",
            "an extra file provenance/notes.txt no statement covers",
            {"files": _write("provenance/notes.txt", b"unsigned notes\n")},
        ),
        Variant(
            "file-digest",
            "GT-FILE-DIGEST",
            "a comment appended to policy.toml after signing",
            {"files": _append(f"provenance/{POLICY_FILE}", b"# edited\n")},
        ),
        # V2 policy
        Variant(
            "policy-format",
            "GT-POLICY-FORMAT",
            "policy.toml with an unknown key (file digest signed)",
            {"policy_file": lambda b: b + b"\n[extra]\nunknown = 1\n"},
        ),
        Variant(
            "policy-digest",
            "GT-POLICY-DIGEST",
            "policy.toml with another length.max than the signed digest",
            {"policy_file": lambda b: b.replace(b"max = 400", b"max = 401")},
        ),
        # V3 admissions
        Variant(
            "log-format",
            "GT-ADMIT-LOG-FORMAT",
            "admissions.msgpack truncated by one byte (file digest signed)",
            {"admissions_bytes": _truncate},
        ),
        Variant(
            "log-summary",
            "GT-ADMIT-LOG-SUMMARY",
            "admission-log predicate with another Merkle root (signed)",
            {"predicates": _resign(A, lambda p: p["log"].update(merkleRoot="0" * 64))},
        ),
        Variant(
            "admit-order",
            "GT-ADMIT-ORDER",
            "admission records 0 and 1 swapped (log and statements re-signed)",
            {"admission_records": _swap_first},
        ),
        Variant(
            "admit-decision",
            "GT-ADMIT-DECISION",
            "example 2 (denied license) recorded as admitted (signed)",
            {"admission_records": _flip_decision},
        ),
        Variant(
            "admit-counts",
            "GT-ADMIT-COUNTS",
            "admission-log counts.admitted off by one (signed)",
            {
                "predicates": _resign(
                    A, lambda p: p["counts"].update(admitted=p["counts"]["admitted"] + 1)
                )
            },
        ),
        Variant(
            "admit-canaries",
            "GT-ADMIT-CANARIES",
            "policy plants 1 canary x 3 repeats, the log has 2",
            {
                "policy_toml": lambda s: s.replace("repeats = 2", "repeats = 3"),
                "examples": lambda ex: [e for e in ex if e["index"] != 14],
            },
        ),
        # V4 chain
        Variant(
            "chain-start",
            "GT-CHAIN-START",
            "start record with another configDigest (signed)",
            {"step_records": _step_edit(lambda r: r[0].update(configDigest="0" * 64))},
        ),
        Variant(
            "chain-profiles",
            "GT-CHAIN-PROFILES",
            "start record's canary profile lists an extra tensor",
            {
                "step_records": _step_edit(
                    lambda r: r[0]["profiles"]["canary"].insert(0, "h.0.attn.w")
                )
            },
        ),
        Variant(
            "chain-gap",
            "GT-CHAIN-GAP",
            "step numbers 1, 2, 3, 5, 6, 7 (signed)",
            {"step_records": _step_edit(_renumber)},
        ),
        Variant(
            "chain-lr",
            "GT-CHAIN-LR",
            "step 2 records lr 0.5, not the signed constant schedule's 0.125",
            {"step_records": _step_edit(lambda r: r[2].__setitem__("lr", 0.5))},
        ),
        Variant(
            "batch-refused",
            "GT-BATCH-REFUSED",
            "step 4 trains on refused example 2",
            {"step_records": _add_to_batch(4, 2, "deep")},
        ),
        Variant(
            "batch-heldout",
            "GT-BATCH-HELDOUT",
            "step 4 trains on held-out example 9",
            {"step_records": _add_to_batch(4, 9, "deep")},
        ),
        Variant(
            "batch-quarantined",
            "GT-BATCH-QUARANTINED",
            "step 6 trains on example 11, quarantined at step 4",
            {"step_records": _add_to_batch(6, 11, "deep")},
        ),
        Variant(
            "batch-profile",
            "GT-BATCH-PROFILE",
            "step 1 records example 0 (admitted deep) as shallow",
            {"step_records": _step_edit(lambda r: r[1]["profiles"].__setitem__(1, "shallow"))},
        ),
        Variant(
            "batch-order",
            "GT-BATCH-ORDER",
            "step 3 trains example 0 again instead of example 1, the one the data order draws "
            "(every member admitted, its profile right: the producer chose the batch)",
            {"step_records": _step_edit(_choose_batch)},
        ),
        Variant(
            "dist-world",
            "GT-DIST-WORLD",
            "single-process start record, but the signed environment names 2 ranks",
            {
                "predicates": _resign(
                    T,
                    lambda p: p["environment"].update(
                        worldSize=2, backend="gloo", deviceTypes=["cpu", "cpu"]
                    ),
                )
            },
        ),
        Variant(
            "dist-ranks",
            "GT-DIST-RANKS",
            "single-process run whose step 3 records a rank for each example",
            {"step_records": _step_edit(lambda r: r[3].update(ranks=[0] * len(r[3]["batch"])))},
        ),
        Variant(
            "dist-duplicate",
            "GT-DIST-DUPLICATE",
            "2-rank run whose step 1 trains its deep example on both ranks",
            {
                "step_records": _step_edit(_duplicate_on_two_ranks),
                "predicates": _resign(
                    T,
                    lambda p: p["environment"].update(
                        worldSize=2, backend="gloo", deviceTypes=["cpu", "cpu"]
                    ),
                ),
            },
        ),
        Variant(
            "route-unknown",
            "GT-ROUTE-UNKNOWN",
            "step 2 claims a change to tensor 'ghost.weight'",
            {"step_records": _step_edit(_unknown_tensor)},
        ),
        Variant(
            "route-violation",
            "GT-ROUTE-VIOLATION",
            "step 5 (shallow examples only) changes h.0.attn.w",
            {"plan": _plan_edit(_violate)},
        ),
        Variant(
            "state-root",
            "GT-STATE-ROOT",
            "step 2 records a wrong state root (signed)",
            {"step_records": _step_edit(lambda r: r[2].update(stateRoot=bytes(32)))},
        ),
        Variant(
            "state-base",
            "GT-STATE-BASE",
            "training-run baseStateRoot differs from the start record (signed)",
            {
                "predicates": _resign(
                    T,
                    lambda p: (
                        p.update(baseStateRoot="1" * 64),
                        p["baseModel"].update(stateRoot="1" * 64),
                    ),
                )
            },
        ),
        Variant(
            "state-final",
            "GT-STATE-FINAL",
            "training-run finalStateRoot differs from the chain (signed)",
            {"predicates": _resign(T, lambda p: p.update(finalStateRoot="2" * 64))},
        ),
        # V5 memorization
        Variant(
            "mem-events",
            "GT-MEM-EVENTS",
            "memorization-report omits the last logged event (signed)",
            {"predicates": _resign(M, lambda p: p["events"].pop())},
        ),
        Variant(
            "mem-signal",
            "GT-MEM-SIGNAL",
            "example 11's loss-drop flag and quarantine at step 3 erased (report consistent, "
            "signed); its recorded losses still show the drop",
            {"plan": _plan_edit(_drop_flag_and_quarantine)},
        ),
        Variant(
            "mem-action",
            "GT-MEM-ACTION",
            "example 11 flagged at step 3 under action quarantine, never quarantined",
            {"plan": _plan_edit(_drop_quarantine)},
        ),
        # V6 weights
        Variant(
            "weights-missing",
            "GT-WEIGHTS-MISSING",
            "model.safetensors removed",
            {"files": _delete(WEIGHTS)},
        ),
        Variant(
            "weights-format",
            "GT-WEIGHTS-FORMAT",
            "model.safetensors is not safetensors (its sha256 signed)",
            {"weights_bytes": lambda b: b"\xff" * 8 + b[8:]},
        ),
        Variant(
            "weights-digest",
            "GT-WEIGHTS-DIGEST",
            "model.safetensors rewritten with __metadata__ (same tensors)",
            {"files": _weights_meta},
        ),
        Variant(
            "weights-root",
            "GT-WEIGHTS-ROOT",
            "one weight changed after training (the file's sha256 signed)",
            {"weights_bytes": _tampered_tensor},
        ),
        Variant(
            "checkpoint-digest",
            "GT-CHECKPOINT-DIGEST",
            "the step-3 checkpoint file has one bit flipped after signing (still safetensors)",
            {"files": _flip_in(CHECKPOINT_FILE)},
        ),
        Variant(
            "checkpoint-entry",
            "GT-CHECKPOINT-DIGEST",
            "training-run checkpoints claim another stateRoot for step 3 than its step record "
            "and the chain (signed)",
            {"predicates": _resign(T, lambda p: p["checkpoints"][0].update(stateRoot="3" * 64))},
        ),
        # V7 base
        Variant(
            "base-root",
            "GT-BASE-ROOT",
            "--base weights differ from the signed base state root",
            {"base_bytes": _base_tampered},
            flags={"base": True},
        ),
        Variant(
            "base-duplicate",
            "GT-BASE-ROOT",
            "a second --base file holds head.bias again (same values): a tensor in two base "
            "files has no one value",
            {"files": _base_extra("extra.safetensors", ["head.bias"])},
            flags={"base": True},
        ),
        # V8 data
        Variant(
            "data-format",
            "GT-DATA-FORMAT",
            "openings.jsonl lacks the opening of example 3",
            {"openings": _drop_opening},
            flags=data,
        ),
        Variant(
            "data-commitment",
            "GT-DATA-COMMITMENT",
            "openings.jsonl gives a wrong salt for example 1",
            {"openings": _wrong_salt},
            flags=data,
        ),
        Variant(
            "data-metadata",
            "GT-DATA-METADATA",
            "example 0 committed with source docs:elsewhere, the dataset says docs:a",
            {"examples": _other_source},
            flags=data,
        ),
        Variant(
            "data-findings",
            "GT-DATA-FINDINGS",
            "example 4 (an e-mail address, masked) recorded with no PII found",
            {"examples": _claim_no_pii},
            flags=data,
        ),
        # v0.2: checks of the derived values and the folder layout
        Variant(
            "file-type",
            "GT-FILE-TYPE",
            "the checkpoint file is a symbolic link to model.safetensors",
            {"files": _symlink(CHECKPOINT_FILE, "../" + WEIGHTS)},
        ),
        Variant(
            "step-log-format",
            "GT-STEP-LOG-FORMAT",
            "steps.msgpack truncated by one byte (file digest signed)",
            {"steps_bytes": _truncate},
        ),
        Variant(
            "base-tensors",
            "GT-BASE-TENSORS",
            "the --base file stores head.bias with shape [2, 2] instead of the start record's [4]",
            {
                "base_bytes": lambda _b: safetensors_bytes(
                    base_values(), shapes={"head.bias": (2, 2)}
                )
            },
            flags={"base": True},
        ),
        Variant(
            "file-weight-like",
            "GT-FILE-UNCOVERED",
            "a pytorch_model.bin beside the signed weights (a loader may take it instead)",
            {"files": _write("pytorch_model.bin", b"not the verified weights")},
        ),
        Variant(
            "admit-canary-metadata",
            "GT-ADMIT-CANARY-METADATA",
            "canary record 12 claims source docs:a instead of govtune:canary (signed)",
            {"admission_records": _canary_source},
        ),
        Variant(
            "chain-heldout",
            "GT-CHAIN-HELDOUT",
            "the start record holds out example 10 instead of the derived example 9 (signed)",
            {"step_records": _step_edit(lambda r: r[0].update(heldout=[10]))},
        ),
        Variant(
            "step-log-summary",
            "GT-STEP-LOG-SUMMARY",
            "training-run stepLog with another Merkle root (signed)",
            {"predicates": _resign(T, lambda p: p["stepLog"].update(merkleRoot="0" * 64))},
        ),
        Variant(
            "weights-tensors",
            "GT-WEIGHTS-TENSORS",
            "the start record claims head.bias has shape [2, 2], the weights' header says [4] "
            "(signed)",
            {"step_records": _step_edit(_reshape_bias)},
        ),
        Variant(
            "data-canary",
            "GT-DATA-CANARY",
            "canary records 12 and 13 commit to another text than the one derived from the "
            "run secret (canaries.jsonl holds that text)",
            {"examples": _other_canary_text},
            flags=data,
        ),
    ]


def generate(out: Path = HERE) -> None:
    write_keys(out)
    for sub in ("valid", "invalid"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    for v in variants():
        dest = out / ("valid" if v.code is None else "invalid") / v.name
        inter = build(v, dest)
        if v.name == "basic":
            (dest / "intermediates.json").write_bytes(
                json.dumps(inter, indent=2, sort_keys=True).encode() + b"\n"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=HERE, help="vector folder (default: next to this script)"
    )
    args = ap.parse_args(argv)
    generate(args.out)
    print(f"OK: wrote test vectors to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
