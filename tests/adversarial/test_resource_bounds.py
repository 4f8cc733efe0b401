"""Resource-exhaustion attacks: refused with a clear error in bounded memory (issue 6, item 3).

Every attack runs in a fresh interpreter (`bounded.run_bounded`) that reports the
outcome and its peak RSS (VmHWM); the bound is 300 MiB. The 1 GiB inputs are sparse
files (a few random blocks, the rest holes), so they cost no disk and little time,
and are deleted by the test. Verifier-level attacks re-sign the evidence with the
producer's key where needed, so the parser under attack is really reached instead
of the attack stopping at a digest mismatch.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import mutate
import pytest
import tinyrun
from bounded import run_bounded

from attest.limits import DEFAULT_LIMITS
from attest.predicates import TRAINING_TYPE

PEAK_MIB = 300
GIB = 1 << 30


def sparse_garbage(path: Path, size: int = GIB, seed: int = 0) -> Path:
    """A ``size``-byte file: random blocks at the start, middle and end, holes elsewhere."""
    rnd = __import__("random").Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for off in (0, size // 2, size - (1 << 16)):
            f.seek(off)
            f.write(rnd.randbytes(1 << 16))
    return path


def assert_refused(report: dict[str, object], error: str = "FormatError", match: str = "") -> None:
    assert report["outcome"] == "refused", report
    assert (
        report["error"] in (error, "PolicyError")
        if error == "FormatError"
        else report["error"] == error
    )
    assert match in str(report["message"]), report
    assert "\n" not in str(report["message"])
    assert float(report["peak_mib"]) < PEAK_MIB, report  # type: ignore[arg-type]


# -- attest readers, one file each ---------------------------------------------------

READERS = {
    "bundle": "from attest.bundle import read_bundle; read_bundle(Path(sys.argv[1]))",
    "log": "from attest.log import summarize_log; summarize_log(Path(sys.argv[1]))",
    "safetensors": "from attest.tensors import hash_safetensors as h; h(Path(sys.argv[1]))",
    "policy": "from attest.policy import load_policy; load_policy(Path(sys.argv[1]))",
    "public key": "from attest.keys import load_public_key; load_public_key(Path(sys.argv[1]))",
    "private key": "from attest.keys import load_signer; load_signer(Path(sys.argv[1]))",
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_gigabyte_of_garbage_is_refused_by_every_reader(tmp_path: Path, reader: str) -> None:
    path = sparse_garbage(tmp_path / "garbage.bin")
    try:
        assert_refused(run_bounded(READERS[reader], str(path)))
    finally:
        path.unlink()


def test_gigabyte_of_newlines_free_bytes_is_refused_as_one_overlong_bundle_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bundle.intoto.jsonl"
    with open(path, "wb") as f:
        f.truncate(GIB)  # one 1 GiB "line" of NUL bytes, never terminated
    try:
        assert_refused(run_bounded(READERS["bundle"], str(path)), match="line longer than")
    finally:
        path.unlink()


def test_gigabyte_weight_file_is_hashed_streaming_in_bounded_memory(tmp_path: Path) -> None:
    # Not an attack but the other side of it: a legitimately huge tensor is hashed in
    # constant memory, so the bounds above do not come from refusing big files.
    path = tmp_path / "model.safetensors"
    header = json.dumps({"w": {"dtype": "U8", "shape": [GIB], "data_offsets": [0, GIB]}}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + GIB)
    try:
        report = run_bounded(
            """
            from attest.tensors import hash_safetensors
            d = hash_safetensors(Path(sys.argv[1]))
            out.update(size=d.size, tensors=len(d.leaves))
            """,
            str(path),
        )
        assert report["outcome"] == "ok", report
        assert report["size"] == 8 + len(header) + GIB
        assert float(report["peak_mib"]) < PEAK_MIB, report
    finally:
        path.unlink()


def test_hundred_megabyte_bundle_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bundle.intoto.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"payload":"')
        chunk = b"QUFB" * (1 << 18)  # 1 MiB of base64
        for _ in range(100):
            f.write(chunk)
        f.write(b'","payloadType":"application/vnd.in-toto+json","signatures":[]}\n')
    assert_refused(run_bounded(READERS["bundle"], str(path)), match="line longer than")


# msgpack's 32-bit length prefixes at their maximum, 2^32 - 1, followed by 16 MiB of
# filler so a reader that trusts the prefix has data to keep buffering.
PREFIXES = {
    "bin32": b"\xc6\xff\xff\xff\xff",
    "str32": b"\xdb\xff\xff\xff\xff",
    "array32": b"\xdd\xff\xff\xff\xff",
    "map32": b"\xdf\xff\xff\xff\xff",
    "ext32": b"\xc9\xff\xff\xff\xff\x01",
}


@pytest.mark.parametrize("kind", sorted(PREFIXES))
def test_msgpack_length_prefix_of_two_to_the_32_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "steps.msgpack"
    path.write_bytes(PREFIXES[kind] + b"\x00" * (16 << 20))
    assert_refused(run_bounded(READERS["log"], str(path)))
    assert_refused(
        run_bounded(
            "from attest.canonical import unpack_canonical_msgpack\n"
            "unpack_canonical_msgpack(Path(sys.argv[1]).read_bytes()[:4 << 20])",
            str(path),
        )
    )


def test_msgpack_record_announced_inside_a_valid_map_is_refused(tmp_path: Path) -> None:
    # A record that starts like a real one and then announces a 4 GiB string value.
    path = tmp_path / "steps.msgpack"
    path.write_bytes(b"\x81\xa4kind\xdb\xff\xff\xff\xff" + b"A" * (8 << 20))
    assert_refused(run_bounded(READERS["log"], str(path)))


DEEP = 100_000


@pytest.mark.parametrize(
    "case",
    [
        "json text",
        "bundle line",
        "statement payload",
        "safetensors header",
        "policy toml",
        "policy inline table",
        "msgpack record",
    ],
)
def test_nesting_one_hundred_thousand_deep_is_refused(tmp_path: Path, case: str) -> None:
    path = tmp_path / "deep"
    nested_json = b"[" * DEEP + b"]" * DEEP
    body = {
        "json text": (
            "from attest.canonical import parse_json; parse_json(Path(sys.argv[1]).read_bytes())",
            nested_json,
        ),
        "bundle line": (READERS["bundle"], b'{"payload":' + nested_json + b"}\n"),
        "statement payload": (
            "from attest.statement import Statement\n"
            "Statement.from_payload(Path(sys.argv[1]).read_bytes())",
            b'{"predicate":' + nested_json + b"}",
        ),
        "safetensors header": (
            READERS["safetensors"],
            struct.pack("<Q", 2 * DEEP + 6) + b'{"a":' + nested_json + b"}",
        ),
        "policy toml": (READERS["policy"], b"name = " + nested_json),
        "policy inline table": (READERS["policy"], b"name = " + b"{a=" * DEEP + b"1" + b"}" * DEEP),
        "msgpack record": (READERS["log"], b"\x91" * DEEP + b"\xc0"),
    }[case]
    path.write_bytes(body[1])
    assert_refused(run_bounded(body[0], str(path)))


def test_safetensors_header_claiming_a_terabyte_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    assert_refused(run_bounded(READERS["safetensors"], str(path)), match="exceeds the cap")


def test_safetensors_length_prefix_of_two_to_the_32_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 32) + b"{}" + b"\x00" * 1024)
    assert_refused(run_bounded(READERS["safetensors"], str(path)))


def test_safetensors_tensor_claiming_a_terabyte_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    header = json.dumps(
        {"w": {"dtype": "U8", "shape": [10**12], "data_offsets": [0, 10**12]}}
    ).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 64)
    assert_refused(run_bounded(READERS["safetensors"], str(path)), match="the file has")


def test_safetensors_header_at_the_cap_is_parsed_in_bounded_memory(tmp_path: Path) -> None:
    # The largest header the limits allow, made as expensive as possible for a Python
    # reader: one non-BMP character makes the decoded str 4 bytes per character.
    n = DEFAULT_LIMITS.safetensors_header_max
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", n) + b'{"\xf0\x9f\x98\x80":"')
        chunk = b"x" * (1 << 20)
        left = n - 11  # 9 bytes before, 2 after: exactly n header bytes
        while left:
            f.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
        f.write(b'"}')
    assert path.stat().st_size == 8 + n
    assert_refused(run_bounded(READERS["safetensors"], str(path)), match="expected keys dtype")


# -- the verifier, end to end ---------------------------------------------------------------

VERIFY = """
from verifier.api import verify
r = verify(Path(sys.argv[1]), keys=[Path(sys.argv[2])])
out.update(outcome=r.verdict, failed=sorted({f.code for f in r.failures}),
           messages=[f.message for f in r.failures])
