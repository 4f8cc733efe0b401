"""V9 replay (``--replay N``): re-execute sampled steps and compare them with the records.

spec/verification.md §V9. The structural layers prove the records consistent; only
re-execution proves a step happened as recorded. Steps are chosen after the fact
from the signed step-log head (the producer could not know them while training),
plus the Q largest updates between stored states (Proof-of-Learning's top-Q, never
alone). Each is re-run from the nearest usable stored state before it with the
trainer's own code (model, loss, Router, AdamW), on the example texts opened from
``--data`` and the openings, and compared: bitwise (losses, leaf hashes, state root,
optimizer state at checkpoints) in strict mode, within the recorded tolerance at the
next stored state in tolerant mode.

The torch-free selection (V9.1-V9.3) is verifier/replay_select.py. torch (and the trainer,
which imports it) is imported inside functions only: ``import verifier.replay`` stays light.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from attest.admission import inspect_content
from attest.canonical import parse_json
from attest.commitment import Opening
from attest.dataset import read_dataset
from attest.errors import FormatError, UsageError
from attest.log import iter_log
from attest.predicates import ADMISSIONS_FILE, STEPS_FILE
from attest.records import AdmissionRecord, StartRecord, StepRecord
from attest.tensors import hash_safetensors, state_root

from .context import Context, Tally, skip_all
from .replay_select import (
    DEFAULT_TOP,
    Plan,
    Stored,
    intervals_text,
    plan_passes,
    replay_mode,
    replay_seed,
    safe_relative,
    select_steps,
    top_intervals,
)

REPLAY_CODES = ("GT-REPLAY-SELECT", "GT-REPLAY-CHECKPOINT", "GT-REPLAY-STEP")
OPENINGS_FILE, CANARIES_FILE = "openings.jsonl", "canaries.jsonl"


def require_torch() -> None:
    """Raise UsageError (exit 2, one line) when torch or the trainer cannot be imported."""
    try:
        import torch  # noqa: F401

        import trainer.loop  # noqa: F401
    except ImportError as e:
        msg = f"--replay: needs PyTorch and the govtune trainer (install govtune[train]); {e}"
        raise UsageError(msg) from e


def check_replay(
    ctx: Context, n: int, data: Path | None, openings: Path | None, base: Path | None,
    *, top: int = DEFAULT_TOP, nonce: bytes = b"",
) -> None:  # fmt: skip
    """Layer V9: GT-REPLAY-* findings and ``result.verified["replay"]``. Raises UsageError."""
    r = ctx.result
    if n <= 0 and top <= 0:
        skip_all(r, REPLAY_CODES, "no --replay given")
        return
    if data is None or openings is None:  # fail closed: replay was asked for and cannot run
        r.fail("GT-REPLAY-SELECT", f"--replay {n}: expected --data and --openings (replay trains "
               "on the opened example texts), found none; no step was replayed")  # fmt: skip
        skip_all(r, REPLAY_CODES[1:], "no --data/--openings")
        return
    tr, chain, policy, table = ctx.training_pred, ctx.chain, ctx.policy, ctx.admissions
    if tr is None or policy is None or table is None or chain is None or not chain.complete \
            or STEPS_FILE in ctx.bad_files or r.failed("GT-LOG-SUMMARY"):  # fmt: skip
        skip_all(r, REPLAY_CODES, "the step chain, policy or admission log was not verified")
        return
    if chain.steps == 0:
        skip_all(r, REPLAY_CODES, "the run has no steps")
        return
    require_torch()
    started = time.perf_counter()
    t = Tally(r, REPLAY_CODES)
    steps, env = chain.steps, dict(tr.environment)
    mode, tol, problem = replay_mode(env)
    if problem:
        t.fail("GT-REPLAY-SELECT", problem)
    seed = replay_seed(tr.step_log.head, steps, nonce)
    picked = select_steps(seed, steps, n)
    engine = _Engine(tr.config, env, _start_record(ctx), policy)
    results: list[dict[str, Any]] = []
    stored: list[Stored] = []
    tops: list[dict[str, Any]] = []
    executed = 0
    try:
        if engine.error:
            t.fail("GT-REPLAY-STEP", engine.error)
            t.skip("GT-REPLAY-CHECKPOINT", "the model could not be rebuilt")
        else:
            stored = _stored_states(ctx, t, engine, base, steps)
            tops = _top_q(stored, top, engine)
            targets = sorted(set(picked) | {q["toStep"] for q in tops})
            plans = _plan(t, stored, targets, mode, engine.base_problem)
            needed = {s for p in plans for s in range(p.start.step + 1, p.end + 1)}
            records = _records(ctx, needed)
            try:
                texts = _trained_texts(
                    ctx, data, openings, {x for s in needed for x in records[s].batch}
                )
            except (OSError, FormatError, UsageError) as e:
                msg = (
                    f"{e.filename}: cannot read: {e.strerror}" if isinstance(e, OSError) else str(e)
                )
                t.fail("GT-REPLAY-STEP", f"cannot read the texts to replay: {msg}")
                plans = []
            for plan in plans:
                try:
                    res, ran = engine.replay(
                        plan, records, texts, dict(table.admitted), mode, tol, t, stored
                    )
                except (RuntimeError, ValueError, KeyError, FormatError, UsageError) as e:
                    # e.g. a checkpoint whose AdamW tensors do not fit the model: a failed replay
                    where = f"steps {plan.start.step + 1}..{plan.end}"
                    why = f"{type(e).__name__}: {str(e)[:200]}"
                    t.fail(
                        "GT-REPLAY-STEP", f"{where}: replay from {plan.start.label} failed ({why})"
                    )
                    continue
                results += res
                executed += ran
            done = {x["step"] for x in results}
            results += [{"step": s, "fromCheckpoint": None, "ok": False, "reason": "not replayed"}
                        for s in targets if s not in done]  # fmt: skip
    finally:
        engine.restore()  # the verifier's own threads, determinism flag and generator
    top_steps = {q["toStep"] for q in tops}
    for x in results:
        x["why"] = "+".join(
            k
            for k, hit in (("random", x["step"] in picked), ("topQ", x["step"] in top_steps))
            if hit
        )
    results.sort(key=lambda x: x["step"])
    nonce_note = f" || nonce {nonce.hex()}" if nonce else ""
    t.flush({
        "GT-REPLAY-SELECT": f"seed SHA-256(govtune.replay.v1 || head {tr.step_log.head[:16]}… || "
                            f"{steps}{nonce_note}) = {seed.hex()[:16]}…; random {sorted(picked)}; "
                            f"top-{len(tops)} {intervals_text(tops)}; {mode} mode",
        "GT-REPLAY-CHECKPOINT": f"{sum(s.optimizer for s in stored)} checkpoint(s) match their "
                                "signed digests and state roots",
        "GT-REPLAY-STEP": f"{sum(x['ok'] for x in results)}/{len(results)} selected steps "
                          "reproduced "
                          f"({executed} steps re-executed, {mode})",
    })  # fmt: skip
    r.verified["replay"] = {
        "requested": n, "selected": sorted(picked), "topQ": tops, "seed": seed.hex(),
        "nonce": nonce.hex() if nonce else None, "mode": mode,
        "tolerance": tol if mode == "tolerant" else None, "results": results,
        "stepsExecuted": executed, "steps": steps,
        "seconds": round(time.perf_counter() - started, 3),
        "rng": {"checked": engine.rng_seen, "matched": engine.rng_match},
        "environment": {"recorded": {k: env.get(k) for k in ("torch", "threads", "platform")},
                        "replayer": engine.environment()},
    }  # fmt: skip


def _start_record(ctx: Context) -> StartRecord:
    for rec in iter_log(ctx.prov / STEPS_FILE, limits=ctx.limits):
        return StartRecord.from_record(rec.value, f"{STEPS_FILE}: record 0")
    raise FormatError(f"{STEPS_FILE}: expected a start record, found an empty log")


def _records(ctx: Context, needed: set[int]) -> dict[int, StepRecord]:
    """The step records of ``needed`` steps (one streaming pass, O(needed) memory)."""
    out: dict[int, StepRecord] = {}
    last = max(needed, default=0)
    for rec in iter_log(ctx.prov / STEPS_FILE, limits=ctx.limits):
        if rec.index in needed:
            out[rec.index] = StepRecord.from_record(rec.value, f"{STEPS_FILE}: record {rec.index}")
        if rec.index >= last:
            break
    return out


def _stored_states(
    ctx: Context, t: Tally, engine: _Engine, base: Path | None, steps: int
) -> list[Stored]:
    """V9.2: the base, every signed checkpoint that checks out, the bound released weights."""
    tr = ctx.training_pred
    assert tr is not None
    out: list[Stored] = []
    b = engine.base_state(base)
    if isinstance(b, str):
        engine.base_problem = b
    else:
        out.append(Stored(0, "base", b))
    recorded = {
        s: rec.checkpoint for s, rec in _records(ctx, {c.step for c in tr.checkpoints}).items()
    }
    names = set(engine.start.tensors)
    for cp in tr.checkpoints:
        where, fail = (
            f"{cp.file} (checkpoint of step {cp.step})",
            lambda m: t.fail("GT-REPLAY-CHECKPOINT", m),
        )
        rec_cp = recorded.get(cp.step)
        if rec_cp is None or dict(rec_cp) != {
            "file": cp.file,
            "sha256": cp.sha256,
            "stateRoot": cp.state_root,
        }:
            fail(f"{where}: expected step {cp.step}'s record to name it, found {rec_cp!r:.120}")
            continue
        path = ctx.root / cp.file
        if not safe_relative(cp.file) or not path.is_file():
            fail(f"{where}: expected the file (sha256 {cp.sha256[:16]}…, signed), found "
                 f"{'an unsafe path' if not safe_relative(cp.file) else 'no file'}; steps after "
                 f"{cp.step} are replayed from an earlier state")  # fmt: skip
            continue
        try:
            d = hash_safetensors(path, limits=ctx.limits)
        except FormatError as e:
            fail(f"{where}: expected a safetensors checkpoint, found {e}")
            continue
        if d.sha256 != cp.sha256:
            fail(f"{where}: expected sha256 {cp.sha256} (signed), found {d.sha256}")
            continue
        got = (
            state_root({k: d.leaves[k] for k in names}).hex()
            if names <= set(d.leaves)
            else "(tensors missing)"
        )
        if got != cp.state_root:
            fail(
                f"{where}: expected the model state root {cp.state_root} of step {cp.step}, "
                f"found {got}"
            )
            continue
        out.append(Stored(cp.step, cp.file, None, path, optimizer=True))
    # The released weights are the state after the last step once V6 bound them to the chain.
    bound = any(f.code == "GT-WEIGHTS-ROOT" and f.status == "pass" for f in ctx.result.findings)
    if bound and steps not in {s.step for s in out}:
        files = [ctx.root / w["name"] for w in tr.weights]
        out.append(
            Stored(steps, ", ".join(w["name"] for w in tr.weights), engine.load_files(files))
        )
    return sorted(out, key=lambda s: s.step)


def _top_q(stored: list[Stored], q: int, engine: _Engine) -> list[dict[str, Any]]:
    """The Q intervals between consecutive stored states with the largest L2 weight distance.

    As in Proof-of-Learning (Jia et al. 2021): a spoofed jump tends to be a large update.
    Distances are measured on stored values bound to the chain, never on attested
    telemetry; replaying to an interval's ``toStep`` re-executes the whole interval.
    """
    if q <= 0 or len(stored) < 2:
        return []
    dist, prev = [], engine.values(stored[0], keep=False)
    for a, b in zip(stored, stored[1:], strict=False):
        cur = engine.values(b, keep=False)  # memory: two states at a time
        dist.append({"fromStep": a.step, "toStep": b.step, "distance": engine.distance(prev, cur)})
        prev = cur
    return top_intervals(dist, q)


def _plan(
    t: Tally, stored: list[Stored], targets: list[int], mode: str, base_problem: str
) -> list[Plan]:
    plans, missing = plan_passes(stored, targets, mode)
    if missing:
        t.fail("GT-REPLAY-CHECKPOINT", f"steps {missing[:10]}: expected a stored state before them "
               f"to replay from, found none usable ({base_problem or 'no base'})")  # fmt: skip
    return plans


def _trained_texts(ctx: Context, data: Path, openings: Path, wanted: set[int]) -> dict[int, str]:
    """Text as trained on for the ``wanted`` admission indices; each must open its commitment.

    The dataset is read by the trainer's reader (attest.dataset) and the content rules run
    over it in order (duplicates depend on order), as the trainer ran them
    (attest.admission.inspect_content: PII masked where the policy masks it); canary texts
    come from canaries.jsonl. Raises FormatError, UsageError or OSError.
    """
    policy = ctx.policy
    assert policy is not None
    salts: dict[int, bytes] = {}
    for where, o in _jsonl(openings / OPENINGS_FILE, ctx):
        op = Opening.from_dict(o, where)
        salts[op.index] = op.salt
    texts: dict[int, str] = {}
    if (openings / CANARIES_FILE).is_file():
        for _where, c in _jsonl(openings / CANARIES_FILE, ctx):
            if isinstance(c, dict) and c.get("index") in wanted and isinstance(c.get("text"), str):
                texts[c["index"]] = c["text"]
    examples, _ = read_dataset(data, limits=ctx.limits)
    seen: set[str] = set()
    for i, ex in enumerate(examples):
        _, trained = inspect_content(policy, ex.text, seen)
        if i in wanted:
            texts[i] = trained
    opened: set[int] = set()
    for rec in iter_log(ctx.prov / ADMISSIONS_FILE, limits=ctx.limits):
        if rec.index not in wanted:
            continue
        a = AdmissionRecord.from_record(rec.value, f"{ADMISSIONS_FILE}: record {rec.index}")
        where = f"example {a.index}{' (canary)' if a.metadata.canary else ''}"
        if a.index not in texts:
            src = CANARIES_FILE if a.metadata.canary else data.name
            raise FormatError(f"{where}: expected its text in {src}, found none")
        if a.index not in salts:
            raise FormatError(f"{where}: expected an opening in {OPENINGS_FILE}, found none")
        if not Opening(a.index, salts[a.index]).opens(a.commitment, texts[a.index]):
            raise FormatError(
                f"{where}: expected the commitment to open to the text as trained on, it does "
                "not; the step cannot be replayed on the committed content"
            )
        opened.add(a.index)
    if wanted - opened:
        raise FormatError(f"examples {sorted(wanted - opened)[:5]}: expected admission records")
    return texts


def _jsonl(path: Path, ctx: Context) -> list[tuple[str, Any]]:
    """(where, value) of each non-blank line, strict JSON (attest.canonical.parse_json)."""
    out = []
    with open(path, "rb") as f:
        for n, line in enumerate(iter(lambda: f.readline(ctx.limits.dataset_line_max + 1), b""), 1):
            where = f"{path.name}:{n}"
            if len(line) > ctx.limits.dataset_line_max:
                raise FormatError(f"{where}: line longer than {ctx.limits.dataset_line_max} bytes")
            if line.strip():
                out.append((where, parse_json(line, where=where, limits=ctx.limits)))
    return out


class _Engine:
    """The trainer's own model, loss, Router and AdamW, driven by recorded inputs (V9.4)."""

    def __init__(self, config: Any, env: dict[str, Any], start: StartRecord, policy: Any) -> None:
        import dataclasses

        import torch

        from trainer import leaves, loop
        from trainer.config import TrainConfig
        from trainer.model import TinyLM
        from trainer.routing import Router

        self.torch, self.loop, self.lv, self.start = torch, loop, leaves, start
        self.error = self.base_problem = ""
        self.rng_seen = self.rng_match = 0
        self._saved = (
            torch.get_num_threads(),
            torch.are_deterministic_algorithms_enabled(),
            torch.get_rng_state(),
        )
        try:
            cfg = TrainConfig.from_dict(dict(config))
        except (FormatError, TypeError) as e:
            self.error = (
                f"training-run config: expected a config this trainer can rebuild, found {e}"
            )
            return
        threads = env.get("threads")
        if isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1:
            cfg = dataclasses.replace(cfg, threads=threads)  # the threads the run actually used
        self.cfg = cfg
        loop.set_determinism(cfg)  # as trainer.commands.builtin_model: seed, then initialize
        self.model = TinyLM(cfg.model)
        state = self.model.state_dict()
        self.init_state = {k: v.detach().clone() for k, v in state.items()}
        table = {n: (leaves.dtype_name(v), tuple(v.shape)) for n, v in state.items()}
        if table != dict(start.tensors):
            diff = sorted(set(table) ^ set(start.tensors)) or [
                n for n in table if table[n] != start.tensors[n]
            ]
            self.error = (f"{STEPS_FILE}: start: expected the tensors of the built-in model "
                          f"{cfg.model} (the only model replay can rebuild), found others "
                          f"(e.g. {diff[:3]})")  # fmt: skip
            return
        self.params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if tuple(self.params) != tuple(start.trainable):
            self.error = (f"{STEPS_FILE}: start: expected trainable {list(self.params)[:3]}…, "
                          f"found {list(start.trainable)[:3]}…")  # fmt: skip
            return
        self.names = {id(p): n for n, p in self.params.items()}
        self.optimizer = loop.make_optimizer(self.params, cfg)  # the trainer's AdamW settings
        self.router = Router(self.params, policy.resolve_profiles(list(self.params)))
        self.loss_fn = loop.builtin_loss(cfg.model.seq_len)
        self.model.train()

    def environment(self) -> dict[str, Any]:
        import platform

        t = self.torch
        return {
            "torch": t.__version__,
            "threads": t.get_num_threads(),
            "platform": platform.platform(),
        }

    def restore(self) -> None:
        threads, det, rng = self._saved
        self.torch.set_num_threads(threads)
        self.torch.use_deterministic_algorithms(det)
        self.torch.set_rng_state(rng)

    # -- stored values --

    def load_files(self, paths: list[Path]) -> dict[str, Any]:
        from safetensors.torch import load_file

        out: dict[str, Any] = {}
        for p in paths:
            out.update(load_file(str(p)))
        return {n: out[n] for n in self.start.tensors if n in out}

    def base_state(self, base: Path | None) -> dict[str, Any] | str:
        """Base values: ``--base`` files or the seed-initialized model, whichever has the root."""
        want = self.start.base_state_root
        cands = [("the seed-initialized model", self.init_state)]
        if base is not None and (files := sorted(base.glob("*.safetensors"))):
            cands.insert(0, (f"--base {base}", self.load_files(files)))
        for _label, st in cands:
            if set(st) == set(self.start.tensors) and state_root(self.lv.leaves(st)) == want:
                return st
        return (f"the base weights are unknown: neither {' nor '.join(c[0] for c in cands)} has "
                "the "
                f"signed base state root {want.hex()[:16]}…; pass --base DIR")  # fmt: skip

    def values(self, s: Stored, *, keep: bool = True) -> dict[str, Any]:
        """The stored model tensors (``keep=False``: not cached)."""
        if s.tensors is not None:
            return s.tensors
        assert s.path is not None
        got = self.load_files([s.path])
        if keep:
            s.tensors = got
        return got

    def distance(self, a: dict[str, Any], b: dict[str, Any]) -> float:
        return math.sqrt(
            sum(float(((b[n].double() - a[n].double()) ** 2).sum()) for n in self.params)
        )

    # -- re-execution --

    def replay(
        self, plan: Plan, records: dict[int, StepRecord], texts: dict[int, str],
        admitted: dict[int, str | None], mode: str, tol: float, t: Tally, stored: list[Stored],
    ) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
        """Re-execute ``plan``, failing GT-REPLAY-STEP at a divergence: (results, steps run)."""
        self.loop.set_determinism(self.cfg)  # threads and deterministic kernels as recorded
        self.optimizer.state.clear()
        if plan.start.optimizer:
            from trainer.checkpoint import load_checkpoint

            assert plan.start.path is not None
            load_checkpoint(plan.start.path, self.model, self.optimizer, self.names)
        else:  # the base: empty AdamW state, the generator seeded as trainer.loop.run seeds it
            self.model.load_state_dict(self.values(plan.start))
            self.torch.manual_seed(self.cfg.seed)
        diverged, ran = self._run(plan, records, texts, admitted, mode, t)
        at_end = next((x for x in stored if x.step == plan.end), None)
        max_diff, end_problem = None, ""
        if diverged is None and at_end is not None:
            max_diff, end_problem = self._compare_stored(at_end, mode, tol)
            if end_problem:
                t.fail("GT-REPLAY-STEP", end_problem)
        out = []
        for s in plan.targets:
            if mode == "strict":  # every step up to s reproduced bitwise: s is proven
                ok = (diverged is None or s < diverged) and not (end_problem and s == plan.end)
            else:  # only the stored state at plan.end has values to compare
                ok = diverged is None and at_end is not None and not end_problem
            x: dict[str, Any] = {"step": s, "fromCheckpoint": plan.start.step, "ok": ok,
                                 "replayedSteps": s - plan.start.step}  # fmt: skip
            if max_diff is not None and (s == plan.end or mode == "tolerant"):
                x["maxDiff"] = max_diff
            if mode == "tolerant":
                x["comparedAt"] = plan.end
            if not ok:
                x["reason"] = (
                    f"diverged at step {diverged}" if diverged is not None else end_problem[:200]
                )
            out.append(x)
        return out, ran

    def _run(
        self, plan: Plan, records: dict[int, StepRecord], texts: dict[int, str],
        admitted: dict[int, str | None], mode: str, t: Tally,
    ) -> tuple[int | None, int]:  # fmt: skip
        """Steps start+1..end, each checked against its record: (diverged at or None, steps run)."""
        lv = self.lv
        current = lv.leaves(self.model.state_dict(), self.start.tensors)
        for s in range(plan.start.step + 1, plan.end + 1):
            rec = records[s]
            if (
                rec.rng is not None
            ):  # informational (V9.4): the built-in step draws no random numbers
                self.rng_seen += 1
                self.rng_match += lv.sha256_tensor(self.torch.get_rng_state()) == rec.rng
            # V4 proved the recorded profiles are the admitted ones; use the admission table's.
            profiles = [admitted.get(x) or p for x, p in zip(rec.batch, rec.profiles, strict=True)]
            for g in self.optimizer.param_groups:
                g["lr"] = rec.lr  # the recorded hyperparameter
            batch = [texts[x] for x in rec.batch]
            # The trainer's one definition of a step: forward, route, AdamW.
            losses = self.loop.train_step(
                self.model, self.loss_fn, self.router, self.optimizer, batch, profiles
            )
            changed: dict[str, bytes] = {}
            # As the trainer hashes: only tensors that had a gradient can have changed.
            for name, p in self.params.items():
                if p.grad is not None and (h := lv.leaf(name, p.data)) != current[name]:
                    changed[name] = current[name] = h
            problem = _compare(s, rec, changed, state_root(current), losses, mode)
            if problem:
                t.fail(
                    "GT-REPLAY-STEP",
                    f"{problem} (replayed from {plan.start.label}, step {plan.start.step})",
                )
                return s, s - plan.start.step
        return None, plan.end - plan.start.step

    def _compare_stored(self, s: Stored, mode: str, tol: float) -> tuple[float, str]:
        """The replayed state vs a stored one: weights, and at a checkpoint (strict) AdamW state."""
        torch = self.torch
        want, state = self.values(s), self.model.state_dict()
        diff = max((float((state[n].double() - want[n].double()).abs().max())
                    if state[n].numel() else 0.0) for n in self.start.tensors)  # fmt: skip
        where = f"step {s.step}"
        if mode == "tolerant" and not diff <= tol:
            return (
                diff,
                f"{where}: expected the replayed weights within {tol:g} of {s.label}, "
                f"found max |diff| {diff:g}",
            )
        if mode == "strict" and s.optimizer:
            from safetensors import safe_open

            assert s.path is not None
            with safe_open(str(s.path), framework="pt") as f:
                left = {k for k in f.keys() if k.startswith("optim/")}  # noqa: SIM118 - not a dict
                for p, st in self.optimizer.state.items():
                    for k, v in st.items():
                        key = f"optim/{k}/{self.names[id(p)]}"
                        if key not in left or not torch.equal(
                            f.get_tensor(key), torch.as_tensor(v)
                        ):
                            return (
                                diff,
                                f"{where}: expected {s.label}'s optimizer state {key!r}, "
                                "the replay's differs",
                            )
                        left.discard(key)
            if left:
                return (
                    diff,
                    f"{where}: {s.label} holds optimizer state {sorted(left)[:3]} "
                    "the replay has not",
                )
        return diff, ""


