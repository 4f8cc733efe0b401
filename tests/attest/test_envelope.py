"""DSSE envelopes, in-toto statements and bundles, with real ECDSA and ed25519 signatures."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from securesystemslib.dsse import Envelope

from attest import keys
from attest.bundle import encode_bundle, read_bundle, write_bundle
from attest.canonical import canonical_json
from attest.envelope import PAYLOAD_TYPE, parse_envelope, sign_statement, verify_envelope
from attest.errors import FormatError, VerificationError
from attest.limits import Limits
from attest.statement import Statement, Subject

SHA = "ab" * 32
PTYPE = "https://example.com/test/v1"


def make_statement(**pred) -> Statement:
    return Statement((Subject("model.safetensors", {"sha256": SHA}),), PTYPE, pred or {"n": 1})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- sign / verify


def test_sign_verify_round_trip(signer):
    st = make_statement(note="héllo", n=2**53 - 1)
    env = sign_statement(st, [signer])
    assert env["payloadType"] == PAYLOAD_TYPE
    payload = base64.b64decode(env["payload"])
    assert payload == canonical_json(st.to_dict())
    signed = verify_envelope(parse_envelope(env), [signer.public_key])
    assert signed.payload == payload
    assert signed.statement == st
    assert signed.keyids == (signer.public_key.keyid,)


def test_two_of_two_ecdsa_and_ed25519(ecdsa_signer, ed25519_signer):
    env = sign_statement(make_statement(), [ecdsa_signer, ed25519_signer])
    trusted = [ecdsa_signer.public_key, ed25519_signer.public_key]
    signed = verify_envelope(parse_envelope(env), trusted, threshold=2)
    assert signed.keyids == tuple(sorted(k.keyid for k in trusted))


def test_signature_stripping_below_threshold(ecdsa_signer, ed25519_signer):
    env = sign_statement(make_statement(), [ecdsa_signer, ed25519_signer])
    env["signatures"] = env["signatures"][:1]
    trusted = [ecdsa_signer.public_key, ed25519_signer.public_key]
    with pytest.raises(VerificationError, match="expected 2 valid signature") as e:
        verify_envelope(parse_envelope(env), trusted, threshold=2)
    assert e.value.code == "GT-SIG-INVALID"


def test_threshold_with_duplicated_trusted_key(ecdsa_signer):
    """Attack: list one key twice to meet a threshold of two with one signature."""
    env = parse_envelope(sign_statement(make_statement(), [ecdsa_signer]))
    with pytest.raises(VerificationError) as e:
        verify_envelope(env, [ecdsa_signer.public_key, ecdsa_signer.public_key], threshold=2)
    assert e.value.code == "GT-SIG-INVALID"


@pytest.mark.parametrize(
    "threshold,nkeys,match",
    [
        (0, 1, "expected threshold >= 1, got 0"),
        (-1, 1, "expected threshold >= 1, got -1"),
        (2, 1, "threshold 2 exceeds the 1 trusted keys"),
        (1, 0, "threshold 1 exceeds the 0 trusted keys"),
    ],
    ids=["threshold-0", "threshold-negative", "threshold-above-keys", "no-keys"],
)
def test_threshold_fails_closed(ecdsa_signer, threshold, nkeys, match):
    env = parse_envelope(sign_statement(make_statement(), [ecdsa_signer]))
    with pytest.raises(VerificationError, match=match) as e:
        verify_envelope(env, [ecdsa_signer.public_key] * nkeys, threshold)
    assert e.value.code == "GT-SIG-THRESHOLD"
    assert str(e.value).startswith("GT-SIG-THRESHOLD: envelope: ")


def test_wrong_payload_type(signer):
    """Attack: a validly signed envelope of another type must not pass as an in-toto statement."""
    env = Envelope(canonical_json(make_statement().to_dict()), "application/json", {})
    env.sign(signer)
    with pytest.raises(
        VerificationError, match="expected payloadType application/vnd.in-toto"
    ) as e:
        verify_envelope(parse_envelope(env.to_dict()), [signer.public_key])
    assert e.value.code == "GT-SIG-PAYLOAD-TYPE"


def test_payload_type_swapped_after_signing(signer):
    """PAE covers payloadType: changing it after signing breaks the signature."""
    env = Envelope(canonical_json(make_statement().to_dict()), "application/json", {})
    env.sign(signer)
    d = env.to_dict()
    d["payloadType"] = PAYLOAD_TYPE
    with pytest.raises(VerificationError) as e:
        verify_envelope(parse_envelope(d), [signer.public_key])
    assert e.value.code == "GT-SIG-INVALID"


def test_untrusted_key(signer):
    env = parse_envelope(sign_statement(make_statement(), [signer]))
    other = keys.generate("ecdsa")
    with pytest.raises(
        VerificationError,
        match=r"expected a signature by a trusted key \(given keyids [0-9a-f]+\), got keyids",
    ) as e:
        verify_envelope(env, [other.public_key])
    assert e.value.code == "GT-SIG-UNTRUSTED"
    assert signer.public_key.keyid[:16] in str(e.value)


def test_no_signatures(signer):
    env = sign_statement(make_statement(), [signer])
    env["signatures"] = []
    with pytest.raises(VerificationError, match="envelope carries no signatures") as e:
        verify_envelope(parse_envelope(env), [signer.public_key])
    assert e.value.code == "GT-SIG-NONE"


def test_tampered_payload(signer):
    env = sign_statement(make_statement(n=1), [signer])
    env["payload"] = b64(canonical_json(make_statement(n=2).to_dict()))
    with pytest.raises(VerificationError) as e:
        verify_envelope(parse_envelope(env), [signer.public_key])
    assert e.value.code == "GT-SIG-INVALID"


def test_tampered_signature(signer):
    env = sign_statement(make_statement(), [signer])
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[len(sig) // 2] ^= 1
    env["signatures"][0]["sig"] = b64(bytes(sig))
    with pytest.raises(VerificationError) as e:
        verify_envelope(parse_envelope(env), [signer.public_key])
    assert e.value.code == "GT-SIG-INVALID"


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _rs(der: bytes) -> tuple[int, int]:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    return decode_dss_signature(der)


def _der(r: int, s: int) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    return encode_dss_signature(r, s)


# spec/format.md §1.1.1: ECDSA signatures are strict DER; the same (r, s) spelled any other
# way is an invalid signature. The high-s twin of a signature is valid (no low-s rule).
ECDSA_SPELLINGS = [
    ("raw-r-s", lambda d: b"".join(x.to_bytes(32, "big") for x in _rs(d)), False),
    ("trailing-byte", lambda d: d + b"\x00", False),
    ("long-form-length", lambda d: b"\x30\x81" + d[1:], False),
    ("high-s-twin", lambda d: _der(_rs(d)[0], P256_N - _rs(d)[1]), True),
]


@pytest.mark.parametrize(
    "spell,valid", [c[1:] for c in ECDSA_SPELLINGS], ids=[c[0] for c in ECDSA_SPELLINGS]
)
def test_ecdsa_signature_encoding(ecdsa_signer, spell, valid):
    env = sign_statement(make_statement(), [ecdsa_signer])
    sig = env["signatures"][0]
    sig["sig"] = b64(spell(base64.b64decode(sig["sig"])))
    key = ecdsa_signer.public_key
    if valid:
        assert verify_envelope(parse_envelope(env), [key]).keyids == (key.keyid,)
    else:
        with pytest.raises(VerificationError) as e:
            verify_envelope(parse_envelope(env), [key])
        assert e.value.code == "GT-SIG-INVALID"


def test_ecdsa_signatures_are_der(ecdsa_signer):
    env = sign_statement(make_statement(), [ecdsa_signer])
    der = base64.b64decode(env["signatures"][0]["sig"])
    assert der[0] == 0x30 and der[1] == len(der) - 2 and _der(*_rs(der)) == der


def test_signature_moved_to_other_keyid(ecdsa_signer, ed25519_signer):
    """Attack: relabel a signature with a trusted key's keyid."""
    env = sign_statement(make_statement(), [ecdsa_signer])
    env["signatures"][0]["keyid"] = ed25519_signer.public_key.keyid
    with pytest.raises(VerificationError) as e:
        verify_envelope(parse_envelope(env), [ed25519_signer.public_key])
    assert e.value.code == "GT-SIG-INVALID"


