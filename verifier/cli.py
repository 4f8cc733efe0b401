"""The `govtune` command line: a thin shell over attest, trainer and verifier.

Exit codes (stable, documented in README.md):
    0    success / verification PASS
    1    verification FAIL (any defect in the evidence)
    2    could not run (bad flags, missing key file, nonexistent path, missing extra)
    130  interrupted (Ctrl-C); `train` names the last durable step and the --resume command

Every project error is caught here, in one place, and printed as one line.
torch is imported only by the `train` and `demo` commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from attest import progress
from attest.admission_table import FORMATS
from attest.errors import FormatError, GovtuneError, UsageError, VerificationError

EXIT_OK, EXIT_FAIL, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130  # 130 = 128 + SIGINT

EPILOG = """\
exit codes: 0 pass/success, 1 verification failed, 2 could not run, 130 interrupted.
See README.md for the run folder layout, docs/config.md for the training config
and spec/ for the format."""


def version() -> str:
    """The installed distribution's version, or the checkout's pyproject version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("govtune")
    except PackageNotFoundError:  # run from a checkout with PYTHONPATH, not installed
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line and a pointer, as pip and cargo do; exit 2 like argparse itself. The
        # usage block argparse prints would bury the one line that says what is wrong.
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _cmd_keygen(args: argparse.Namespace) -> int:
    from attest import keys

    priv, pub = keys.write_keypair(Path(args.prefix), args.type, force=args.force)
    print(f"OK: wrote {priv} (private, mode 0600) and {pub} (public)", file=sys.stderr)
    return EXIT_OK


def _trainer_command(name: str) -> Callable[[argparse.Namespace], Any]:
    def run(args: argparse.Namespace) -> Any:
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise UsageError(
                f"`govtune {name}` needs PyTorch: install govtune[train] (found no module 'torch')"
            ) from e
        import importlib

        if isinstance(getattr(args, "key", None), list):
            if len(args.key) != 1:  # argparse would keep only the last: never sign silently
                raise UsageError(
                    f"--key: `govtune {name}` signs with one key, found {len(args.key)}; add "
                    "co-signatures afterwards with `govtune sign RUN --key KEY2`"
                )
            args.key = args.key[0]
        commands = importlib.import_module("trainer.commands")
        return getattr(commands, name)(args)

    return run


def _cmd_demo(args: argparse.Namespace) -> int:
    """`govtune demo`: the trainer trains and signs, then the verifier verifies.

    The CLI composes the two packages: trainer/ never imports verifier/."""
    from verifier import api

    done = _trainer_command("demo")(args)  # trainer.commands.DemoRun(run, pub)
    verdict = api.verify(done.run, keys=[done.pub])
    if not verdict:
        print(f"FAIL: demo run {done.run} did not verify: {verdict}", file=sys.stderr)
        return EXIT_FAIL
    print(f"OK: demo run in {done.run} verified with {done.pub}", file=sys.stderr)
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from verifier import commands

    if getattr(args, "vsa_only", None) or getattr(args, "vsa", None) or args.path is None:
        from verifier import vsa_command

        if args.vsa_only:
            return vsa_command.check(args)
        vsa_command.require(args)
    return int(commands.verify(args))


def _cmd_show(args: argparse.Namespace) -> int:
    from verifier import show

    return show.show(args)


def _cmd_release(args: argparse.Namespace) -> int:
    from verifier import release

    return release.release_command(args)


def _cmd_sign(args: argparse.Namespace) -> int:
    from attest.keys import load_signer
    from verifier import cosign

    print(f"OK: {cosign.cosign(Path(args.path), [load_signer(Path(k)) for k in args.key])}",
          file=sys.stderr)  # fmt: skip
    return EXIT_OK


