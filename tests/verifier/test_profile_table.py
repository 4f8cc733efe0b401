"""verifier.profile_table: the admission table V3 publishes reads as the dict it replaced."""

from __future__ import annotations

import pytest

from verifier.profile_table import ProfileTable


def test_reads_as_the_dict_of_index_to_profile() -> None:
    rows = ["deep", None, "surface", "deep", None, "other"]  # "other": a name outside the policy
    t = ProfileTable(("deep", "surface"))
    for p in rows:
        t.append(p)
    ref = dict(enumerate(rows))
    assert dict(t) == ref and len(t) == len(ref) and list(t) == list(ref)
    for x in (-1, 0, 1, 5, 6, 10**20, "0", 1.0, None):
        assert (x in t) == (isinstance(x, int) and x in ref)
        assert t.get(x, "absent") == (ref.get(x, "absent") if isinstance(x, int) else "absent")
    with pytest.raises(KeyError):
        t[6]
    assert t.admitted == 4 and list(t.iter_admitted()) == [0, 2, 3, 5]
    assert t.nbytes() == len(rows)  # one byte a record
    t.freeze()  # as V3 publishes it: no later layer can add a record
    with pytest.raises(ValueError):
        t.append("deep")


def test_more_than_254_profiles_widen_to_two_bytes() -> None:
    t = ProfileTable()
    for k in range(300):
        t.append(f"p{k}")
    assert t.nbytes() == 600 and t[299] == "p299" and t[0] == "p0"
