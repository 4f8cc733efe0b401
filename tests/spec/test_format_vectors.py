"""The format vectors (spec/vectors) checked from their bytes, as a second team would.

These tests recompute each format rule of spec/format.md with `hashlib`, `base64`,
`cryptography` and the stock `rfc8785` package, not through attest's envelope code, so a
vector that only attest could read would fail here. tests/verifier/test_vectors.py checks
the verdicts and codes; tests/interop checks the envelopes with sigstore-js.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from attest.canonical import parse_canonical_json
from attest.errors import FormatError
from attest.keys import keyid_input, load_public_key

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
INTER = json.loads((VECTORS / "valid" / "basic" / "intermediates.json").read_text())
BUNDLE = "run/provenance/bundle.intoto.jsonl"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ECDSA_PUB = VECTORS / "keys" / "vector-ecdsa.pub"


def envelopes(vector: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (VECTORS / vector / BUNDLE).read_bytes().splitlines()]


def pae(env: dict[str, Any]) -> bytes:
    t, body = env["payloadType"].encode(), base64.b64decode(env["payload"])
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def p256() -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(ECDSA_PUB.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


# -- keyids (format.md §1.1.2) -------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(INTER["keyids"]))
def test_keyid_worked_example(path: str) -> None:
    ex = INTER["keyids"][path]
    data = bytes.fromhex(ex["keyidInputHex"])
    assert data == ex["keyidInput"].encode("ascii")
    assert hashlib.sha256(data).hexdigest() == ex["keyid"]
    # the bytes follow from the three fields by concatenation (nothing escaped)
    kt, pub, sch = ex["keytype"], ex["public"], ex["scheme"]
    text = f'{{"keytype":"{kt}","keyval":{{"public":"{pub}"}},"scheme":"{sch}"}}'
    assert data == text.encode("ascii")
    key = load_public_key(VECTORS / path)
    assert (key.keyid, keyid_input(key)) == (ex["keyid"], data)
    if ex["keytype"] == "ecdsa":
        assert (VECTORS / path).read_text() == ex["public"]  # 64-column PEM, final LF
        assert ex["public"].count("\n") == 4
    else:
        raw = serialization.load_pem_public_key((VECTORS / path).read_bytes()).public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        assert ex["public"] == raw.hex()


def test_policy_statement_keyid_is_the_ed25519_worked_example() -> None:
    assert INTER["policyStatement"]["keyid"] == INTER["keyids"]["keys/vector.pub"]["keyid"]


# -- ECDSA signatures (format.md §1.1.1) -----------------------------------------------------


def test_ecdsa_worked_example_is_strict_der_over_the_pae() -> None:
    ex = INTER["ecdsaSignature"]
    der = bytes.fromhex(ex["derHex"])
    assert base64.b64decode(ex["sig"]) == der
    r, s = decode_dss_signature(der)
    assert (f"{r:064x}", f"{s:064x}") == (ex["r"], ex["s"])
    assert encode_dss_signature(r, s) == der
    p256().verify(der, bytes.fromhex(INTER["policyStatement"]["paeHex"]), ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize("vector", ["valid/ecdsa", "valid/ecdsa-high-s"])
def test_ecdsa_vector_signatures_are_der_and_verify(vector: str) -> None:
    keyid = INTER["keyids"]["keys/vector-ecdsa.pub"]["keyid"]
    for env in envelopes(vector):
        [sig] = env["signatures"]
        assert sig["keyid"] == keyid
        der = base64.b64decode(sig["sig"])
        r, s = decode_dss_signature(der)
        assert encode_dss_signature(r, s) == der
        p256().verify(der, pae(env), ec.ECDSA(hashes.SHA256()))
        if vector.endswith("high-s"):
            assert s > P256_N // 2  # valid: the format has no low-s rule


def test_high_s_vector_signs_the_same_payloads_as_the_ecdsa_vector() -> None:
    a, b = envelopes("valid/ecdsa"), envelopes("valid/ecdsa-high-s")
    assert [e["payload"] for e in a] == [e["payload"] for e in b]
    for x, y in zip(a, b, strict=True):
        rx, sx = decode_dss_signature(base64.b64decode(x["signatures"][0]["sig"]))
        ry, sy = decode_dss_signature(base64.b64decode(y["signatures"][0]["sig"]))
        assert rx == ry and sy in (sx, P256_N - sx)


@pytest.mark.parametrize("name", ["ecdsa-sig-invalid", "ecdsa-sig-raw", "ecdsa-sig-ber"])
def test_invalid_ecdsa_vector_signature_fails_and_only_it(name: str) -> None:
    envs, good = envelopes(f"invalid/{name}"), envelopes("valid/ecdsa")
    assert [e["payload"] for e in envs] == [e["payload"] for e in good]
    assert [e for i, e in enumerate(envs) if i != 1] == [e for i, e in enumerate(good) if i != 1]
    bad = base64.b64decode(envs[1]["signatures"][0]["sig"])
    with pytest.raises(InvalidSignature):
        p256().verify(bad, pae(envs[1]), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(base64.b64decode(good[1]["signatures"][0]["sig"]))
    if name == "ecdsa-sig-raw":
        assert bad == r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if name == "ecdsa-sig-ber":  # the same integers, an encoding DER forbids
        assert bad[4] == 0 and int.from_bytes(bad[5 : 4 + bad[3]], "big") == r


# -- encodings (format.md §1.1.3, §1.4, §2) --------------------------------------------------


def test_base64_padding_bits_vector_decodes_leniently_to_the_valid_signature() -> None:
    bad, good = envelopes("invalid/bundle-base64-bits")[0], envelopes("valid/basic")[0]
    spelled, canonical = bad["signatures"][0]["sig"], good["signatures"][0]["sig"]
    assert spelled != canonical
    assert base64.b64decode(spelled) == base64.b64decode(canonical)  # Python is lenient
    assert base64.b64encode(base64.b64decode(spelled)).decode() == canonical


def test_crlf_vector_is_the_valid_bundle_with_cr_lf_line_ends() -> None:
    crlf = (VECTORS / "invalid" / "bundle-crlf" / BUNDLE).read_bytes()
    assert crlf.count(b"\r\n") == 4
    assert crlf.replace(b"\r\n", b"\n") == (VECTORS / "valid" / "basic" / BUNDLE).read_bytes()


def test_unsafe_number_vector_is_rfc8785_canonical_yet_refused() -> None:
    payload = base64.b64decode(envelopes("invalid/stmt-unsafe-number")[2]["payload"])
    assert b'"tokensSeen":10000000000000000' in payload
    # A stock JCS reading numbers as binary64 (JavaScript, I-JSON) accepts it as canonical:
    assert rfc8785.dumps(json.loads(payload, parse_int=float)) == payload
    with pytest.raises(FormatError, match=r"tokensSeen: integer 10000000000000000 exceeds"):
        parse_canonical_json(payload)


def _depth(v: Any) -> int:
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    return 0


def test_depth_vectors_count_the_top_level() -> None:
    payload = base64.b64decode(envelopes("valid/stmt-depth-64")[2]["payload"])
    assert _depth(parse_canonical_json(payload)) == 64
    assert _depth(envelopes("valid/bundle-depth-64")[0]) == 64
    assert _depth(envelopes("invalid/bundle-depth-65")[0]) == 65


def test_keyid_json_escaped_vector_differs_only_in_the_keyid() -> None:
    """The mistake a JSON library makes: escaping the PEM's line feeds. The signature still
    verifies under the key; only the keyid, and so the trust lookup, is wrong."""
    bad, good = envelopes("invalid/keyid-json-escaped")[0], envelopes("valid/ecdsa")[0]
    ex = INTER["keyids"]["keys/vector-ecdsa.pub"]
    escaped = json.dumps(
        {"keytype": ex["keytype"], "keyval": {"public": ex["public"]}, "scheme": ex["scheme"]},
        sort_keys=True,
        separators=(",", ":"),
    )
    assert "\\n" in escaped and escaped.replace("\\n", "\n") == ex["keyidInput"]
    assert bad["signatures"][0]["keyid"] == hashlib.sha256(escaped.encode()).hexdigest()
    assert bad["signatures"][0]["keyid"] != ex["keyid"] == good["signatures"][0]["keyid"]
    assert bad["signatures"][0]["sig"] == good["signatures"][0]["sig"]
    der = base64.b64decode(bad["signatures"][0]["sig"])
    p256().verify(der, pae(bad), ec.ECDSA(hashes.SHA256()))
