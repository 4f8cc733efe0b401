"""`verify(path, keys)`: the verifier's one entry point; the CLI is a thin shell around it.

Layers run in the order of spec/verification.md (V1 bundle .. V8 data). Every
finding is collected (pypa/packaging style); a layer whose inputs failed earlier
reports its checks as "skip" with the reason instead of piling up consequences.
An unexpected exception inside a layer becomes a FAIL finding naming the exception
type (never a crash, never silence).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key

from attest.errors import UsageError
from attest.keys import load_public_key
from attest.limits import DEFAULT_LIMITS, Limits
from attest.progress import Progress
from attest.progress import enabled as progress_enabled

from . import (
    checks_admissions,
    checks_bundle,
    checks_chain,
    checks_data,
    checks_memorization,
    checks_release,
    checks_weights,
)
from .codes import CHECKS
from .context import Context, skip_all
from .replay_select import parse_nonce, parse_tolerance
from .requirements import Requirements, check_requirements, load_requirements
from .result import Result

log = logging.getLogger(__name__)

VERIFIED_KEYS = (
    "runId",
    "keyids",
    "policy",
    "weights",
    "finalStateRoot",
    "baseStateRoot",
    "admissions",
    "steps",
    "routing",
    "memorization",
    "checkpoints",
    "parameters",
)
ATTESTED_KEYS = (
    "environment",
    "config",
    "builder",
    "startedOn",
    "finishedOn",
    "baseModel",
    "dataset",
    "lossCurve",
    "canaries",
    "reference",
)


def _load_keys(keys: Sequence[Key | str | Path], limits: Limits) -> list[Key]:
    out: list[Key] = []
    for k in keys:
        out.append(load_public_key(Path(k), limits=limits) if isinstance(k, str | Path) else k)
    return out


def _not_a_parent(root: Path) -> None:
    """Raises UsageError for a folder that holds no provenance but a run or release inside
    (`govtune demo --out DIR` writes DIR/run): the user meant that folder."""
    if (root / "provenance").exists():
        return
    inner = [root / k for k in ("run", "release") if (root / k / "provenance").is_dir()]
    if inner:
        raise UsageError(
            f"{root}: expected a run or release folder, found none here; did you mean {inner[0]}?"
        )


def verify(
    path: str | Path,
    keys: Sequence[Key | str | Path],
    threshold: int = 1,
    base: str | Path | None = None,
    data: str | Path | None = None,
    openings: str | Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
    replay: int = 0,
    replay_top: int = 1,
    replay_nonce: str | bytes | None = None,
    replay_tolerance: float | None = None,
    policy_digest: str | None = None,
    requirements: Requirements | str | Path | None = None,
    progress: bool = False,
) -> Result:
    """Verify a run or release folder under the trusted ``keys``. ``bool(result)`` is the verdict.

    ``keys`` are securesystemslib keys or paths of PEM public keys. ``replay`` > 0
    re-executes that many steps drawn from the signed chain head, plus the
    ``replay_top`` largest update intervals (V9; verifier/replay.py; needs torch,
    ``data`` and ``openings``). ``replay_nonce`` (hex text or bytes) is the auditor's
    own contribution to the draw (default: drawn from the OS and published).
    ``progress`` shows which layer runs, hashing of big files and replay's plan and steps
    (stderr; attest.progress). ``replay_tolerance``
    is the auditor's maximum absolute difference for a tolerant
    replay (default: bitwise; nothing the run records relaxes it). ``policy_digest`` (hex)
    pins the producer's policy and ``requirements`` (a `Requirements` or the path of its
    TOML) states the consumer's minimum bar (V11, spec/requirements.md); without either, a
    PASS means conformance to the producer's own policy only. Raises UsageError when the
    request cannot be carried out (no such folder, missing key file, --data without
    --openings, --replay without them, a nonce that is not hex, a negative count, a bad
    tolerance) and FormatError for a malformed key file; every defect in the evidence
    itself is a FAIL finding in the result, not an exception.
    """
    root = Path(path)
    if not root.is_dir():
        raise UsageError(
            f"{root}: expected a run or release folder, found "
            f"{'a file' if root.exists() else 'nothing'}"
        )
    _not_a_parent(root)
    if (data is None) != (openings is None):
        raise UsageError(
            "--data and --openings go together: the openings are needed to check commitments"
        )
    base_p = Path(base) if base is not None else None
    data_p = Path(data) if data is not None else None
    open_p = Path(openings) if openings is not None else None
    if base_p is not None and not base_p.is_dir():
        raise UsageError(f"{base_p}: expected a folder of base *.safetensors files")
    if data_p is not None and not data_p.is_file():
        raise UsageError(f"{data_p}: expected the dataset file (JSONL)")
    if open_p is not None and not open_p.is_dir():
        raise UsageError(f"{open_p}: expected the run's openings folder")
    nonce = _replay_request(replay, replay_top, replay_nonce, data_p)
    tolerance = parse_tolerance(replay_tolerance)
    if replay > 0:
        from . import replay as replay_mod  # light at import; torch only inside

        replay_mod.require_torch()
    consumer = _consumer_requirements(policy_digest, requirements, limits)
    trusted = _load_keys(keys, limits)
    result = Result(str(root))
    result.scope = {
        "layers": [],
        "flags": {
            "replay": replay,
            "replayTop": replay_top if replay > 0 else None,
            "replayNonce": nonce.hex() if replay > 0 and nonce else None,
            "replayTolerance": tolerance if replay > 0 else None,
            "keys": len(trusted),
            "threshold": threshold,
            "base": str(base_p) if base_p else None,
            "data": str(data_p) if data_p else None,
            "openings": str(open_p) if open_p else None,
        },
    }
    ctx = Context(root, root / "provenance", trusted, threshold, limits, result)
    # Each layer returns its Verified* object (or None) and gets only the verified
    # objects of earlier layers (verifier/verified.py; spec/verification.md §2.1).
    layers: list[tuple[str, Callable[[], Any]]] = [
        ("bundle", lambda: _set(ctx, "bundle", checks_bundle.check_bundle(ctx))),
        ("policy", lambda: _set(ctx, "vpolicy", checks_admissions.check_policy(ctx, ctx.bundle))),
        (
            "admissions",
            lambda: _set(
                ctx, "admissions", checks_admissions.check_admissions(ctx, ctx.bundle, ctx.vpolicy)
            ),
        ),
        (
            "chain",
            lambda: _set(
                ctx,
                "chain",
                checks_chain.check_chain(ctx, ctx.bundle, ctx.vpolicy, ctx.admissions),
            ),
        ),
        (
            "memorization",
            lambda: checks_memorization.check_memorization(ctx, ctx.bundle, ctx.vpolicy, ctx.chain),
        ),
        (
            "weights",
            lambda: _set(ctx, "weights", checks_weights.check_weights(ctx, ctx.bundle, ctx.chain)),
        ),
        ("base", lambda: checks_weights.check_base(ctx, base_p, ctx.bundle, ctx.chain)),
        (
            "data",
            lambda: checks_data.check_data(
                ctx, data_p, open_p, ctx.bundle, ctx.vpolicy, ctx.admissions
            ),
        ),
    ]
    if replay > 0:
        layers.append(
            (
                "replay",
                lambda: replay_mod.check_replay(
                    ctx,
                    replay,
                    data_p,
                    open_p,
                    base_p,
                    top=replay_top,
                    nonce=nonce,
                    tolerance=tolerance,
                ),
            )
        )
    # V10 after the evidence layers: the card and the ML-BOM against what they verified
    layers.append(("release", lambda: checks_release.check_release(ctx)))
    # V11 last of all: it judges only what the others verified (the policy object
    # exists only when V2 passed; the tensor names come from the verified start record).
    layers.append(("requirements", lambda: check_requirements(
        result, consumer, ctx.vpolicy.policy if ctx.vpolicy else None,
        ctx.chain.tensors if ctx.chain else ())))  # fmt: skip
    # ``progress``: per layer, a bar on a TTY or a line every 10 s in a log (attest.progress)
    # No closing line: a quick verification leaves stderr to the verdict line alone.
    bar = Progress("verifying", len(layers), unit="layers", quiet=not progress, closing_line=False)
    with bar, progress_enabled(progress):  # nested progress: hashing, replay (attest.progress)
        for k, (name, run) in enumerate(layers):
            bar.update(k, layer=name)
            # The admission and step logs run to millions of records: their count shows too.
            ctx.records_progress = lambda done, total: bar.sub("records", done, total)
            before = len(result.findings)
            try:
                run()
            except Exception as e:  # noqa: BLE001 - a bug in one check must not crash the verdict
                log.debug("verifier layer %s raised", name, exc_info=True)
                _internal_error(result, name, e)
            if any(f.status != "skip" for f in result.findings[before:]):
                result.scope["layers"].append(name)
        bar.update(len(layers), layer="done")
    if replay <= 0:
        skip_all(result, [c.code for c in CHECKS if c.layer == "replay"], "no --replay given")
    result.attested.update(checks_chain.attested_from_training(ctx.bundle))
    if ctx.weights is not None:
        result.verified["parameters"] = ctx.weights.parameters  # from verified header shapes
    # Stable shape for the report: a key whose layer did not run is present as None.
    for key in VERIFIED_KEYS:
        result.verified.setdefault(key, None)
    for key in ATTESTED_KEYS:
        result.attested.setdefault(key, None)
    return result


def _set(ctx: Context, name: str, value: object) -> object:
    """Store a layer's verified object on the context (the api is its only writer)."""
    setattr(ctx, name, value)
    return value


