"""Red team (issue 9), weights and base claims: verification.md §4 "the released weights
are exactly that final state", "the released weights' (and with V7 the base's) tensor
names, dtypes and shapes are the start record's", "with V7: the base weights ... are the
committed ones"; format.md §5.3/§5.4 (safetensors reading rules).

Written from the spec alone; every rewritten weight file is re-signed (its sha256 in the
training and memorization statements) with the producer's key.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mutate
import pytest
import tinyrun
from redteam import audit, failing, forge, full

from attest.predicates import TRAINING_TYPE

pytestmark = pytest.mark.slow

CHECKPOINT = "checkpoints/step-000006.safetensors"


def test_honest_run_passes(work: Path, honest: tinyrun.TinyRun) -> None:
    assert full(work, honest), [(f.code, f.message) for f in full(work, honest).failures]
    forge(work, honest, lambda ev: None)  # the forger's identity re-sign: the control
    assert full(work, honest)


WEIGHTS = "model.safetensors"


def read_st(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_st(path: Path, header: dict[str, Any] | bytes, buf: bytes) -> None:
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    path.write_bytes(len(h).to_bytes(8, "little") + h + buf)


def rewrite_weights(
    work: Path, t: tinyrun.TinyRun, change: Callable[[dict[str, Any]], None]
) -> None:
    """Edit the released weights' header (same buffer) and re-sign their digest."""
    header, buf = read_st(work / WEIGHTS)
    change(header)
    write_st(work / WEIGHTS, header, buf)
    forge(work, t, lambda ev: None)


def first_matrix(header: dict[str, Any]) -> str:
    return next(
        k
        for k, v in sorted(header.items())
        if k != "__metadata__" and len(v["shape"]) == 2 and v["shape"][0] != v["shape"][1]
    )


def test_matrix_transposed_in_header_same_bytes(work: Path, honest: tinyrun.TinyRun) -> None:
    def change(h: dict[str, Any]) -> None:
        name = first_matrix(h)
        h[name]["shape"] = list(reversed(h[name]["shape"]))

    rewrite_weights(work, honest, change)
    assert "GT-WEIGHTS-TENSORS" in failing(audit(work, honest))


def test_dtype_relabelled_same_width(work: Path, honest: tinyrun.TinyRun) -> None:
    # F32 bytes read as I32: the same buffer, another model.
    def change(h: dict[str, Any]) -> None:
        h[first_matrix(h)]["dtype"] = "I32"

    rewrite_weights(work, honest, change)
    assert "GT-WEIGHTS-TENSORS" in failing(audit(work, honest))


def test_dtype_alias_spelling(work: Path, honest: tinyrun.TinyRun) -> None:
    def change(h: dict[str, Any]) -> None:
        h[first_matrix(h)]["dtype"] = "float32"

    rewrite_weights(work, honest, change)
    assert "GT-WEIGHTS-FORMAT" in failing(audit(work, honest))


def test_duplicate_tensor_key_in_header(work: Path, honest: tinyrun.TinyRun) -> None:
    # Two entries for one name: a first-wins and a last-wins loader see different tensors.
    header, buf = read_st(work / WEIGHTS)
    name = first_matrix(header)
    entry = json.dumps(header[name], separators=(",", ":"))
    zero = json.dumps(
        {**header[name], "data_offsets": header[name]["data_offsets"]}, separators=(",", ":")
    )
    text = json.dumps(header, separators=(",", ":"))
    key = json.dumps(name)
    forged = text.replace(f"{key}:{entry}", f"{key}:{zero},{key}:{entry}", 1)
    assert forged != text
    write_st(work / WEIGHTS, forged.encode(), buf)
    forge(work, honest, lambda ev: None)
    assert "GT-WEIGHTS-FORMAT" in failing(audit(work, honest))


def test_two_tensors_alias_the_same_bytes(work: Path, honest: tinyrun.TinyRun) -> None:
    def change(h: dict[str, Any]) -> None:
        name = first_matrix(h)
        h["alias.weight"] = dict(h[name])

    rewrite_weights(work, honest, change)
    assert "GT-WEIGHTS-FORMAT" in failing(audit(work, honest))


def test_metadata_with_non_string_value(work: Path, honest: tinyrun.TinyRun) -> None:
    def change(h: dict[str, Any]) -> None:
        h["__metadata__"] = {"format": "pt", "layers": 2}

    rewrite_weights(work, honest, change)
    assert "GT-WEIGHTS-FORMAT" in failing(audit(work, honest))


def test_header_with_leading_whitespace(work: Path, honest: tinyrun.TinyRun) -> None:
    header, buf = read_st(work / WEIGHTS)
    write_st(work / WEIGHTS, b"  " + json.dumps(header).encode(), buf)
    forge(work, honest, lambda ev: None)
    assert "GT-WEIGHTS-FORMAT" in failing(audit(work, honest))


