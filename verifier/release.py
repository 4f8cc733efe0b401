"""`govtune release RUN --key KEY --out RELEASE`: build a folder a model hub takes as it is.

Order matters (spec/release.md §1): the run is verified first (nothing unverified is
published); the public files are copied, never ``private/`` and checkpoints only when
asked; the card and the ML-BOM are rendered from the facts the verification derived;
co-signers (extra ``--key``) sign every bundle envelope; model.sig is written last, over
the final bytes of every other file. The folder is built beside RELEASE and renamed into
place, then verified as a release: a release that would not verify is never left behind.

The weights keep the bytes the training statement signed: their ``__metadata__``
pointers were written by the trainer before hashing (attest/layout.py), so a
release never rewrites a weight file (which would void the run's signatures).
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from securesystemslib.signer import CryptoSigner

from attest.atomic import write_atomic
from attest.digest import sha256_file
from attest.errors import UsageError, VerificationError
from attest.keys import load_signer
from attest.layout import RELEASE_LAYOUT
from attest.policy import load_policy
from attest.predicates import BUNDLE_FILE, POLICY_FILE

from . import mlbom, modelcard, oms
from .api import verify
from .cosign import cosign_bundle
from .release_facts import release_facts
from .result import Result

L = RELEASE_LAYOUT


@dataclass(frozen=True)
class ReleaseRequest:
    run: Path
    out: Path
    keys: tuple[Path, ...]  # first: the producer (verifies the run, OMS signer); rest co-sign
    with_checkpoints: bool = False
    license_id: str = "other"  # the model's license (Hugging Face id); declared, not derived
    dataset_id: str = ""  # default: sha256:<dataset digest>
    name: str = ""  # default: the release folder's name

    def __post_init__(self) -> None:
        if not self.keys:
            raise UsageError("release: expected --key (the producer's signing key)")
        for field_name, v in (("--license", self.license_id), ("--dataset-id", self.dataset_id)):
            if not v.isprintable() or len(v) > 200 or (field_name == "--license" and not v):
                raise UsageError(
                    f"{field_name}: expected a short printable identifier, got {v!r:.40}"
                )


def _copy(src: Path, dst: Path) -> None:
    st = os.lstat(src)
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{src}: expected a regular file to release, found another kind")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)


def _model_files(run: Path, result: Result, with_checkpoints: bool) -> list[str]:
    names = [w["name"] for w in result.verified.get("weights") or []]
    names += [n for n in L.model_side_files if (run / n).is_file()]
    prov = run / L.provenance_dir
    names += [f"{L.provenance_dir}/{n}" for n in sorted(os.listdir(prov))]
    if with_checkpoints:
        cdir = run / L.checkpoints_dir
        if cdir.is_dir():
            names += [f"{L.checkpoints_dir}/{n}" for n in sorted(os.listdir(cdir))]
    for n in names:
        parts = n.split("/")
        if L.private_dir in parts or parts[-1] in L.private_files or ".." in parts:
            raise UsageError(f"{n}: refusing to release a private file")
    return names


def build_release(req: ReleaseRequest) -> Result:
    """Build ``req.out``; returns the release's own verification result (a PASS).

    Raises UsageError (bad request, existing output, ed25519 OMS key, missing extra) or
    VerificationError (the run does not verify: nothing is written).
    """
    signers: list[CryptoSigner] = [load_signer(k) for k in req.keys]
    if len({s.public_key.keyid for s in signers}) != len(signers):
        raise UsageError("release: the same --key was given twice")
    oms._require_oms_key(signers[0], f"{req.keys[0]} (model.sig)")
    run, out = Path(req.run), Path(req.out)
    if out.exists():
        raise UsageError(f"{out}: already exists; choose a new --out folder")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent}: output folder does not exist")
    if not run.is_dir():
        raise UsageError(f"{run}: expected a run folder")
    producer = signers[0].public_key
    result = verify(run, [producer])
    if not result:
        codes = sorted({f.code for f in result.failures}) or ["no check passed"]
        raise VerificationError(
            codes[0],
            f"{run}: the run does not verify under {req.keys[0]} ({', '.join(codes)}); "
            "nothing was released",
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name in _model_files(run, result, req.with_checkpoints):
            _copy(run / name, tmp / name)
        policy, _ = load_policy(tmp / L.provenance_dir / POLICY_FILE)
        if policy.digest() != result.verified["policy"]["digest"]:
            raise UsageError(f"{run}: policy changed while releasing")
        facts = release_facts(
            result.verified,
            result.attested,
            policy,
            license_id=req.license_id,
            dataset_id=req.dataset_id or f"sha256:{result.attested['dataset']['sha256']}",
        )
        title = req.name or out.name
        write_atomic(
            tmp / L.card,
            modelcard.render(facts, title, modelcard.verify_commands(out.name)).encode(),
        )
        if len(signers) > 1:
            cosign_bundle(tmp, signers[1:])
        bundle = f"{L.provenance_dir}/{BUNDLE_FILE}"
        bom = mlbom.build(facts, title, (bundle, sha256_file(tmp / bundle)), policy.digest())
        write_atomic(tmp / L.bom, mlbom.encode(bom))
        oms.sign_folder(tmp, signers, model_name=out.name)
        os.chmod(tmp, 0o755)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    check = verify(out, [s.public_key for s in signers])
    if not check:
        shutil.rmtree(out, ignore_errors=True)
        codes = sorted({f.code for f in check.failures})
        raise VerificationError(
            codes[0] if codes else "GT-RELEASE-OMS",
            f"{out}: the built release did not verify ({', '.join(codes)}); removed it",
        )
    return check


def release_command(args: argparse.Namespace) -> int:
    """`govtune release` (exit codes: verifier/cli.py)."""
    req = ReleaseRequest(
        run=Path(args.run),
        out=Path(args.out),
        keys=tuple(Path(k) for k in args.key),
        with_checkpoints=bool(args.with_checkpoints),
        license_id=args.license or "other",
        dataset_id=args.dataset_id or "",
        name=args.name or "",
    )
    result = build_release(req)
    n = (result.verified.get("release") or {}).get("files", 0)
    print(f"OK: released {req.run} to {req.out} ({n} signed files, verified)", file=sys.stderr)
    return 0
