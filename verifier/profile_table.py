"""The admitted profile of every admission record, one byte per record.

V3 publishes "index -> admitted profile (None = refused)" for every record of the
admission log, and V4 looks up each batch example in it. A dict of a million int keys
costs ~100 bytes a record (key object, value pointer, hash slot, and a second copy when
frozen); this table costs one byte a record (two when the policy names more than 254
profiles): record ``i``'s code sits at offset ``i`` of an ``array``, 0 = refused, ``k``
= the ``k``-th interned profile name. It is dense because V3 publishes it only when
the indices are exactly 0..n-1 (GT-ADMIT-ORDER), and it is a read-only ``Mapping``, so
readers written for the dict (replay, checks_data) keep working unchanged.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping

from attest.errors import FormatError

REFUSED = 0


class ProfileTable(Mapping[int, "str | None"]):
    """Read-only ``index -> profile | None`` over 0..len-1; built with ``append`` by V3 only
    and frozen when published."""

    def __init__(self, names: tuple[str, ...] = ()) -> None:
        self._names: list[str] = []
        self._code: dict[str, int] = {}
        self._codes = array("B" if len(names) < 255 else "H")
        self._admitted = 0
        self._frozen = False
        for n in names:
            self._intern(n)

    def _intern(self, name: str) -> int:
        code = self._code.get(name)
        if code is None:
            code = len(self._names) + 1
            if code > 0xFFFF:
                # Only a log that fails GT-ADMIT-DECISION names profiles outside the policy,
                # and a policy with 65,535 profiles is beyond any limit; refuse, not wrap.
                raise FormatError("admission log: expected at most 65535 profile names, "
                                  "found more")  # fmt: skip
            if code > 0xFF and self._codes.typecode == "B":
                self._codes = array("H", iter(self._codes))
            self._code[name] = code
            self._names.append(name)
        return code

    def append(self, profile: str | None) -> None:
        """The next record's admitted profile (None = refused). Raises FormatError past 65535
        distinct names, ValueError once frozen."""
        if self._frozen:
            raise ValueError("ProfileTable: frozen (published by V3), cannot append")
        if profile is None:
            self._codes.append(REFUSED)
        else:
            code = self._intern(profile)  # first: it may widen self._codes
            self._codes.append(code)
            self._admitted += 1

    def freeze(self) -> None:
        """No more appends: called when V3 publishes the table."""
        self._frozen = True

    @property
    def admitted(self) -> int:
        """How many records are admitted (not None)."""
        return self._admitted

    def nbytes(self) -> int:
        return self._codes.itemsize * len(self._codes)

    def __getitem__(self, i: object) -> str | None:
        if not isinstance(i, int) or not 0 <= i < len(self._codes):
            raise KeyError(i)
        code = self._codes[i]
        return None if code == REFUSED else self._names[code - 1]

    def get(self, i: object, default: str | None = None) -> str | None:  # type: ignore[override]
        if not isinstance(i, int) or not 0 <= i < len(self._codes):
            return default
        code = self._codes[i]
        return None if code == REFUSED else self._names[code - 1]

    def __contains__(self, i: object) -> bool:
        return isinstance(i, int) and 0 <= i < len(self._codes)

    def __len__(self) -> int:
        return len(self._codes)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self._codes)))

    def iter_admitted(self) -> Iterator[int]:
        """Admitted indices, ascending, without building a list."""
        codes = self._codes
        return (i for i in range(len(codes)) if codes[i] != REFUSED)


__all__ = ["ProfileTable"]
