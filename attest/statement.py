"""in-toto Statement v1 (in-toto attestation spec, "Statement layer").

Statements are built here as plain dicts, validated with in-toto-attestation's
`Statement.validate`, and serialized by the caller as RFC 8785 bytes. They are
never re-serialized through protobuf, which would turn integers into doubles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import STATEMENT_TYPE_URI
from in_toto_attestation.v1.statement import Statement as PbStatement

from .canonical import parse_canonical_json
from .errors import FormatError

# Digest algorithms whose value format is checked: name -> hex characters.
HEX_DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}


def _is_lower_hex(value: str, size: int) -> bool:
    return len(value) == size and all(c in "0123456789abcdef" for c in value)


@dataclass(frozen=True)
class Subject:
    """An in-toto ResourceDescriptor restricted to name + digest set."""

    name: str
    digest: Mapping[str, str]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise FormatError(f"subject: expected a non-empty name, got {self.name!r}")
        if not isinstance(self.digest, Mapping) or not self.digest:
            raise FormatError(f"subject {self.name!r}: expected a non-empty digest set")
        for alg, value in self.digest.items():
            if not isinstance(alg, str) or not isinstance(value, str) or not value:
                raise FormatError(
                    f"subject {self.name!r}.digest: expected algorithm -> hex strings"
                )
            size = HEX_DIGEST_LENGTHS.get(alg)
            # in-toto's DigestSet says lowercase hex for the algorithms it names; for
            # sha256/sha512 it is checked here, other names keep any non-empty string
            # (e.g. govtune-merkle-sha256 is checked where it is used).
            if size is not None and not _is_lower_hex(value, size):
                raise FormatError(
                    f"subject {self.name!r}.digest.{alg}: expected {size} lowercase hex "
                    f"digits, got {value!r:.80}"
                )
        object.__setattr__(self, "digest", MappingProxyType(dict(self.digest)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": dict(self.digest)}

    @classmethod
    def from_dict(cls, d: object, where: str = "subject") -> Subject:
        if not isinstance(d, dict):
            raise FormatError(f"{where}: expected an object, got {type(d).__name__}")
        if not isinstance(d.get("name"), str) or not isinstance(d.get("digest"), dict):
            raise FormatError(f"{where}: expected name and digest")
        return cls(d["name"], d["digest"])


@dataclass(frozen=True)
class Statement:
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, Any]
    unrecognized: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.predicate_type, str) or not self.predicate_type:
            raise FormatError("statement.predicateType: expected a non-empty URI")
        if not isinstance(self.predicate, Mapping) or not self.predicate:
            raise FormatError("statement.predicate: expected a non-empty object")
        try:
            PbStatement(
                [ResourceDescriptor(name=s.name, digest=dict(s.digest)).pb for s in self.subjects],
                self.predicate_type,
                dict(self.predicate),
            ).validate()
        except (ValueError, TypeError) as e:
            raise FormatError(f"statement: not a valid in-toto Statement v1 ({e})") from e

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.unrecognized)
        d.update(
            {
                "_type": STATEMENT_TYPE_URI,
                "subject": [s.to_dict() for s in self.subjects],
                "predicateType": self.predicate_type,
                "predicate": dict(self.predicate),
            }
        )
        return d

    @classmethod
    def from_dict(cls, d: object, where: str = "statement") -> Statement:
        if not isinstance(d, dict):
            raise FormatError(f"{where}: expected a JSON object, got {type(d).__name__}")
        d = dict(d)  # never mutate the caller's dict
        if d.pop("_type", None) != STATEMENT_TYPE_URI:
            raise FormatError(f"{where}._type: expected {STATEMENT_TYPE_URI}")
        subjects = d.pop("subject", None)
        if not isinstance(subjects, list) or not subjects:
            raise FormatError(f"{where}.subject: expected a non-empty list")
        ptype = d.pop("predicateType", None)
        if not isinstance(ptype, str):
            raise FormatError(f"{where}.predicateType: expected a string")
        pred = d.pop("predicate", None)
        if not isinstance(pred, dict):
            raise FormatError(f"{where}.predicate: expected an object")
        subs = tuple(Subject.from_dict(s, f"{where}.subject[{i}]") for i, s in enumerate(subjects))
        return cls(subs, ptype, pred, d)

    @classmethod
    def from_payload(cls, payload: bytes, where: str = "statement") -> Statement:
        """Parse signed payload bytes; they must be RFC 8785 canonical. Raises FormatError."""
        return cls.from_dict(parse_canonical_json(payload, where=where), where)

    def subject(self, name: str) -> Subject | None:
        for s in self.subjects:
            if s.name == name:
                return s
        return None
