"""The release's CycloneDX 1.6 ML-BOM, ``bom.cdx.json`` (spec/release.md §3).

Built with cyclonedx-python-lib (the `release` extra). Its 11.x has no `modelCard` and no
`data` field on components, so both are added to the serialised JSON (CycloneDX 1.6
§"modelCard", §"componentData"); the result validates against the 1.6 JSON schema the
library bundles (tests/release/test_mlbom.py). The verifier reads the BOM as plain JSON
and compares it with the facts it derived (verifier/release_facts.py).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any

from attest.errors import FormatError, UsageError

from .release_facts import ReleaseFacts

PROPERTY_PREFIX = "govtune:"
MODEL_REF = "model"
BASE_REF = "base-model"
DATA_REF = "dataset"


def _prop(label: str) -> str:
    return PROPERTY_PREFIX + label.replace(" ", "-")


def build(
    facts: ReleaseFacts, name: str, bundle: tuple[str, str], policy_digest: str
) -> dict[str, Any]:
    """The BOM as a JSON object. ``bundle`` is (path in the release, sha256).

    Raises UsageError when cyclonedx-python-lib (the `release` extra) is absent.
    """
    try:
        from cyclonedx.model import (
            ExternalReference,
            ExternalReferenceType,
            HashAlgorithm,
            HashType,
            Property,
            XsUri,
        )
        from cyclonedx.model.bom import Bom
        from cyclonedx.model.component import Component, ComponentType, Pedigree
        from cyclonedx.model.license import DisjunctiveLicense
        from cyclonedx.output.json import JsonV1Dot6
    except ImportError as e:
        raise UsageError(
            "govtune release needs cyclonedx-python-lib: install govtune[release]"
        ) from e

    f = facts.facts

    def sha(d: str) -> list[HashType]:
        return [HashType(alg=HashAlgorithm.SHA_256, content=d)]

    base = Component(
        name=facts.base_model, type=ComponentType.MACHINE_LEARNING_MODEL, bom_ref=BASE_REF
    )
    data = Component(
        name=f["dataset id"],
        type=ComponentType.DATA,
        bom_ref=DATA_REF,
        hashes=sha(facts.dataset_sha256),
        properties=[
            Property(name=_prop(k), value=f[k])
            for k in (
                "admitted license classes",
                "refused license classes",
                "consent required for",
                "PII",
                "examples",
            )
        ],
    )
    files = [
        Component(name=n, type=ComponentType.FILE, bom_ref=f"file:{n}", hashes=sha(d))
        for n, d in sorted(facts.weights.items())
    ]
    model = Component(
        name=name,
        version=f["run id"],
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=MODEL_REF,
        licenses=[DisjunctiveLicense(name=f["model license"])],
        pedigree=Pedigree(ancestors=[base]),
        components=files,
        external_references=[
            ExternalReference(
                type=ExternalReferenceType.ATTESTATION,
                url=XsUri(bundle[0]),
                hashes=sha(bundle[1]),
                comment="govtune provenance bundle (in-toto DSSE envelopes, JSON Lines)",
            ),
            ExternalReference(type=ExternalReferenceType.MODEL_CARD, url=XsUri("README.md")),
        ],
        properties=[Property(name=_prop(k), value=v) for k, v in f.items()],
    )
    bom = Bom(components=[data])
    bom.metadata.component = model
    bom.register_dependency(model, [data])
    with warnings.catch_warnings():  # the library warns about its own graph heuristics
        warnings.simplefilter("ignore")
        doc: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    comp = doc["metadata"]["component"]
    comp["modelCard"] = {
        "bom-ref": "model-card",
        "modelParameters": {
            "approach": {"type": "supervised"},
            "task": "text-generation",
            "datasets": [{"ref": DATA_REF}],
            "inputs": [{"format": "text"}],
            "outputs": [{"format": "text"}],
        },
        "considerations": {
            "technicalLimitations": [
                "The training steps are the producer's signed claims; only replayed steps "
                "(govtune verify --replay) are re-executed."
            ],
        },
        "properties": [
            {"name": _prop("policy-digest"), "value": policy_digest},
            {"name": _prop("memorization"), "value": f["memorization"]},
            {"name": _prop("profiles"), "value": f["profiles"]},
        ],
    }
    for c in doc.get("components", []):
        if c.get("bom-ref") == DATA_REF:
            c["data"] = [
                {
                    "type": "dataset",
                    "name": f["dataset id"],
                    "classification": f"license classes admitted: {f['admitted license classes']}",
                    "sensitiveData": [
                        f"PII {f['PII']}",
                        f"consent required for {f['consent required for']}",
                    ],
                    "description": f"{f['examples']}; refused license classes: "
                    f"{f['refused license classes']}",
                }
            ]
    return doc


def encode(doc: Mapping[str, Any]) -> bytes:
    """The BOM file's bytes (sorted keys, 2-space indent)."""
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def rebind_bundle(doc: dict[str, Any], sha256: str) -> None:
    """Point the attestation reference at a changed bundle (after co-signing), in place."""
    comp = (doc.get("metadata") or {}).get("component") or {}
    for r in comp.get("externalReferences", []) or []:
        if isinstance(r, dict) and r.get("type") == "attestation":
            r["hashes"] = [{"alg": "SHA-256", "content": sha256}]


