"""V9 replay (``--replay N``): re-execute whole checkpoint intervals and compare every step.

spec/verification.md §V9. The structural layers prove the records consistent; only
re-execution proves a step happened as recorded. Targets are drawn after the fact from
the signed step-log head and a nonce (the auditor's, or fresh from the OS), plus the Q
largest updates between stored states (Proof-of-Learning's top-Q, never alone). Each
target's whole interval, from the stored state before it to the next one, is re-run with
the trainer's own step engine (trainer.engine.StepEngine) on a model rebuilt from the
start record's model spec through the registry (trainer.registry), on the texts opened
from ``--data`` and the openings, and every step is compared: bitwise by default, within
``--replay-tolerance X`` only when the auditor passes it. Nothing the producer recorded
(mode, tolerance) relaxes the comparison.

Read once (issue 9 §2): every evidence file replay reads (the step and admission logs,
checkpoints, released weights) is hashed on the bytes parsed and used only if that digest
is the one an earlier layer verified (`replay_inputs`).

The torch-free parts (selection, intervals, detection probability, mode) are
verifier/replay_select.py; torch and the trainer are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attest.admission import inspect_example
from attest.canary import canary_text
from attest.canonical import parse_json
from attest.commitment import Content, Opening
from attest.dataset import read_dataset
from attest.errors import FormatError, GovtuneError, UsageError
from attest.layout import OPENINGS_FILE, RUN_SECRET_FILE
from attest.limits import Limits
from attest.log import iter_log
from attest.policy import Policy
from attest.predicates import ADMISSIONS_FILE, STEPS_FILE, Checkpoint
from attest.progress import Progress, is_enabled
from attest.records import AdmissionRecord, StartRecord, StepRecord
from attest.tensors import state_root

from .checks_data import read_run_secret
from .context import Context, Tally, skip_all
from .replay_select import (
    DEFAULT_TOP,
    Stored,
    detection_probability,
    environment_problems,
    intervals_for,
    intervals_text,
    plan_text,
    replay_mode,
    replay_seed,
    run_seconds,
    safe_relative,
    select_steps,
    top_intervals,
)

REPLAY_CODES = (  # the catalogue's order (verifier/codes.py)
    "GT-REPLAY-SELECT",
    "GT-REPLAY-CHECKPOINT",
    "GT-REPLAY-STEP",
    "GT-REPLAY-ENVIRONMENT",
    "GT-REPLAY-INPUT",
)
NONCE_BYTES = 16  # a fresh OS nonce: 128 bits, beyond any grinding budget


def require_torch() -> None:
    """Raise UsageError (exit 2, one line) when torch or the trainer cannot be imported."""
    try:
        import torch  # noqa: F401

        import trainer.engine  # noqa: F401
    except ImportError as e:
        msg = f"--replay: needs PyTorch and the govtune trainer (install govtune[train]); {e}"
        raise UsageError(msg) from e


# -- the inputs, as earlier layers verified them ----------------------------------------------


@dataclass(frozen=True)
class ReplayInputs:
    """What replay may read, each file with the digest an earlier layer verified.

    The one adapter between the verifier's layers and replay: today it takes the digests
    from the signed statements' subjects via the Context; the verified objects of the
    structural layers can feed it instead without touching the rest of this module.
    """

    root: Path
    steps_file: Path
    steps_sha256: str  # training stepLog.sha256 (V1 GT-FILE-DIGEST, V4 GT-STEP-LOG-SUMMARY)
    head: str  # training stepLog.head
    steps: int  # training steps
    admissions_file: Path
    admissions_sha256: str  # admission-log log.sha256 (V1, V3)
    checkpoints: tuple[Checkpoint, ...]  # training checkpoints (V6 GT-CHECKPOINT-DIGEST)
    weights: tuple[tuple[str, str], ...]  # (name, sha256) of training weights (V6)
    weights_bound: bool  # GT-WEIGHTS-ROOT passed: the weights are the state after the last step
    config: Mapping[str, Any]
    environment: Mapping[str, Any]
    policy: Policy
    admitted: Mapping[int, str | None]
    canary_groups: tuple[tuple[int, ...], ...]  # canary k -> its admission indices (V3)
    limits: Limits
    seconds: float | None = None  # the run's recorded wall time (startedOn..finishedOn): ETA only


def replay_inputs(ctx: Context) -> ReplayInputs | str:
    """The verified inputs, or why replay cannot run (the layers it needs did not verify).

    Only the Verified* objects of V1-V4 and V6 (verifier/verified.py): a layer whose checks
    failed published nothing, so replay never runs on a half-checked log (§2.1).
    """
    bundle, vpolicy, table, chain = ctx.bundle, ctx.vpolicy, ctx.admissions, ctx.chain
    if bundle is None or vpolicy is None or table is None or chain is None:
        return "the step chain, policy or admission log was not verified"
    tr = bundle.training
    return ReplayInputs(
        root=ctx.root,
        steps_file=ctx.prov / STEPS_FILE,
        steps_sha256=chain.sha256,
        head=chain.head,
        steps=chain.steps,
        admissions_file=ctx.prov / ADMISSIONS_FILE,
        admissions_sha256=table.sha256,
        checkpoints=tuple(tr.checkpoints),
        weights=tuple((w["name"], w["sha256"]) for w in tr.weights),
        weights_bound=ctx.weights is not None,  # V6 verified: the weights are the final state
        config=dict(tr.config),
        environment=dict(tr.environment),
        policy=vpolicy.policy,
        admitted=dict(table.admitted),
        canary_groups=table.canary_groups,
        limits=ctx.limits,
        seconds=run_seconds(tr.started_on, tr.finished_on),
    )


class InputChanged(GovtuneError):
    """A file replay read is not the one an earlier layer verified (GT-REPLAY-INPUT)."""


def read_verified_log(
    path: Path, sha256: str, wanted: set[int], limits: Limits
) -> dict[int, dict[str, Any]]:
    """The ``wanted`` records of a log, parsed from bytes whose SHA-256 is ``sha256``.

    One pass: every record's bytes are hashed as they are parsed, and nothing is returned
    unless the whole file's digest is the verified one. Raises InputChanged.
    """
    h = hashlib.sha256()
    out: dict[int, dict[str, Any]] = {}
    try:
        for rec in iter_log(path, limits=limits):
            h.update(rec.raw)
            if rec.index in wanted:
                out[rec.index] = rec.value
    except FormatError as e:
        raise InputChanged(f"{path.name}: expected the verified log, found {e}") from e
    if h.hexdigest() != sha256:
        raise InputChanged(
            f"{path.name}: expected sha256 {sha256} (verified by the earlier layers), found "
            f"{h.hexdigest()} when replay read it; the file changed after verification"
        )
    return out


def read_verified_file(path: Path, sha256: str, where: str) -> bytes:
    """The bytes of ``path`` if their SHA-256 is ``sha256``. Raises InputChanged."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputChanged(f"{where}: cannot read: {e.strerror or e}") from e
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise InputChanged(f"{where}: expected sha256 {sha256} (signed), found {got}")
    return data