def add_vsa_arguments(p: argparse.ArgumentParser) -> None:
    """`verify` only: write or check a SLSA verification summary (spec/release.md §6)."""
    p.add_argument("--vsa", metavar="OUT", help="write a signed SLSA verification summary")
    p.add_argument("--sign-key", metavar="KEY", help="the verifier's private key (with --vsa)")
    p.add_argument(
        "--vsa-only",
        metavar="VSA",
        help="check a verification summary signed by --key (and, with PATH, its subjects)",
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from verifier import commands

    return int(commands.report(args))


def add_verify_arguments(p: argparse.ArgumentParser, *, path_optional: bool = False) -> None:
    p.add_argument("path", nargs="?" if path_optional else None, help="a run or release folder")
    p.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="PUB",
        help="trusted producer public key (PEM); repeat for several keys",
    )
    p.add_argument(
        "--threshold",
        type=int,
        default=1,
        metavar="N",
        help="distinct trusted keys that must sign each statement (default 1)",
    )
    p.add_argument(
        "--base", metavar="DIR", help="base model folder (safetensors): check the base state root"
    )
    p.add_argument(
        "--data", metavar="FILE", help="the training dataset (JSONL): re-check content rules"
    )
    p.add_argument(
        "--openings", metavar="DIR", help="the run's private openings folder (with --data)"
    )
    p.add_argument(
        "--replay",
        type=int,
        default=0,
        metavar="N",
        help="re-execute N steps drawn at random from the signed step-log head, which the "
        "producer could not know while training (needs torch, --data and --openings)",
    )
    p.add_argument(
        "--replay-top",
        type=int,
        default=1,
        metavar="Q",
        help="also replay the Q intervals between stored states with the largest weight "
        "update (Proof-of-Learning's top-Q; default 1; with --replay)",
    )
    p.add_argument(
        "--replay-nonce",
        metavar="HEX",
        help="the auditor's own nonce, mixed into the draw: a producer cannot re-sign "
        "variants of a forged run until the draw misses the forged step (published with "
        "the result; default: a fresh nonce from the OS, printed)",
    )
    p.add_argument(
        "--replay-tolerance",
        type=float,
        default=None,
        metavar="X",
        help="compare the replay within X (max absolute difference) instead of bitwise; the "
        "auditor's choice, never the run's (default: bitwise)",
    )
    p.add_argument(
        "--policy-digest",
        metavar="HEX",
        help="the consumer's pin: the producer's policy must have exactly this digest "
        "(spec/policy.md §2), else FAIL GT-REQ-POLICY-DIGEST",
    )
    p.add_argument(
        "--require",
        metavar="FILE",
        help="the consumer's minimum requirements on the producer's policy and the run "
        "(TOML, spec/requirements.md); each unmet one is a FAIL with its own GT-REQ-* code",
    )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text (default): the table of checks on stdout, the one-line verdict on "
        "stderr; json: only the result as JSON on stdout, only the verdict line on stderr",
    )
    p.add_argument("--quiet", action="store_true", help="print only the verdict line")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="govtune",
        description="Governed fine-tuning with verifiable provenance.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"govtune {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "keygen",
        help="create a producer signing key pair",
        description="Write PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (PEM).",
    )
    p.add_argument("prefix", help="path prefix of the two key files")
    p.add_argument(
        "--type",
        choices=("ecdsa", "ed25519"),
        default="ecdsa",
        help="ecdsa = ECDSA P-256 (default, as OpenSSF model signing), or ed25519",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.set_defaults(func=_cmd_keygen)

    p = sub.add_parser(
        "train",
        help="fine-tune under a policy and write signed provenance",
        description="Run a governed fine-tune described by CONFIG (TOML).",
    )
    p.add_argument("config", help="training config (TOML; every key in docs/config.md)")
    p.add_argument("--out", required=True, help="output run folder")
    p.add_argument(
        "--key",
        action="append",
        required=True,
        help="producer private key (from `govtune keygen`); once (co-sign with `govtune sign`)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last durable step",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="optimizer steps (overrides the config's)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    # torchrun's own flags, handed to torch.distributed.run by trainer/launch.py
    g = p.add_argument_group("distributed training (README 'Distributed training')")
    g.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        metavar="N",
        help="start N data-parallel workers on this node (torch.distributed.run)",
    )
    g.add_argument("--nnodes", default=None, metavar="N[:M]", help="number of nodes (torchrun)")
    g.add_argument("--node-rank", type=int, default=None, help="this node's rank (torchrun)")
    g.add_argument("--rdzv-backend", default=None, help="rendezvous backend, e.g. c10d")
    g.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT", help="rendezvous host")
    g.add_argument("--rdzv-id", default=None, help="rendezvous job id")
    g.add_argument("--master-addr", default=None, help="static rendezvous: rank 0's address")
    g.add_argument("--master-port", type=int, default=None, help="static rendezvous: its port")
    p.set_defaults(func=_trainer_command("train"))

    p = sub.add_parser(
        "admit",
        help="dry run: how the policy judges each example of a config (no training, no key)",
        description="Judge every example of CONFIG's dataset under its policy, as `govtune "
        "train` would, and resolve the profiles against its model; print each example's "
        "decision, the rule that decided and its profile, then totals. Nothing is written.",
    )
    p.add_argument("config", help="training config (TOML; docs/config.md)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format on stdout")
    p.set_defaults(func=_trainer_command("admit"))

    p = sub.add_parser(
        "inspect",
        help="list a model folder's parameters and how a policy's profiles resolve",
        description="Parameter names, shapes and layer indices of a transformers model folder "
        "(as the config's model kind builds it), and each profile's resolution.",
    )
    p.add_argument("model", help="model folder (config.json, *.safetensors, tokenizer)")
    p.add_argument("--policy", default=None, help="policy TOML whose profiles to resolve")
    p.add_argument(
        "--kind", default="hf-causal-lm", help="model kind (default hf-causal-lm; see README)"
    )
    p.add_argument(
        "--labels", default=None, help="classifier labels, comma-separated (default 2 labels)"
    )
    p.set_defaults(func=_trainer_command("inspect"))

    p = sub.add_parser(
        "demo",
        help="the embedded end-to-end example: admit, train, sign, verify",
        description="Build a governed corpus from installed packages' docstrings, "
        "train the built-in model under the shipped policy, sign and verify.",
    )
    p.add_argument("--out", required=True, help="output folder (run, keys, dataset)")
    p.add_argument(
        "--steps", type=int, default=None, help="optimizer steps (default: the demo's own)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "verify",
        help="verify a run or release: PASS or FAIL",
        description="Check signatures, policy conformance, the step chain and the weights.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verify_arguments(p, path_optional=True)
    add_vsa_arguments(p)
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "show",
        help="each example's admission in a finished run (from its verified public evidence)",
        description="Verify RUN, then print each example of its admission log: decision, "
        "the rule that decided, profile, commitment, and totals. With --data and "
        "--openings (checked by the verifier) also each text's digest and first characters.",
    )
    p.add_argument("path", help="a run or release folder")
    p.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="PUB",
        help="trusted producer public key (PEM); repeat for several keys",
    )
    p.add_argument(
        "--threshold",
        type=int,
        default=1,
        metavar="N",
        help="distinct trusted keys that must sign each statement (default 1)",
    )
    p.add_argument("--data", metavar="FILE", help="the training dataset (JSONL), with --openings")
    p.add_argument("--openings", metavar="DIR", help="the run's private openings folder")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format on stdout")
    p.set_defaults(func=_cmd_show)  # fmt: skip

    p = sub.add_parser(
        "release",
        help="build a release folder: weights, model card, ML-BOM, provenance, model.sig",
        description="Verify RUN, then build a folder a model hub takes as it is (spec/release.md).",
    )
    p.add_argument("run", help="the run folder")
    p.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="KEY",
        help="the producer's private key (ECDSA: signs model.sig); repeat to co-sign",
    )
    p.add_argument("--out", required=True, help="the release folder to create")
    p.add_argument("--with-checkpoints", action="store_true", help="ship checkpoints/ too (signed)")
    p.add_argument("--license", metavar="ID", help="the model's license id (default: other)")
    p.add_argument("--dataset-id", metavar="ID", help="the dataset's public id (hub id)")
    p.add_argument("--name", help="the model's name in the card and the BOM")
    p.set_defaults(func=_cmd_release)

    p = sub.add_parser(
        "sign",
        help="co-sign every envelope of a run or release",
        description="Add a signature to every provenance envelope (a release's model.sig "
        "is signed anew over the changed bundle).",
    )
    p.add_argument("path", help="a run or release folder")
    p.add_argument(
        "--key", action="append", required=True, metavar="KEY", help="co-signer's private key"
    )
    p.set_defaults(func=_cmd_sign)

    p = sub.add_parser(
        "report",
        help="render the compliance audit report",
        description="Verify, then render the audit report from the verification result.",
    )
    add_verify_arguments(p)
    p.set_defaults(format="html")
    for action in p._actions:
        if action.dest == "format":
            action.choices = ("html", "md", "json")
            action.help = "report format (default html)"
    p.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="where to write the report (- for standard output; a symlink, FIFO or device "
        "is never replaced)",
    )
    p.set_defaults(func=_cmd_report)
    return parser


