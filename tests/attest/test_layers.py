"""Layer ranges of depth profiles (spec/policy.md §5.1), resolved to names torch-free."""

from __future__ import annotations

import pytest

from attest.errors import PolicyError
from attest.layers import layer_index, parse_range
from attest.policy import Policy, Profile

BERT = [
    "bert.embeddings.word_embeddings.weight",
    *(f"bert.encoder.layer.{i}.attention.self.query.weight" for i in range(6)),
    *(f"bert.encoder.layer.{i}.output.dense.weight" for i in range(6)),
    "bert.pooler.dense.weight",
    "classifier.weight",
    "classifier.bias",
]


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("bert.encoder.layer.3.attention.self.query.weight", 3),
        ("base_model.model.model.layers.12.self_attn.q_proj.lora_A.weight", 12),
        ("blocks.0.mlp.fc.weight", 0),
        ("classifier.weight", None),
        ("h.1x.w", None),
    ],
)
def test_layer_index(name: str, index: int | None) -> None:
    assert layer_index(name) == index


@pytest.mark.parametrize(
    ("layers", "want"),
    [
        (["0..1"], {0, 1}),
        (["-2..-1"], {4, 5}),
        (["5"], {5}),
        (["-1"], {5}),
        (["3..-1"], {3, 4, 5}),
        (["4..9"], {4, 5}),  # clipped to the model's depth
        (["7..9"], set()),
    ],
)
def test_ranges_resolve_to_names(layers: list[str], want: set[int]) -> None:
    got = Profile("p", (), (), tuple(layers)).resolve(BERT)
    assert {layer_index(n) for n in got} == want
    assert all(f"layer.{i}." in " ".join(got) for i in want)


def test_patterns_and_layers_union_minus_exclude() -> None:
    p = Profile("surface", ("classifier.*",), ("*.query.*",), ("-1",))
    assert p.resolve(BERT) == (
        "bert.encoder.layer.5.output.dense.weight",
        "classifier.bias",
        "classifier.weight",
    )


@pytest.mark.parametrize("bad", ["1-3", "a", "", "1..", "3..1", "-1..-3", "1..2..3"])
def test_bad_range(bad: str) -> None:
    with pytest.raises(PolicyError, match=r"expected (a layer range|A <= B)"):
        parse_range(bad, "profiles.p.layers[0]")


POLICY = """
version = "0.1"
name = "layers"
[licenses]
allow = ["permissive"]
[licenses.classes]
"MIT" = "permissive"
[profiles.deep]
patterns = ["*"]
[profiles.surface]
layers = ["-2..-1"]
patterns = ["classifier.*"]
[[assign]]
profile = "surface"
"""


def test_policy_layers_digest_and_round_trip() -> None:
    p = Policy.from_toml(POLICY.encode(), where="p.toml")
    assert p.profiles["surface"].layers == ("-2..-1",)
    assert p.to_dict()["profiles"]["surface"]["layers"] == ["-2..-1"]
    assert "layers" not in p.to_dict()["profiles"]["deep"]  # v0.1 profiles keep their digest
    assert Policy.from_dict(p.to_dict(), where="n").digest() == p.digest()
    surface = p.resolve_profiles(BERT)["surface"]
    assert "classifier.weight" in surface and "bert.encoder.layer.4.output.dense.weight" in surface
    assert "bert.encoder.layer.3.output.dense.weight" not in surface


def test_policy_bad_layers() -> None:
    with pytest.raises(
        PolicyError, match=r"profiles\.surface\.layers\[0\]: expected a layer range"
    ):
        Policy.from_toml(POLICY.replace('"-2..-1"', '"last"').encode(), where="p.toml")


def test_profile_without_patterns_or_layers() -> None:
    doc = POLICY.replace('layers = ["-2..-1"]\npatterns = ["classifier.*"]', "exclude = []")
    with pytest.raises(PolicyError, match=r"expected at least one pattern or layer range"):
        Policy.from_toml(doc.encode(), where="p.toml")