# -- the layer ------------------------------------------------------------------------------


def check_replay(
    ctx: Context,
    n: int,
    data: Path | None,
    openings: Path | None,
    base: Path | None,
    *,
    top: int = DEFAULT_TOP,
    nonce: bytes = b"",
    tolerance: float | None = None,
) -> None:
    """Layer V9: GT-REPLAY-* findings and ``result.verified["replay"]``. Raises UsageError."""
    r = ctx.result
    if n <= 0 and top <= 0:
        skip_all(r, REPLAY_CODES, "no --replay given")
        return
    if data is None or openings is None:  # fail closed: replay was asked for and cannot run
        r.fail(
            "GT-REPLAY-SELECT",
            f"--replay {n}: expected --data and --openings (replay trains "
            "on the opened example texts), found none; no step was replayed",
        )
        skip_all(r, REPLAY_CODES[1:], "no --data/--openings")
        return
    inputs = replay_inputs(ctx)
    if isinstance(inputs, str):
        skip_all(r, REPLAY_CODES, inputs)
        return
    if inputs.steps == 0:
        skip_all(r, REPLAY_CODES, "the run has no steps")
        return
    require_torch()
    started = time.perf_counter()
    source = "auditor" if nonce else "os"
    nonce = nonce or os.urandom(NONCE_BYTES)  # never left to the producer's choice (V9.1)
    t = Tally(r, REPLAY_CODES)
    mode, tol = replay_mode(tolerance)
    for problem in environment_problems(inputs.environment, inputs.config):
        t.fail("GT-REPLAY-ENVIRONMENT", problem)
    seed = replay_seed(inputs.head, inputs.steps, nonce)
    picked = select_steps(seed, inputs.steps, n)
    audit = _Audit(inputs, t, mode, tol)
    try:
        audit.run(picked, top, base, data, openings)
    finally:
        audit.close()  # the verifier's own threads, determinism flag and generator
    usable = [s.step for s in audit.stored]
    p = detection_probability(usable, inputs.steps, n) if not audit.broken else 0.0
    executed = sorted(audit.executed)
    nonce_hex = nonce.hex()
    t.flush(
        {
            "GT-REPLAY-SELECT": f"seed SHA-256(govtune.replay.v1 || head {inputs.head[:16]}… || "
            f"{inputs.steps} || nonce {nonce_hex} ({source})) = {seed.hex()[:16]}…; "
            f"random {sorted(picked)}; top-{len(audit.tops)} "
            f"{intervals_text(audit.tops)}; {mode}"
            + (f" within {tol:g} (auditor)" if tol is not None else ""),
            "GT-REPLAY-ENVIRONMENT": "the recorded environment, config and calibration agree",
            "GT-REPLAY-INPUT": "every file replay read has the digest the earlier layers verified",
            "GT-REPLAY-CHECKPOINT": f"{sum(s.optimizer for s in audit.stored)} checkpoint(s) "
            "match their signed digests and state roots",
            "GT-REPLAY-STEP": f"{len(executed)} step(s) re-executed in {len(audit.intervals)} "
            f"interval(s), every one reproduced ({mode}); a single forged step is "
            f"caught with probability >= {p:.3f}",
        }
    )
    top_steps = {q["toStep"] for q in audit.tops}
    for x in audit.results:
        x["why"] = "+".join(
            k
            for k, hit in (("random", x["step"] in picked), ("topQ", x["step"] in top_steps))
            if hit
        )
    r.verified["replay"] = {
        "mode": mode,
        "tolerance": {"value": tol, "chosenBy": "auditor"} if tol is not None else None,
        "nonce": nonce_hex,
        "nonceSource": source,
        "steps": executed,
        "intervals": [list(iv) for iv in audit.intervals],
        "coverage": len(executed) / inputs.steps,
        "detectionProbability": p,
        "detection": f"a single forged step is caught with probability >= {p:.4f}; k forged "
        f"steps in k different intervals with >= 1 - (1 - {p:.4f})^k",
        "requested": n,
        "selected": sorted(picked),
        "topQ": audit.tops,
        "seed": seed.hex(),
        "results": sorted(audit.results, key=lambda x: x["step"]),
        "runSteps": inputs.steps,
        "seconds": round(time.perf_counter() - started, 3),
        "rng": {"checked": audit.rng_seen, "matched": audit.rng_match},
        "environment": {
            "recorded": {k: inputs.environment.get(k) for k in ("torch", "threads", "platform")},
            "replayer": audit.environment(),
        },
    }