def test_non_canonical_payload_rejected(signer):
    """A properly signed payload that is not RFC 8785 JSON is refused after the signature check."""
    payload = json.dumps(make_statement().to_dict(), indent=1).encode()
    env = Envelope(payload, PAYLOAD_TYPE, {})
    env.sign(signer)
    with pytest.raises(FormatError, match="envelope: expected RFC 8785 canonical JSON"):
        verify_envelope(parse_envelope(env.to_dict()), [signer.public_key])


def test_parse_envelope_does_not_mutate_input(signer):
    env = sign_statement(make_statement(), [signer])
    before = copy.deepcopy(env)
    parsed = parse_envelope(env)
    verify_envelope(parsed, [signer.public_key])
    assert env == before
    assert parse_envelope(env).payload == parsed.payload  # still usable a second time


def test_sign_requires_a_signer():
    with pytest.raises(FormatError, match="expected at least one signer, got none"):
        sign_statement(make_statement(), [])


ENVELOPE_BAD = [
    ("not-object", lambda e: [e], "envelope: expected a JSON object, got list"),
    (
        "missing-payload",
        lambda e: {k: v for k, v in e.items() if k != "payload"},
        "envelope: missing payload",
    ),
    (
        "missing-two",
        lambda e: {"payload": e["payload"]},
        "envelope: missing payloadType, signatures",
    ),
    (
        "signatures-not-list",
        lambda e: e | {"signatures": {}},
        r"envelope\.signatures: expected a list",
    ),
    (
        "payload-not-base64",
        lambda e: e | {"payload": "***"},
        r"envelope\.payload: expected standard base64",
    ),
    (
        "payload-not-string",
        lambda e: e | {"payload": 5},
        r"envelope\.payload: expected a base64 string, got int",
    ),
    (
        "signature-without-keyid",
        lambda e: e | {"signatures": [{"sig": e["signatures"][0]["sig"]}]},
        r"signatures\[0\]: expected an object with a keyid",
    ),
    (
        "signature-not-object",
        lambda e: e | {"signatures": ["x"]},
        r"signatures\[0\]: expected an object",
    ),
    (
        "sig-not-base64",
        lambda e: e | {"signatures": [{"keyid": "k", "sig": "!!"}]},
        r"signatures\[0\]\.sig: expected standard base64",
    ),
    (
        "duplicate-keyid",
        lambda e: e | {"signatures": e["signatures"] * 2},
        r"malformed DSSE envelope",
    ),
    # spec/format.md §1.1.3: one spelling per byte string. "QR==" decodes to the bytes of
    # "QQ==" in Python and most decoders; govtune refuses it.
    (
        "payload-nonzero-pad-bits",
        lambda e: e | {"payload": "QR=="},
        r"envelope\.payload: expected canonical base64, got another spelling",
    ),
    (
        "sig-nonzero-pad-bits",
        lambda e: e | {"signatures": [{"keyid": "k", "sig": "AAB="}]},
        r"signatures\[0\]\.sig: expected canonical base64, got another spelling",
    ),
    (
        "payload-extra-padding",
        lambda e: e | {"payload": "QUJD===="},
        r"envelope\.payload: expected canonical base64, got another spelling",
    ),
    (
        "payload-url-safe",
        lambda e: e | {"payload": "-_8="},
        r"envelope\.payload: expected standard base64",
    ),
    (
        "payload-unpadded",
        lambda e: e | {"payload": "QQ"},
        r"envelope\.payload: expected standard base64",
    ),
    (
        "payload-with-newline",
        lambda e: e | {"payload": "QUJD\nREVG"},
        r"envelope\.payload: expected standard base64",
    ),
]


