#!/usr/bin/env python3
"""Rebuild dataset.jsonl: questions about govtune answered by its own docstrings (prompt-response).

    python examples/smollm2-lora/build_dataset.py   # from the repository root

Each module of attest/, trainer/ and verifier/ (data class ``module-doc``) and each public
function or class (``api-doc``) with a docstring gives one example: the prompt asks what
it does in SmolLM2's chat format, the response is the docstring's first paragraph. The
texts are this repository's (Apache-2.0). The loss covers the response tokens only.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("attest", "trainer", "verifier")
CHAT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


def examples() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    seen: set[str] = set()
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"))
            items = [(tree, f"What is {rel} for?", "module-doc")] + [
                (n, f"What does {n.name} in {rel} do?", "api-doc")
                for n in ast.walk(tree)
                if isinstance(n, ast.FunctionDef | ast.ClassDef) and not n.name.startswith("_")
            ]
            for node, question, data_class in items:
                doc = ast.get_docstring(node)
                answer = (doc or "").split("\n\n")[0].strip()
                if len(answer) < 40 or answer in seen:
                    continue
                seen.add(answer)
                out.append({
                    "prompt": CHAT.format(q=question), "response": answer[:400] + "<|im_end|>",
                    "license": "Apache-2.0", "source": f"govtune:{rel}",
                    "data_class": data_class, "consent": False,
                })  # fmt: skip
    return out


def main() -> int:
    rows = examples()
    dest = Path(__file__).resolve().parent / "dataset.jsonl"
    dest.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    print(f"{dest}: {len(rows)} examples", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
