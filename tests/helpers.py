"""Helpers shared by the tests (importable as ``helpers``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import nacl.signing
from hypothesis import strategies as st

from rill.protocol import cbor

TESTS = Path(__file__).parent
VECTORS = TESTS / "vectors"


def load_vectors() -> dict[str, Any]:
    return json.loads((VECTORS / "rill_v1.json").read_text())


def signing_key(name: str) -> nacl.signing.SigningKey:
    """Deterministic test key."""
    return nacl.signing.SigningKey(hashlib.sha256(b"rill test key " + name.encode()).digest())


def _depth(v: object) -> int:
    if isinstance(v, dict):
        return 1 + max(map(_depth, v.values()), default=0)
    if isinstance(v, list):
        return 1 + max(map(_depth, v), default=0)
    return 0


#: Values of the CBOR subset of SPEC §3.1 (nesting within §3.2's limit).
cbor_values = st.recursive(
    st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20,
).filter(lambda v: _depth(v) <= cbor.MAX_DEPTH)