def test_canonical_base64_with_padding_is_accepted(ecdsa_signer):
    env = sign_statement(make_statement(), [ecdsa_signer])
    assert parse_envelope(env | {"payload": "QQ=="}).payload == b"A"
    assert parse_envelope(env | {"payload": "QUI="}).payload == b"AB"
    assert parse_envelope(env | {"payload": ""}).payload == b""


@pytest.mark.parametrize(
    "mutate,match", [c[1:] for c in ENVELOPE_BAD], ids=[c[0] for c in ENVELOPE_BAD]
)
def test_malformed_envelope(ecdsa_signer, mutate, match):
    env = sign_statement(make_statement(), [ecdsa_signer])
    bad = mutate(copy.deepcopy(env))
    snapshot = copy.deepcopy(bad)
    with pytest.raises(FormatError, match=match):
        parse_envelope(bad)
    assert bad == snapshot


# --------------------------------------------------------------------------- statements

SUBJECT_BAD = [
    ("empty-name", lambda: Subject("", {"sha256": SHA}), "expected a non-empty name"),
    ("empty-digest", lambda: Subject("m", {}), "expected a non-empty digest set"),
    (
        "digest-not-str",
        lambda: Subject("m", {"sha256": 5}),
        r"digest: expected algorithm -> hex strings",
    ),
    (
        # regression: any non-empty string was a "sha256" digest
        "sha256-not-hex",
        lambda: Subject("m", {"sha256": "z" * 64}),
        r"^subject 'm'\.digest\.sha256: expected 64 lowercase hex digits, got 'zzzz",
    ),
    (
        "sha256-upper",
        lambda: Subject("m", {"sha256": SHA.upper()}),
        r"^subject 'm'\.digest\.sha256: expected 64 lowercase hex digits",
    ),
    (
        "sha256-short",
        lambda: Subject("m", {"sha256": SHA[:-2]}),
        r"^subject 'm'\.digest\.sha256: expected 64 lowercase hex digits",
    ),
    (
        "sha512-is-sha256-length",
        lambda: Subject("m", {"sha256": SHA, "sha512": SHA}),
        r"^subject 'm'\.digest\.sha512: expected 128 lowercase hex digits",
    ),
    (
        "sha256-from-payload",
        lambda: Subject.from_dict({"name": "m", "digest": {"sha256": "md5:abc"}}),
        r"^subject 'm'\.digest\.sha256: expected 64 lowercase hex digits, got 'md5:abc'$",
    ),
    (
        "from-dict-not-object",
        lambda: Subject.from_dict([], "subject[1]"),
        r"subject\[1\]: expected an object",
    ),
    ("from-dict-no-digest", lambda: Subject.from_dict({"name": "m"}), "expected name and digest"),
]