def _consumer_requirements(
    digest: str | None, req: Requirements | str | Path | None, limits: Limits
) -> Requirements | None:
    """The consumer's bar from --policy-digest and --require, before any work. Raises UsageError."""
    if isinstance(req, str | Path):
        req = load_requirements(Path(req), limits=limits)
    if digest is not None:
        req = (req or Requirements()).with_policy_digest(digest)
    return req


def _replay_request(replay: int, top: int, nonce: str | bytes | None, data: Path | None) -> bytes:
    """Check the replay flags before any work (exit 2); the nonce as bytes. Raises UsageError."""
    for flag, v in (("--replay", replay), ("--replay-top", top)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UsageError(f"{flag}: expected a count >= 0, found {v!r}")
    if replay > 0 and data is None:  # --data and --openings go together (checked above)
        raise UsageError(
            f"--replay {replay}: needs --data FILE and --openings DIR (replay trains on the "
            "opened example texts)"
        )
    return parse_nonce(nonce.hex() if isinstance(nonce, bytes) else nonce)  # one set of bounds


def _internal_error(result: Result, layer: str, e: BaseException) -> None:
    reported = {f.code for f in result.findings}
    codes = [c.code for c in CHECKS if c.layer == layer and c.code not in reported]
    if not codes:
        codes = [next(c.code for c in CHECKS if c.layer == layer)]
    result.fail(
        codes[0],
        f"internal error in the {layer} checks ({type(e).__name__}: {e}); "
        "treated as FAIL, please report it",
    )
    for c in codes[1:]:
        result.add(c, "skip", f"not run: internal error in the {layer} checks")
