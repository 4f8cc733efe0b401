"""attest: govtune's format library (no torch, no numpy).

Canonical encodings, digests, Merkle trees, safetensors hashing, statements, DSSE,
bundles, keys, the policy and its evaluator, example commitments and the record
model, exactly as spec/ defines them. The trainer and the verifier both build on
this package, so there is one implementation of every rule.

Example::

    >>> from attest import keys, merkle, sign_statement, parse_envelope, verify_envelope
    >>> from attest import Statement, Subject
    >>> signer = keys.generate("ecdsa")
    >>> st = Statement((Subject("model.safetensors", {"sha256": "00" * 32}),),
    ...                "https://example.com/demo/v1", {"note": "hello"})
    >>> env = parse_envelope(sign_statement(st, [signer]))
    >>> verify_envelope(env, [signer.public_key]).statement.predicate["note"]
    'hello'
    >>> merkle.merkle_root([b"a", b"b"]).hex()[:16]
    'b137985ff484fb60'
"""

from . import canary, keys, layout, merkle
from .admission import Decision, Findings, Metadata, Outcome, decide, inspect_content
from .bundle import read_bundle, write_bundle
from .canonical import canonical_json, canonical_msgpack, parse_canonical_json, parse_json
from .commitment import Opening, commit, derive_salt, new_run_secret
from .dataset import Example, read_dataset
from .envelope import PAYLOAD_TYPE, SignedStatement, parse_envelope, sign_statement, verify_envelope
from .errors import (
    AdmissionError,
    FormatError,
    GovtuneError,
    PolicyError,
    UsageError,
    VerificationError,
)
from .limits import DEFAULT_LIMITS, Limits
from .log import LogSummary, LogWriter, iter_log, summarize_log
from .policy import Policy, Profile, load_policy
from .predicates import (
    AdmissionsPredicate,
    MemorizationPredicate,
    PolicyPredicate,
    TrainingPredicate,
    parse_predicate,
)
from .records import AdmissionRecord, Event, StartRecord, StepRecord
from .statement import Statement, Subject
from .tensors import hash_safetensors, state_root, tensor_leaf_hash

__all__ = [
    "DEFAULT_LIMITS",
    "PAYLOAD_TYPE",
    "AdmissionError",
    "AdmissionRecord",
    "AdmissionsPredicate",
    "Decision",
    "Event",
    "Example",
    "Findings",
    "FormatError",
    "GovtuneError",
    "Limits",
    "LogSummary",
    "LogWriter",
    "MemorizationPredicate",
    "Metadata",
    "Opening",
    "Outcome",
    "Policy",
    "PolicyError",
    "PolicyPredicate",
    "Profile",
    "SignedStatement",
    "StartRecord",
    "Statement",
    "StepRecord",
    "Subject",
    "TrainingPredicate",
    "UsageError",
    "VerificationError",
    "canary",
    "canonical_json",
    "canonical_msgpack",
    "commit",
    "decide",
    "derive_salt",
    "hash_safetensors",
    "inspect_content",
    "iter_log",
    "keys",
    "layout",
    "load_policy",
    "merkle",
    "new_run_secret",
    "parse_canonical_json",
    "parse_envelope",
    "parse_json",
    "parse_predicate",
    "read_bundle",
    "read_dataset",
    "sign_statement",
    "state_root",
    "summarize_log",
    "tensor_leaf_hash",
    "verify_envelope",
    "write_bundle",
]
