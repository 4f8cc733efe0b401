"""verifier: govtune's standalone verifier. Needs no PyTorch, no numpy.

Verify a run or release folder under a trusted producer key; ``bool(result)`` is
the verdict, every check is a finding with a stable code (spec/verification.md)::

    >>> from verifier import verify
    >>> result = verify("spec/vectors/valid/basic/run", keys=["spec/vectors/keys/vector.pub"])
    >>> result.verdict, result.verified["steps"]
    ('PASS', 6)
    >>> [f.code for f in verify("spec/vectors/invalid/chain-gap/run",
    ...                         keys=["spec/vectors/keys/vector.pub"]).failures]
    ['GT-CHAIN-GAP']

``result.verified`` holds facts the verifier recomputed, ``result.attested`` signed
claims it could not recompute, ``result.to_dict()`` the JSON of ``--format json``.
"""

from .api import verify
from .result import Finding, Result

__all__ = ["Finding", "Result", "verify"]