def test_bytes_after_the_last_tensor(work: Path, honest: tinyrun.TinyRun) -> None:
    # A payload hidden after the buffer, the file re-signed.
    with (work / WEIGHTS).open("ab") as f:
        f.write(b"\0" * 64)
    forge(work, honest, lambda ev: None)
    assert "GT-WEIGHTS-FORMAT" in failing(audit(work, honest))


def test_header_padding_is_allowed(work: Path, honest: tinyrun.TinyRun) -> None:
    # Control: trailing JSON whitespace and metadata change the file digest, not the state.
    def change(h: dict[str, Any]) -> None:
        h["__metadata__"] = {"format": "pt"}

    header, buf = read_st(work / WEIGHTS)
    change(header)
    write_st(work / WEIGHTS, json.dumps(header).encode() + b" " * 13, buf)
    forge(work, honest, lambda ev: None)
    assert audit(work, honest)


def test_empty_named_tensor_added(work: Path, honest: tinyrun.TinyRun) -> None:
    # A zero-element tensor named "" sorts first and hides in most listings.
    header, buf = read_st(work / WEIGHTS)
    header[""] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    write_st(work / WEIGHTS, header, buf)
    forge(work, honest, lambda ev: None)
    assert failing(audit(work, honest)) & {
        "GT-WEIGHTS-TENSORS",
        "GT-WEIGHTS-ROOT",
        "GT-WEIGHTS-FORMAT",
    }


def test_base_of_another_seed(
    work: Path, honest: tinyrun.TinyRun, other_run: tinyrun.TinyRun
) -> None:
    result = audit(work, honest, base=other_run.base)
    assert failing(result) == {"GT-BASE-ROOT"}


def test_base_with_an_extra_tensor_file(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    shutil.copytree(honest.base, base)
    write_st(
        base / "extra.safetensors",
        {"extra.bias": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
        b"\0" * 4,
    )
    assert failing(audit(work, honest, base=base)) == {"GT-BASE-TENSORS"}


def test_base_tensor_in_two_files(work: Path, honest: tinyrun.TinyRun, tmp_path: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(honest.base, base)
    header, buf = read_st(base / "model.safetensors")
    name = first_matrix(header)
    b, e = header[name]["data_offsets"]
    write_st(
        base / "dup.safetensors", {name: {**header[name], "data_offsets": [0, e - b]}}, bytes(e - b)
    )
    assert failing(audit(work, honest, base=base)) == {"GT-BASE-ROOT"}


def test_base_split_in_two_shards_passes(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    # Control: the same tensors in two files, each once, are the same base.
    base = tmp_path / "base"
    base.mkdir()
    header, buf = read_st(honest.base / "model.safetensors")
    names = sorted(k for k in header if k != "__metadata__")
    for part, chunk in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        h: dict[str, Any] = {}
        out = b""
        for n in chunk:
            b, e = header[n]["data_offsets"]
            h[n] = {**header[n], "data_offsets": [len(out), len(out) + e - b]}
            out += buf[b:e]
        write_st(base / f"model-{part}.safetensors", h, out)
    assert audit(work, honest, base=base)


def test_base_dtype_relabelled(work: Path, honest: tinyrun.TinyRun, tmp_path: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(honest.base, base)
    header, buf = read_st(base / "model.safetensors")
    header[first_matrix(header)]["dtype"] = "I32"
    write_st(base / "model.safetensors", header, buf)
    assert failing(audit(work, honest, base=base)) == {"GT-BASE-TENSORS"}


def _fake_base(honest: tinyrun.TinyRun, tmp_path: Path) -> tuple[Path, str]:
    """A base folder with the same tensor table and other values, and its state root."""
    base = tmp_path / "fake-base"
    base.mkdir()
    header, buf = read_st(honest.base / "model.safetensors")
    b, _ = header[first_matrix(header)]["data_offsets"]
    forged = bytearray(buf)
    forged[b : b + 4] = b"\x00\x00\x80\x3f"
    write_st(base / "model.safetensors", header, bytes(forged))
    return base, mutate.weights_root(base / "model.safetensors")


def test_weights_state_root_names_another_base_for_tinylm(
    work: Path, honest: tinyrun.TinyRun, tmp_path: Path
) -> None:
    fake, root = _fake_base(honest, tmp_path)
    assert not audit(work, honest, base=fake)  # the honest run refuses the fake base

    def edit(ev: mutate.Evidence) -> None:
        ev.predicates[TRAINING_TYPE]["baseModel"]["weightsStateRoot"] = root
        base = (ev.steps[0].get("model") or {}).get("base")
        if base is not None:
            base["weightsStateRoot"] = root

    forge(work, honest, edit)
    assert audit(work, honest)  # without --base the claim binds nothing
    # Closed at merge: a tinylm start state is its base, so the signed root must be the
    # base state root; the fake base is refused.
    assert "GT-BASE-ROOT" in failing(audit(work, honest, base=fake))
