"""Depth profiles resolved against a model at the start of a run (spec/policy.md §5, §5.1).

`attest.policy.Policy.resolve_profiles` is the one resolution rule (the verifier re-runs
it over the recorded trainable names); this module adds what only the trainer can do
before training: refuse a profile that resolves to no parameter (it would train nothing
and still verify green), naming its patterns and ranges and showing the model's names.
"""

from __future__ import annotations

from collections.abc import Iterable

from attest.errors import PolicyError
from attest.layers import layer_count, layer_index
from attest.policy import Policy


def name_hint(names: Iterable[str], limit: int = 4) -> str:
    """A short sample of a model's parameter names and its layer count, for error messages."""
    names = sorted(names)
    count = layer_count(names)
    firsts: dict[object, str] = {}
    for n in names:  # one name per layer index (and one without), so the shape shows
        firsts.setdefault(layer_index(n), n)
    sample = ", ".join(repr(n) for n in list(firsts.values())[:limit])
    return f"{len(names)} trainable parameters, {count} layers (0..{count - 1}), e.g. {sample}"


def resolve_profiles(policy: Policy, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Profile -> sorted names it allows. Raises PolicyError for a profile that allows none."""
    names = list(names)
    resolved = policy.resolve_profiles(names)
    for pname, allowed in resolved.items():
        if not allowed:
            p = policy.profiles[pname]
            what = f"patterns {list(p.patterns)}"
            if p.layers:
                what += f" and layers {list(p.layers)}"
            if p.exclude:
                what += f" (exclude {list(p.exclude)})"
            raise PolicyError(
                f"profiles.{pname}: expected {what} to match a trainable parameter, found none; "
                f"the model has {name_hint(names)} (govtune inspect MODEL_FOLDER lists them)"
            )
    return resolved


__all__ = ["name_hint", "resolve_profiles"]