def run(argv: Sequence[str] | None, parser: argparse.ArgumentParser) -> int:
    args = parser.parse_args(argv)
    # Progress on stderr (attest.progress) unless the user asked for a quiet stderr:
    # --quiet, or --format json (stderr then holds the one-line verdict only).
    shown = not getattr(args, "quiet", False) and getattr(args, "format", "text") != "json"
    try:
        with progress.enabled(shown):
            return int(args.func(args))
    except VerificationError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return EXIT_FAIL
    except (UsageError, FormatError, GovtuneError) as e:
        print(f"govtune: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # a file-system failure no command named: still one line, exit 2
        where = f"{e.filename}: " if e.filename else ""
        print(f"govtune: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as e:  # trainer.commands re-raises it with the resume hint
        hint = f": {e}" if str(e) else ""
        print(f"govtune: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    return run(argv, build_parser())


def verify_main(argv: Sequence[str] | None = None) -> int:
    """`govtune-verify`: the same as `govtune verify`."""
    parser = _Parser(
        prog="govtune-verify",
        description="Verify a govtune run or release.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verify_arguments(parser, path_optional=True)
    add_vsa_arguments(parser)
    parser.set_defaults(func=_cmd_verify)
    return run(argv, parser)


if __name__ == "__main__":
    sys.exit(main())
