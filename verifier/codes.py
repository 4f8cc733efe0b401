"""The verification checks, numbered once (spec/verification.md uses the same codes).

Each check has a stable code, the layer it belongs to and a title. Layers run in
order; a check of a later layer is "skipped" when the evidence it needs is absent
or an earlier layer already failed in a way that makes it meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    code: str
    # bundle | policy | admissions | chain | memorization | weights | base | data | replay
    # | requirements
    layer: str
    title: str


CHECKS: tuple[Check, ...] = (
    # V1 bundle and signatures
    Check(
        "GT-FILE-TYPE",
        "bundle",
        "every entry of the folder is a regular file with one link, or a folder",
    ),
    Check("GT-BUNDLE-MISSING", "bundle", "the provenance bundle exists"),
    Check("GT-BUNDLE-FORMAT", "bundle", "every bundle line is a well-formed DSSE envelope"),
    Check(
        "GT-SIG-THRESHOLD", "bundle", "the trust threshold is satisfiable (>= 1, <= number of keys)"
    ),
    Check("GT-SIG-PAYLOAD-TYPE", "bundle", "envelopes carry the in-toto payload type"),
    Check("GT-SIG-NONE", "bundle", "envelopes carry signatures"),
    Check("GT-SIG-UNTRUSTED", "bundle", "signatures are by trusted keys"),
    Check("GT-SIG-INVALID", "bundle", "signatures verify over the DSSE PAE"),
    Check(
        "GT-STMT-FORMAT",
        "bundle",
        "payloads are canonical in-toto Statements with valid predicates",
    ),
    Check("GT-STMT-MISSING", "bundle", "every required predicate type is present"),
    Check("GT-STMT-DUPLICATE", "bundle", "every required predicate type is present exactly once"),
    Check("GT-STMT-BINDING", "bundle", "all statements name the same run and policy"),
    Check(
        "GT-FILE-UNCOVERED",
        "bundle",
        "every entry of the folder is one the layout allows and the signed statements bind",
    ),
    Check("GT-FILE-DIGEST", "bundle", "sidecar files match their signed digests"),
    # V2 policy
    Check("GT-POLICY-FORMAT", "policy", "the policy document is valid"),
    Check("GT-POLICY-DIGEST", "policy", "the policy matches the signed policy digest"),
    # V3 admissions
    Check(
        "GT-ADMIT-LOG-FORMAT",
        "admissions",
        "the admission log is canonical msgpack with an unbroken prev chain",
    ),
    Check(
        "GT-ADMIT-LOG-SUMMARY",
        "admissions",
        "the admission log's count, head and Merkle root match the signed summary",
    ),
    Check("GT-ADMIT-ORDER", "admissions", "admission records cover examples 0..n-1 in order"),
    Check(
        "GT-ADMIT-DECISION",
        "admissions",
        "every admission decision re-evaluates identically under the policy",
    ),
    Check("GT-ADMIT-COUNTS", "admissions", "signed admission counts match the log"),
    Check(
        "GT-ADMIT-CANARIES", "admissions", "canary examples number exactly what the policy plants"
    ),
    Check(
        "GT-ADMIT-CANARY-METADATA",
        "admissions",
        "canary records carry the fixed canary metadata and empty findings",
    ),
    # V4 step chain
    Check(
        "GT-STEP-LOG-FORMAT",
        "chain",
        "the step log is canonical msgpack with an unbroken prev chain",
    ),
    Check(
        "GT-STEP-LOG-SUMMARY",
        "chain",
        "the step log's count, head and Merkle root match the signed summary",
    ),
    Check(
        "GT-CHAIN-START", "chain", "the step log starts with a valid start record bound to the run"
    ),
    Check("GT-CHAIN-PROFILES", "chain", "profiles resolve to the recorded parameter names"),
    Check(
        "GT-CHAIN-HELDOUT",
        "chain",
        "the held-out reference set is the one derived from the seed and the admitted pool",
    ),
    Check("GT-CHAIN-GAP", "chain", "steps are numbered 1..n without gaps or repeats"),
    Check("GT-CHAIN-LR", "chain", "every step's learning rate is the signed schedule's"),
    Check("GT-BATCH-REFUSED", "chain", "batches use only admitted examples"),
    Check("GT-BATCH-HELDOUT", "chain", "batches never use held-out reference examples"),
    Check("GT-BATCH-QUARANTINED", "chain", "quarantined examples are never used again"),
    Check("GT-BATCH-PROFILE", "chain", "each batch example carries its admitted profile"),
    Check("GT-BATCH-ORDER", "chain", "every batch is the one the signed data order draws"),
    Check(
        "GT-DIST-WORLD",
        "chain",
        "a distributed run's world size and backend agree in the environment and start record",
    ),
    Check(
        "GT-DIST-RANKS",
        "chain",
        "each example's rank is in [0, worldSize) and follows the signed split rule",
    ),
    Check("GT-DIST-DUPLICATE", "chain", "each example appears once in its global batch"),
    Check("GT-ROUTE-UNKNOWN", "chain", "changed tensors exist in the model"),
    Check(
        "GT-ROUTE-VIOLATION",
        "chain",
        "every changed tensor is allowed by some batch example's profile",
    ),
    Check(
        "GT-STATE-ROOT",
        "chain",
        "each recorded state root equals the root recomputed from the chain",
    ),
    Check("GT-STATE-FINAL", "chain", "the chain ends at the signed final state root"),
    Check("GT-STATE-BASE", "chain", "the chain starts at the signed base state root"),
    # V5 memorization
    Check(
        "GT-MEM-EVENTS", "memorization", "the memorization report lists exactly the logged events"
    ),
    Check(
        "GT-MEM-SIGNAL",
        "memorization",
        "memorization flags equal those re-derived from the recorded values and thresholds",
    ),
    Check("GT-MEM-ACTION", "memorization", "the policy's memorization action was carried out"),
    # V6 weights
    Check("GT-WEIGHTS-MISSING", "weights", "the released weight files are present"),
    Check("GT-WEIGHTS-FORMAT", "weights", "weight files are valid safetensors"),
    Check("GT-WEIGHTS-DIGEST", "weights", "weight files match the signed sha256 subjects"),
    Check(
        "GT-WEIGHTS-TENSORS",
        "weights",
        "the weights' tensor names, dtypes and shapes equal the start record's table",
    ),
    Check(
        "GT-WEIGHTS-ROOT", "weights", "the weights' state root equals the signed final state root"
    ),
    Check(
        "GT-CHECKPOINT-DIGEST",
        "weights",
        "signed checkpoints match the step log, and shipped checkpoint files their digests",
    ),
    # V7 base (--base)
    Check(
        "GT-BASE-TENSORS",
        "base",
        "the base weights' tensor names, dtypes and shapes equal the start record's table",
    ),
    Check("GT-BASE-ROOT", "base", "the base model's state root equals the signed base state root"),
    # V8 data (--data, --openings)
    Check("GT-DATA-FORMAT", "data", "the dataset and openings are readable and complete"),
    Check("GT-DATA-COMMITMENT", "data", "every example commitment opens to the dataset content"),
    Check(
        "GT-DATA-CANARY",
        "data",
        "canary commitments open to the canary texts derived from the run secret",
    ),
    Check("GT-DATA-METADATA", "data", "committed metadata matches the dataset"),
    Check(
        "GT-DATA-FINDINGS",
        "data",
        "content rules (PII, opt-out, duplicates) re-evaluate to the recorded findings",
    ),
    # V9 replay (--replay N; needs torch, --data and --openings)
    Check(
        "GT-REPLAY-SELECT",
        "replay",
        "replayed steps are chosen from the signed chain head and a nonce",
    ),
    Check(
        "GT-REPLAY-CHECKPOINT",
        "replay",
        "the stored state each interval starts from exists and matches its digest",
    ),
    Check(
        "GT-REPLAY-STEP",
        "replay",
        "re-executed intervals reproduce every recorded step",
    ),
    Check(
        "GT-REPLAY-ENVIRONMENT",
        "replay",
        "the recorded environment, config and tolerance calibration agree",
    ),
    Check(
        "GT-REPLAY-INPUT",
        "replay",
        "every file replay reads is the one the earlier layers verified",
    ),
    # V10 release (spec/release.md): a release folder as a whole; PRIVATE runs on runs too
    Check(
        "GT-RELEASE-PRIVATE",
        "release",
        "no private folder, run secret, openings or canary texts where they could be published",
    ),
    Check("GT-RELEASE-OMS", "release", "model.sig is an OMS v1.0 signature by a trusted key"),
    Check("GT-RELEASE-UNCOVERED", "release", "every file of the release is listed in model.sig"),
    Check("GT-RELEASE-DIGEST", "release", "every file model.sig lists is present with its digest"),
    Check("GT-RELEASE-LAYOUT", "release", "every file of the release is one the layout names"),
    Check(
        "GT-RELEASE-BINDING",
        "release",
        "model.sig and the govtune statements bind the same weights and provenance bytes",
    ),
    Check("GT-RELEASE-CARD", "release", "the model card states the verified facts"),
    Check("GT-RELEASE-BOM", "release", "the ML-BOM states the verified facts"),
    Check(
        "GT-RELEASE-VSA",
        "release",
        "a verification summary is signed by trusted keys and names the verified subjects",
    ),
    # V11 consumer requirements (--policy-digest HEX, --require FILE; verifier/requirements.py)
    Check(
        "GT-REQ-POLICY-DIGEST",
        "requirements",
        "the producer's policy is the one the consumer pinned",
    ),
    Check("GT-REQ-PII", "requirements", "the policy rejects every PII kind the consumer requires"),
    Check(
        "GT-REQ-LICENSE",
        "requirements",
        "the policy refuses, or limits to the named profiles, the licenses the consumer names",
    ),
    Check(
        "GT-REQ-CANARIES",
        "requirements",
        "the policy plants at least the required number of canaries, and the log holds them",
    ),
    Check(
        "GT-REQ-MEMORIZATION",
        "requirements",
        "memorization thresholds and action are no laxer than the consumer requires",
    ),
    Check(
        "GT-REQ-REPLAY",
        "requirements",
        "the replay that ran reaches the required coverage and detection probability",
    ),
    Check(
        "GT-REQ-STRICT",
        "requirements",
        "replay was bitwise, or within the consumer's own maximum tolerance",
    ),
)

BY_CODE: dict[str, Check] = {c.code: c for c in CHECKS}
LAYERS: tuple[str, ...] = tuple(dict.fromkeys(c.layer for c in CHECKS))
