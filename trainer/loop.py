"""The governed training run, top to bottom (STYLE.md §11, in the spirit of nanoGPT's train.py).

    admit -> [ batch -> engine.step (forward, route, AdamW, hash) -> probe memorization
               -> record ]* -> release -> sign

The step itself is trainer.engine.StepEngine (shared with the replay audit); the model
comes from the registry (trainer.registry), resume from trainer.resume, the tolerant-mode
calibration from trainer.calibration, the statements from trainer.provenance.
Costs and sync points are marked ``# cost:`` and ``# sync:``.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import os
import platform
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from securesystemslib.signer import Signer
from torch import nn

from attest.atomic import write_atomic
from attest.canary import eval_indices, heldout_indices
from attest.canonical import canonical_msgpack
from attest.commitment import new_run_secret
from attest.dataset import read_dataset
from attest.digest import sha256_file
from attest.errors import GovtuneError, UsageError
from attest.layout import weights_metadata
from attest.log import GENESIS, LogSummary, LogWriter, record_hash, summarize_log
from attest.modelspec import BaseIdentity, ModelSpec
from attest.order import ORDER, DataOrder
from attest.policy import Policy, load_policy
from attest.predicates import ADMISSIONS_FILE, POLICY_FILE, STEPS_FILE, Checkpoint
from attest.records import Event, StartRecord, StepRecord
from attest.schedule import lr_at
from attest.tensors import hash_safetensors, state_root

from . import leaves as lv
from .calibration import calibrate_tolerance
from .checkpoint import checkpoint_name, save_checkpoint, stamp_metadata
from .config import TrainConfig
from .data import Admission, admit
from .dist import Dist, LeadStopped
from .engine import OptimizerConfig, StepEngine
from .engine import finite as engine_finite
from .memorization import LossFn, Monitor
from .profiles import resolve_profiles
from .provenance import RunFacts, sign_bundle, write_private
from .registry import Built, Item, texts_loss
from .resume import Restored, load_restored, read_records, read_run_secret, restore, resumable

BUILDER = "govtune-trainer/0.3.0"
Progress = Callable[[int, int, float], None]  # (step, total steps, mean loss)


@dataclass(frozen=True)
class RunResult:
    run: Path
    steps: int
    counts: dict[str, int]
    final_state_root: str
    weights_sha256: str
    halted: bool
    quarantined: tuple[int, ...]
    events: int
    exposures: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    mean_loss: float = 0.0


def set_determinism(config: TrainConfig) -> None:
    """Strict mode: fixed threads, deterministic kernels (the replay audit is bitwise there)."""
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(config.deterministic)
    torch.manual_seed(config.seed)


def environment(
    config: TrainConfig,
    engine: StepEngine,
    calibration: dict[str, float] | None = None,
    dist: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's environment fingerprint: the device and dtype the model really has."""
    p = next(iter(engine.params.values()), None)
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "byteorder": sys.byteorder,
        "device": p.device.type if p is not None else config.device,
        "dtype": str(p.dtype).removeprefix("torch.") if p is not None else config.dtype,
        "threads": torch.get_num_threads(),
        "seed": config.seed,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "mode": config.mode,
        "tolerance": 0.0,  # strict: replay requires bitwise equality
    }
    if calibration is not None:
        env["tolerance"] = calibration["tolerance"]
        env["toleranceCalibration"] = {
            "observed": calibration["observed"],
            "factor": calibration["factor"],
        }
    if dist is not None:  # distributed runs: worldSize, backend, deviceTypes (one per rank)
        env.update(dist)
    return env


