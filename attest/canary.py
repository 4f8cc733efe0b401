"""Canaries and the held-out reference set: derived, never taken on trust (spec/policy.md §7,
spec/records.md §3 rule 2 and §4 ``heldout``).

The trainer plants canaries and picks the held-out examples with these functions and
the verifier re-derives both with the very same code (DESIGN: one rule, one
implementation). Everything here is a pure function of public or auditor-held inputs
(the run secret, the policy, the recorded seed, the admitted pool), defined by SHA-256
and HMAC-SHA-256 so another language gets the same answer. Example::

    >>> from attest.policy import Canaries
    >>> texts = canary_texts(bytes(32), Canaries(count=1, template="code {secret}", digits=4))
    >>> texts
    ('code 9739',)
    >>> canary_metadata(Canaries(count=1, template="code {secret}", digits=4)).length
    9
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import struct
from collections.abc import Iterable

from .admission import Findings, Metadata
from .errors import FormatError
from .order import check_seed
from .policy import Canaries

CANARY_LICENSE = "LicenseRef-govtune-canary"
CANARY_SOURCE = "govtune:canary"
CANARY_CLASS = "canary"
SECRET_FIELD = "{secret}"
_CANARY_TAG = b"govtune.canary.v1"
_HELDOUT_TAG = b"govtune.heldout.v1"
_EVAL_TAG = b"govtune.eval.v1"


def canary_secret(run_secret: bytes, number: int, digits: int) -> str:
    """Secret digits of canary ``number`` (policy.md §7): HMAC-SHA-256(run secret,
    "govtune.canary.v1" || uint64be(number)) as a big-endian integer, mod 10**digits,
    zero-padded to ``digits``. Never public; re-derivable by whoever holds the secret."""
    mac = hmac.new(run_secret, _CANARY_TAG + struct.pack(">Q", number), hashlib.sha256).digest()
    return str(int.from_bytes(mac, "big") % 10**digits).zfill(digits)


def _parts(c: Canaries) -> tuple[str, str]:
    before, sep, after = c.template.partition(SECRET_FIELD)
    if not sep:
        raise FormatError(f"canaries.template: expected a {SECRET_FIELD} field, found none")
    return before, after


def canary_text(run_secret: bytes, c: Canaries, number: int) -> str:
    """The text of canary ``number``: the template with its first ``{secret}`` replaced."""
    before, after = _parts(c)
    return before + canary_secret(run_secret, number, c.digits) + after


def canary_texts(run_secret: bytes, c: Canaries) -> tuple[str, ...]:
    """The texts of canaries 0..count-1, in planting order."""
    return tuple(canary_text(run_secret, c, k) for k in range(c.count))


def canary_prefix(c: Canaries) -> str:
    """The template text before the secret (exposure candidates keep it and the tail)."""
    return _parts(c)[0]


def canary_indices(c: Canaries, examples: int) -> tuple[tuple[int, ...], ...]:
    """Admission indices of each canary: canary k's ``repeats`` records follow the
    ``examples`` dataset records, k-th group first (records.md §3)."""
    return tuple(
        tuple(range(examples + k * c.repeats, examples + (k + 1) * c.repeats))
        for k in range(c.count)
    )


def canary_metadata(c: Canaries) -> Metadata:
    """The fixed metadata of every canary record (records.md §3 rule 2): the length is
    the template's code points without ``{secret}`` plus ``digits``."""
    before, after = _parts(c)
    return Metadata(
        CANARY_LICENSE,
        CANARY_SOURCE,
        CANARY_CLASS,
        True,
        len(before) + c.digits + len(after),
        canary=True,
    )


CANARY_FINDINGS = Findings()  # a canary's findings: {pii: [], optout: false, duplicate: false}


def _ranked(tag: bytes, seed: int, pool: Iterable[int], k: int, what: str) -> tuple[int, ...]:
    """The ``min(k, |pool|)`` indices of ``pool`` whose SHA-256(tag || int64be(seed) ||
    uint64be(index)) are smallest (bytewise), in ascending index order."""
    prefix = tag + struct.pack(">q", check_seed(seed))
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise FormatError(f"{what}: expected an integer >= 0, got {k!r:.40}")
    if k == 0:
        return ()
    # The k smallest in one pass with O(k) memory (a sorted list of every (digest, index)
    # costs ~150 bytes an index: 150 MB at a million examples). A max-heap of the k best
    # so far, keyed by the negated big-endian digest (big-endian integer order is bytewise
    # order of equal-length digests); ``members`` drops repeats as set(pool) did.
    heap: list[tuple[int, int]] = []
    members: set[int] = set()
    pack, sha = struct.Struct(">Q").pack, hashlib.sha256
    for i in pool:
        if i in members:
            continue
        key = -int.from_bytes(sha(prefix + pack(i)).digest(), "big")
        if len(heap) < k:
            heapq.heappush(heap, (key, -i))
            members.add(i)
        elif (key, -i) > heap[0]:
            _, out = heapq.heapreplace(heap, (key, -i))
            members.discard(-out)
            members.add(i)
    return tuple(sorted(-j for _, j in heap))


def heldout_indices(seed: int, pool: Iterable[int], holdout: int) -> tuple[int, ...]:
    """The held-out reference set (records.md §4): of the admitted non-canary indices
    ``pool``, the ``min(holdout, |pool|)`` whose SHA-256("govtune.heldout.v1" ||
    int64be(seed) || uint64be(index)) are smallest (bytewise), in ascending index order.
    Raises FormatError for a seed outside the signed 64-bit range or a negative holdout."""
    return _ranked(_HELDOUT_TAG, seed, pool, holdout, "memorization.holdout")


def eval_indices(seed: int, pool: Iterable[int], count: int) -> tuple[int, ...]:
    """The evaluation split (records.md §4): ``heldout_indices``' rule with the tag
    "govtune.eval.v1", over the admitted non-canary indices left after the held-out set,
    so another implementation draws the same split (v0.1-era code used Python's random).
    Raises FormatError as ``heldout_indices`` does."""
    return _ranked(_EVAL_TAG, seed, pool, count, "eval_examples")
