"""The ML-BOM validates offline against CycloneDX 1.6 (the schema cyclonedx-python-lib bundles)."""

from __future__ import annotations

import json
from pathlib import Path

from support import need


def test_bom_validates_against_cyclonedx_1_6(built: Path) -> None:
    need("cyclonedx")
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = (built / "bom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    comp = doc["metadata"]["component"]
    assert comp["type"] == "machine-learning-model"
    assert comp["modelCard"]["modelParameters"]["datasets"] == [{"ref": "dataset"}]
    assert comp["pedigree"]["ancestors"][0]["name"].startswith("govtune:tinylm-init")
    (data,) = [c for c in doc["components"] if c["type"] == "data"]
    assert data["data"][0]["type"] == "dataset"
    props = {p["name"]: p["value"] for p in data["properties"]}
    assert props["govtune:refused-license-classes"] == "strong-copyleft"
    refs = {r["type"]: r["url"] for r in comp["externalReferences"]}
    assert refs["attestation"] == "provenance/bundle.intoto.jsonl"


def test_invalid_bom_is_refused_by_the_schema(built: Path) -> None:
    need("cyclonedx")
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    doc = json.loads((built / "bom.cdx.json").read_text())
    doc["metadata"]["component"]["modelCard"]["modelParameters"]["approach"] = {"type": "magic"}
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc)) is not None
