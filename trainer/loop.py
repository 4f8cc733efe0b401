"""The governed training run, top to bottom (STYLE.md §11, in the spirit of nanoGPT's train.py).

    admit -> [ batch -> forward -> route -> step -> hash -> probe memorization -> record ]* -> sign

Costs and sync points are marked ``# cost:`` and ``# sync:``.
"""

from __future__ import annotations

import copy
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
from attest.canary import heldout_indices
from attest.canonical import canonical_msgpack
from attest.commitment import new_run_secret
from attest.dataset import read_dataset
from attest.digest import sha256_file
from attest.errors import GovtuneError, UsageError
from attest.log import GENESIS, LogWriter, record_hash, summarize_log
from attest.policy import load_policy
from attest.predicates import ADMISSIONS_FILE, POLICY_FILE, STEPS_FILE, Checkpoint
from attest.records import Event, StartRecord, StepRecord
from attest.release_layout import weights_metadata
from attest.tensors import hash_safetensors, state_root

from . import leaves as lv
from .checkpoint import checkpoint_name, save_checkpoint, save_weights
from .config import TrainConfig
from .data import admit
from .memorization import LossFn, Monitor, _f
from .order import DataOrder
from .provenance import WEIGHTS_FILE, RunFacts, sign_bundle, write_private
from .resume import read_run_secret, restore, resumable
from .routing import Router

BUILDER = "govtune-trainer/0.1.0"
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


