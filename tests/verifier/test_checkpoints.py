"""GT-CHECKPOINT-DIGEST (V6) and the V7 duplicate-tensor rule, on synthetic runs.

The spec vectors' pipeline (spec/vectors/generate.py) builds each run with one stage
altered and everything after it recomputed and re-signed, so only the lie is left.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from vector_helpers import KEY, VECTORS, verify_kwargs

from attest.predicates import TRAINING_TYPE
from verifier import verify
from verifier.result import Result

CODE = "GT-CHECKPOINT-DIGEST"


def _generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vector_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["vector_generate"] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


gen = _generate()
CKPT = gen.CHECKPOINT_FILE


def _build(tmp_path: Path, **hooks: Any) -> Path:
    gen.build(gen.Variant("test", "GT-TEST", "test", hooks), tmp_path / "v")
    return tmp_path / "v" / "run"


def _findings(result: Result, code: str) -> list[tuple[str, str]]:
    return [(f.status, f.message) for f in result.findings if f.code == code]


def _only_failure(result: Result, code: str = CODE) -> list[str]:
    assert {f.code for f in result.failures} == {code}, [
        (f.code, f.message) for f in result.failures
    ]
    return [m for s, m in _findings(result, code)]


def _training(edit: Any) -> Any:
    def hook(preds: dict[str, Any]) -> dict[str, Any]:
        edit(preds[TRAINING_TYPE])
        return preds

    return hook


def test_shipped_checkpoint_passes_and_is_not_uncovered(basic: Path) -> None:
    assert (basic / "run" / CKPT).is_file()
    r = verify(basic / "run", **verify_kwargs(basic))
    assert _findings(r, CODE) == [("pass", "1 checkpoint(s) match the step log; 1 shipped")]
    assert _findings(r, "GT-FILE-UNCOVERED")[0][0] == "pass"


def test_checkpoint_not_shipped_is_allowed_and_reported() -> None:
    v = VECTORS / "valid" / "checkpoint-not-shipped"
    assert not (v / "run" / CKPT).exists()
    r = verify(v / "run", **verify_kwargs(v))
    assert r, [(f.code, f.message) for f in r.failures]
    [(status, msg)] = _findings(r, CODE)
    assert status == "pass"
    assert msg.endswith(f"0 shipped, 1 not shipped ({CKPT}; allowed without --replay)")


def test_checkpoint_file_flipped_fails_its_digest() -> None:
    v = VECTORS / "invalid" / "checkpoint-digest"
    [msg] = _only_failure(verify(v / "run", **verify_kwargs(v)))
    assert msg.startswith(f"{CKPT} (checkpoint of step 3): expected sha256 ")


def test_checkpoint_state_root_claimed_in_the_predicate() -> None:
    v = VECTORS / "invalid" / "checkpoint-entry"
    msgs = _only_failure(verify(v / "run", **verify_kwargs(v)))
    root = "3" * 64
    assert msgs[0].startswith(
        f"step 3: record checkpoint.stateRoot: expected '{root}' (signed in training-run "
        f"checkpoints[0]), found '"
    )
    assert msgs[1].startswith("training-run checkpoints[0] (step 3): expected stateRoot ")
    assert msgs[1].endswith(f"(the chain's state root at step 3), found {root}")
    assert msgs[2].startswith(f"{CKPT} (checkpoint of step 3): expected state root {root} ")


def test_checkpoint_left_out_of_the_predicate(tmp_path: Path) -> None:
    run = _build(tmp_path, predicates=_training(lambda p: p["checkpoints"].clear()))
    # Shipped, the unlisted file is an unbound weight-like file (GT-FILE-UNCOVERED, V1);
    # left out of the release, the record's checkpoint still needs its signed entry.
    assert {f.code for f in verify(run, [KEY]).failures} == {"GT-FILE-UNCOVERED"}
    (run / CKPT).unlink()
    [msg] = _only_failure(verify(run, [KEY]))
    assert msg == (
        f"step 3: the record names checkpoint '{CKPT}', expected a training-run checkpoints "
        f"entry for it, found none"
    )


def test_checkpoint_the_step_log_never_wrote(tmp_path: Path) -> None:
    def extra(p: dict[str, Any]) -> None:
        p["checkpoints"].append({**p["checkpoints"][0], "step": 5})

    [msg] = _only_failure(verify(_build(tmp_path, predicates=_training(extra)), [KEY]))
    assert msg.startswith("training-run checkpoints[1] (step 5): expected step 5's record to name")


def test_checkpoint_file_holding_another_state(tmp_path: Path) -> None:
    # Signed consistently (record and predicate carry this file's sha256): only the
    # tensors inside give it away.
    run = _build(tmp_path, checkpoint_bytes=lambda _b: gen.safetensors_bytes(gen.base_values()))
    [msg] = _only_failure(verify(run, [KEY]))
    assert msg.startswith(f"{CKPT} (checkpoint of step 3): expected state root ")
    assert "over its model tensors, found " in msg


def test_checkpoint_file_missing_a_model_tensor(tmp_path: Path) -> None:
    def drop(_b: bytes) -> bytes:
        values = gen.base_values()
        del values["head.bias"]
        return bytes(gen.safetensors_bytes(values))

    [msg] = _only_failure(verify(_build(tmp_path, checkpoint_bytes=drop), [KEY]))
    assert msg.endswith("expected every model tensor, found 1 missing (e.g. 'head.bias')")


@pytest.mark.parametrize("name", ["../outside.safetensors", "/abs/step.safetensors"])
def test_checkpoint_path_outside_the_run_folder(tmp_path: Path, name: str) -> None:
    def steps(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        recs[3]["checkpoint"] = {**recs[3]["checkpoint"], "file": name}
        return recs

    run = _build(
        tmp_path,
        step_records=steps,
        predicates=_training(lambda p: p["checkpoints"][0].update(file=name)),
    )
    (run / CKPT).unlink()  # else the unlisted file fails GT-FILE-UNCOVERED first (V1)
    [msg] = _only_failure(verify(run, [KEY]))
    assert msg == f"training-run checkpoints: step 3: expected a relative file name, found {name!r}"


def test_unverified_bundle_reads_no_checkpoint(tmp_path: Path) -> None:
    run = _build(tmp_path)
    with open(run / "provenance" / "steps.msgpack", "ab") as f:
        f.write(b"\x00")
    r = verify(run, [KEY])
    assert {f.code for f in r.failures} == {"GT-FILE-DIGEST"}
    # Nothing of a failed V1 is used (verification.md §2.1): no checkpoint file is read.
    assert _findings(r, CODE) == [("skip", "no verified bundle")]


def test_base_tensor_in_two_files_fails() -> None:
    v = VECTORS / "invalid" / "base-duplicate"
    [msg] = _only_failure(verify(v / "run", **verify_kwargs(v)), "GT-BASE-ROOT")
    assert msg.endswith(
        "base: expected each tensor in one base file, found 'head.bias' in both "
        "extra.safetensors and model.safetensors"
    )


def test_base_split_over_two_files_passes(tmp_path: Path, basic: Path) -> None:
    # Sharded base weights are fine as long as every tensor is in exactly one file.
    base = tmp_path / "base"
    base.mkdir()
    values = gen.base_values()
    names = sorted(values)
    (base / "a.safetensors").write_bytes(gen.safetensors_bytes({n: values[n] for n in names[:3]}))
    (base / "b.safetensors").write_bytes(gen.safetensors_bytes({n: values[n] for n in names[3:]}))
    run = tmp_path / "run"
    shutil.copytree(basic / "run", run)
    r = verify(run, [KEY], base=base)
    assert r and _findings(r, "GT-BASE-ROOT") == [("pass", "2 file(s), 7 tensors")]
