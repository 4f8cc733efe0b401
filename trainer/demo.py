"""The demo corpus: docstrings of the Python packages installed in the running environment.

Each docstring is labelled with its distribution's declared license as an SPDX
expression (PEP 639 ``License-Expression`` as written, else the legacy ``License``
field when it is one or a known spelling, else the trove classifiers); the policy's
license rule (spec/policy.md §3.2.1) judges it, expressions included. Docstrings are
read with `ast` (no package is imported, so nothing runs).
PII that real docstrings carry (authors' e-mail addresses, mostly) is left in: the
policy's PII rule is what keeps it out of training.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from attest.spdx import LicenseError, parse

MAX_FILE = 512 * 1024  # bytes: larger source files are skipped (generated code)
UNKNOWN = "LicenseRef-unknown"

# Trove classifier suffix -> SPDX id. "BSD License" does not say which BSD: it gets a
# LicenseRef of its own rather than a guessed clause count.
CLASSIFIERS = {
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "Apache Software License": "Apache-2.0",
    "BSD License": "LicenseRef-OSI-BSD",
    "ISC License (ISCL)": "ISC",
    "Python Software Foundation License": "PSF-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.1-only",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.1-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "The Unlicense (Unlicense)": "Unlicense",
    "Zope Public License": "ZPL-2.1",
    "Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
}
# Legacy free-text License fields seen in the wild -> SPDX id.
FREE_TEXT = {
    "mit": "MIT", "mit license": "MIT", "bsd": "LicenseRef-OSI-BSD",
    "3-clause bsd license": "BSD-3-Clause", "bsd-3-clause": "BSD-3-Clause",
    "new bsd": "BSD-3-Clause",
    "bsd-2-clause": "BSD-2-Clause", "apache 2.0": "Apache-2.0", "apache-2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0", "apache software license": "Apache-2.0",
    "mpl-2.0": "MPL-2.0", "mpl 2.0": "MPL-2.0", "isc": "ISC", "psf": "PSF-2.0",
    "lgpl": "LGPL-2.1-or-later", "gpl": "GPL-2.0-or-later", "gplv3": "GPL-3.0-only",
}  # fmt: skip


def spdx_license(meta: Any) -> str:
    """A distribution's license as an SPDX expression, or `UNKNOWN`.

    ``License-Expression`` is passed on unchanged: choosing within ``A OR B`` and
    ``A AND B`` is the policy evaluator's job, so the trainer and the verifier judge
    the very string recorded in the admission log.
    """
    expr = (meta.get("License-Expression") or "").strip()
    if expr:
        return expr
    free = (meta.get("License") or "").strip()
    if free and "\n" not in free and len(free) < 64:
        try:
            parse(free)  # a legacy field that already is an SPDX expression ("MIT")
            return free
        except LicenseError:
            pass
        if free.lower() in FREE_TEXT:
            return FREE_TEXT[free.lower()]
    for c in meta.get_all("Classifier") or []:
        if c.startswith("License :: "):
            suffix = c.rsplit(" :: ", 1)[-1]
            if suffix in CLASSIFIERS:
                return CLASSIFIERS[suffix]
    return UNKNOWN


def _docstrings(source: str) -> Iterator[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= 20:
                yield doc


def build_corpus(*, max_examples: int = 1500, per_dist: int = 40) -> list[dict[str, Any]]:
    """Dataset lines (dicts) from installed distributions, in a deterministic order."""
    dists: dict[str, md.Distribution] = {}
    for d in md.distributions():
        name = (cast(Any, d.metadata).get("Name") or "").lower()
        if name and name not in dists:
            dists[name] = d
    out: list[dict[str, Any]] = []
    for name in sorted(dists):
        d = dists[name]
        lic = spdx_license(d.metadata)
        taken = 0
        files = sorted(str(f) for f in (d.files or []) if str(f).endswith(".py"))
        for rel in files:
            if taken >= per_dist or len(out) >= max_examples:
                break
            path = Path(str(d.locate_file(rel)))
            try:
                if path.stat().st_size > MAX_FILE:
                    continue
                source = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            for doc in _docstrings(source):
                out.append(
                    {
                        "text": doc,
                        "license": lic,
                        "source": f"pypi:{name}/{rel}",
                        "data_class": "docstring",
                        "consent": False,
                    }
                )
                taken += 1
                if taken >= per_dist or len(out) >= max_examples:
                    break
        if len(out) >= max_examples:
            break
    return out
