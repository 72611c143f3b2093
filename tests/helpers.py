"""Helpers shared by the tests (importable as ``helpers``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import nacl.signing

TESTS = Path(__file__).parent
VECTORS = TESTS / "vectors"


def load_vectors() -> dict[str, Any]:
    return json.loads((VECTORS / "rill_v1.json").read_text())


def signing_key(name: str) -> nacl.signing.SigningKey:
    """Deterministic test key."""
    return nacl.signing.SigningKey(hashlib.sha256(b"rill test key " + name.encode()).digest())
