"""The release's model card: ``README.md`` with Hugging Face front matter and a provenance
section (spec/release.md §2).

Rendering uses huggingface_hub's `ModelCard` (the `release` extra), so the front matter is
exactly what the hub parses. Reading needs only PyYAML: the verifier parses the front
matter and the provenance section's facts table and compares them with the facts it
derived (verifier/release_facts.py). Prose around the table is free text and not checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attest.errors import FormatError, UsageError

from .release_facts import ReleaseFacts

FACTS_HEADING = "## Provenance"
TAGS = ("govtune", "provenance", "in-toto", "safetensors")
# A Hugging Face repo id (the hub rejects base_model values that are not one).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_CARD_BYTES = 1024 * 1024

TEMPLATE = """\
---
{{ card_data }}
---

# {{ title }}

A model fine-tuned with [govtune](https://github.com/govtune/govtune): every training example
was admitted or refused by a written governance policy, its gradient reached only the
parameters its depth profile allows, and every step is recorded in signed, hash-chained
in-toto attestations in `provenance/`. The whole folder is signed with OpenSSF model signing
(`model.sig`) and described by a CycloneDX ML-BOM (`bom.cdx.json`).

{{ facts_heading }}

The policy in plain terms: training data under the license classes
**{{ admitted }}** was admitted, **{{ refused }}** was refused; personal data needs consent
({{ consent }}); PII handling: **{{ pii }}**. Memorization: {{ memorization }}.

| fact | value |
|---|---|
{{ table }}

The verifier checks these facts against the signed evidence; a card whose facts differ fails
verification (`GT-RELEASE-CARD`).

## Verify

With the publisher's public key (no PyTorch needed):

```sh
{{ commands }}
```

What verification proves and what it does not: the step records are the producer's signed
claims; the verifier proves their consistency, policy conformance and binding to these
weights. That a step really happened as recorded is proven only by replaying sampled
steps (`govtune verify --replay N`, with the auditor's data and openings).
"""


def _cell(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|")


def _uncell(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def front_matter(facts: ReleaseFacts) -> dict[str, Any]:
    """The card's metadata: license, base_model (+ relation) when it is a hub id, datasets, tags."""
    meta: dict[str, Any] = {
        "license": facts.facts["model license"],
        "datasets": [facts.facts["dataset id"]],
        "tags": list(TAGS),
    }
    if HUB_ID.match(facts.base_model):
        meta["base_model"] = facts.base_model
        meta["base_model_relation"] = facts.relation
    return meta


def verify_commands(folder_name: str) -> list[str]:
    return [
        f"govtune verify {folder_name} --key producer.pub",
        f"model_signing verify key {folder_name} --signature {folder_name}/model.sig "
        "--public_key producer.pub",
    ]


def render(facts: ReleaseFacts, title: str, commands: Sequence[str]) -> str:
    """The card text. Raises UsageError when huggingface_hub (the `release` extra) is absent."""
    try:
        from huggingface_hub import ModelCard, ModelCardData
    except ImportError as e:
        raise UsageError("govtune release needs huggingface_hub: install govtune[release]") from e
    meta = front_matter(facts)
    data = ModelCardData(
        license=meta["license"],
        datasets=meta["datasets"],
        tags=meta["tags"],
        base_model=meta.get("base_model"),
        **({"base_model_relation": meta["base_model_relation"]} if "base_model" in meta else {}),
    )
    f = facts.facts
    card = ModelCard.from_template(
        data,
        template_str=TEMPLATE,
        title=title,
        facts_heading=FACTS_HEADING,
        admitted=f["admitted license classes"],
        refused=f["refused license classes"],
        consent=f["consent required for"],
        pii=f["PII"],
        memorization=f["memorization"],
        table="\n".join(f"| {_cell(k)} | {_cell(v)} |" for k, v in f.items()),
        commands="\n".join(commands),
    )
    return str(card).rstrip("\n") + "\n"


@dataclass(frozen=True)
class ParsedCard:
    meta: Mapping[str, Any]
    facts: Mapping[str, str]


def parse(text: str, where: str = "README.md") -> ParsedCard:
    """Front matter (YAML) and the provenance facts table. Raises FormatError."""
    import yaml  # a dependency of the verifier: the card's front matter is YAML

    if not text.startswith("---\n"):
        raise FormatError(f"{where}: expected YAML front matter starting with '---'")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise FormatError(f"{where}: expected the front matter to end with '---'")
    try:
        meta = yaml.safe_load(text[4:end])
    except yaml.YAMLError as e:
        raise FormatError(f"{where}: front matter is not valid YAML ({type(e).__name__})") from e
    if not isinstance(meta, dict):
        raise FormatError(f"{where}: expected the front matter to be a mapping")
    body = text[end + 5 :]
    lines = body.split("\n")
    try:
        start = lines.index(FACTS_HEADING)
    except ValueError as e:
        raise FormatError(f"{where}: expected a '{FACTS_HEADING}' section") from e
    facts: dict[str, str] = {}
    row = re.compile(r"^\| ((?:[^|\\]|\\.)*) \| ((?:[^|\\]|\\.)*) \|$")
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        m = row.match(line)
        if m and m.group(1) not in ("fact", "---"):
            key = _uncell(m.group(1))
            if key in facts:
                raise FormatError(f"{where}: fact {key!r} appears twice")
            facts[key] = _uncell(m.group(2))
    return ParsedCard(meta, facts)


def compare(card: ParsedCard, facts: ReleaseFacts) -> list[str]:
    """Every difference between the card and the facts, as one-line messages (none: equal).

    The derived facts must be stated exactly; the declared ones (model license, dataset
    id) must agree between the table and the front matter.
    """
    out: list[str] = []
    for k, want in facts.derived().items():
        got = card.facts.get(k)
        if got != want:
            out.append(f"README.md fact {k!r}: expected {want!r:.160}, found {got!r:.160}")
    extra = sorted(set(card.facts) - set(facts.facts))
    if extra:
        out.append(f"README.md: unknown fact(s) {', '.join(extra)}")
    meta = card.meta
    lic, ds = card.facts.get("model license"), card.facts.get("dataset id")
    if meta.get("license") != lic:
        out.append(
            f"README.md front matter license: expected the facts table's {lic!r}, "
            f"found {meta.get('license')!r:.80}"
        )
    if meta.get("datasets") != [ds]:
        out.append(
            f"README.md front matter datasets: expected [{ds!r}], "
            f"found {meta.get('datasets')!r:.120}"
        )
    if HUB_ID.match(facts.base_model):
        if meta.get("base_model") != facts.base_model:
            out.append(
                f"README.md front matter base_model: expected {facts.base_model!r}, found "
                f"{meta.get('base_model')!r:.80}"
            )
        if meta.get("base_model_relation") != facts.relation:
            out.append(
                f"README.md front matter base_model_relation: expected {facts.relation!r}, "
                f"found {meta.get('base_model_relation')!r:.40}"
            )
    elif "base_model" in meta:
        out.append(
            f"README.md front matter base_model: expected none (the attested base "
            f"{facts.base_model!r} is not a hub id), found {meta['base_model']!r:.80}"
        )
    return out
