"""Coverage-guided fuzzing of the untrusted-input parsers with atheris (libFuzzer).

Not collected by pytest (atheris is not a dev dependency); run by hand::

    pip install atheris
    python tests/adversarial/fuzz_atheris.py TARGET -max_total_time=60
    python tests/adversarial/fuzz_atheris.py all -max_total_time=30   # each target in turn

TARGET is one of the names in `TARGETS`. The property is the one of
test_fuzz_parsers.py: only `attest.errors.GovtuneError` may escape; any other
exception is a crash and atheris writes the input to ./crash-*.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports():
    import samples

    from attest import keys
    from attest.bundle import read_bundle
    from attest.canonical import parse_json, unpack_canonical_msgpack
    from attest.envelope import parse_envelope, verify_envelope
    from attest.errors import GovtuneError
    from attest.log import iter_log
    from attest.policy import Policy
    from attest.predicates import parse_predicate
    from attest.records import AdmissionRecord, parse_step_log_record
    from attest.statement import Statement
    from attest.tensors import read_header

WORK = Path(tempfile.mkdtemp(prefix="govtune-atheris-"))
SIGNER = keys.generate("ecdsa")


def _file(name: str, data: bytes) -> Path:
    p = WORK / name
    p.write_bytes(data)
    return p


def _bundle(data: bytes) -> None:
    for bl in read_bundle(_file("bundle.intoto.jsonl", data)):
        s = verify_envelope(bl.envelope, [SIGNER.public_key])
        parse_predicate(s.statement)


def _envelope(data: bytes) -> None:
    env = parse_envelope(parse_json(data))
    verify_envelope(env, [SIGNER.public_key])


def _statement(data: bytes) -> None:
    parse_predicate(Statement.from_payload(data))


def _log(data: bytes) -> None:
    for rec in iter_log(_file("steps.msgpack", data)):
        if rec.value.get("kind") == "admission":
            AdmissionRecord.from_record(rec.value)
        else:
            parse_step_log_record(rec.value, 0 if rec.value.get("kind") == "start" else 1)


def _record(data: bytes) -> None:
    value = unpack_canonical_msgpack(data)
    AdmissionRecord.from_record(value)


def _safetensors(data: bytes) -> None:
    read_header(io.BytesIO(data), len(data), where="model.safetensors")


def _policy(data: bytes) -> None:
    Policy.from_toml(data).digest()


def _key(data: bytes) -> None:
    p = _file("key.pem", data)
    try:
        keys.load_public_key(p)
    finally:
        keys.load_signer(p)


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], list[bytes]]]] = {
    "bundle": (_bundle, lambda: [samples.bundle_bytes(SIGNER)]),
    "envelope": (_envelope, lambda: [samples.bundle_bytes(SIGNER).split(b"\n")[0]]),
    "statement": (_statement, lambda: [samples.statement().to_dict().__repr__().encode()]),
    "log": (_log, lambda: [samples.write_log(WORK / "seed.msgpack")]),
    "record": (_record, lambda: [samples.write_log(WORK / "seed1.msgpack", samples.records()[:1])]),
    "safetensors": (_safetensors, lambda: [samples.safetensors_bytes()]),
    "policy": (_policy, lambda: [samples.POLICY_TOML]),
    "key": (_key, lambda: list(samples.key_files(WORK).values())),
}


def main() -> None:
    name, rest = sys.argv[1], sys.argv[2:]
    if name == "all":
        for t in TARGETS:
            print(f"== {t}", flush=True)
            subprocess.run([sys.executable, __file__, t, *rest], check=True)
        return
    target, seeds = TARGETS[name]
    corpus = WORK / f"corpus-{name}"
    corpus.mkdir()
    for i, seed in enumerate(seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)

    def one(data: bytes) -> None:
        with contextlib.suppress(GovtuneError):  # a refusal is fine; anything else is a crash
            target(data)

    atheris.Setup([sys.argv[0], *rest, str(corpus)], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
