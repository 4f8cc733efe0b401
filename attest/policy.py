"""The governance policy document (spec/policy.md): model, TOML loading, digest.

The policy is TOML 1.0 (read with stdlib `tomllib`). It is normalized into frozen
dataclasses that check themselves; its identity is the SHA-256 of the RFC 8785
JSON of `Policy.to_dict()`, so whitespace, comments and the order of lists that are
sets do not matter but every rule does. Unknown tables or keys are an error: a policy
that says something this version does not understand must not be applied as if it
did not. License identifiers are SPDX (`attest.spdx`), patterns are the policy's own
globs (`attest.glob`), both checked on load.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .canonical import JSON_SAFE_INT, canonical_json
from .digest import sha256_hex
from .errors import PolicyError, UsageError
from .glob import PatternError, compile_glob, glob_match
from .layers import layer_count, layer_index, parse_range, selected
from .limits import DEFAULT_LIMITS, Limits
from .pii import KINDS as PII_KINDS
from .spdx import License, LicenseError, decide_license, parse, parse_simple

POLICY_VERSION = "0.1"
ACTIONS = ("flag", "quarantine", "halt")


def _strs(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where}: expected a list of strings, got {value!r:.80}")
    return tuple(value)


def _set(value: object, where: str) -> tuple[str, ...]:
    """A list that is a set (spec/policy.md §2): sorted by code point, duplicates dropped.

    Normalized here, not only in `to_dict`, so two policies that say the same thing
    are equal objects with equal digests, and first-match details name the same item.
    """
    return tuple(sorted(set(_strs(value, where))))


def _globs(value: object, where: str) -> tuple[str, ...]:
    pats = _set(value, where)
    for p in pats:
        _glob(p, where)
    return pats


def _glob(pattern: str, where: str) -> None:
    try:
        compile_glob(pattern)
    except PatternError as e:
        raise PolicyError(f"{where}: {e}") from e


def _license(text: str, where: str) -> License:
    try:
        return parse_simple(text)
    except LicenseError as e:
        raise PolicyError(f"{where}: {e}") from e


def _take(d: dict[str, Any], where: str, spec: Mapping[str, object]) -> dict[str, Any]:
    """Pop the keys of ``spec`` (key -> default) from a copy of ``d``; unknown keys are an error."""
    at = f"{where}: " if where else ""  # "" is the top level: from_dict names the document
    if not isinstance(d, dict):
        raise PolicyError(f"{at}expected a table, got {type(d).__name__}")
    d = dict(d)
    out = {k: d.pop(k, default) for k, default in spec.items()}
    if d:
        raise PolicyError(f"{at}unknown key(s) {', '.join(sorted(d))}")
    return out


def _num(value: object, where: str, *, lo: float = 0.0, integer: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    # NaN compares false with everything and numbers past 2^53 cannot be digested
    # (canonical JSON), so both are refused here, not later in `Policy.digest()`.
    kind = "an integer" if integer else "a number"
    if (
        isinstance(value, bool)
        or not ok
        or (isinstance(value, float) and not math.isfinite(value))
        or value < lo  # type: ignore[operator]
    ):
        raise PolicyError(f"{where}: expected {kind} >= {lo:g}, got {value!r}")
    if value > JSON_SAFE_INT:  # type: ignore[operator]
        raise PolicyError(f"{where}: expected {kind} below 2^53, got {value!r:.40}")
    return value if integer else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Profile:
    """A depth profile: the parameter-name globs (and layer ranges) an example may change."""

    name: str
    patterns: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()  # layer ranges, §5.1 (attest.layers)

    def __post_init__(self) -> None:
        for i, r in enumerate(self.layers):
            parse_range(r, f"profiles.{self.name}.layers[{i}]")

    def matches(self, param: str, layers: frozenset[int] = frozenset()) -> bool:
        """``layers``: the layer indices this profile's ranges select in the model (§5.1)."""
        if any(glob_match(param, p) for p in self.exclude):
            return False
        if any(glob_match(param, p) for p in self.patterns):
            return True
        return bool(layers) and layer_index(param) in layers

    def resolve(self, names: Iterable[str]) -> tuple[str, ...]:
        """The parameter names this profile allows, sorted."""
        names = list(names)
        ranges = [parse_range(r, f"profiles.{self.name}.layers") for r in self.layers]
        chosen = selected(ranges, layer_count(names)) if ranges else frozenset()
        return tuple(sorted(n for n in names if self.matches(n, chosen)))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"patterns": list(self.patterns), "exclude": list(self.exclude)}
        if self.layers:  # absent when empty: v0.1 policies keep their digests
            d["layers"] = list(self.layers)
        return d


