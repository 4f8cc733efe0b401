"""The torch-free model spec (records.md §4.2): validated, round-trips, keeps unknown fields."""

from __future__ import annotations

import pytest

from attest.errors import FormatError
from attest.modelspec import BaseIdentity, ModelSpec, TokenizerIdentity
from attest.records import StartRecord

H = "ab" * 32


def _spec(**kw: object) -> ModelSpec:
    args: dict[str, object] = {
        "kind": "hf-sequence-classification",
        "config": {"num_labels": 3, "layer_norm_eps": 1e-12, "labels": ["a", "b", "c"]},
        "base": BaseIdentity("minilm", H, revision="r1", files={"model.safetensors": H}),
        "tokenizer": TokenizerIdentity({"tokenizer.json": H, "vocab.txt": H}),
        "trainable": ("a.weight", "b.bias"),
    }
    args.update(kw)
    return ModelSpec(**args)  # type: ignore[arg-type]


def test_round_trip_and_digest() -> None:
    spec = _spec()
    d = spec.to_dict()
    assert ModelSpec.from_dict(d) == spec
    assert d["configDigest"] == spec.config_digest and len(spec.config_digest) == 64
    assert _spec(config={"num_labels": 4}).config_digest != spec.config_digest


def test_from_dict_copies_and_keeps_unknown_fields() -> None:
    d = _spec().to_dict()
    d["future"] = {"x": 1}
    d["base"]["mirror"] = "somewhere"
    before = repr(d)
    spec = ModelSpec.from_dict(d)
    assert repr(d) == before  # the caller's dict is not mutated
    assert spec.unrecognized == {"future": {"x": 1}}
    assert spec.to_dict()["base"]["mirror"] == "somewhere"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"kind": "Bad Kind"}, "model.kind: expected a registry key"),
        ({"config": {"x": float("nan")}}, r"model.config: \$\.x: expected a finite number"),
        ({"trainable": ("b", "a")}, "model.trainable: expected sorted, distinct"),
        ({"trainable": ("a", "a")}, "model.trainable: expected sorted, distinct"),
    ],
)
def test_constructor_rejects(kw: dict[str, object], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        _spec(**kw)


@pytest.mark.parametrize("path", ["../x", "/abs", "a//b", "a\\b", "./a"])
def test_file_paths_must_be_relative_and_plain(path: str) -> None:
    with pytest.raises(FormatError, match="expected a relative POSIX path"):
        BaseIdentity("b", H, files={path: H})


def test_config_digest_mismatch_is_refused() -> None:
    d = _spec().to_dict()
    d["config"]["num_labels"] = 9  # config rewritten, digest left as it was
    with pytest.raises(FormatError, match="model.configDigest: expected "):
        ModelSpec.from_dict(d)


def test_start_record_binds_the_spec_to_its_trainable_names_and_base_root() -> None:
    leaves = {"a.weight": bytes(32), "b.bias": bytes(32)}
    tensors = {"a.weight": ("F32", (2, 2)), "b.bias": ("F32", (2,))}
    root = bytes.fromhex(H)
    args = (H, H, leaves, root, tensors, {"all": ("a.weight", "b.bias")},
            ("a.weight", "b.bias"))  # fmt: skip
    rec = StartRecord(*args, model=_spec())
    assert StartRecord.from_record(rec.to_record()).model == _spec()
    with pytest.raises(FormatError, match="start.model.trainable: expected"):
        StartRecord(*args[:6], ("a.weight",), model=_spec())
    with pytest.raises(FormatError, match="start.model.base.stateRoot: expected"):
        StartRecord(*args[:3], bytes(32), *args[4:], model=_spec())
    assert "model" not in StartRecord(*args).to_record()  # v0.1 shape when absent
