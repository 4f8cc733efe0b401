"""Synthetic inputs at model scale, built with the attest API: weight files, big-weight runs, logs.

Nothing here is a shortcut around the verifier: a big-weight run is a real signed run
(the demo's) whose weights gain frozen tensors, with the start record, every state
root and the signed statements rebuilt and re-signed by the producer's own key (the
test suite's forger, tests/support/evidence.py), so `govtune verify` passes on it
and does all of its work, including hashing every byte.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from attest.digest import sha256_file
from attest.tensors import hash_safetensors, state_root

from .runner import ROOT

MIB = 1 << 20


def write_weights(
    path: Path, total_mib: int, *, prefix: str = "layer", tensor_mib: int = 16
) -> None:
    """A safetensors file of ``total_mib`` MiB of F32 tensors: one embedding of an eighth of
    the total, the rest ``tensor_mib`` MiB layers. Real (random) bytes, written in 4 MiB
    blocks, so the file is not sparse and reads come from the page cache like a model's."""
    total = total_mib * MIB
    embed = max(MIB, (total // 8) // MIB * MIB)
    sizes = [embed]
    left = total - embed
    while left > 0:
        sizes.append(min(tensor_mib * MIB, left))
        left -= sizes[-1]
    header: dict[str, Any] = {}
    pos = 0
    for i, n in enumerate(sizes):
        name = f"{prefix}.embed" if i == 0 else f"{prefix}.{i - 1}.weight"
        header[name] = {"dtype": "F32", "shape": [n // 4], "data_offsets": [pos, pos + n]}
        pos += n
    _write(path, header, pos)


def _write(path: Path, header: dict[str, Any], nbytes: int) -> None:
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    block = os.urandom(4 * MIB)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        left = nbytes
        while left:
            n = min(len(block), left)
            f.write(block[:n])
            left -= n
    tmp.rename(path)


def write_shards(folder: Path, shards: int, shard_mib: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(shards):
        p = folder / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        write_weights(p, shard_mib, prefix=f"shard{i}")
        paths.append(p)
    return paths


def big_weight_run(demo: Path, out: Path, extra_mib: int) -> Path:
    """Copy ``demo``'s run into ``out`` with ``extra_mib`` MiB of frozen tensors added to its
    weights; re-derive and re-sign everything that binds them. Returns the run folder."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.evidence import Evidence  # the suite's forger: rebuilds and re-signs

    from attest.keys import load_signer

    run = out / "run"
    shutil.copytree(demo / "run", run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "checkpoints").mkdir()  # checkpoints are optional in a verified folder
    ev = Evidence.load(run, demo / "producer.pub")
    weights = run / "model.safetensors"
    old = hash_safetensors(weights)
    _append_tensors(weights, extra_mib)
    new = hash_safetensors(weights)
    added = {n: h for n, h in new.leaves.items() if n not in old.leaves}
    shapes = {t.name: (t.dtype, list(t.shape)) for t in new.tensors if t.name in added}

    start = ev.steps[0]
    leaves = dict(start["baseLeaves"])
    leaves.update(added)
    start["baseLeaves"] = [[n, leaves[n]] for n in sorted(leaves)]
    start["tensors"] = sorted(start["tensors"] + [[n, *shapes[n]] for n in added])
    start["baseStateRoot"] = state_root(leaves)
    # The model spec and the training-run predicate sign the base root too (GT-CHAIN-START,
    # GT-STATE-BASE): the grown base is a base of its own, bound at every place.
    start["model"]["base"]["stateRoot"] = start["baseStateRoot"].hex()
    roots = {}
    for rec in ev.steps[1:]:
        leaves.update(dict(rec["changed"]) if isinstance(rec["changed"], list) else rec["changed"])
        rec["stateRoot"] = state_root(leaves)
        roots[rec["step"]] = rec["stateRoot"].hex()
        if rec.get("checkpoint"):
            rec["checkpoint"]["stateRoot"] = rec["stateRoot"].hex()
    from attest.predicates import TRAINING_TYPE

    tr = ev.predicates[TRAINING_TYPE]
    if "stateRoot" in tr.get("baseModel", {}):
        tr["baseModel"]["stateRoot"] = start["baseStateRoot"].hex()
    tr["baseStateRoot"] = start["baseStateRoot"].hex()
    for c in ev.predicates[TRAINING_TYPE].get("checkpoints", []):
        c["stateRoot"] = roots[c["step"]]
    for w in ev.predicates[TRAINING_TYPE]["weights"]:
        w["sha256"] = sha256_file(run / w["name"])
    ev.write(run, load_signer(demo / "producer.key"), recompute_weights=False)
    return run


def _append_tensors(path: Path, extra_mib: int) -> None:
    """Rewrite ``path`` with frozen F32 tensors of ``extra_mib`` MiB after its own."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        body = f.read()
    pos = len(body)
    left = extra_mib * MIB
    i = 0
    while left > 0:
        size = min(16 * MIB, left)
        header[f"frozen.{i}.weight"] = {
            "dtype": "F32",
            "shape": [size // 4],
            "data_offsets": [pos, pos + size],
        }
        pos += size
        left -= size
        i += 1
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    block = os.urandom(4 * MIB)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        f.write(body)
        left = extra_mib * MIB
        while left:
            k = min(len(block), left)
            f.write(block[:k])
            left -= k
    tmp.rename(path)


def scale_run(demo: Path, out: Path, *, steps: int = 0, admissions: int = 0) -> Path:
    """Copy ``demo``'s run into ``out`` with its logs grown to ``steps`` steps and
    ``admissions`` admission records (a size not above the demo's keeps the demo's log),
    streamed to disk with attest.log.LogWriter (never held in memory), and every statement
    re-signed by the producer's own key, so `govtune verify` passes on it and does all of
    its work.

    Admission records repeat the demo's non-canary records under new indices and fresh
    commitments, the canaries after them (records.md §3); the held-out set and the
    evaluation split are then re-derived for the grown pool. A grown step log is a new
    run over the grown pool (`_write_steps`): its batches are the signed seed's data order
    and it ends at the demo's final state, so the released weights still match. Nothing
    grown: the demo's run as it is, without checkpoint files (the benchmark's reference).
    """
    sys.path.insert(0, str(ROOT / "tests"))
    from support.evidence import Evidence  # the suite's forger: rebuilds and re-signs

    from attest.keys import load_signer
    from attest.log import LogWriter
    from attest.predicates import ADMISSIONS_FILE, ADMISSIONS_TYPE, TRAINING_TYPE, file_subject

    run = out / "run"
    shutil.copytree(demo / "run", run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "checkpoints").mkdir()
    ev = Evidence.load(run, demo / "producer.pub")
    p = ev.predicates
    prov = run / "provenance"
    dataset = [r for r in ev.admissions if not r["metadata"].get("canary")]
    canaries = [r for r in ev.admissions if r["metadata"].get("canary")]
    n_dataset = max(len(dataset), admissions - len(canaries))
    if n_dataset > len(dataset):
        import hashlib

        counts = {"total": 0, "admitted": 0, "refused": 0, "canaries": 0}
        (prov / ADMISSIONS_FILE).unlink()
        with LogWriter(prov / ADMISSIONS_FILE) as w:
            for i in range(n_dataset + len(canaries)):
                if i < len(dataset):
                    rec = dataset[i]
                elif i < n_dataset:
                    rec = dict(dataset[i % len(dataset)], index=i)
                    rec["commitment"] = hashlib.sha256(rec["commitment"] + b"%d" % i).digest()
                else:
                    rec = dict(canaries[i - n_dataset], index=i)
                w.append(rec)
                counts["total"] += 1
                counts["admitted" if rec["decision"] == "admit" else "refused"] += 1
                counts["canaries"] += bool(rec["metadata"].get("canary"))
            adm = w.summary()
        p[ADMISSIONS_TYPE]["log"] = adm.to_dict()
        p[ADMISSIONS_TYPE]["counts"] = counts
        for ptype in (ADMISSIONS_TYPE, TRAINING_TYPE):
            p[ptype]["dataset"] = {**p[ptype]["dataset"], "examples": n_dataset}
        p[TRAINING_TYPE]["admissionHead"] = adm.head
        ev.subjects[ADMISSIONS_TYPE] = [file_subject(ADMISSIONS_FILE, adm.sha256)]
        _rederive_split(run, ev, dataset, n_dataset)

    def profile_of(i: int) -> str | None:
        """Record ``i`` of the grown admission log's profile (None: refused), not read back."""
        rec = dataset[i % len(dataset)] if i < n_dataset else canaries[i - n_dataset]
        return rec["profile"] if rec["decision"] == "admit" else None

    if steps > len(ev.steps) - 1 or n_dataset > len(dataset):
        _write_steps(prov, ev, max(steps, len(ev.steps) - 1), n_dataset, len(canaries), profile_of)
    ev.sign_bundle(run, load_signer(demo / "producer.key"))
    return run


def _rederive_split(run: Path, ev: Any, dataset: list[dict[str, Any]], n_dataset: int) -> None:
    """The grown pool derives another held-out set and evaluation split from the same seed
    (records.md §4; the verifier re-derives both): record them, and the counts beside them."""
    from attest.canary import eval_indices, heldout_indices
    from attest.policy import Policy
    from attest.predicates import TRAINING_TYPE

    tr = ev.predicates[TRAINING_TYPE]
    policy = Policy.from_toml((run / "provenance" / "policy.toml").read_bytes())
    n_demo = len(dataset)

    def pool() -> Any:  # streamed: the admitted non-canary indices of the grown log
        return (i for i in range(n_dataset) if dataset[i % n_demo]["decision"] == "admit")

    seed = int(tr["config"]["seed"])
    want_evals = int(tr["config"].get("eval_examples", 0))
    held = heldout_indices(seed, pool(), policy.memorization.holdout)
    hs = set(held)
    evals = eval_indices(seed, (i for i in pool() if i not in hs), want_evals)
    admitted = sum(1 for _ in pool()) + sum(
        1 for r in ev.admissions if r["metadata"].get("canary") and r["decision"] == "admit"
    )
    tr["extra"] = {**tr["extra"], "heldout": len(held),
                   "trainingPool": admitted - len(held) - len(evals)}  # fmt: skip
    extra = dict(ev.steps[0]["extra"])
    if want_evals or "evalSplit" in extra:
        extra["evalSplit"] = list(evals)
    ev.steps[0] = {**ev.steps[0], "heldout": list(held), "extra": extra}


EXTEND_MAX = 1000  # steps a grown run may add so that every trained tensor reaches its final leaf


class _Schedule:
    """What a grown run's steps are, derived as the verifier derives them: the batches of
    attest.order.DataOrder over the pool (records.md §5.2), and at each evaluation point
    (multiples of ``eval_every`` and the last step) the events verifier/mem_signals.py
    re-derives from them: one ``canary-exposure`` event per canary (the demo's last
    exposure of that canary) and, over ``exposure_max``, one flag per record of the canary
    the first time, with the policy's action; its quarantines leave the order from the
    next step on. No reference-quantile flag is due: every loss is at least the reported
    quantile (`_write_steps`). Deterministic, so the planning pass and the writing pass
    see the same steps."""

    def __init__(self, policy: Any, pool: Any, config: dict[str, Any],
                 groups: Any, exposures: list[float]) -> None:  # fmt: skip
        self.mem = policy.memorization
        self.candidates = policy.canaries.candidates
        self.pool, self.groups, self.exposures = pool, groups, exposures
        self.seed, self.batch_size = int(config["seed"]), int(config["batch_size"])

    def run(self, steps: int, last: int | None) -> Iterator[tuple[int, list[int], list[Any]]]:
        """(step, batch, events) for steps 1..``steps``; ``last``: the run's last step (an
        evaluation point), None while it is not known yet."""
        from attest.order import DataOrder

        order = DataOrder(self.pool, self.seed, self.batch_size)
        every = self.mem.eval_every
        quarantined: set[int] = set()
        flagged: set[int] = set()
        for t in range(1, steps + 1):
            batch = order.next_batch(quarantined)  # before this step's quarantines count
            if not batch:
                raise RuntimeError(f"step {t}: every example of the pool is quarantined")
            at_eval = (every and t % every == 0) or t == last
            events = self._evaluate(t, flagged, quarantined) if at_eval else []
            yield t, batch, events
            quarantined.update(e.example for e in events if e.kind == "quarantine")

    def _evaluate(self, t: int, flagged: set[int], quarantined: set[int]) -> list[Any]:
        from attest.records import Event

        thr = float(self.mem.exposure_max) if self.mem.exposure_max > 0 else None
        events = []
        for g, value in zip(self.groups, self.exposures, strict=True):
            events.append(Event("canary-exposure", g[0], "canary-exposure", value, thr,
                                f"rank estimated from {self.candidates} candidates"))  # fmt: skip
            if thr is None or value <= thr:
                continue
            for x in g:
                if x in flagged or x in quarantined:
                    continue
                flagged.add(x)
                events.append(Event("memorization-flag", x, "canary-exposure", value, thr,
                                    "canary exposure over the policy maximum"))  # fmt: skip
                if self.mem.action == "quarantine":
                    events.append(Event("quarantine", x, "canary-exposure", value, thr,
                                        "never used again"))  # fmt: skip
                elif self.mem.action == "halt":
                    raise RuntimeError(f"step {t}: the policy would halt the run at a canary flag")
        return events


def _write_steps(prov: Path, ev: Any, steps: int, n_dataset: int, n_canaries: int,
                 profile_of: Callable[[int], str | None]) -> None:  # fmt: skip
    """Write a new step log of ``steps`` steps (or a few more, see below) over the grown
    admission log and point the statements at it.

    - batches and evaluation events: `_Schedule`; profiles: each member's admitted one;
    - ``changed``: every tensor the demo trained that some batch member's profile allows
      (GT-ROUTE-VIOLATION), as a fresh stand-in leaf, except at the last step that allows
      it, where it takes its leaf of the demo's final state; so a first pass over the
      (deterministic) schedule plans, a second writes, and the chain ends at the demo's
      final state root (the released weights are the demo's). A tensor no batch of the
      run allows extends the run, up to EXTEND_MAX steps, until one does;
    - ``loss``: one constant for every visit (the demo's mean loss, raised to the reported
      reference quantile), so no loss-drop or reference-quantile flag is due; ``gradNorm``
      the demo's median (or nil as the demo's); ``lr`` the signed schedule's; no ``rng``
      digest and no checkpoint (the config says checkpoint_every = 0 and no file backs an
      intermediate state).
    """
    import statistics

    from attest.canary import canary_indices
    from attest.log import LogWriter
    from attest.policy import Policy
    from attest.predicates import MEMORIZATION_TYPE, STEPS_FILE, TRAINING_TYPE
    from attest.records import StepRecord
    from attest.schedule import lr_at

    tr, mem = ev.predicates[TRAINING_TYPE], ev.predicates[MEMORIZATION_TYPE]
    policy = Policy.from_toml((prov / "policy.toml").read_bytes())
    start, demo_steps = ev.steps[0], ev.steps[1:]
    base = dict(start["baseLeaves"])
    final = dict(base)
    for rec in demo_steps:
        final.update(dict(rec["changed"]))
    if state_root(final).hex() != tr["finalStateRoot"]:
        raise RuntimeError("the demo's step log does not end at its signed final state root")
    moving = [n for n in sorted(final) if final[n] != base[n]]
    allowed = {prof: frozenset(names) for prof, names in start["profiles"].items()}
    kept_out = set(start["heldout"]) | set(start["extra"].get("evalSplit", []))
    pool = array("q", (i for i in range(n_dataset + n_canaries)
                       if i not in kept_out and profile_of(i) is not None))  # fmt: skip
    n_demo = len(ev.admissions) - n_canaries
    demo_exposure = {c["index"]: float(c["exposure"]) for c in mem["canaries"]}  # last wins
    try:
        exposures = [demo_exposure[g[0]] for g in canary_indices(policy.canaries, n_demo)]
    except KeyError as e:
        raise RuntimeError(f"the demo recorded no exposure of canary {e}") from e
    sched = _Schedule(policy, pool, tr["config"], canary_indices(policy.canaries, n_dataset),
                      exposures)  # fmt: skip

    may_cache: dict[frozenset[str | None], frozenset[str]] = {}

    def may(batch: list[int]) -> frozenset[str]:
        """The tensors some member of ``batch`` may change (the verifier's rule)."""
        key = frozenset(profile_of(x) for x in batch)
        if key not in may_cache:
            may_cache[key] = frozenset().union(*(allowed.get(p or "", ()) for p in key))
        return may_cache[key]

    def plan(n: int) -> dict[str, int]:
        """Pass 1: the last step of an ``n``-step run at which each moving tensor may change."""
        last_of: dict[frozenset[str], int] = {}
        for t, batch, _events in sched.run(n, n):
            last_of[may(batch)] = t
        last: dict[str, int] = {}
        for names, t in last_of.items():
            for name in names:
                last[name] = max(last.get(name, 0), t)
        return last

    last = plan(steps)
    missing = set(moving) - set(last)
    if missing:
        for t, batch, _events in sched.run(steps + EXTEND_MAX, None):
            missing -= may(batch) if t > steps else set()
            if not missing:
                steps = t
                break
        last = plan(steps)
        never = sorted(set(moving) - set(last))
        if never:
            raise RuntimeError(f"no batch of {steps} steps may change {never[:3]}")

    _set_config(ev, steps=steps, checkpoint_every=0)
    start = ev.steps[0]
    c = tr["config"]
    schedule = str(c.get("schedule", "constant"))
    losses = [float(x) for r in demo_steps for x in r["loss"]]
    rq = policy.memorization.reference_quantile
    q = mem.get("reference", {}).get("quantiles", {}).get(f"{rq:g}") if rq > 0 else None
    loss = max(statistics.fmean(losses), float(q or 0.0))
    norms = [float(x) for r in demo_steps for x in (r["gradNorm"] or ())]
    norm = statistics.median(norms) if norms else None
    leaves = dict(base)
    events: list[dict[str, Any]] = []
    (prov / STEPS_FILE).unlink()
    with LogWriter(prov / STEPS_FILE) as w:
        w.append(start)
        for t, batch, evs in sched.run(steps, steps):
            allowed_now = may(batch)
            changed = {n: final[n] if last[n] == t else _stand_in_leaf(n, t)
                       for n in moving if n in allowed_now}  # fmt: skip
            leaves.update(changed)
            lr = lr_at(t, lr=float(c["lr"]), steps=steps, schedule=schedule,
                       warmup=int(c.get("warmup_steps", 0)))  # fmt: skip
            rec = StepRecord(
                step=t,
                batch=tuple(batch),
                profiles=tuple(str(profile_of(x)) for x in batch),
                loss=(loss,) * len(batch),
                grad_norm=None if norm is None else (norm,) * len(batch),
                lr=lr,
                changed=changed,
                state_root=state_root(leaves),
                events=tuple(evs),
            )
            w.append(rec.to_record())
            events += [{**e.to_record(), "step": t} for e in evs]
        stp = w.summary()
    if state_root(leaves).hex() != tr["finalStateRoot"]:
        raise RuntimeError("the grown chain does not end at the demo's final state root")
    tr["stepLog"] = stp.to_dict()
    tr["steps"] = steps
    tr["checkpoints"] = []
    mem["stepLogHead"] = stp.head
    mem["events"] = events
    mem["quarantined"] = sorted({e["example"] for e in events if e["kind"] == "quarantine"})
    mem["halted"] = False
    mem["canaries"] = [{"index": e["example"], "exposure": e["value"], "step": e["step"]}
                       for e in events if e["kind"] == "canary-exposure"]  # fmt: skip


def _stand_in_leaf(name: str, step: int) -> bytes:
    """The leaf of ``name`` after ``step`` where the grown run has no state of its own (no
    weights file ever holds an intermediate state of it): distinct per tensor and step, as
    a trained tensor's leaf is, and never a final leaf."""
    import hashlib

    return hashlib.sha256(
        b"govtune.bench.stand-in-leaf\0" + name.encode() + b"\0" + step.to_bytes(8, "big")
    ).digest()


def _set_config(ev: Any, **changes: Any) -> None:
    """Change the signed config: its digest in the training statement and the start record."""
    import hashlib

    from attest.canonical import canonical_json
    from attest.predicates import TRAINING_TYPE

    tr = ev.predicates[TRAINING_TYPE]
    tr["config"] = {**tr["config"], **changes}
    tr["configDigest"] = hashlib.sha256(canonical_json(tr["config"])).hexdigest()
    ev.steps[0] = {**ev.steps[0], "configDigest": tr["configDigest"]}