def environment(config: TrainConfig, calibration: dict[str, float] | None = None) -> dict[str, Any]:
    """The run's environment fingerprint; in tolerant mode with the calibrated tolerance."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "byteorder": sys.byteorder,
        "device": "cpu",
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
    return env


def make_optimizer(params: dict[str, nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        list(params.values()), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )


def train_step(
    model: nn.Module,
    loss_fn: LossFn,
    router: Router,
    optimizer: torch.optim.Optimizer,
    texts: Sequence[str],
    profiles: Sequence[str],
) -> torch.Tensor:
    """forward -> route -> step; returns the per-example losses before the step.

    The one definition of a step, shared with the replay audit (verifier/replay.py).
    """
    router.prepare(model, profiles)  # stop-gradient masks, when the model supports them
    try:
        losses = loss_fn(model, texts)  # cost: one forward over the whole batch
    finally:
        router.release(model)
    router.backward(losses, profiles)  # cost: one backward (fast path) or one per signature
    optimizer.step()  # tensors with grad None are skipped by AdamW: unchanged, bitwise
    return losses


# Tolerant mode (spec/verification.md §V9.3): the replay tolerance is calibrated on an
# honest reproduction at start. One step's drift underestimates the drift accumulated
# over the steps between two stored states, hence the safety factor; the floor (a few
# float32 ulps at weight magnitudes ~1-8) keeps a run whose calibration happened to
# reproduce bitwise from demanding bitwise equality of a replay elsewhere.
TOLERANCE_FACTOR = 10.0
TOLERANCE_FLOOR = 1e-6


def calibrate_tolerance(
    model: nn.Module,
    loss_fn: LossFn,
    router: Router,
    optimizer: torch.optim.Optimizer,
    texts: Sequence[str],
    profiles: Sequence[str],
    minimum: float = 0.0,
) -> dict[str, float]:
    """Run one step twice from the same state; {"observed", "factor", "tolerance"}.

    ``observed`` is the largest per-tensor max |difference| between the two runs' weights;
    ``tolerance`` = max(observed * TOLERANCE_FACTOR, TOLERANCE_FLOOR, ``minimum``). Model
    weights, AdamW state, gradients and the torch generator are restored afterwards, so
    training starts from exactly the state it would have without calibration.
    """
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optim_state, rng = copy.deepcopy(optimizer.state_dict()), torch.get_rng_state()

    def restore() -> None:
        model.load_state_dict(weights)
        optimizer.load_state_dict(copy.deepcopy(optim_state))
        torch.set_rng_state(rng)
        for p in model.parameters():
            p.grad = None

    runs: list[dict[str, torch.Tensor]] = []
    try:
        for _ in range(2):  # cost: two extra steps, once per run
            restore()
            train_step(model, loss_fn, router, optimizer, texts, profiles)
            runs.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    finally:
        restore()
    a, b = runs
    observed = max(
        (float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()),
        default=0.0,
    )
    tolerance = max(observed * TOLERANCE_FACTOR, TOLERANCE_FLOOR, float(minimum))
    return {"observed": observed, "factor": TOLERANCE_FACTOR, "tolerance": tolerance}


def hash_changed(params: dict[str, nn.Parameter], current: dict[str, bytes]) -> dict[str, bytes]:
    """New leaves of the tensors whose bytes changed; updates ``current`` in place.

    Only tensors that had a gradient are hashed: AdamW leaves the others untouched.
    """
    changed: dict[str, bytes] = {}
    for n, p in params.items():
        if p.grad is not None:
            h = lv.leaf(n, p.data)  # cost: SHA-256 over the tensor's bytes
            if h != current[n]:
                changed[n] = current[n] = h
    return changed


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


def run(
    model: nn.Module,
    loss_fn: LossFn,
    config: TrainConfig,
    out: Path,
    signer: Signer,
    *,
    base_name: str = "",
    progress: Progress | None = None,
    resume: bool = False,
    run_secret: bytes | None = None,
) -> RunResult:
    """Train ``model`` on ``config.dataset`` under ``config.policy``; write and sign the run folder.

    ``loss_fn(model, texts)`` returns the per-example losses [B] (nats) of a list of texts.
    ``run_secret`` (32 bytes) fixes salts and canaries for a reproducible run; default fresh.
    With ``resume``, continue the run in ``out`` from its last checkpoint (trainer.resume).
    Raises UsageError (files), FormatError (dataset), PolicyError, GovtuneError.
    """
    out = Path(out)
    started = _now()
    set_determinism(config)
    policy, policy_bytes = load_policy(config.path("policy"))
    examples, dataset_sha = read_dataset(config.path("dataset"))
    prov = out / "provenance"
    if resume and not resumable(out):
        # Killed before the start record was durable: nothing was trained, start afresh.
        (prov / STEPS_FILE).unlink(missing_ok=True)
        resume = False
    if resume:
        run_secret = read_run_secret(out)
    else:
        _prepare_run_folder(out)
        run_secret = run_secret or new_run_secret()
        # Durable before any record that depends on it: a resume needs the same salts.
        write_atomic(out / "private" / "run-secret", run_secret.hex().encode() + b"\n", mode=0o600)
    run_id = os.urandom(16).hex()

    # --- admit: every example judged, refused ones recorded too; canaries planted ---------
    adm = admit(policy, examples, run_secret)
    if resume:  # the admissions are a pure function of (dataset, policy, run secret)
        admissions = summarize_log(prov / ADMISSIONS_FILE)
        if admissions.head != _chain_head(r.to_record() for r in adm.records):
            raise GovtuneError("resume: dataset or policy differ from the admission log's")
    else:
        write_atomic(prov / POLICY_FILE, policy_bytes)
        with LogWriter(prov / ADMISSIONS_FILE) as log:
            for rec in adm.records:
                log.append(rec.to_record())
            admissions = log.summary()
    canary_idx = {i for c in adm.canaries for i in c.indices}
    ordinary = sorted(set(adm.texts) - canary_idx)
    heldout = list(heldout_indices(config.seed, ordinary, policy.memorization.holdout))
    pool = [i for i in sorted(adm.texts) if i not in set(heldout)]
    if not pool:
        raise GovtuneError("admission: expected at least one admitted training example, got none")

    # --- the model's starting point ---------------------------------------------------------
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names_by_id = {id(p): n for n, p in params.items()}
    profiles = policy.resolve_profiles(list(params))
    state = model.state_dict()
    current = lv.leaves(state)  # cost: one SHA-256 pass over the whole model, once
    base_root = state_root(current)
    data_seed = config.seed
    start = StartRecord(
        config.digest(),
        policy.digest(),
        current,
        base_root,
        lv.tensor_table(state),
        profiles,
        tuple(params),
        tuple(heldout),
        {
            "runId": run_id,
            "dataOrderSeed": data_seed,
            "order": "epoch-randperm-v1",
            "encoding": "utf-8-bytes",
            "lossReduction": "per-example-mean/batch-size",
        },
    )

    optimizer = make_optimizer(params, config)
    router = Router(params, profiles)
    order = DataOrder(pool, data_seed, config.batch_size)
    monitor = Monitor(
        policy.memorization,
        policy.canaries,
        adm.canaries,
        {i: adm.texts[i] for i in heldout},
        run_secret,
    )
    eval_every = policy.memorization.eval_every
    checkpoints: list[Checkpoint] = []
    all_events: list[tuple[int, Event]] = []
    first = 1
    if resume:
        r = restore(out, start, model, optimizer, names_by_id, order, monitor, loss_fn, eval_every)
        steps_log, run_id, current = r.log, r.run_id, r.current
        checkpoints, all_events, first = r.checkpoints, r.events, r.step + 1
    else:
        steps_log = LogWriter(prov / STEPS_FILE)
        steps_log.append(start.to_record())
    last_loss = 0.0
    model.train()
    calibration = None  # strict mode: bitwise, nothing to calibrate
    # Tolerant mode: calibrate on the next batch (on a copy of the order), state restored.
    # A resumed run calibrates again from its restored state.
    tolerant = config.mode == "tolerant"
    probe = copy.deepcopy(order).next_batch(monitor.quarantined) if tolerant else []
    if probe:
        calibration = calibrate_tolerance(model, loss_fn, router, optimizer,
                                          [adm.texts[i] for i in probe],
                                          [adm.profiles[i] for i in probe],
                                          minimum=config.tolerance)  # fmt: skip

    for step in range(first, config.steps + 1):
        if monitor.halted:  # only after a resume of a halted run
            break
        batch = order.next_batch(monitor.quarantined)  # never a quarantined example
        if not batch:
            break
        texts = [adm.texts[i] for i in batch]
        batch_profiles = [adm.profiles[i] for i in batch]
        rng = lv.sha256_tensor(torch.get_rng_state())

        # forward over the whole batch (per-example losses = "loss before the step"), then
        # route: each example's gradient reaches only its profile's tensors; then AdamW
        losses = train_step(model, loss_fn, router, optimizer, texts, batch_profiles)

        # hash: only tensors that had a gradient can have changed
        changed = hash_changed(params, current)
        root = state_root(current)

        # probe memorization: online signals every step, exposure at evaluation points
        loss_values = [_f(x) for x in losses.detach().tolist()]  # sync: tensor -> Python
        last_loss = sum(loss_values) / len(loss_values)
        events = monitor.observe(batch, loss_values)
        last = step == config.steps or monitor.halted or not order.live(monitor.quarantined)
        if last or (eval_every and step % eval_every == 0):
            events += monitor.evaluate(step, model, loss_fn)

        # record (and checkpoint every K steps)
        cp = None
        if config.checkpoint_every and step % config.checkpoint_every == 0:
            fname = checkpoint_name(step)
            sha = save_checkpoint(out / fname, model, optimizer, names_by_id)  # cost: disk write
            cp = {"file": fname, "sha256": sha, "stateRoot": root.hex()}
            checkpoints.append(Checkpoint(step, fname, sha, root.hex()))
        steps_log.append(
            StepRecord(
                step,
                tuple(batch),
                tuple(batch_profiles),
                tuple(loss_values),
                tuple(0.0 for _ in batch),
                _f(config.lr),
                changed,
                root,
                tuple(events),
                cp,
                rng,
            ).to_record()
        )
        if cp is not None:
            steps_log.sync()  # sync: the log is durable up to every checkpoint
        all_events += [(step, e) for e in events]
        if progress:
            progress(step, config.steps, last_loss)
        if monitor.halted:
            break
    steps_done = steps_log.count - 1
    steps_log.close()
    step_summary = steps_log.summary()

    # --- release: weights, private openings, signed statements ------------------------------
    weights_sha = save_weights(out / WEIGHTS_FILE, model.state_dict(), weights_metadata(run_id))
    final_root = state_root(current).hex()
    written = hash_safetensors(out / WEIGHTS_FILE)
    if state_root(written.leaves).hex() != final_root or written.sha256 != weights_sha:
        raise GovtuneError(
            f"{WEIGHTS_FILE}: expected state root {final_root[:16]}…, the written file differs"
        )
    write_private(
        out, run_secret, adm.openings, {i: c.text for c in adm.canaries for i in c.indices}
    )
    facts = RunFacts(
        run_id=run_id,
        policy=policy,
        policy_sha256=sha256_file(prov / POLICY_FILE),
        admissions=admissions,
        counts=adm.counts,
        dataset={"sha256": dataset_sha, "examples": len(examples)},
        steps_log=step_summary,
        steps=steps_done,
        config=config.to_dict(),
        config_digest=config.digest(),
        environment=environment(config, calibration),
        base_model={"name": base_name or "govtune:tinylm-init", "stateRoot": base_root.hex()},
        base_state_root=base_root.hex(),
        final_state_root=final_root,
        weights_sha256=weights_sha,
        checkpoints=tuple(checkpoints),
        events=tuple(all_events),
        quarantined=tuple(sorted(monitor.quarantined)),
        halted=monitor.halted,
        canaries=tuple(monitor.exposures),
        reference=monitor.reference_summary(),
        started_on=started,
        finished_on=_now(),
        builder=BUILDER,
        extra={"heldout": len(heldout), "trainingPool": len(pool)},
    )
    sign_bundle(out, facts, signer)
    return RunResult(
        out,
        steps_done,
        adm.counts,
        final_root,
        weights_sha,
        monitor.halted,
        facts.quarantined,
        len(all_events),
        tuple(monitor.exposures),
        last_loss,
    )


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
    """The Python API: any ``nn.Module`` and a per-example ``loss_fn(model, texts) -> [B]``."""
    import dataclasses

    cfg = dataclasses.replace(
        config, dataset=str(Path(dataset).resolve()), policy=str(Path(policy).resolve())
    )
    return run(model, loss_fn, cfg, out, signer, **kw)


def builtin_loss(seq_len: int) -> LossFn:
    from .model import encode, lm_loss

    def loss_fn(model: nn.Module, texts: Sequence[str]) -> torch.Tensor:
        return lm_loss(model, encode(texts, seq_len))

    return loss_fn
