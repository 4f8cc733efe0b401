"""verifier: govtune's standalone verifier. Needs no PyTorch.

Filled in by the verifier issue; see verifier/api.py.
"""
