"""Proof of work on settlements (SPEC §5.3, §11.2): the stamp, its search, the gossip rule."""

from __future__ import annotations

import hashlib

import pytest
from helpers import signing_key

from rill.protocol import keys, work
from rill.protocol import messages as m
from rill.protocol.errors import LocalError, RemoteError
from rill.protocol.months import month_end
from rill.protocol.network import check_gossip, settlement_work_bits
from rill.protocol.settle import settle

DONOR, ALICE, CAROL = signing_key("donor"), signing_key("alice"), signing_key("carol")
D, A = keys.public_key(DONOR), keys.public_key(ALICE)
MONTH = "2026-10"
NOW = month_end(MONTH) + 86400
THINGS = {"https://alice.example/": A}


def test_work_hash_is_the_spec_formula() -> None:
    for nonce in (0, 1, 255, 2**64 - 1):
        expected = hashlib.sha256(b"rill/1/work\n" + D + b"2026-10"
                                  + nonce.to_bytes(8, "big")).digest()
        assert work.work_hash(D, MONTH, nonce) == expected
        assert work.work_bits(D, MONTH, nonce) == 256 - int.from_bytes(expected, "big") \
            .bit_length()
    assert work.work_bits(D, MONTH, None) == 0
    with pytest.raises(LocalError):
        work.work_hash(D, MONTH, 2**64)
    with pytest.raises(LocalError):
        work.work_hash(D, "２０２６-10", 0)


def test_leading_zero_bits() -> None:
    assert work.leading_zero_bits(bytes(32)) == 256
    assert work.leading_zero_bits(b"\x80" + bytes(31)) == 0
    assert work.leading_zero_bits(b"\x00\x01" + bytes(30)) == 15
    assert work.leading_zero_bits(b"\x00\x00\x0f" + bytes(29)) == 20


@pytest.mark.parametrize("bits", [1, 4, 8, 12])
def test_find_work_is_the_smallest_nonce(bits: int) -> None:
    signer = keys.public_key(signing_key(f"w{bits}"))
    nonce = work.find_work(signer, MONTH, bits)
    assert work.work_bits(signer, MONTH, nonce) >= bits
    assert all(work.work_bits(signer, MONTH, n) < bits for n in range(nonce))
    assert work.find_work(signer, MONTH, bits) == nonce  # deterministic (and cached)
    # bound to the donor and the month
    assert work.work_hash(signer, "2026-11", nonce) != work.work_hash(signer, MONTH, nonce)


def test_find_work_bits_range() -> None:
    assert work.find_work(D, MONTH, 0) == 0
    for bits in (-1, 33):
        with pytest.raises(LocalError):
            work.find_work(D, MONTH, bits)


def test_settle_puts_the_stamp_in_the_settlement() -> None:
    res = settle(DONOR, MONTH, 100, "EUR", bytes(32), THINGS, work_bits=10)
    assert res.settlement.body.work == work.find_work(D, MONTH, 10)
    assert settlement_work_bits(res.settlement) >= 10
    again = settle(DONOR, MONTH, 100, "EUR", bytes(32), THINGS, work_bits=10)
    assert again.settlement.raw == res.settlement.raw  # still deterministic
    bare = settle(DONOR, MONTH, 100, "EUR", bytes(32), THINGS, work_bits=0)
    assert bare.settlement.body.work is None and "work" not in bare.settlement.body.to_map()
    assert settlement_work_bits(bare.settlement) == 0
    # the claims name the settlement with its work
    assert all(c.body.settlement == res.settlement.id for c in res.claims)


def _code(topic: str, raw: bytes, bits: int) -> str | None:
    try:
        check_gossip(topic, raw, NOW, work_bits=bits)
    except RemoteError as exc:
        return exc.code
    return None


def test_gossip_refuses_settlements_without_enough_work() -> None:
    res = settle(DONOR, MONTH, 100, "EUR", bytes(32), THINGS, work_bits=8)
    bits = settlement_work_bits(res.settlement)
    topic = "rill/1/settlements"
    assert _code(topic, res.settlement.raw, bits) is None
    assert _code(topic, res.settlement.raw, bits + 1) == "insufficient-work"
    bare = settle(DONOR, MONTH, 100, "EUR", bytes(32), THINGS, work_bits=0)
    assert _code(topic, bare.settlement.raw, 1) == "insufficient-work"
    assert _code(topic, bare.settlement.raw, 0) is None
    # sealed claims carry no work and need none; plain claims travel by no topic
    assert _code(topic, bare.sealed[0].raw, 20) is None
    assert _code(topic, bare.claims[0].raw, 20) == "wrong-topic"
    # the other gossip rules come first: a settlement of a month not ended is `future`
    early = settle(DONOR, "2027-01", 100, "EUR", bytes(32), THINGS, work_bits=0)
    assert _code(topic, early.settlement.raw, 20) == "future"


def test_gossip_work_of_an_equivocation_proof() -> None:
    """A proof counts the better stamp of its two settlements (both are the donor's)."""
    with_work = settle(DONOR, MONTH, 100, "EUR", bytes(32), THINGS, work_bits=8)
    without = settle(DONOR, MONTH, 101, "EUR", bytes(32), THINGS, work_bits=0)
    other = settle(DONOR, MONTH, 102, "EUR", bytes(32), THINGS, work_bits=0)
    bits = settlement_work_bits(with_work.settlement)
    topic = "rill/1/equivocations"

    def proof(x: m.Signed[m.Settlement], y: m.Signed[m.Settlement]) -> bytes:
        a, b = sorted([x, y], key=lambda s: s.id)
        return m.sign(m.Equivocation(a.raw, b.raw), CAROL).raw

    mixed = proof(with_work.settlement, without.settlement)
    assert _code(topic, mixed, bits) is None
    assert _code(topic, mixed, bits + 1) == "insufficient-work"
    assert _code(topic, proof(without.settlement, other.settlement), 1) == "insufficient-work"
