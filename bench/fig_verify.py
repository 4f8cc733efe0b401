"""Whole-process figures: `govtune verify` against `model_signing verify key` on the same folder.

Both tools verify the same run folder: model_signing (OpenSSF model signing, the
`model_signing` command of the installed model-signing package) over a signature made
first with `model_signing sign key` on that folder; govtune with the producer's key.
Each pair of runs is interleaved; wall time and each child's own peak RSS come from
os.wait4.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from .runner import ChildRun, Figure, bin_path, env_for_children, interleave, run_child
from .synthetic import big_weight_run

SECTION_VERIFY = "verify vs OpenSSF model signing"
SECTION_CLI = "CLI start-up"


def oms_keys(folder: Path) -> tuple[Path, Path]:
    """An EC P-256 key pair for model_signing (PEM), written under ``folder``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = folder / "oms.key", folder / "oms.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


def oms_sign(model: Path, priv: Path, sig: Path) -> None:
    r = run_child(
        [bin_path("model_signing"), "sign", "key", str(model), "--private_key", str(priv),
         "--signature", str(sig)],
        env=env_for_children(),
    )  # fmt: skip
    if r.rc != 0:
        raise RuntimeError(f"model_signing sign failed (exit {r.rc}): {r.output[-500:]}")


def oms_verify_cmd(model: Path, pub: Path, sig: Path) -> list[str]:
    return [bin_path("model_signing"), "verify", "key", str(model), "--signature", str(sig),
            "--public_key", str(pub)]  # fmt: skip


def govtune_verify_cmd(run: Path, pub: Path) -> list[str]:
    return [bin_path("govtune"), "verify", str(run), "--key", str(pub)]


def _pair(section: str, name: str, base_cmd: Sequence[str], mine_cmd: Sequence[str], runs: int,
          command: str, *, target: str = "", target_value: float | None = None,
          baseline: str) -> Figure:  # fmt: skip
    env = env_for_children()
    last: dict[str, ChildRun] = {}

    def side(key: str, cmd: Sequence[str]) -> float:
        r = run_child(cmd, env=env)
        if r.rc != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {r.rc}: {r.output[-600:]}")
        last[key] = r
        rss[key].append(r.max_rss)
        cpu[key].append(r.cpu)
        return r.wall

    rss: dict[str, list[int]] = {"base": [], "mine": []}
    cpu: dict[str, list[float]] = {"base": [], "mine": []}
    base, mine = interleave(lambda: side("base", base_cmd), lambda: side("mine", mine_cmd), runs)
    return Figure(
        section,
        name,
        "s",
        mine,
        base,
        baseline=baseline,
        target=target,
        target_value=target_value,
        command=command,
        extra={
            "CPU s (median), govtune / baseline": (
                f"{statistics.median(cpu['mine']):.2f} / {statistics.median(cpu['base']):.2f}"
            ),
            "peak RSS (median), govtune / baseline": (
                f"{sorted(rss['mine'])[len(rss['mine']) // 2] / 2**20:.0f} MB / "
                f"{sorted(rss['base'])[len(rss['base']) // 2] / 2**20:.0f} MB"
            ),
        },
    )


def verify_figures(demo: Path, tmp: Path, weights_mib: Sequence[int], runs: int,
                   command: str) -> list[Figure]:  # fmt: skip
    """govtune verify vs model_signing verify key on runs whose weights are ``weights_mib``."""
    import shutil

    out = []
    priv, pub = oms_keys(tmp)
    for mib in weights_mib:
        folder = tmp / f"big{mib}"
        run = big_weight_run(demo, folder, mib)
        sig = tmp / f"big{mib}.sig"
        try:
            oms_sign(run, priv, sig)
            size = sum(f.stat().st_size for f in run.rglob("*") if f.is_file())
            label = f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib} MiB"
            out.append(
                _pair(
                    SECTION_VERIFY,
                    f"run folder with {label} of weights ({size / 2**20:,.0f} MiB in all)",
                    oms_verify_cmd(run, pub, sig),
                    govtune_verify_cmd(run, demo / "producer.pub"),
                    runs,
                    command,
                    target="<= 0.8",
                    target_value=0.8,
                    baseline="model_signing verify key, same folder",
                )
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            sig.unlink(missing_ok=True)
    return out


def cli_figures(demo: Path, tmp: Path, runs: int, command: str) -> list[Figure]:
    """Start-up: --help of both, and a verify of the demo's run by both."""
    priv, pub = oms_keys(tmp)
    sig = tmp / "demo.sig"
    run = demo / "run"
    oms_sign(run, priv, sig)
    try:
        return [
            _pair(
                SECTION_CLI,
                "`verify --help`",
                [bin_path("model_signing"), "verify", "key", "--help"],
                [bin_path("govtune"), "verify", "--help"],
                runs,
                command,
                baseline="model_signing verify key --help",
            ),
            _pair(
                SECTION_CLI,
                "verify the demo's run (structural + weights)",
                oms_verify_cmd(run, pub, sig),
                govtune_verify_cmd(run, demo / "producer.pub"),
                runs,
                command,
                baseline="model_signing verify key on the same folder",
            ),
        ]
    finally:
        sig.unlink(missing_ok=True)