def _props(obj: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in obj.get("properties", []) or []:
        if isinstance(p, dict) and isinstance(p.get("name"), str):
            out[p["name"]] = str(p.get("value"))
    return out


def _sha(obj: Mapping[str, Any]) -> set[str]:
    return {
        str(h.get("content"))
        for h in obj.get("hashes", []) or []
        if isinstance(h, dict) and h.get("alg") == "SHA-256"
    }


def compare(
    doc: object, facts: ReleaseFacts, bundle: tuple[str, str], declared: Mapping[str, str] | None
) -> list[str]:
    """Every difference between the BOM and the verified facts (one line each; none: equal).

    ``declared`` is what the model card declares (license, dataset id): the BOM must say
    the same. Raises FormatError when the document is not a CycloneDX 1.6 BOM at all.
    """
    if (
        not isinstance(doc, dict)
        or doc.get("bomFormat") != "CycloneDX"
        or doc.get("specVersion") != "1.6"
    ):
        raise FormatError("bom.cdx.json: expected a CycloneDX 1.6 JSON BOM")
    comp = (doc.get("metadata") or {}).get("component")
    if not isinstance(comp, dict) or comp.get("type") != "machine-learning-model":
        raise FormatError(
            "bom.cdx.json: expected metadata.component of type machine-learning-model"
        )
    out: list[str] = []
    props = _props(comp)
    for k, want in facts.derived().items():
        got = props.get(_prop(k))
        if got != want:
            out.append(
                f"bom.cdx.json property {_prop(k)}: expected {want!r:.160}, found {got!r:.160}"
            )
    for k in ("model license", "dataset id"):
        got = props.get(_prop(k))
        if declared is not None and got != declared.get(k):
            out.append(
                f"bom.cdx.json property {_prop(k)}: expected the model card's {declared.get(k)!r}, "
                f"found {got!r:.80}"
            )
    if comp.get("version") != facts.facts["run id"]:
        out.append(
            f"bom.cdx.json model version: expected the run id, found {comp.get('version')!r:.40}"
        )
    lic = [
        x.get("license", {}).get("name")
        for x in comp.get("licenses", []) or []
        if isinstance(x, dict)
    ]
    if lic != [props.get(_prop("model license"))]:
        out.append(
            f"bom.cdx.json model licenses: expected [{props.get(_prop('model license'))!r}], "
            f"found {lic!r:.80}"
        )
    files = {
        c.get("name"): _sha(c) for c in comp.get("components", []) or [] if isinstance(c, dict)
    }
    want_files = {n: {d} for n, d in facts.weights.items()}
    if files != want_files:
        out.append(
            f"bom.cdx.json model files: expected {sorted(facts.weights.items())}, found "
            f"{sorted((str(n), sorted(str(x) for x in d)) for n, d in files.items())!r:.300}"
        )
    ancestors = [a.get("name") for a in (comp.get("pedigree") or {}).get("ancestors", []) or []]
    if ancestors != [facts.base_model]:
        out.append(
            f"bom.cdx.json pedigree ancestors: expected [{facts.base_model!r}], "
            f"found {ancestors!r:.120}"
        )
    refs = [
        r
        for r in comp.get("externalReferences", []) or []
        if isinstance(r, dict) and r.get("type") == "attestation"
    ]
    if [(r.get("url"), _sha(r)) for r in refs] != [(bundle[0], {bundle[1]})]:
        out.append(
            f"bom.cdx.json attestation reference: expected {bundle[0]} sha256 {bundle[1][:16]}…, "
            f"found {[(r.get('url'), sorted(_sha(r))) for r in refs]!r:.200}"
        )
    if not isinstance(comp.get("modelCard"), dict):
        out.append("bom.cdx.json: expected the model component to carry a modelCard")
    data = [
        c
        for c in doc.get("components", []) or []
        if isinstance(c, dict) and c.get("type") == "data"
    ]
    if len(data) != 1 or _sha(data[0]) != {facts.dataset_sha256}:
        out.append(
            f"bom.cdx.json data components: expected one with sha256 {facts.dataset_sha256[:16]}…, "
            f"found {[sorted(_sha(c)) for c in data]!r:.200}"
        )
    else:
        dprops = _props(data[0])
        for k in (
            "admitted license classes",
            "refused license classes",
            "consent required for",
            "PII",
            "examples",
        ):
            if dprops.get(_prop(k)) != facts.facts[k]:
                out.append(
                    f"bom.cdx.json dataset property {_prop(k)}: expected {facts.facts[k]!r:.120}, "
                    f"found {dprops.get(_prop(k))!r:.120}"
                )
    return out