@pytest.mark.parametrize(
    "make,match", [c[1:] for c in SUBJECT_BAD], ids=[c[0] for c in SUBJECT_BAD]
)
def test_subject_validation(make, match):
    with pytest.raises(FormatError, match=match):
        make()


def test_subject_digest_other_algorithms_keep_any_non_empty_string():
    s = Subject("m", {"sha512": "ab" * 64, "govtune-merkle-sha256": "X", "gitCommit": "abc"})
    assert dict(s.digest) == {"sha512": "ab" * 64, "govtune-merkle-sha256": "X", "gitCommit": "abc"}


def test_subject_digest_is_frozen():
    digest = {"sha256": SHA}
    s = Subject("m", digest)
    digest["sha256"] = "00" * 32
    assert s.digest["sha256"] == SHA
    with pytest.raises(TypeError):
        s.digest["sha256"] = "x"  # type: ignore[index]


def test_statement_dict_round_trip_keeps_unrecognized_fields():
    d = make_statement(a=[1, 2]).to_dict() | {"extra": {"k": 1}}
    snapshot = copy.deepcopy(d)
    st = Statement.from_dict(d)
    assert d == snapshot  # from_dict copies
    assert st.unrecognized == {"extra": {"k": 1}}
    assert st.to_dict() == d
    assert Statement.from_payload(canonical_json(d)) == st
    assert st.subject("model.safetensors") == Subject("model.safetensors", {"sha256": SHA})
    assert st.subject("other") is None


STATEMENT_BAD = [
    (
        "wrong-type",
        lambda d: d | {"_type": "https://in-toto.io/Statement/v0.1"},
        r"statement\._type: expected",
    ),
    (
        "no-subjects",
        lambda d: d | {"subject": []},
        r"statement\.subject: expected a non-empty list",
    ),
    (
        "predicate-type-missing",
        lambda d: {k: v for k, v in d.items() if k != "predicateType"},
        r"statement\.predicateType: expected a string",
    ),
    (
        "predicate-not-object",
        lambda d: d | {"predicate": [1]},
        r"statement\.predicate: expected an object",
    ),
    (
        "predicate-empty",
        lambda d: d | {"predicate": {}},
        r"statement\.predicate: expected a non-empty object",
    ),
    (
        "predicate-type-empty",
        lambda d: d | {"predicateType": ""},
        r"predicateType: expected a non-empty URI",
    ),
    (
        "bad-subject",
        lambda d: d | {"subject": [{"name": "m", "digest": "x"}]},
        r"statement\.subject\[0\]: expected name and digest",
    ),
]


@pytest.mark.parametrize(
    "mutate,match", [c[1:] for c in STATEMENT_BAD], ids=[c[0] for c in STATEMENT_BAD]
)
def test_statement_validation(mutate, match):
    with pytest.raises(FormatError, match=match):
        Statement.from_dict(mutate(make_statement().to_dict()))


def test_statement_from_non_canonical_payload():
    d = make_statement().to_dict()
    with pytest.raises(FormatError, match="stmt: expected RFC 8785 canonical JSON"):
        Statement.from_payload(json.dumps(d).encode(), where="stmt")