"""


def verify_bounded(run: Path, pub: Path) -> dict[str, object]:
    report = run_bounded(VERIFY, str(run), str(pub))
    assert float(report["peak_mib"]) < PEAK_MIB, report  # type: ignore[arg-type]
    return report


@pytest.fixture
def run_copy(tmp_path: Path, tiny_run: tinyrun.TinyRun) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(tiny_run.run, dst)
    return dst


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("model.safetensors", "GT-WEIGHTS-DIGEST"),
        ("provenance/steps.msgpack", "GT-FILE-DIGEST"),
        ("provenance/bundle.intoto.jsonl", "GT-BUNDLE-FORMAT"),
        ("provenance/policy.toml", "GT-FILE-DIGEST"),
    ],
)
def test_verifier_fails_on_a_gigabyte_of_garbage(
    run_copy: Path, tiny_run: tinyrun.TinyRun, target: str, code: str
) -> None:
    path = run_copy / target
    path.unlink()
    sparse_garbage(path)
    try:
        report = verify_bounded(run_copy, tiny_run.pub)
    finally:
        path.unlink()
    assert report["outcome"] == "FAIL", report
    assert code in report["failed"], report  # type: ignore[operator]


@pytest.mark.slow
def test_verifier_fails_on_a_hundred_megabyte_bundle_line(
    run_copy: Path, tiny_run: tinyrun.TinyRun
) -> None:
    path = run_copy / "provenance" / "bundle.intoto.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"payload":"' + b"QUFB" * (25 << 20) + b'"}\n')
    report = verify_bounded(run_copy, tiny_run.pub)
    assert report["outcome"] == "FAIL" and "GT-BUNDLE-FORMAT" in report["failed"], report  # type: ignore[operator]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["str32", "map32"])
def test_verifier_fails_on_a_signed_log_with_a_four_gigabyte_length_prefix(
    run_copy: Path, tiny_run: tinyrun.TinyRun, kind: str
) -> None:
    # The producer signs the poisoned log's digest, so the verifier must parse it.
    ev = mutate.Evidence.load(run_copy, tiny_run.pub)
    raw = PREFIXES[kind] + b"A" * (8 << 20)
    ev.write(run_copy, mutate.signer(tiny_run), steps_raw=raw)
    report = verify_bounded(run_copy, tiny_run.pub)
    assert report["outcome"] == "FAIL" and "GT-STEP-LOG-FORMAT" in report["failed"], report  # type: ignore[operator]


@pytest.mark.slow
def test_verifier_fails_on_signed_weights_whose_header_claims_a_terabyte(
    run_copy: Path, tiny_run: tinyrun.TinyRun
) -> None:
    weights = run_copy / "model.safetensors"
    weights.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    ev = mutate.Evidence.load(run_copy, tiny_run.pub)
    ev.write(run_copy, mutate.signer(tiny_run))  # re-signs the new weights' sha256
    report = verify_bounded(run_copy, tiny_run.pub)
    assert report["outcome"] == "FAIL" and "GT-WEIGHTS-FORMAT" in report["failed"], report  # type: ignore[operator]


@pytest.mark.slow
def test_verifier_fails_on_a_signed_run_claiming_a_billion_steps(
    run_copy: Path, tiny_run: tinyrun.TinyRun
) -> None:
    ev = mutate.Evidence.load(run_copy, tiny_run.pub)
    ev.predicates[TRAINING_TYPE]["steps"] = 10**9
    ev.write(run_copy, mutate.signer(tiny_run), recompute_steps=False)
    report = verify_bounded(run_copy, tiny_run.pub)
    assert report["outcome"] == "FAIL" and "GT-CHAIN-GAP" in report["failed"], report  # type: ignore[operator]


@pytest.mark.slow
def test_verifier_fails_on_a_signed_step_log_summary_claiming_a_billion_records(
    run_copy: Path, tiny_run: tinyrun.TinyRun
) -> None:
    ev = mutate.Evidence.load(run_copy, tiny_run.pub)
    ev.predicates[TRAINING_TYPE]["steps"] = 10**9
    ev.write(
        run_copy,
        mutate.signer(tiny_run),
        recompute_steps=False,
        patch_step_log={"count": 10**9 + 1},
    )
    report = verify_bounded(run_copy, tiny_run.pub)
    assert report["outcome"] == "FAIL", report
    assert {"GT-CHAIN-GAP", "GT-STEP-LOG-SUMMARY"} & set(report["failed"]), report  # type: ignore[arg-type]