@dataclass(frozen=True)
class Assignment:
    """First matching rule gives the profile. Keys of ``when`` compare to metadata."""

    when: Mapping[str, str]
    profile: str

    def to_dict(self) -> dict[str, Any]:
        return {"when": dict(self.when), "profile": self.profile}


ASSIGN_KEYS = ("license_class", "data_class", "source", "license")


@dataclass(frozen=True)
class Memorization:
    action: str = "flag"  # flag | quarantine | halt
    loss_drop_max: float = 0.0  # nats between two visits of one example; 0 disables
    reference_quantile: float = 0.0  # flag below this quantile of held-out losses; 0 disables
    holdout: int = 0  # admitted examples held out as the reference distribution
    exposure_max: float = 0.0  # bits of canary exposure (Carlini et al. 2019); 0 disables
    eval_every: int = 0  # steps between canary exposure evaluations; 0 = at the end only

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "loss_drop_max": self.loss_drop_max,
            "reference_quantile": self.reference_quantile,
            "holdout": self.holdout,
            "exposure_max": self.exposure_max,
            "eval_every": self.eval_every,
        }


@dataclass(frozen=True)
class Canaries:
    """Canaries the policy plants (secret random digits in a template) to measure exposure."""

    count: int = 0
    repeats: int = 1  # copies of each canary in the training set
    template: str = "the secret code is {secret}"
    digits: int = 6  # the candidate space R has 10**digits members
    candidates: int = 1000  # sampled members of R used to estimate the rank
    profile: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "repeats": self.repeats,
            "template": self.template,
            "digits": self.digits,
            "candidates": self.candidates,
            "profile": self.profile,
        }


