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
    roots = {}
    for rec in ev.steps[1:]:
        leaves.update(dict(rec["changed"]) if isinstance(rec["changed"], list) else rec["changed"])
        rec["stateRoot"] = state_root(leaves)
        roots[rec["step"]] = rec["stateRoot"].hex()
        if rec.get("checkpoint"):
            rec["checkpoint"]["stateRoot"] = rec["stateRoot"].hex()
    from attest.predicates import TRAINING_TYPE

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
    ``admissions`` admission records (0: keep the demo's), streamed to disk with
    attest.log.LogWriter (never held in memory), and the statements re-signed.

    Steps repeat the demo's own recorded steps, renumbered, with every state root
    recomputed; ``steps`` is rounded up to whole cycles, so the chain ends at the demo's
    final state and the released weights still match. Admission records repeat the
    demo's non-canary records under new indices and fresh commitments.
    """
    sys.path.insert(0, str(ROOT / "tests"))
    from support.evidence import Evidence

    from attest.keys import load_signer
    from attest.log import LogWriter
    from attest.predicates import (
        ADMISSIONS_FILE,
        ADMISSIONS_TYPE,
        MEMORIZATION_TYPE,
        STEPS_FILE,
        TRAINING_TYPE,
        file_subject,
    )

    run = out / "run"
    shutil.copytree(demo / "run", run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "checkpoints").mkdir()
    ev = Evidence.load(run, demo / "producer.pub")
    p = ev.predicates
    prov = run / "provenance"
    offset = 0  # how far the canaries move: they follow every dataset example
    if admissions > len(ev.admissions):
        import hashlib

        dataset = [r for r in ev.admissions if not r["metadata"].get("canary")]
        canaries = [r for r in ev.admissions if r["metadata"].get("canary")]
        n_dataset = admissions - len(canaries)
        offset = n_dataset - len(dataset)
        counts = {"total": 0, "admitted": 0, "refused": 0, "canaries": 0}
        (prov / ADMISSIONS_FILE).unlink()
        with LogWriter(prov / ADMISSIONS_FILE) as w:
            for i in range(admissions):
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
    first_canary = min(
        (r["index"] for r in ev.admissions if r["metadata"].get("canary")), default=1 << 62
    )

    def moved(i: int | None) -> int | None:
        return i + offset if i is not None and i >= first_canary else i

    if offset:
        _rederive_split(run, ev, dataset, n_dataset, moved)
    if steps > len(ev.steps) - 1 or offset:
        passes = _passes(ev.steps[1:], steps, policy_eval_every(prov))
        if len(passes) > 1:
            # The grown run keeps no checkpoint files (a copy per 100 steps would be most
            # of the disk), so its config says so; the verifier checks one against the other.
            _set_config(ev, checkpoint_every=0)
        leaves = dict(ev.steps[0]["baseLeaves"])
        (prov / STEPS_FILE).unlink()
        events: list[dict[str, Any]] = []
        with LogWriter(prov / STEPS_FILE) as w:
            w.append(ev.steps[0])
            t = 0
            for recs, later in passes:
                for rec in recs:
                    t += 1
                    rec = dict(
                        rec, step=t, checkpoint=None if len(passes) > 1 else rec["checkpoint"]
                    )
                    rec["batch"] = [moved(b) for b in rec["batch"]]
                    rec["events"] = [dict(e, example=moved(e["example"])) for e in rec["events"]
                                     if not later or e["kind"] == "canary-exposure"]  # fmt: skip
                    if later:
                        rec["loss"] = [later] * len(rec["loss"])
                    changed = rec["changed"]
                    leaves.update(dict(changed) if isinstance(changed, list) else changed)
                    rec["stateRoot"] = state_root(leaves)
                    events += [{**e, "step": t} for e in rec["events"]]
                    w.append(rec)
            stp = w.summary()
        tr = p[TRAINING_TYPE]
        tr["stepLog"] = stp.to_dict()
        tr["steps"] = t
        if len(passes) > 1:
            tr["checkpoints"] = []
        mem = p[MEMORIZATION_TYPE]
        mem["stepLogHead"] = stp.head
        mem["events"] = events
        mem["quarantined"] = sorted(
            {e["example"] for e in events if e["kind"] == "quarantine" and e["example"] is not None}
        )
        mem["canaries"] = [{"index": e["example"], "exposure": e["value"], "step": e["step"]}
                           for e in events if e["kind"] == "canary-exposure"]  # fmt: skip
    ev.sign_bundle(run, load_signer(demo / "producer.key"))
    return run


def _rederive_split(
    run: Path, ev: Any, dataset: list[dict[str, Any]], n_dataset: int, moved: Any
) -> None:
    """The grown pool derives another held-out set and evaluation split (records.md §4;
    the verifier re-derives both): record the derived ones, with the first seed from the
    config's on whose sets no trained example falls (the demo's batches are replayed as
    they are), and the config digest that seed gives."""

    from attest.canary import eval_indices, heldout_indices
    from attest.policy import Policy
    from attest.predicates import TRAINING_TYPE

    tr = ev.predicates[TRAINING_TYPE]
    policy = Policy.from_toml((run / "provenance" / "policy.toml").read_bytes())
    start = ev.steps[0]
    trained = {moved(b) for rec in ev.steps[1:] for b in rec["batch"]}
    n_demo = len(dataset)

    def pool() -> Any:  # streamed: the admitted non-canary indices of the grown log
        return (i for i in range(n_dataset) if dataset[i % n_demo]["decision"] == "admit")

    want_evals = int(tr["config"].get("eval_examples", 0))
    seed = int(tr["config"]["seed"])
    for _ in range(1000):
        held = heldout_indices(seed, pool(), policy.memorization.holdout)
        hs = set(held)
        evals = eval_indices(seed, (i for i in pool() if i not in hs), want_evals)
        if not (trained & (hs | set(evals))):
            break
        seed += 1
    else:
        raise RuntimeError("no seed keeps the demo's trained examples out of the held-out set")
    _set_config(ev, seed=seed)
    admitted = sum(1 for _ in pool()) + sum(
        1 for r in ev.admissions if r["metadata"].get("canary") and r["decision"] == "admit"
    )
    tr["extra"] = {**tr["extra"], "heldout": len(held),
                   "trainingPool": admitted - len(held) - len(evals)}  # fmt: skip
    extra = {**start["extra"], "dataOrderSeed": seed}
    if want_evals or "evalSplit" in extra:
        extra["evalSplit"] = list(evals)
    ev.steps[0] = {**ev.steps[0], "heldout": list(held), "extra": extra}


def policy_eval_every(prov: Path) -> int:
    from attest.policy import Policy

    return int(Policy.from_toml((prov / "policy.toml").read_bytes()).memorization.eval_every)


def _passes(demo_steps: list[dict[str, Any]], steps: int, eval_every: int) -> list[Any]:
    """The demo's steps replayed in passes so the grown log stays what the verifier
    re-derives (V5 re-derives every memorization flag from the recorded losses):

    - every pass but the last replays the first P steps, P the largest multiple of
      ``eval_every`` the demo has, so its evaluation steps land on the grown log's
      (multiples of ``eval_every``); the last pass is the whole demo, so the chain ends
      at the demo's final state and the released weights still match;
    - the first pass is the demo's own (losses and events as recorded); later passes
      record one loss above every recorded one for each example (so no loss-drop and
      no reference-quantile flag is due) and keep only the canary-exposure events
      (their canaries were flagged in the first pass already).

    Returns [(steps of the pass, None for the first pass or the loss of a later one)].
    """
    n = len(demo_steps)
    p = n - n % eval_every if 0 < eval_every <= n else n
    extra = max(0, steps - n)
    count = 1 + -(-extra // p)
    if count == 1:
        return [(demo_steps, None)]
    high = float(max(x for r in demo_steps for x in r["loss"])) + 1.0
    return [(demo_steps[:p], None)] + [(demo_steps[:p], high)] * (count - 2) + [(demo_steps, high)]


def _set_config(ev: Any, **changes: Any) -> None:
    """Change the signed config: its digest in the training statement and the start record."""
    import hashlib

    from attest.canonical import canonical_json
    from attest.predicates import TRAINING_TYPE

    tr = ev.predicates[TRAINING_TYPE]
    tr["config"] = {**tr["config"], **changes}
    tr["configDigest"] = hashlib.sha256(canonical_json(tr["config"])).hexdigest()
    ev.steps[0] = {**ev.steps[0], "configDigest": tr["configDigest"]}
