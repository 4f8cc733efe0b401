"""`govtune inspect MODEL_FOLDER [--policy POLICY]`: what a policy's profiles will train.

Lists the trainable parameter names of the model as a kind builds it (the names the
policy's patterns and layer ranges are resolved against, spec/policy.md §5), with shape,
parameter count and layer index (attest.layers), then each profile of the policy and the
names it resolves to. A profile that resolves to nothing is shown as an error line, the
same refusal `govtune train` makes before training (trainer.profiles), and the command
exits 2. Output on stdout, plain text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from attest.errors import PolicyError, UsageError
from attest.layers import layer_count, layer_index
from attest.policy import load_policy

from . import registry
from .profiles import resolve_profiles


def _options(kind: str, labels: str | None) -> dict[str, object]:
    names = [s for s in (labels or "").split(",") if s] or ["label-0", "label-1"]
    if kind == "hf-sequence-classification":
        return {"labels": names}
    if kind == "peft-lora" and labels:
        return {"task": "sequence-classification", "labels": names}
    return {}


def inspect_folder(folder: Path, kind: str, policy: Path | None, labels: str | None = None,
                   out: TextIO = sys.stdout) -> int:  # fmt: skip
    """Print the report; -> exit code (0, or 2 when a profile resolves to no parameter).

    Raises UsageError (folder or kind unusable) and PolicyError (policy unreadable)."""
    if not Path(folder).is_dir():
        raise UsageError(f"{folder}: expected a model folder, found none")
    spec = registry.spec_for(kind, _options(kind, labels), Path(folder), seed=0)
    built = registry.build(spec, Path(folder))
    params = dict(built.trainable)
    names = sorted(params)
    total = sum(p.numel() for p in params.values())
    print(f"model:      {folder} ({kind})", file=out)
    print(f"trainable:  {len(names)} tensors, {total:,} parameters, "
          f"{layer_count(names)} layers", file=out)  # fmt: skip
    print("", file=out)
    width = max((len(n) for n in names), default=4)
    print(f"{'name':<{width}}  {'layer':>5}  {'shape':<18} {'numel':>12}", file=out)
    for n in names:
        li = layer_index(n)
        shape = "x".join(str(d) for d in params[n].shape) or "scalar"
        print(f"{n:<{width}}  {'-' if li is None else li:>5}  {shape:<18} "
              f"{params[n].numel():>12,}", file=out)  # fmt: skip
    if policy is None:
        return 0
    pol, _ = load_policy(policy)
    print("", file=out)
    print(f"policy:     {policy} ({pol.name})", file=out)
    code = 0
    resolved = pol.resolve_profiles(names)
    for pname, allowed in resolved.items():
        p = pol.profiles[pname]
        how = f"patterns {list(p.patterns)}" + (f" layers {list(p.layers)}" if p.layers else "")
        if p.exclude:
            how += f" exclude {list(p.exclude)}"
        n_params = sum(params[n].numel() for n in allowed)
        print(f"\nprofile {pname}: {how}", file=out)
        print(f"  -> {len(allowed)} tensors, {n_params:,} parameters", file=out)
        for n in allowed:
            print(f"     {n}", file=out)
    try:
        resolve_profiles(pol, names)
    except PolicyError as e:
        print(f"\nerror: {e}", file=out)
        code = 2
    return code


def inspect_command(args: argparse.Namespace) -> int:
    policy = Path(args.policy) if args.policy else None
    return inspect_folder(Path(args.model), args.kind, policy, args.labels)


__all__ = ["inspect_command", "inspect_folder"]