@dataclass(frozen=True)
class Policy:
    name: str
    license_classes: Mapping[str, str]  # canonical SPDX id (or "id WITH exception") -> class
    license_allow: tuple[str, ...]  # classes, most preferred first (spec/policy.md §3.2.1)
    license_deny: tuple[str, ...]
    consent_required: tuple[str, ...]  # data classes needing consent = true
    source_allow: tuple[str, ...]  # glob patterns
    source_deny: tuple[str, ...]
    pii_detect: tuple[str, ...]
    pii_action: str  # reject | mask
    optout_digests: frozenset[str]
    duplicates: str  # reject | allow
    length_min: int
    length_max: int
    profiles: Mapping[str, Profile]
    assign: tuple[Assignment, ...]
    memorization: Memorization = field(default_factory=Memorization)
    canaries: Canaries = field(default_factory=Canaries)

    def __post_init__(self) -> None:
        if not self.profiles:
            raise PolicyError("profiles: expected at least one depth profile, got none")
        if not self.assign:
            raise PolicyError("assign: expected at least one assignment rule, got none")
        for i, a in enumerate(self.assign):
            if a.profile not in self.profiles:
                raise PolicyError(f"assign[{i}].profile: unknown profile {a.profile!r}")
        if self.canaries.count and self.canaries.profile not in self.profiles:
            raise PolicyError(f"canaries.profile: unknown profile {self.canaries.profile!r}")
        keys: dict[str, str] = {}
        for lic in self.license_classes:
            canon = str(_license(lic, f"licenses.classes.{lic}"))
            if canon != lic:
                raise PolicyError(f"licenses.classes: expected {canon!r}, got {lic!r}")
            other = keys.setdefault(lic.lower(), lic)
            if other != lic:  # SPDX ids match case-insensitively: one key, two classes
                raise PolicyError(f"licenses.classes: {other!r} and {lic!r} are one license")
        if len(set(self.license_allow)) != len(self.license_allow):
            raise PolicyError("licenses.allow: expected distinct classes (the list is ordered)")
        overlap = set(self.license_allow) & set(self.license_deny)
        if overlap:
            raise PolicyError(
                f"licenses: classes both allowed and denied: {', '.join(sorted(overlap))}"
            )
        if self.length_min > self.length_max:
            raise PolicyError(f"length: min {self.length_min} exceeds max {self.length_max}")

    # -- identity -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": POLICY_VERSION,
            "name": self.name,
            "licenses": {
                "classes": dict(sorted(self.license_classes.items())),
                "allow": list(self.license_allow),
                "deny": list(self.license_deny),
            },
            "consent": {"required": list(self.consent_required)},
            "sources": {"allow": list(self.source_allow), "deny": list(self.source_deny)},
            "pii": {"detect": list(self.pii_detect), "action": self.pii_action},
            "optout": {"digests": sorted(self.optout_digests)},
            "duplicates": {"action": self.duplicates},
            "length": {"min": self.length_min, "max": self.length_max},
            "profiles": {n: p.to_dict() for n, p in sorted(self.profiles.items())},
            "assign": [a.to_dict() for a in self.assign],
            "memorization": self.memorization.to_dict(),
            "canaries": self.canaries.to_dict(),
        }

    def digest(self) -> str:
        """Hex SHA-256 of the canonical JSON of the normalized policy."""
        return sha256_hex(canonical_json(self.to_dict()))

    @functools.cached_property
    def _class_by_key(self) -> dict[str, str]:
        # cached_property writes the instance __dict__ directly, so frozen is fine
        return {k.lower(): c for k, c in self.license_classes.items()}

    def leaf_class(self, lic: License) -> str | None:
        """The class of one license: its ``WITH`` pair if classified, else its id's."""
        table = self._class_by_key
        if lic.exception and lic.key in table:
            return table[lic.key]
        return table.get(lic.id.lower())

    def license_of(self, expression: str) -> License:
        """The license an SPDX expression is used under (§3.2.1). Raises LicenseError."""
        return decide_license(parse(expression), self.license_rank)

    def license_class(self, expression: str) -> str | None:
        """The class of `license_of` ``expression``; None if unclassified or invalid."""
        try:
            return self.leaf_class(self.license_of(expression))
        except LicenseError:
            return None

    def license_rank(self, lic: License) -> int:
        """How restrictive a license is under this policy (spec/policy.md §3.2.1).

        Allowed classes rank by their position in `license_allow`; then a class in
        neither list, then a denied class, then no class at all (the worst).
        """
        cls = self.leaf_class(lic)
        n = len(self.license_allow)
        if cls is None:
            return n + 2
        if cls in self.license_allow:
            return self.license_allow.index(cls)
        return n + 1 if cls in self.license_deny else n

    def resolve_profiles(self, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Profile name -> sorted parameter names it allows, out of ``names``."""
        return {n: p.resolve(names) for n, p in sorted(self.profiles.items())}

    # -- loading --------------------------------------------------------------

    @classmethod
    def from_dict(cls, doc: dict[str, Any], *, where: str = "policy") -> Policy:
        """Build from the parsed TOML (or from `to_dict` output).

        Raises PolicyError, its message prefixed once with ``where`` (the document).
        """
        try:
            return cls._from_dict(doc)
        except PolicyError as e:
            raise PolicyError(f"{where}: {e}") from e

    @classmethod
    def _from_dict(cls, doc: dict[str, Any]) -> Policy:
        # Messages name the key path inside the document; from_dict adds the document.
        top = _take(
            doc, "",
            {"version": POLICY_VERSION, "name": None, "licenses": {}, "consent": {}, "sources": {},
             "pii": {}, "optout": {}, "duplicates": {}, "length": {}, "profiles": None,
             "assign": None, "memorization": {}, "canaries": {}},
        )  # fmt: skip
        if top["version"] != POLICY_VERSION:
            raise PolicyError(f"version: expected {POLICY_VERSION!r}, got {top['version']!r}")
        if not isinstance(top["name"], str) or not top["name"]:
            raise PolicyError("name: expected a non-empty string")
        lic = _take(top["licenses"], "licenses", {"classes": {}, "allow": [], "deny": []})
        if not isinstance(lic["classes"], dict) or not all(
            isinstance(v, str) and v for v in lic["classes"].values()
        ):
            raise PolicyError("licenses.classes: expected a table of SPDX id -> class name")
        classes: dict[str, str] = {}
        for key, cls_name in lic["classes"].items():
            canon = str(_license(key, f"licenses.classes.{key}"))
            if canon.lower() in {k.lower() for k in classes}:
                raise PolicyError(
                    f"licenses.classes.{key}: expected each license once, got it again "
                    f"(SPDX identifiers match case-insensitively)"
                )
            classes[canon] = cls_name
        if not lic["allow"]:
            raise PolicyError("licenses.allow: expected at least one allowed license class")
        consent = _take(top["consent"], "consent", {"required": []})
        src = _take(top["sources"], "sources", {"allow": ["*"], "deny": []})
        pii = _take(top["pii"], "pii", {"detect": list(PII_KINDS), "action": "reject"})
        detect = _set(pii["detect"], "pii.detect")
        for k in detect:
            if k not in PII_KINDS:
                raise PolicyError(
                    f"pii.detect: expected kinds from {', '.join(PII_KINDS)}, got {k!r}"
                )
        if pii["action"] not in ("reject", "mask"):
            raise PolicyError(f"pii.action: expected 'reject' or 'mask', got {pii['action']!r}")
        optout = _take(top["optout"], "optout", {"digests": []})
        digests = _strs(optout["digests"], "optout.digests")
        for i, dg in enumerate(digests):
            if len(dg) != 64 or any(c not in "0123456789abcdef" for c in dg):
                raise PolicyError(f"optout.digests[{i}]: expected 64 lowercase hex digits")
        dup = _take(top["duplicates"], "duplicates", {"action": "reject"})
        if dup["action"] not in ("reject", "allow"):
            raise PolicyError(
                f"duplicates.action: expected 'reject' or 'allow', got {dup['action']!r}"
            )
        length = _take(top["length"], "length", {"min": 1, "max": 1 << 20})
        profiles_doc = top["profiles"]
        if not isinstance(profiles_doc, dict) or not profiles_doc:
            raise PolicyError("profiles: expected at least one [profiles.NAME] table")
        profiles = {}
        for pname, pdoc in profiles_doc.items():
            p = _take(pdoc, f"profiles.{pname}", {"patterns": [], "exclude": [], "layers": []})
            pats = _globs(p["patterns"], f"profiles.{pname}.patterns")
            layers = _strs(p["layers"], f"profiles.{pname}.layers")
            if not pats and not layers:
                raise PolicyError(
                    f"profiles.{pname}.patterns: expected at least one pattern or layer range"
                )
            excl = _globs(p["exclude"], f"profiles.{pname}.exclude")
            profiles[pname] = Profile(pname, pats, excl, layers)
        if not isinstance(top["assign"], list):
            raise PolicyError("assign: expected an array of [[assign]] tables")
        assign = []
        for i, a in enumerate(top["assign"]):
            a = _take(a, f"assign[{i}]", {"when": {}, "profile": None})
            when = a["when"]
            if not isinstance(when, dict) or not all(
                k in ASSIGN_KEYS and isinstance(v, str) for k, v in when.items()
            ):
                raise PolicyError(
                    f"assign[{i}].when: expected string values for keys among "
                    f"{', '.join(ASSIGN_KEYS)}"
                )
            if not isinstance(a["profile"], str):
                raise PolicyError(f"assign[{i}].profile: expected a profile name")
            when = dict(when)
            if "source" in when:
                _glob(when["source"], f"assign[{i}].when.source")
            if "license" in when:
                when["license"] = str(_license(when["license"], f"assign[{i}].when.license"))
            assign.append(Assignment(when, a["profile"]))
        m = _take(top["memorization"], "memorization", Memorization().to_dict())
        if m["action"] not in ACTIONS:
            raise PolicyError(
                f"memorization.action: expected one of {', '.join(ACTIONS)}, got {m['action']!r}"
            )
        q = _num(m["reference_quantile"], "memorization.reference_quantile")
        if q >= 1:
            raise PolicyError(f"memorization.reference_quantile: expected a value below 1, got {q}")
        mem = Memorization(
            m["action"],
            _num(m["loss_drop_max"], "memorization.loss_drop_max"),
            q,
            _num(m["holdout"], "memorization.holdout", integer=True),
            _num(m["exposure_max"], "memorization.exposure_max"),
            _num(m["eval_every"], "memorization.eval_every", integer=True),
        )
        c = _take(top["canaries"], "canaries", Canaries().to_dict())
        if not isinstance(c["template"], str) or c["template"].count("{secret}") != 1:
            raise PolicyError("canaries.template: expected a string with one {secret}")
        if not isinstance(c["profile"], str):  # never coerced: 1 is not "" nor "1"
            raise PolicyError(
                f"canaries.profile: expected a profile name, got {type(c['profile']).__name__}"
            )
        can = Canaries(
            _num(c["count"], "canaries.count", integer=True),
            _num(c["repeats"], "canaries.repeats", lo=1, integer=True),
            c["template"],
            _num(c["digits"], "canaries.digits", lo=1, integer=True),
            _num(c["candidates"], "canaries.candidates", lo=1, integer=True),
            c["profile"],
        )
        if can.digits > 18:
            raise PolicyError(f"canaries.digits: expected at most 18, got {can.digits}")
        return cls(
            name=top["name"],
            license_classes=classes,
            license_allow=_strs(lic["allow"], "licenses.allow"),
            license_deny=_set(lic["deny"], "licenses.deny"),
            consent_required=_set(consent["required"], "consent.required"),
            source_allow=_globs(src["allow"], "sources.allow"),
            source_deny=_globs(src["deny"], "sources.deny"),
            pii_detect=detect,
            pii_action=pii["action"],
            optout_digests=frozenset(digests),
            duplicates=dup["action"],
            length_min=_num(length["min"], "length.min", integer=True),
            length_max=_num(length["max"], "length.max", integer=True),
            profiles=profiles,
            assign=tuple(assign),
            memorization=mem,
            canaries=can,
        )

    @classmethod
    def from_toml(cls, data: bytes, *, where: str = "policy") -> Policy:
        """Parse policy TOML bytes. Raises PolicyError: ``{where}: {key path}: ...``."""
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise PolicyError(
                f"{where}: expected UTF-8 TOML, got an invalid byte at {e.start}"
            ) from e
        except tomllib.TOMLDecodeError as e:
            raise PolicyError(f"{where}: expected TOML, got {e}") from e
        except RecursionError as e:  # tomllib recurses per nested array/inline table
            raise PolicyError(f"{where}: expected TOML nested at most a few hundred deep") from e
        return cls.from_dict(doc, where=where)


def load_policy(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> tuple[Policy, bytes]:
    """Read a policy TOML file; returns (policy, file bytes). Raises UsageError/PolicyError."""
    path = Path(path)
    try:
        if path.stat().st_size > limits.policy_max:
            raise PolicyError(f"{path.name}: larger than {limits.policy_max} bytes")
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise UsageError(f"{path}: policy file not found") from e
    except OSError as e:
        raise UsageError(f"{path}: cannot read policy: {e.strerror or e}") from e
    return Policy.from_toml(data, where=path.name), data
