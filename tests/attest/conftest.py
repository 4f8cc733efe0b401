"""Shared fixtures for the attest tests: one signer per key type (generation is the slow part)."""

from __future__ import annotations

import pytest

from attest import keys


@pytest.fixture(scope="session")
def ecdsa_signer():
    return keys.generate("ecdsa")


@pytest.fixture(scope="session")
def ed25519_signer():
    return keys.generate("ed25519")


@pytest.fixture(scope="session", params=["ecdsa", "ed25519"])
def signer(request, ecdsa_signer, ed25519_signer):
    return ecdsa_signer if request.param == "ecdsa" else ed25519_signer
