"""`govtune train --nproc-per-node N`: start N workers through torch's own launcher.

The flags are torchrun's (``--nproc-per-node``, ``--nnodes``, ``--node-rank``, the
rendezvous flags); they are handed to `torch.distributed.run`'s own argument parser and
`run` (the engine behind ``torchrun``, elastic agent included), which starts
``python -m verifier.cli train ...`` (the ``govtune`` entry point) in every worker. A
worker knows it is one from torchrun's RANK / WORLD_SIZE / LOCAL_RANK environment
(trainer.dist.world_from_env), so ``torchrun --nproc_per_node=N -m verifier.cli train ...``
is the same run.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from attest.errors import GovtuneError

ENTRY = "verifier.cli"  # the `govtune` console script's module (pyproject.toml)
# `govtune train` flag (argparse dest; verifier/cli.py declares them) -> torchrun flag;
# passed on only when given
TORCHRUN_FLAGS = {
    "nproc_per_node": "--nproc-per-node",
    "nnodes": "--nnodes",
    "node_rank": "--node-rank",
    "rdzv_backend": "--rdzv-backend",
    "rdzv_endpoint": "--rdzv-endpoint",
    "rdzv_id": "--rdzv-id",
    "master_addr": "--master-addr",
    "master_port": "--master-port",
}


def worker_argv(args: argparse.Namespace) -> list[str]:
    """What each worker runs: the same `train` command without the launcher flags."""
    argv = ["-m", ENTRY, "train", str(args.config), "--out", str(args.out)]
    for key in args.key if isinstance(args.key, list) else [args.key]:
        argv += ["--key", str(key)]
    if args.resume:
        argv.append("--resume")
    if getattr(args, "steps", None) is not None:
        argv += ["--steps", str(args.steps)]
    if args.quiet:
        argv.append("--quiet")
    return argv


def launch(args: argparse.Namespace) -> int:
    """Run the job through `torch.distributed.run`. Raises UsageError (bad flags) or
    GovtuneError (a worker failed: it printed its own one-line error)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    if args.nproc_per_node is not None and args.nproc_per_node < 1:
        raise GovtuneError(
            f"--nproc-per-node: expected a positive integer, got {args.nproc_per_node}"
        )
    argv: list[str] = []
    for dest, flag in TORCHRUN_FLAGS.items():
        v = getattr(args, dest, None)
        if v is not None:
            argv += [flag, str(v)]
    targs = get_args_parser().parse_args(argv + worker_argv(args))
    # The elastic agent logs a table and the workers' tracebacks on failure; each worker
    # already printed its one line (govtune: error: rank R: ...), so the agent stays quiet.
    for name in ("torch.distributed.elastic", "torch.distributed.run"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    try:
        torchrun(targs)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        raise GovtuneError(
            f"distributed training stopped: rank {rank} exited with code {failure.exitcode}; "
            f"the evidence written so far is in {Path(args.out)} (continue with --resume)"
        ) from None
    except SignalException as e:  # the agent forwards SIGINT/SIGTERM to the workers
        raise KeyboardInterrupt(f"{e}; continue with the same command and --resume") from None
    return 0


__all__ = ["ENTRY", "TORCHRUN_FLAGS", "launch", "worker_argv"]