class _Audit:
    """One replay audit: rebuild, stored states, intervals, re-execution (V9.2-V9.4)."""

    def __init__(self, inputs: ReplayInputs, t: Tally, mode: str, tol: float | None) -> None:
        import torch

        self.torch, self.inputs, self.t, self.mode, self.tol = torch, inputs, t, mode, tol
        self.stored: list[Stored] = []
        self.tops: list[dict[str, Any]] = []
        self.intervals: list[tuple[int, int]] = []
        self.results: list[dict[str, Any]] = []
        self.executed: set[int] = set()
        self.rng_seen = self.rng_match = 0
        self.bar = Progress("replaying", None, quiet=True)  # run() sets the real one
        self.broken = False  # the model could not be rebuilt, or an input changed
        self._saved = (
            torch.get_num_threads(),
            torch.are_deterministic_algorithms_enabled(),
            torch.get_rng_state(),
        )

    def close(self) -> None:
        threads, det, rng = self._saved
        self.torch.set_num_threads(threads)
        self.torch.use_deterministic_algorithms(det)
        self.torch.set_rng_state(rng)

    def environment(self) -> dict[str, Any]:
        import platform

        t = self.torch
        return {
            "torch": t.__version__,
            "threads": t.get_num_threads(),
            "platform": platform.platform(),
        }

    def run(
        self, picked: list[int], top: int, base: Path | None, data: Path, openings: Path
    ) -> None:
        inputs, t = self.inputs, self.t
        try:
            first = read_verified_log(
                inputs.steps_file,
                inputs.steps_sha256,
                {0} | {c.step for c in inputs.checkpoints},
                inputs.limits,
            )
            start = StartRecord.from_record(first[0], f"{STEPS_FILE}: record 0")
        except InputChanged as e:
            t.fail("GT-REPLAY-INPUT", str(e))
            self._not_run(picked, "the step log changed after verification")
            return
        err = self._rebuild(start, base)
        if err:
            t.fail("GT-REPLAY-STEP", err)
            t.skip("GT-REPLAY-CHECKPOINT", "the model could not be rebuilt")
            self._not_run(picked, "the model could not be rebuilt")
            return
        self.stored = self._stored_states(first)
        self.tops = self._top_q(top)
        targets = sorted(set(picked) | {q["toStep"] for q in self.tops})
        self.intervals, missing = intervals_for(
            [s.step for s in self.stored], targets, inputs.steps
        )
        if missing:
            t.fail(
                "GT-REPLAY-CHECKPOINT",
                f"steps {missing[:10]}: expected a stored state before "
                f"them to replay from, found none usable ({self.base_problem or 'no base'})",
            )
            self.results += [
                {"step": s, "ok": False, "reason": "no stored state before it"} for s in missing
            ]
        needed = {s for a, b in self.intervals for s in range(a + 1, b + 1)}
        try:
            raw = read_verified_log(inputs.steps_file, inputs.steps_sha256, needed, inputs.limits)
            records = {
                s: StepRecord.from_record(v, f"{STEPS_FILE}: record {s}") for s, v in raw.items()
            }
            texts = self._texts(data, openings, {x for s in needed for x in records[s].batch})
        except InputChanged as e:
            t.fail("GT-REPLAY-INPUT", str(e))
            self.broken = True
            self._not_run(targets, "an input changed after verification")
            return
        except (OSError, FormatError, UsageError) as e:
            msg = f"{e.filename}: cannot read: {e.strerror}" if isinstance(e, OSError) else str(e)
            t.fail("GT-REPLAY-STEP", f"cannot read the texts to replay: {msg}")
            self._not_run(targets, "texts unreadable")
            return
        # Say what will run and for about how long before the long part (issue 14), then a
        # bar on a TTY or a line every 10 s in a log (attest.progress; off in json mode).
        label = {s.step: s.label for s in self.stored}
        if is_enabled():
            states = [label[a] for a in sorted({a for a, _ in self.intervals})]
            print(plan_text(self.intervals, states, inputs.steps, inputs.seconds),
                  file=sys.stderr, flush=True)  # fmt: skip
        self.bar = Progress("replaying", sum(b - a for a, b in self.intervals), unit="steps",
                            quiet=not is_enabled())  # fmt: skip
        with self.bar:
            self._run_intervals(targets, records, texts)

    def _run_intervals(
        self, targets: list[int], records: dict[int, StepRecord], texts: dict[int, str]
    ) -> None:
        t = self.t
        for a, b in self.intervals:
            mine = [s for s in targets if a < s <= b]
            try:
                diverged = self._interval(a, b, records, texts)
            except InputChanged as e:
                t.fail("GT-REPLAY-INPUT", str(e))
                self.broken = True
                diverged = a + 1
            except (RuntimeError, ValueError, KeyError, FormatError, UsageError) as e:
                why = f"{type(e).__name__}: {str(e)[:200]}"
                t.fail("GT-REPLAY-STEP", f"steps {a + 1}..{b}: replay from step {a} failed ({why})")
                diverged = a + 1
            for s in mine:
                # Bitwise, every step before the first difference reproduced: it is proven.
                ok = diverged is None or (self.tol is None and s < diverged)
                x: dict[str, Any] = {
                    "step": s,
                    "fromCheckpoint": a,
                    "interval": [a, b],
                    "ok": ok,
                    "replayedSteps": b - a,
                }
                if not ok:
                    x["reason"] = f"interval {a}..{b} diverged at step {diverged}"
                self.results.append(x)

    def _not_run(self, steps: list[int], reason: str) -> None:
        self.broken = True
        self.results += [{"step": s, "ok": False, "reason": reason} for s in steps]

    # -- rebuild (V9.4) ---------------------------------------------------------------------

    def _rebuild(self, start: StartRecord, base: Path | None) -> str:
        """Build the recorded model kind through the registry; "" or the reason it failed."""
        import dataclasses

        from trainer import leaves, registry
        from trainer.config import TrainConfig
        from trainer.engine import StepEngine
        from trainer.loop import optimizer_config, set_determinism

        self.lv, self.start, self.base_problem = leaves, start, ""
        spec = start.model
        if spec is None:
            return (
                f"{STEPS_FILE}: start: expected a model spec (records.md §4.1) to rebuild "
                "the model from, found none (a v0.1 log)"
            )
        try:
            cfg = TrainConfig.from_dict(dict(self.inputs.config))
        except (FormatError, TypeError) as e:
            return f"training-run config: expected a config this trainer can rebuild, found {e}"
        threads = self.inputs.environment.get("threads")
        if isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1:
            cfg = dataclasses.replace(cfg, threads=threads)  # the threads the run actually used
        self.cfg = cfg
        set_determinism(cfg)
        # A base that is a file dependency (model.base.files) comes from --base; without
        # it the kind may still build a skeleton whose values the checkpoints replace.
        needs_base = spec.base is not None and bool(spec.base.files)
        try:
            built = registry.build(
                spec, base if needs_base else None, device=cfg.device, dtype=cfg.dtype
            )
        except (GovtuneError, OSError, RuntimeError, ValueError, ImportError) as e:
            hint = "; pass --base DIR" if needs_base and base is None else ""
            return (
                f"model {spec.kind}: cannot rebuild it from the recorded spec: {str(e)[:200]}{hint}"
            )
        state = built.state()
        table = {n: (leaves.dtype_name(v), tuple(v.shape)) for n, v in state.items()}
        if table != dict(start.tensors):
            diff = sorted(set(table) ^ set(start.tensors)) or [
                n for n in table if table[n] != start.tensors[n]
            ]
            return (
                f"{STEPS_FILE}: start: expected the tensors of the rebuilt {spec.kind} model, "
                f"found others (e.g. {diff[:3]})"
            )
        if tuple(built.trainable) != tuple(start.trainable):
            return (
                f"{STEPS_FILE}: start: expected trainable {list(start.trainable)[:3]}…, "
                f"the rebuilt model has {list(built.trainable)[:3]}…"
            )
        self.engine = StepEngine(
            built, optimizer_config(cfg), start.profiles, grad_norms=cfg.grad_norms,
            grad_accum=cfg.grad_accum,
        )  # fmt: skip
        self.base_values = {k: v.detach().clone() for k, v in state.items()}
        if state_root(leaves.leaves(state)) != start.base_state_root:
            self.base_problem = (
                "the base weights are unknown: the rebuilt base has not the signed base state "
                f"root {start.base_state_root.hex()[:16]}…" + ("" if base else "; pass --base DIR")
            )
        return ""

    # -- stored states (V9.2) ---------------------------------------------------------------

    def _stored_states(self, first: dict[int, dict[str, Any]]) -> list[Stored]:
        """The base, every signed checkpoint that checks out, the bound released weights."""
        inputs, out = self.inputs, []
        if not self.base_problem:
            out.append(Stored(0, "base"))
        names = set(self.start.tensors)
        # cost: every checkpoint is read and its state root recomputed (a count in a log)
        with Progress("replay: checking checkpoints", len(inputs.checkpoints),
                      unit="checkpoints", quiet=not is_enabled(), delay_s=1.0) as bar:  # fmt: skip
            for cp in inputs.checkpoints:
                bar.advance()
                where = f"{cp.file} (checkpoint of step {cp.step})"
                rec = first.get(cp.step, {}).get("checkpoint")
                if rec != {"file": cp.file, "sha256": cp.sha256, "stateRoot": cp.state_root}:
                    self.t.fail(
                        "GT-REPLAY-CHECKPOINT",
                        f"{where}: expected step {cp.step}'s record to name it, found {rec!r:.120}",
                    )
                    continue
                path = inputs.root / cp.file
                if not safe_relative(cp.file) or not path.is_file():
                    self.t.fail(
                        "GT-REPLAY-CHECKPOINT",
                        f"{where}: expected the file (sha256 "
                        f"{cp.sha256[:16]}…, signed), found "
                        f"{'an unsafe path' if not safe_relative(cp.file) else 'no file'}; "
                        f"steps after {cp.step} are replayed from an earlier state",
                    )
                    continue
                s = Stored(cp.step, cp.file, ((path, cp.sha256),), optimizer=True)
                try:
                    model, _opt, _rng = self._load(s)
                except InputChanged as e:
                    self.t.fail("GT-REPLAY-CHECKPOINT", str(e))
                    continue
                except FormatError as e:
                    self.t.fail(
                        "GT-REPLAY-CHECKPOINT",
                        f"{where}: expected a safetensors checkpoint, found {e}",
                    )
                    continue
                got = (
                    state_root(self.lv.leaves(model, sorted(names))).hex()
                    if names <= set(model)
                    else "(tensors missing)"
                )
                if got != cp.state_root:
                    self.t.fail(
                        "GT-REPLAY-CHECKPOINT",
                        f"{where}: expected the model state root "
                        f"{cp.state_root} of step {cp.step}, found {got}",
                    )
                    continue
                out.append(s)
        steps = inputs.steps
        if inputs.weights_bound and steps not in {s.step for s in out}:
            files = tuple((inputs.root / name, sha) for name, sha in inputs.weights)
            out.append(Stored(steps, ", ".join(n for n, _ in inputs.weights), files))
        return sorted(out, key=lambda s: s.step)

    def _load(self, s: Stored) -> tuple[dict[str, Any], dict[str, Any] | None, Any]:
        """(model tensors, AdamW tensors, generator) of a stored state; every file re-checked.

        Raises InputChanged (digest) or FormatError (not safetensors)."""
        if not s.files:
            return self.base_values, None, None
        from trainer.checkpoint import parse_checkpoint

        model: dict[str, Any] = {}
        optim: dict[str, Any] = {}
        rng = None
        for path, sha in s.files:
            where = (
                f"{s.label} (stored state of step {s.step})"
                if s.optimizer is False
                else (f"{s.label} (checkpoint of step {s.step})")
            )
            data = read_verified_file(path, sha, where)  # read once: these bytes are parsed
            cp = parse_checkpoint(data, where)
            model.update(cp.model)
            optim.update(cp.optimizer)
            rng = cp.rng if cp.rng is not None else rng
        model = {n: model[n] for n in self.start.tensors if n in model}
        return model, (optim if s.optimizer else None), rng

    def _top_q(self, q: int) -> list[dict[str, Any]]:
        """The Q intervals between consecutive stored states with the largest L2 weight distance.

        As in Proof-of-Learning (Jia et al. 2021): a spoofed jump tends to be a large update.
        Distances are measured on stored values bound to the chain, never on attested
        telemetry; replaying to an interval's ``toStep`` re-executes the whole interval.
        """
        if q <= 0 or len(self.stored) < 2:
            return []
        dist = []
        prev = self._load(self.stored[0])[0]
        for a, b in zip(self.stored, self.stored[1:], strict=False):
            try:
                cur = self._load(b)[0]  # memory: two states at a time
            except InputChanged as e:
                self.t.fail("GT-REPLAY-INPUT", str(e))
                self.broken = True
                return []
            d = math.sqrt(
                sum(
                    float(((cur[n].double() - prev[n].double()) ** 2).sum())
                    for n in self.engine.params
                )
            )
            dist.append({"fromStep": a.step, "toStep": b.step, "distance": d})
            prev = cur
        return top_intervals(dist, q)

    # -- texts ------------------------------------------------------------------------------

    def _texts(self, data: Path, openings: Path, wanted: set[int]) -> dict[int, str]:
        """Text as trained on for the ``wanted`` admission indices; each must open its commitment.

        The dataset is read by the trainer's reader (attest.dataset) and the content rules run
        over it in order (duplicates depend on order), as the trainer ran them
        (attest.admission.inspect_example: PII masked where the policy masks it); canary texts
        are derived from the run secret. The admission records come from the verified log bytes.
        Raises FormatError, UsageError, OSError or InputChanged.
        """
        inputs = self.inputs
        limits = inputs.limits
        salts: dict[int, bytes] = {}
        for where, o in _jsonl(openings / OPENINGS_FILE, limits):
            op = Opening.from_dict(o, where)
            salts[op.index] = op.salt
        texts: dict[int, str] = {}
        contents: dict[int, Content] = {}  # labelled / prompt-response forms (format.md §6)
        self.fields: dict[int, Mapping[str, str]] = {}  # their task fields (registry.Item)
        # Canary texts are derived from the run secret (policy.md §7), never read from a
        # file: a producer could ship any text, a refused one included, as a "canary".
        if any(i in wanted for group in inputs.canary_groups for i in group):
            secret = read_run_secret(openings / RUN_SECRET_FILE)
            for k, group in enumerate(inputs.canary_groups):
                text = canary_text(secret, inputs.policy.canaries, k)
                texts.update({i: text for i in group if i in wanted})
        examples, _ = read_dataset(data, limits=limits)
        seen: set[str] = set()
        for i, ex in enumerate(examples):
            _, trained = inspect_example(inputs.policy, ex, seen)
            if i in wanted:
                texts[i], contents[i] = trained.text, trained.content
                self.fields[i] = trained.fields
        records = read_verified_log(
            inputs.admissions_file, inputs.admissions_sha256, wanted, limits
        )
        for index in sorted(wanted):
            if index not in records:
                raise FormatError(f"example {index}: expected an admission record, found none")
            a = AdmissionRecord.from_record(records[index], f"{ADMISSIONS_FILE}: record {index}")
            where = f"example {a.index}{' (canary)' if a.metadata.canary else ''}"
            if a.index not in texts:
                src = RUN_SECRET_FILE if a.metadata.canary else data.name
                raise FormatError(f"{where}: expected its text in {src}, found none")
            if a.index not in salts:
                raise FormatError(f"{where}: expected an opening in {OPENINGS_FILE}, found none")
            if not Opening(a.index, salts[a.index]).opens(
                a.commitment, contents.get(a.index, texts[a.index])
            ):
                raise FormatError(
                    f"{where}: expected the commitment to open to the text as trained on, it "
                    "does not; the step cannot be replayed on the committed content"
                )
        return texts

    # -- re-execution (V9.4) ----------------------------------------------------------------

    def _interval(
        self, a: int, b: int, records: dict[int, StepRecord], texts: dict[int, str]
    ) -> int | None:
        """Re-execute steps a+1..b from the stored state at a, comparing every step and the
        stored state at b; the step of the first difference, or None."""
        from trainer.loop import set_determinism
        from trainer.registry import Item

        set_determinism(self.cfg)  # threads and deterministic kernels as recorded; seeds
        start = next(s for s in self.stored if s.step == a)
        model, optim, rng = self._load(start)
        # The base: empty AdamW state, the generator seeded as trainer.loop.run seeds it.
        self.engine.load_state(model, optim, rng)
        for s in range(a + 1, b + 1):
            rec = records[s]
            if rec.rng is not None:  # informational (V9.4)
                self.rng_seen += 1
                self.rng_match += self.lv.sha256_tensor(self.torch.get_rng_state()) == rec.rng
            # V4 proved the recorded profiles are the admitted ones; use the admission table's.
            profiles = [
                self.inputs.admitted.get(x) or p
                for x, p in zip(rec.batch, rec.profiles, strict=True)
            ]
            items = [Item(texts[x], self.fields.get(x, {})) for x in rec.batch]
            if rec.ranks is None:
                out = self.engine.step(items, profiles, rec.lr)
            else:  # a distributed step: each rank's slice in turn, summed in rank order
                from trainer.dist import replay_step

                world = int(self.start.extra["distributed"]["worldSize"])  # V4 GT-DIST-WORLD
                out = replay_step(self.engine, items, profiles, rec.lr, world)
            self.executed.add(s)
            self.bar.advance()
            problem = compare_step(s, rec, out, self.tol)
            if problem:
                self.t.fail("GT-REPLAY-STEP", f"{problem} (replayed from {start.label}, step {a})")
                return s
        end = next((x for x in self.stored if x.step == b), None)
        if end is not None:
            problem = self._compare_stored(end)
            if problem:
                self.t.fail("GT-REPLAY-STEP", problem)
                return b
        return None

    def _compare_stored(self, s: Stored) -> str:
        """The replayed state vs a stored one: every tensor, and at a checkpoint the AdamW state."""
        torch = self.torch
        want, optim, _rng = self._load(s)
        state = self.engine.built.state()
        tol = self.tol or 0.0
        for n in self.start.tensors:
            if not _close(torch, state[n], want[n], self.tol):
                diff = (
                    float((state[n].double() - want[n].double()).abs().max())
                    if state[n].numel()
                    else 0.0
                )
                return (
                    f"step {s.step}: tensor {n!r}: expected {s.label}'s values"
                    + (f" within {tol:g}" if self.tol is not None else " bitwise")
                    + f", found max |diff| {diff:g}"
                )
        if optim is not None:
            mine = self.engine.optimizer_tensors()
            if set(mine) != set(optim):
                extra = sorted(set(optim) ^ set(mine))[:3]
                return (
                    f"step {s.step}: expected {s.label}'s optimizer state tensors, "
                    f"found a difference in {extra}"
                )
            for k, v in optim.items():
                if not _close(torch, torch.as_tensor(mine[k]), v, self.tol):
                    return (
                        f"step {s.step}: expected {s.label}'s optimizer state {k!r}, "
                        "the replay's differs"
                    )
        return ""


