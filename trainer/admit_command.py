"""`govtune admit CONFIG`: the admission of a training config, as a dry run.

Reads the config, its policy and its dataset, judges every example exactly as
`govtune train` would (trainer.data.admit, the same evaluator) and resolves each
profile against the config's model, then prints one row per example (decision, the
rule that decided, profile) and totals that add up (attest.admission_table). Nothing
is trained or written and no key is needed. The salts and canaries of a dry run come
from a throwaway secret, so commitments and canary texts differ from a real run's;
decisions do not depend on the secret.
"""

from __future__ import annotations

import argparse
import os
import sys

from attest.admission_table import render, table_of
from attest.dataset import read_dataset
from attest.policy import load_policy

from .config import TrainConfig
from .data import admit
from .profiles import resolve_profiles

EXIT_OK = 0


def admit_command(args: argparse.Namespace) -> int:
    """Raises UsageError / FormatError / PolicyError (the CLI prints them, exit 2)."""
    from pathlib import Path

    from .commands import build_model  # torch: only once the inputs are known to be good

    config = TrainConfig.load(Path(args.config))
    policy, _ = load_policy(config.path("policy"))
    examples, _ = read_dataset(config.path("dataset"))
    built = build_model(config)
    profiles = resolve_profiles(policy, built.trainable)  # PolicyError: a profile matches none
    # after every config error: admission may show progress (attest.progress)
    adm = admit(policy, examples, os.urandom(32))  # throwaway: a dry run commits to nothing
    n = len(examples)
    texts = {i: adm.texts.get(i, examples[i].text) for i in range(n)}  # not the canaries'
    table = table_of(adm.records, texts, profiles={k: len(v) for k, v in profiles.items()})
    sys.stdout.write(render(table, args.format))
    t = table.totals()
    print(
        f"OK: admit (dry run, nothing trained): {t['examples']} examples, {t['admitted']} "
        f"admitted, {t['refused']} refused",
        file=sys.stderr,
    )
    return EXIT_OK