def _compare(
    s: int, rec: StepRecord, changed: dict[str, bytes], root: bytes, losses: Any, mode: str
) -> str:
    """The first difference between a replayed step and its record (V9.4), or ""."""
    if mode == "strict":
        # Losses first: computed before the update, a mismatch names the example whose
        # recorded content is not what the step trained on.
        # Recorded as the trainer records them: float64, never -0.0, non-finite as 0.0.
        got = [v if math.isfinite(v := float(x) + 0.0) else 0.0 for x in losses.detach().tolist()]
        for j, (a, b) in enumerate(zip(rec.loss, got, strict=True)):
            if a != b:
                return (f"step {s}: batch[{j}] = example {rec.batch[j]}: expected loss {a!r} "
                        f"(recorded), found {b!r} (replayed on its committed text)")  # fmt: skip
    if set(changed) != set(rec.changed):
        extra, miss = (
            sorted(set(changed) - set(rec.changed)),
            sorted(set(rec.changed) - set(changed)),
        )
        return (f"step {s}: expected the recorded set of changed tensors, found the replay also "
                f"changes {extra[:3]} and not {miss[:3]}")  # fmt: skip
    if mode == "tolerant":
        return ""  # values are compared at the next stored state
    for name in sorted(changed):
        if changed[name] != rec.changed[name]:
            return (f"step {s}: tensor {name!r}: expected leaf {rec.changed[name].hex()[:16]}… "
                    f"(recorded), found {changed[name].hex()[:16]}… (replayed)")  # fmt: skip
    if root != rec.state_root:
        return (f"step {s}: expected state root {rec.state_root.hex()} (recorded), "
                f"found {root.hex()} (replayed)")  # fmt: skip
    return ""