def _close(torch: Any, a: Any, b: Any, tol: float | None) -> bool:
    if tol is None:
        return bool(torch.equal(a, b))
    if a.shape != b.shape:
        return False
    return a.numel() == 0 or float((a.double() - b.double()).abs().max()) <= tol


def compare_step(s: int, rec: StepRecord, out: Any, tol: float | None) -> str:
    """The first difference between a replayed step and its record (V9.4), or "".

    Bitwise (``tol`` None): losses, gradient norms, changed set, every leaf, state root.
    Tolerant: losses and gradient norms within ``tol``, the changed set exactly; leaves and
    the state root are hashes, so values are compared at the next stored state.
    """

    def near(x: float, y: float) -> bool:
        return x == y if tol is None else abs(x - y) <= tol

    # Losses first: computed before the update, a mismatch names the example whose
    # recorded content is not what the step trained on.
    for j, (a, b) in enumerate(zip(rec.loss, out.losses, strict=True)):
        if not near(a, b):
            return (
                f"step {s}: batch[{j}] = example {rec.batch[j]}: expected loss {a!r} "
                f"(recorded), found {b!r} (replayed on its committed text"
                + (f", tolerance {tol:g})" if tol is not None else ")")
            )
    if (rec.grad_norm is None) != (out.grad_norms is None):
        return (
            f"step {s}: expected gradNorm {'nil' if rec.grad_norm is None else 'values'} "
            f"(recorded), found {'nil' if out.grad_norms is None else 'values'} (replayed)"
        )
    if rec.grad_norm is not None:
        for j, (a, b) in enumerate(zip(rec.grad_norm, out.grad_norms, strict=True)):
            if not near(a, b):
                return (
                    f"step {s}: batch[{j}] = example {rec.batch[j]}: expected gradNorm {a!r} "
                    f"(recorded), found {b!r} (replayed)"
                )
    changed = dict(out.changed)
    if set(changed) != set(rec.changed):
        extra, miss = (
            sorted(set(changed) - set(rec.changed)),
            sorted(set(rec.changed) - set(changed)),
        )
        return (
            f"step {s}: expected the recorded set of changed tensors, found the replay also "
            f"changes {extra[:3]} and not {miss[:3]}"
        )
    if tol is not None:
        return ""
    for name in sorted(changed):
        if changed[name] != rec.changed[name]:
            return (
                f"step {s}: tensor {name!r}: expected leaf {rec.changed[name].hex()[:16]}… "
                f"(recorded), found {changed[name].hex()[:16]}… (replayed)"
            )
    if out.state_root != rec.state_root:
        return (
            f"step {s}: expected state root {rec.state_root.hex()} (recorded), "
            f"found {out.state_root.hex()} (replayed)"
        )
    return ""


def _jsonl(path: Path, limits: Limits) -> list[tuple[str, Any]]:
    """(where, value) of each non-blank line, strict JSON (attest.canonical.parse_json)."""
    out = []
    with open(path, "rb") as f:
        for n, line in enumerate(iter(lambda: f.readline(limits.dataset_line_max + 1), b""), 1):
            where = f"{path.name}:{n}"
            if len(line) > limits.dataset_line_max:
                raise FormatError(f"{where}: line longer than {limits.dataset_line_max} bytes")
            if line.strip():
                out.append((where, parse_json(line, where=where, limits=limits)))
    return out