# --------------------------------------------------------------------------- bundles


def test_bundle_round_trip(tmp_path, ecdsa_signer, ed25519_signer):
    envs = [sign_statement(make_statement(n=i), [ecdsa_signer, ed25519_signer]) for i in range(3)]
    path = tmp_path / "bundle.intoto.jsonl"
    write_bundle(path, envs)
    data = path.read_bytes()
    assert data == encode_bundle(envs)
    assert data.count(b"\n") == 3 and data.endswith(b"\n")
    lines = read_bundle(path)
    assert [bl.line for bl in lines] == [1, 2, 3]
    trusted = [ecdsa_signer.public_key, ed25519_signer.public_key]
    for i, bl in enumerate(lines):
        assert verify_envelope(bl.envelope, trusted, 2).statement.predicate == {"n": i}


def _bundle_with(tmp_path, body: bytes):
    path = tmp_path / "b.intoto.jsonl"
    path.write_bytes(body)
    return path


BUNDLE_BAD = [
    (
        "empty",
        lambda line: b"",
        r"b.intoto.jsonl: expected at least one envelope, got an empty bundle",
    ),
    (
        "no-final-newline",
        lambda line: line[:-1],
        r"b.intoto.jsonl:1: expected a newline-terminated line",
    ),
    (
        "blank-line",
        lambda line: line + b"\n",
        r"b.intoto.jsonl:2: expected an envelope, got an empty line",
    ),
    ("bad-json-line-2", lambda line: line + b"{\n", r"b.intoto.jsonl:2: expected JSON"),
    (
        "duplicate-key",
        lambda line: line + b'{"payload":"","payload":""}\n',
        r":2: duplicate JSON object key",
    ),
    (
        "not-an-envelope",
        lambda line: line + b"[1]\n",
        r"b.intoto.jsonl:2: expected a JSON object, got list",
    ),
    # spec/format.md §1.4 rule 2: LF only; a CR LF file (e.g. after a Windows checkout)
    # is refused, not read as JSON whitespace.
    (
        "crlf",
        lambda line: line[:-1] + b"\r\n",
        r"b.intoto.jsonl:1: expected lines ending in LF only, got CR \(0x0D\) at byte \d+",
    ),
    (
        "cr-as-whitespace",
        lambda line: line + b"\r" + line,
        r"b.intoto.jsonl:2: expected lines ending in LF only, got CR \(0x0D\) at byte 1$",
    ),
    (
        "line-65-levels-deep",
        lambda line: line[:-2] + b',"x":' + b"[" * 64 + b"]" * 64 + b"}\n",
        r"b.intoto.jsonl:1: JSON nested deeper than 64 levels",
    ),
]


def test_bundle_line_64_levels_deep_is_read(tmp_path, ecdsa_signer):
    """The envelope object is level 1 (spec/format.md §2.1); unknown members are ignored."""
    line = encode_bundle([sign_statement(make_statement(), [ecdsa_signer])])
    deep = line[:-2] + b',"x":' + b"[" * 63 + b"]" * 63 + b"}\n"
    assert len(read_bundle(_bundle_with(tmp_path, deep))) == 1


@pytest.mark.parametrize("body,match", [c[1:] for c in BUNDLE_BAD], ids=[c[0] for c in BUNDLE_BAD])
def test_bundle_refusals(tmp_path, ecdsa_signer, body, match):
    line = encode_bundle([sign_statement(make_statement(), [ecdsa_signer])])
    with pytest.raises(FormatError, match=match):
        read_bundle(_bundle_with(tmp_path, body(line)))


def test_bundle_limits(tmp_path, ecdsa_signer):
    line = encode_bundle([sign_statement(make_statement(), [ecdsa_signer])])
    path = _bundle_with(tmp_path, line * 2)
    assert len(read_bundle(path, limits=Limits(bundle_lines_max=2))) == 2
    with pytest.raises(FormatError, match="more than 1 envelopes"):
        read_bundle(path, limits=Limits(bundle_lines_max=1))
    with pytest.raises(
        FormatError, match=rf"b.intoto.jsonl:1: line longer than {len(line) - 2} bytes"
    ):
        read_bundle(path, limits=Limits(bundle_line_max=len(line) - 2))


def test_bundle_missing_file(tmp_path):
    with pytest.raises(FormatError, match="gone.intoto.jsonl: cannot read bundle"):
        read_bundle(tmp_path / "gone.intoto.jsonl")