def optimizer_config(config: TrainConfig) -> OptimizerConfig:
    b1, b2 = config.betas
    return OptimizerConfig(float(config.lr), (float(b1), float(b2)), float(config.weight_decay))


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _prepare_run_folder(out: Path) -> None:
    if (out / "provenance" / STEPS_FILE).exists():
        raise UsageError(f"{out}: already holds a run; choose a new --out folder (or --resume)")
    # An admission log without a step log is what a crash during admission leaves: no
    # step depends on it and nothing signed it, so a fresh start replaces it.
    try:
        (out / "provenance" / ADMISSIONS_FILE).unlink(missing_ok=True)
        for sub in ("provenance", "checkpoints"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        (out / "private").mkdir(mode=0o700, exist_ok=True)
        os.chmod(out / "private", 0o700)
    except OSError as e:
        raise UsageError(f"{out}: cannot write the run folder: {e.strerror or e}") from e


def _open_run(out: Path, resume: bool, run_secret: bytes | None) -> tuple[bytes, bool]:
    """(run secret, resume?): a fresh folder with a durable secret, or the resumed run's."""
    if resume and not resumable(out):
        # Killed before the start record was durable: nothing was trained, start afresh.
        (out / "provenance" / STEPS_FILE).unlink(missing_ok=True)
        resume = False
    if resume:
        return read_run_secret(out), True
    _prepare_run_folder(out)
    secret = run_secret or new_run_secret()
    # Durable before any record that depends on it: a resume needs the same salts.
    write_atomic(out / "private" / "run-secret", secret.hex().encode() + b"\n", mode=0o600)
    return secret, False


def _write_admissions(prov: Path, adm: Admission, policy_bytes: bytes, resume: bool) -> LogSummary:
    if resume:  # the admissions are a pure function of (dataset, policy, run secret)
        admissions = summarize_log(prov / ADMISSIONS_FILE)
        if admissions.head != _chain_head(r.to_record() for r in adm.records):
            raise GovtuneError("resume: dataset or policy differ from the admission log's")
        return admissions
    write_atomic(prov / POLICY_FILE, policy_bytes)
    with LogWriter(prov / ADMISSIONS_FILE) as log:
        for rec in adm.records:
            log.append(rec.to_record())
        return log.summary()


def _split(adm: Admission, policy: Policy, seed: int) -> tuple[list[int], list[int]]:
    """(held-out reference set, training pool) of the admitted, non-canary examples."""
    canary_idx = {i for c in adm.canaries for i in c.indices}
    ordinary = sorted(set(adm.texts) - canary_idx)
    heldout = list(heldout_indices(seed, ordinary, policy.memorization.holdout))
    pool = [i for i in sorted(adm.texts) if i not in set(heldout)]
    if not pool:
        raise GovtuneError("admission: expected at least one admitted training example, got none")
    return heldout, pool


def _eval_split(
    pool: list[int], adm: Admission, config: TrainConfig
) -> tuple[list[int], list[int]]:
    """(evaluation split, training pool): ``config.eval_examples`` non-canary examples of the
    pool, drawn with the run seed (a pure function of dataset, policy and config)."""
    if not config.eval_examples:
        return [], pool
    canaries = {i for c in adm.canaries for i in c.indices}
    ordinary = [i for i in pool if i not in canaries]
    if config.eval_examples >= len(ordinary):
        raise GovtuneError(
            f"config.eval_examples: expected fewer than the {len(ordinary)} trainable examples, "
            f"got {config.eval_examples}"
        )
    evals = list(eval_indices(config.seed, ordinary, config.eval_examples))
    chosen = set(evals)
    return evals, [i for i in pool if i not in chosen]


def _eval_loss(engine: StepEngine, adm: Admission, evals: list[int], batch_size: int) -> float:
    """Mean per-example loss over the evaluation split (no gradient, no state change)."""
    total = 0.0
    with torch.no_grad():
        for k in range(0, len(evals), batch_size):
            items = _items(adm, evals[k : k + batch_size])
            losses = engine.built.per_example_loss(engine.model, engine.built.encode(items))
            total += float(losses.sum())  # sync: tensor -> Python
    return engine_finite(total / len(evals))


def _start_record(
    config: TrainConfig,
    policy: Policy,
    engine: StepEngine,
    profiles: dict[str, Any],
    heldout: list[int],
    run_id: str,
) -> StartRecord:
    state = engine.built.state()
    return StartRecord(
        config.digest(),
        policy.digest(),
        dict(engine.current),
        engine.state_root(),
        lv.tensor_table(state),
        profiles,
        tuple(engine.params),
        tuple(heldout),
        {
            "runId": run_id,
            "dataOrderSeed": config.seed,
            "order": ORDER,
            "encoding": "utf-8-bytes",
            "lossReduction": "per-example-mean/batch-size",
            # records.md §5: gradNorm is nil in every step record when method is null.
            "gradNorm": {"method": engine.grad_norm_method}
            if engine.grad_norm_method
            else {"method": None, "reason": engine.grad_norm_reason},
        },
        engine.built.spec,
    )


def run(
    built: Built,
    config: TrainConfig,
    out: Path,
    signer: Signer,
    *,
    progress: Progress | None = None,
    resume: bool = False,
    run_secret: bytes | None = None,
    dist: Dist | None = None,
) -> RunResult:
    """Train ``built`` (trainer.registry) on ``config.dataset`` under ``config.policy``.

    Writes and signs the run folder ``out``. ``run_secret`` (32 bytes) fixes salts and
    canaries for a reproducible run; default fresh. With ``resume``, continue the run in
    ``out`` from its last checkpoint (trainer.resume). With ``dist`` (trainer.dist, one
    worker of a torchrun job) every rank trains its slice of each global batch and rank 0
    alone writes and signs; the other ranks write nothing under ``out``.
    Raises UsageError (files), FormatError (dataset), PolicyError, GovtuneError.
    """
    out, started = Path(out), _now()
    set_determinism(config)
    policy, policy_bytes = load_policy(config.path("policy"))
    examples, dataset_sha = read_dataset(config.path("dataset"))
    # a config error before anything is written or shown (admission's progress)
    profiles = resolve_profiles(policy, built.trainable)  # PolicyError: a profile matches none
    prov = out / "provenance"
    lead = dist is None or dist.lead  # the one writer of the run folder
    secret = b""  # the lead's, shared with the other ranks below
    if lead:
        secret, resume = _open_run(out, resume, run_secret)
    if dist is not None:  # sync: every rank admits with the lead's secret
        secret, resume = dist.share((secret, resume))
    run_id = os.urandom(16).hex()

    # --- admit: every example judged, refused ones recorded too; canaries planted ---------
    adm = admit(policy, examples, secret)
    admissions = _write_admissions(prov, adm, policy_bytes, resume) if lead else None
    heldout, pool = _split(adm, policy, config.seed)
    evals, pool = _eval_split(pool, adm, config)  # config.eval_examples, never trained

    # --- the model's starting point, the engine, the monitors -------------------------------
    collective = dist is not None and dist.collective  # FSDP: every forward gathers
    make = StepEngine
    if collective:  # trainer/fsdp.py: the same engine contract on sharded parameters
        from .fsdp import ShardedStepEngine as make  # type: ignore[assignment]
    engine = make(built, optimizer_config(config), profiles, grad_norms=config.grad_norms,
                  grad_accum=config.grad_accum)  # fmt: skip
    base_root = engine.state_root()
    start = _start_record(config, policy, engine, profiles, heldout, run_id)
    if evals:  # recorded with the start, before any step (records.md §4 extra)
        start = dataclasses.replace(start, extra={**start.extra, "evalSplit": evals})
    if dist is not None:  # records.md §4: how each global batch is split across the ranks
        start = dataclasses.replace(
            start, extra={**start.extra, "distributed": dist.info().to_dict()}
        )
    eval_losses: list[dict[str, Any]] = []
    loss_fn = texts_loss(built)
    order = DataOrder(pool, config.seed, config.batch_size)
    monitor = Monitor(policy.memorization, policy.canaries, adm.canaries,
                      {i: adm.texts[i] for i in heldout}, secret)  # fmt: skip
    eval_every = policy.memorization.eval_every
    checkpoints: list[Checkpoint] = []
    all_events: list[tuple[int, Event]] = []
    first = 1
    steps_log: LogWriter | _Discard
    if resume:
        r = _restore(out, start, engine, order, monitor, loss_fn, eval_every, dist)
        steps_log, run_id = r.log or _Discard(r.step + 1), r.run_id
        checkpoints, all_events, first = r.checkpoints, r.events, r.step + 1
    elif lead:
        steps_log = LogWriter(prov / STEPS_FILE)
        steps_log.append(start.to_record())
    else:
        steps_log = _Discard(1)
    calibration = _calibrate(config, engine, order, monitor, adm) if lead or collective else None

    last_loss = 0.0
    for step in range(first, config.steps + 1):
        if monitor.halted:  # only after a resume of a halted run
            break
        batch = order.next_batch(monitor.quarantined)  # never a quarantined example
        if not batch:
            break
        batch_profiles = [adm.profiles[i] for i in batch]
        rng = lv.sha256_tensor(torch.get_rng_state())

        # forward (per-example losses = "loss before the step"), route each example's
        # gradient to its profile's tensors only, AdamW, hash the changed tensors
        lr = lr_at(step, lr=config.lr, steps=config.steps, schedule=config.schedule,
                   warmup=config.warmup_steps)  # fmt: skip
        ranks = None
        if dist is None:
            outcome = engine.step(_items(adm, batch), batch_profiles, lr)
        else:  # this rank's slice, one all-reduce per gradient group (trainer/dist.py)
            outcome, ranks = dist.step(engine, _items(adm, batch), batch_profiles, lr)

        # probe memorization: online signals every step, exposure at evaluation points
        last_loss = sum(outcome.losses) / len(outcome.losses)
        events = monitor.observe(batch, list(outcome.losses))
        last = step == config.steps or monitor.halted or not order.live(monitor.quarantined)
        if last or (eval_every and step % eval_every == 0):
            events += monitor.evaluate(step, engine.model, loss_fn)
            if evals and (lead or collective):  # cost: a no-grad forward of the eval split
                loss = _eval_loss(engine, adm, evals, config.batch_size)
                eval_losses.append({"step": step, "loss": loss})

        # record (and checkpoint every K steps)
        cp = None
        if config.checkpoint_every and step % config.checkpoint_every == 0:
            if collective:  # every rank gathers, rank 0 writes (trainer/fsdp.py)
                cp = _checkpoint(out, engine, step, outcome.state_root, checkpoints, sharded=True)
            elif lead:
                cp = _checkpoint(out, engine, step, outcome.state_root, checkpoints)  # cost: disk
        steps_log.append(
            StepRecord(step, tuple(batch), tuple(batch_profiles), outcome.losses,
                       outcome.grad_norms, float(lr), outcome.changed,
                       outcome.state_root, tuple(events), cp, rng, ranks).to_record()
        )  # fmt: skip
        if dist is not None and config.state_check_every and step % config.state_check_every == 0:
            dist.compare(step, outcome.state_root, batch)  # sync: halts the run on a mismatch
        if cp is not None:
            steps_log.sync()  # sync: the log is durable up to every checkpoint
        all_events += [(step, e) for e in events]
        if progress:
            progress(step, config.steps, last_loss)
        if monitor.halted:
            break
    steps_done = steps_log.count - 1
    steps_log.close()
    dist_env = None
    if dist is not None:  # sync: the final state and quarantines agree on every rank
        dist.compare(steps_done, engine.state_root(), sorted(monitor.quarantined))
        p = next(iter(engine.params.values()), None)
        types = dist.gather(p.device.type if p is not None else config.device)
        dist_env = {"worldSize": dist.size, "backend": dist.backend, "deviceTypes": types}
        if not lead:  # the other ranks write nothing under out
            if collective:
                engine.built.save(out)  # FSDP: a collective; rank 0 alone writes
            return RunResult(out, steps_done, adm.counts, engine.state_root().hex(), "",
                             monitor.halted, tuple(sorted(monitor.quarantined)),
                             len(all_events), tuple(monitor.exposures), last_loss)  # fmt: skip
    assert admissions is not None and isinstance(steps_log, LogWriter)  # the lead's

    # --- release: weights, private openings, signed statements ------------------------------
    weights, model_files = _release(out, engine, run_id)
    write_private(out, secret, adm.openings, {i: c.text for c in adm.canaries for i in c.indices})
    spec = built.spec
    facts = RunFacts(
        run_id=run_id, policy=policy, policy_sha256=sha256_file(prov / POLICY_FILE),
        admissions=admissions, counts=adm.counts,
        dataset={"sha256": dataset_sha, "examples": len(examples)},
        steps_log=steps_log.summary(), steps=steps_done, config=config.to_dict(),
        config_digest=config.digest(),
        environment=environment(config, engine, calibration, dist_env),
        base_model=_base_model(spec, base_root.hex()), base_state_root=base_root.hex(),
        final_state_root=engine.state_root().hex(), weights=weights, model_files=model_files,
        checkpoints=tuple(checkpoints), events=tuple(all_events),
        quarantined=tuple(sorted(monitor.quarantined)), halted=monitor.halted,
        canaries=tuple(monitor.exposures), reference=monitor.reference_summary(),
        started_on=started, finished_on=_now(), builder=BUILDER,
        extra={"heldout": len(heldout), "trainingPool": len(pool),
               **({"evaluation": {"examples": len(evals), "loss": eval_losses}} if evals else {})},
    )  # fmt: skip
    sign_bundle(out, facts, signer)
    return RunResult(out, steps_done, adm.counts, facts.final_state_root, weights[0][1],
                     monitor.halted, facts.quarantined, len(all_events),
                     tuple(monitor.exposures), last_loss)  # fmt: skip


class _Discard:
    """The step log of a rank other than the lead: counts records, writes nothing."""

    def __init__(self, count: int) -> None:
        self.count = count

    def append(self, record: dict[str, Any]) -> None:
        self.count += 1

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


def _restore(
    out: Path,
    start: StartRecord,
    engine: StepEngine,
    order: DataOrder,
    monitor: Monitor,
    loss_fn: LossFn,
    eval_every: int,
    dist: Dist | None,
) -> Restored:
    """trainer.resume.restore. In a distributed run the lead reads, compares and cuts the log
    first and shares its verdict (so no rank waits in a collective for a lead that stopped),
    then the other ranks read the same records without writing (the run folder must be
    readable on every node), then every rank loads the checkpoint and re-measures the
    reference together: under FSDP both gather (trainer/fsdp.py). sync: one broadcast."""
    if dist is None:
        return restore(out, start, engine, order, monitor, loss_fn, eval_every)
    got, failed = None, None
    if dist.lead:
        try:
            got = read_records(out, start, order, monitor, eval_every)
        except (GovtuneError, OSError) as e:  # OSError: the CLI names it (commands.py)
            failed = e
    if dist.share(failed is not None):  # sync: the lead's decision, on every rank
        if failed is not None:
            raise failed  # the lead prints its one line
        raise LeadStopped("resume: the lead refused it")
    if not dist.lead:
        got = read_records(out, start, order, monitor, eval_every, write=False)
    assert got is not None
    load_restored(out, got, engine, monitor, loss_fn)  # FSDP: collective, same order everywhere
    if dist.lead:
        got.log = LogWriter(out / "provenance" / STEPS_FILE, resume=True)
    return got


def _calibrate(
    config: TrainConfig, engine: StepEngine, order: DataOrder, monitor: Monitor, adm: Admission
) -> dict[str, float] | None:
    """Tolerant mode: calibrate on the next batch (a copy of the order), state restored.

    Strict mode: bitwise, nothing to calibrate. A resumed run calibrates again."""
    if config.mode != "tolerant":
        return None
    probe = copy.deepcopy(order).next_batch(monitor.quarantined)
    if not probe:
        return None
    return calibrate_tolerance(engine, _items(adm, probe),
                               [adm.profiles[i] for i in probe], config.lr,
                               minimum=config.tolerance)  # fmt: skip


def _checkpoint(
    out: Path,
    engine: StepEngine,
    step: int,
    root: bytes,
    checkpoints: list[Checkpoint],
    sharded: bool = False,
) -> dict[str, str] | None:
    """Write the checkpoint of ``step``; -> the step record's ``checkpoint`` (None on the
    ranks other than 0 of a sharded run, which only take part in the gathers)."""
    fname = checkpoint_name(step)
    if sharded:
        from .fsdp import save_full_checkpoint

        got = save_full_checkpoint(out / fname, engine)  # type: ignore[arg-type]
        if got is None:
            return None
        sha = got
    else:
        sha = save_checkpoint(out / fname, engine)
    checkpoints.append(Checkpoint(step, fname, sha, root.hex()))
    return {"file": fname, "sha256": sha, "stateRoot": root.hex()}


def _release(
    out: Path, engine: StepEngine, run_id: str
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """Write the model files, stamp their provenance pointers (before any hashing, so the
    signed digests cover them: spec/release.md), and check the weight files hold exactly
    the chain's final state. Returns (weights, model files) as (name, sha256): every other
    top-level file the kind wrote (config, tokenizer, adapter config) is bound by digest
    in the training statement's ``modelFiles`` (attest/layout.py)."""
    names = engine.built.save(out)
    if not names:
        raise GovtuneError("release: the model kind wrote no weight files")
    leaves: dict[str, bytes] = {}
    weights = []
    for name in names:
        stamp_metadata(out / name, weights_metadata(run_id))
        written = hash_safetensors(out / name)
        leaves.update(written.leaves)
        weights.append((name, written.sha256))
    final = engine.state_root()
    if state_root(leaves) != final:
        raise GovtuneError(
            f"{', '.join(names)}: expected state root {final.hex()[:16]}…, the written files differ"
        )
    others = sorted(p.name for p in out.iterdir() if p.is_file() and p.name not in names)
    return tuple(weights), tuple((n, sha256_file(out / n)) for n in others)


def _items(adm: Admission, indices: Iterable[int]) -> list[Item]:
    """The examples as the model sees them: text as trained on and task fields (label, prompt)."""
    return [Item(adm.texts[i], adm.fields.get(i, {})) for i in indices]


def _base_model(spec: ModelSpec, root: str) -> dict[str, Any]:
    """The training statement's baseModel (a resolved dependency) from the model spec."""
    base = spec.base or BaseIdentity(f"govtune:{spec.kind}", root)
    d: dict[str, Any] = {"name": base.name, "stateRoot": root, "kind": spec.kind}
    if base.revision is not None:
        d["revision"] = base.revision
    if base.files:
        d["files"] = dict(base.files)
    if spec.base is not None:
        # The base folder's own tensors, as stored (what `verify --base` recomputes); the
        # chain's start state (stateRoot) differs for HF kinds: a seeded head, the loader's
        # name prefix, or LoRA's adapters-only coverage (spec/predicates/training-run.md).
        d["weightsStateRoot"] = spec.base.weights_state_root or spec.base.state_root
    return d


def _chain_head(records: Iterable[dict[str, Any]]) -> str:
    """Head hash of a log holding ``records`` (as attest.log.LogWriter would write it)."""
    prev = GENESIS
    for rec in records:
        prev = record_hash(canonical_msgpack({**rec, "prev": prev}))
    return prev.hex()


def train(
    model: nn.Module,
    loss_fn: LossFn,
    dataset: Path,
    policy: Path,
    config: TrainConfig,
    out: Path,
    signer: Signer,
    **kw: Any,
) -> RunResult:
    """The Python API: any ``nn.Module`` and a per-example ``loss_fn(model, texts) -> [B]``.

    The run records model kind ``python-api``: no registered kind rebuilds it, so the
    replay audit reports it cannot be replayed (register a kind to make it replayable).
    """
    cfg = dataclasses.replace(
        config, dataset=str(Path(dataset).resolve()), policy=str(Path(policy).resolve())
    )
    return run(wrap_module(model, loss_fn, kw.pop("base_name", "")), cfg, out, signer, **kw)


def wrap_module(model: nn.Module, loss_fn: LossFn, base_name: str = "") -> Built:
    """A `Built` around a custom module whose loss takes texts (kind ``python-api``)."""
    from .checkpoint import save_weights

    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    root = state_root(lv.leaves(model.state_dict())).hex()
    spec = ModelSpec(
        "python-api",
        {"class": f"{type(model).__module__}.{type(model).__qualname__}"},
        BaseIdentity(base_name or "python-api", root),
        None,
        tuple(sorted(trainable)),
    )

    def save(out: Path) -> tuple[str, ...]:
        save_weights(Path(out) / "model.safetensors", model.state_dict())
        return ("model.safetensors",)

    return Built(model, lambda items: [it.text for it in items], loss_fn, trainable, save,
                 lambda: dict(model.state_dict()), spec)  # fmt: skip


def builtin_loss(seq_len: int) -> LossFn:
    from .model import encode, lm_loss

    def loss_fn(model: nn.Module, texts: Sequence[str]) -> torch.Tensor:
        return lm_loss(model, encode(texts, seq_len))

    return loss_fn
