"""The code against tests/vectors/rill_v1.json, and the file against its generator."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import nacl.signing
import pytest
from helpers import VECTORS, load_vectors

from rill.protocol import cbor, checks, keys
from rill.protocol import messages as m
from rill.protocol.errors import RemoteError
from rill.protocol.work import NETWORK_WORK_BITS, work_bits

DATA = load_vectors()


def _fields_to_body(type_name: str, fields: dict[str, Any], bytes_fields: set[str]) -> Any:
    """Rebuild a body map from its JSON rendering (hex strings for byte fields)."""

    def conv(name: str, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: conv(k, x) for k, x in v.items()}
        if isinstance(v, list):
            return [conv(name, x) for x in v]
        if name in bytes_fields and isinstance(v, str):
            return bytes.fromhex(v)
        return v

    return conv("", fields)


BYTES_FIELDS = {"prev", "creator", "head", "commit", "settlement", "salt", "claim", "box",
                "donor", "a", "b", "receipt", "pseudonym", "to", "proof", "disclosure"}


@pytest.mark.parametrize("vec", DATA["positive"], ids=lambda v: v["name"])
def test_positive_vector_recomputes_from_fields(vec: dict[str, Any]) -> None:
    body = _fields_to_body(vec["type"], vec["fields"], BYTES_FIELDS)
    body_bytes = cbor.encode(body)
    assert body_bytes.hex() == vec["body"]
    assert m.signing_input(vec["type"], body_bytes).hex() == vec["signing_input"]
    sk = nacl.signing.SigningKey(bytes.fromhex(vec["signer_seed"]))
    assert keys.did_from_key(keys.public_key(sk)) == vec["signer"]
    sig = keys.sign(sk, bytes.fromhex(vec["signing_input"]))
    assert sig.hex() == vec["signature"]
    env: dict[str, Any] = {"v": 1, "t": vec["type"], "body": body,
                           "signer": keys.public_key(sk), "sig": sig}
    if "cosigner_seed" in vec:
        co = nacl.signing.SigningKey(bytes.fromhex(vec["cosigner_seed"]))
        env["cosig"] = keys.sign(co, bytes.fromhex(vec["rotation_input"]))
        assert env["cosig"].hex() == vec["cosignature"]
    assert cbor.encode(env).hex() == vec["bytes"]


@pytest.mark.parametrize("vec", DATA["positive"], ids=lambda v: v["name"])
def test_positive_vector_decodes(vec: dict[str, Any]) -> None:
    obj = m.decode(bytes.fromhex(vec["bytes"]))
    assert obj.type == vec["type"]
    assert obj.id_hex == vec["id"]
    assert obj.signer_did == vec["signer"]
    assert m.encode(obj).hex() == vec["bytes"]
    # and re-signing the decoded body reproduces the same bytes
    sk = nacl.signing.SigningKey(bytes.fromhex(vec["signer_seed"]))
    co = (nacl.signing.SigningKey(bytes.fromhex(vec["cosigner_seed"]))
          if "cosigner_seed" in vec else None)
    assert m.sign(obj.body, sk, previous_key=co).raw == obj.raw


@pytest.mark.parametrize("vec", DATA["positive"], ids=lambda v: v["name"])
def test_positive_vector_holds_at_verify_at(vec: dict[str, Any]) -> None:
    checks.check_time(m.decode(bytes.fromhex(vec["bytes"])), DATA["verify_at"])


@pytest.mark.parametrize("vec", DATA["negative"], ids=lambda v: v["name"])
def test_negative_vector_rejected_with_reason(vec: dict[str, Any]) -> None:
    """SPEC §10: the reason under §4.4, then §7.4 with now = verify_at."""
    with pytest.raises(RemoteError) as info:
        checks.check_time(m.decode(bytes.fromhex(vec["bytes"])), DATA["verify_at"])
    assert info.value.code == vec["reason"], info.value.reason


def test_positive_settlements_carry_network_work() -> None:
    """Every positive settlement (and both settlements of the positive equivocation
    proof) has a real stamp of NETWORK_WORK_BITS, the smallest such nonce."""
    seen = 0
    for vec in DATA["positive"]:
        obj = m.decode(bytes.fromhex(vec["bytes"]))
        settlements = (obj.body.settlements if isinstance(obj.body, m.Equivocation)
                       else (obj,) if isinstance(obj.body, m.Settlement) else ())
        for s in settlements:
            seen += 1
            work = s.body.work
            assert work is not None
            assert work_bits(s.signer, s.body.month, work) >= NETWORK_WORK_BITS
            assert all(work_bits(s.signer, s.body.month, w) < NETWORK_WORK_BITS
                       for w in range(max(0, work - 2000), work))
    assert seen == 5  # settlement, -empty, -anonymous, the equivocation proof (2)


def test_negative_vectors_cover_the_required_cases() -> None:
    reasons = {v["reason"] for v in DATA["negative"]}
    cbor_codes = ("empty", "malformed", "trailing-bytes", "non-canonical", "duplicate-key",
                  "indefinite-length", "float", "simple-value", "tag", "non-text-key",
                  "too-deep")  # every reason of SPEC §3.2
    for required in (*cbor_codes, "bad-signature", "too-large", "bad-key", "bad-month",
                     "bad-currency", "bad-thing", "bad-origin", "bad-payto", "bad-rotation",
                     "bad-chain", "unsupported-version", "unknown-type", "future"):
        assert required in reasons, required
    types = {v["type"] for v in DATA["positive"]}
    assert types == set(m.BODY_TYPES)


def test_vector_file_is_what_the_generator_writes() -> None:
    proc = subprocess.run([sys.executable, str(VECTORS / "generate.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
