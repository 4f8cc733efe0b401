#!/usr/bin/env python3
"""Rebuild dataset.jsonl: govtune's own docstrings, labelled by the package they document.

    python examples/minilm-classifier/build_dataset.py   # from the repository root

The texts are this repository's (Apache-2.0), so the shipped file redistributes nothing
of anyone else's. Each module docstring (data class ``module-doc``) and each public
function or class docstring (``api-doc``) of attest/, trainer/ and verifier/ becomes one
labelled example; the policy routes module docs to every layer and API docs to the last
two layers and the head. Deterministic: sorted files, source order, first 600 characters.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("attest", "trainer", "verifier")
MIN_CHARS, MAX_CHARS = 40, 600


def examples() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    seen: set[str] = set()
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            nodes = [(tree, "module-doc")] + [
                (n, "api-doc")
                for n in ast.walk(tree)
                if isinstance(n, ast.FunctionDef | ast.ClassDef) and not n.name.startswith("_")
            ]
            for node, data_class in nodes:
                doc = ast.get_docstring(node)
                if not doc or len(doc) < MIN_CHARS or doc in seen:
                    continue
                seen.add(doc)  # the policy refuses exact duplicates; keep the file clean
                rel = path.relative_to(ROOT).as_posix()
                out.append({
                    "text": doc[:MAX_CHARS], "label": pkg, "license": "Apache-2.0",
                    "source": f"govtune:{rel}", "data_class": data_class, "consent": False,
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
