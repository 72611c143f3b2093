"""Rules across objects (claim/settlement, sealed claims, receipts, the chain, time)."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import signing_key

from rill.protocol import checks, keys, verify
from rill.protocol import messages as m
from rill.protocol.errors import LocalError, MismatchError, RuleError, SealError
from rill.protocol.months import month_end
from rill.protocol.settle import open_claim, seal_claim, settle

DONOR, ALICE, BOB, EVE = (signing_key(n) for n in ("donor", "alice", "bob", "eve"))
A, B = keys.public_key(ALICE), keys.public_key(BOB)
MONTH = "2026-10"
END = month_end(MONTH)
THINGS = {"https://alice.example/1": A, "https://alice.example/2": A, "https://bob.example/": B}


@pytest.fixture(scope="module")
def res():  # type: ignore[no-untyped-def]
    return settle(DONOR, MONTH, 1000, "EUR", bytes(32), THINGS, work_bits=0)


def claim_of(res, key):  # type: ignore[no-untyped-def]
    return next(c for c in res.claims if c.body.creator == keys.public_key(key))


def test_claims_match_their_settlement(res) -> None:  # type: ignore[no-untyped-def]
    for c in res.claims:
        checks.check_claim(c, res.settlement)
    # 1000 over 3 things: 333 each, the leftover unit to the first thing in split order
    # (lines by creator key bytes)
    first, second = sorted([ALICE, BOB], key=keys.public_key)
    shares = {k: checks.claim_thing_shares(claim_of(res, k), res.settlement)
              for k in (ALICE, BOB)}
    assert shares[first][0] == 334
    assert sorted(shares[first][1:] + shares[second]) == [333] * 2


@pytest.mark.parametrize("change", [
    {"amount": 1},
    {"things": ("https://alice.example/1",)},
    {"things": ("https://alice.example/1", "https://alice.example/3")},
    {"salt": b"\x01" * 32},
    {"settlement": b"\x02" * 32},
    {"month": "2026-09"},
])
def test_a_claim_that_differs_from_its_line_is_refused(res, change) -> None:  # type: ignore[no-untyped-def]
    c = claim_of(res, ALICE)
    forged = m.sign(dataclasses.replace(c.body, **change), DONOR)
    with pytest.raises(MismatchError):
        checks.check_claim(forged, res.settlement)


def test_a_claim_by_another_donor_is_refused(res) -> None:  # type: ignore[no-untyped-def]
    c = claim_of(res, ALICE)
    with pytest.raises(MismatchError):
        checks.check_claim(m.sign(c.body, EVE), res.settlement)


def test_sealed_claims_open_only_for_their_creator(res) -> None:  # type: ignore[no-untyped-def]
    for sealed, claim in zip(res.sealed, res.claims, strict=True):
        checks.check_sealed(sealed, res.settlement)
        owner = ALICE if claim.body.creator == A else BOB
        assert open_claim(sealed, owner) == claim
        assert b"alice.example" not in sealed.raw  # the things stay private
    with pytest.raises(LocalError):
        open_claim(res.sealed[0], EVE)
    # a box re-addressed on its cover does not open for the new addressee
    s = res.sealed[0]
    other = B if s.body.creator == A else A
    moved = m.sign(dataclasses.replace(s.body, creator=other), DONOR)
    with pytest.raises(SealError):
        open_claim(moved, BOB if other == B else ALICE)


def test_sealed_cover_must_match_its_content(res) -> None:  # type: ignore[no-untyped-def]
    s = res.sealed[0]
    owner = ALICE if s.body.creator == A else BOB
    lying = m.sign(dataclasses.replace(s.body, claim=b"\x09" * 32), DONOR)
    with pytest.raises(MismatchError):
        open_claim(lying, owner)
    with pytest.raises(LocalError):
        seal_claim(res.claims[0], EVE)


def _receipt(c, signer, **kw):  # type: ignore[no-untyped-def]
    body = m.Receipt(c.id, c.signer, c.body.month, c.body.currency, c.body.amount, "ref-1",
                     END + 86400)
    return m.sign(dataclasses.replace(body, **kw), signer)


def test_receipt_checks(res) -> None:  # type: ignore[no-untyped-def]
    c = claim_of(res, ALICE)
    doc = m.sign(m.KeyDocument("Alice", ("https://alice.example",), (), END - 86400), ALICE)
    r = _receipt(c, ALICE)
    checks.check_receipt(r, c, doc)
    checks.check_receipt(r, next(s for s in res.sealed if s.body.claim == c.id))
    with pytest.raises(MismatchError):
        checks.check_receipt(_receipt(c, BOB), c)  # wrong key
    with pytest.raises(MismatchError):
        checks.check_receipt(r, key_document=m.sign(doc.body, BOB))
    with pytest.raises(MismatchError):
        checks.check_receipt(_receipt(c, ALICE, claim=b"\x03" * 32), c)
    with pytest.raises(MismatchError):
        checks.check_receipt(_receipt(c, ALICE, currency="USD"), c)
    early = m.sign(m.KeyDocument("Alice", ("https://alice.example",), (), END + 10 * 86400),
                   ALICE)
    with pytest.raises(MismatchError):
        checks.check_receipt(r, key_document=early)


def test_chain_checks() -> None:
    entries = []
    prev = m.ZERO_HASH
    for seq in range(4):
        e = m.sign(m.ClickEntry(seq, prev, 1000 + seq, "click",
                                thing=f"https://a.example/{seq}"), DONOR)
        entries.append(e)
        prev = e.id
    head, nxt = checks.check_chain(entries, signer=keys.public_key(DONOR))
    assert (head, nxt) == (entries[-1].id, 4)
    # resuming from the middle
    assert checks.check_chain(entries[2:], entries[1].id, 2)[0] == head
    with pytest.raises(RuleError, match="seq 2"):
        checks.check_chain([entries[0], entries[1], entries[3]])
    with pytest.raises(RuleError, match="another key"):
        checks.check_chain(entries, signer=A)
    fork = m.sign(m.ClickEntry(2, entries[0].id, 1002, "click", thing="https://x.example/"),
                  DONOR)
    with pytest.raises(RuleError, match="prev"):
        checks.check_chain([entries[0], entries[1], fork])
    # times need not increase: an offline click can be recorded later with its own time
    back = m.sign(m.ClickEntry(2, entries[1].id, 999, "click", thing="https://x.example/"),
                  DONOR)
    checks.check_chain([entries[0], entries[1], back])


def test_time_rules(res) -> None:  # type: ignore[no-untyped-def]
    checks.check_time(res.settlement, END)
    with pytest.raises(RuleError):
        checks.check_time(res.settlement, END - 3600)
    r = _receipt(claim_of(res, ALICE), ALICE)
    checks.check_time(r, END + 86400)
    with pytest.raises(RuleError):
        checks.check_time(r, END)
    with pytest.raises(RuleError):
        checks.check_time(_receipt(claim_of(res, ALICE), ALICE, time=END - 86400), END + 86400)
    e = m.sign(m.ClickEntry(0, m.ZERO_HASH, END, "click", thing="https://a.example/"), DONOR)
    with pytest.raises(RuleError):
        checks.check_time(e, END - 3600)


def test_equivocation_is_dated_by_its_settlements_month() -> None:
    """SPEC §7.4: a proof of two settlements for a month not ended is `future`."""
    for month in ("2026-10", "9999-12"):
        x = settle(DONOR, month, 100, "EUR", bytes(32), THINGS, work_bits=0)
        y = settle(DONOR, month, 101, "EUR", bytes(32), THINGS, work_bits=0)
        a, b = sorted([x.settlement, y.settlement], key=lambda s: s.id)
        proof = m.sign(m.Equivocation(a.raw, b.raw), EVE)
        end = month_end(month)
        checks.check_time(proof, end - checks.MAX_SKEW)
        with pytest.raises(RuleError) as info:
            checks.check_time(proof, end - checks.MAX_SKEW - 1)
        assert info.value.code == "future"


def test_the_last_month_is_only_ever_future() -> None:
    """9999-12 ends at 253402300800: a settlement for it is valid, and refused as `future`
    (not a crash) at any time before."""
    res = settle(DONOR, "9999-12", 100, "EUR", bytes(32), THINGS, work_bits=0)
    assert month_end("9999-12") == 253402300800
    with pytest.raises(RuleError) as info:
        checks.check_time(res.settlement, 253402300800 - checks.MAX_SKEW - 1)
    assert info.value.code == "future"
    checks.check_time(res.settlement, 253402300800 - checks.MAX_SKEW)
    r = _receipt(res.claims[0], ALICE, time=2**53 - 1)
    checks.check_time(r, 2**53 - 1)
    with pytest.raises(RuleError) as info:
        checks.check_time(_receipt(res.claims[0], ALICE, time=END), 2**53 - 1)
    assert info.value.code == "bad-time"


def _batch(*objs: m.Signed[object], now: int = END + 30 * 86400) -> list[verify.Verdict]:
    return verify.verify_files([(f"o{i}", o.raw) for i, o in enumerate(objs)], now)


def test_pairing_receipt_with_key_document_in_force(res) -> None:  # type: ignore[no-untyped-def]
    """SPEC §7.6: the signer's document with the greatest valid_from <= receipt.time."""
    c = claim_of(res, ALICE)
    r = _receipt(c, ALICE)  # time END + 1 day
    t = r.body.time
    old = m.sign(m.KeyDocument("Alice", ("https://alice.example",), (), t - 10 * 86400), ALICE)
    cur = m.sign(m.KeyDocument("Alice 2", ("https://alice.example",), (), t), ALICE)
    later = m.sign(m.KeyDocument("Alice 3", ("https://alice.example",), (), t + 1), ALICE)
    bobs = m.sign(m.KeyDocument("Bob", ("https://bob.example",), (), 0), BOB)
    for order in ((r, later, old, cur, bobs), (bobs, cur, later, r, old), (r, old, cur, later)):
        out = _batch(*order)
        v = next(v for v in out if v.type == "receipt")
        assert v.valid and v.checks == ["key"], v.reason
    # documents of its signer exist, none in force at its time: mismatch
    out = _batch(r, later, bobs)
    v = out[0]
    assert not v.valid and v.reason is not None and v.reason.startswith("mismatch:")
    # no document of its signer: nothing to check
    assert _batch(r, bobs)[0].checks == []


def test_pairing_receipt_with_claim_or_first_cover(res) -> None:  # type: ignore[no-untyped-def]
    c = claim_of(res, ALICE)
    cover = next(s for s in res.sealed if s.body.claim == c.id)
    r = _receipt(c, ALICE)
    # a valid sealed claim by another donor naming the same claim ID
    forged = m.sign(cover.body, EVE)
    out = _batch(r, cover, forged)
    assert out[0].valid and out[0].checks == ["claim"]
    out = _batch(r, forged, cover)  # the first cover in input order is the one paired
    assert not out[0].valid and out[0].reason is not None
    assert out[0].reason.startswith("mismatch:")
    # the claim itself wins over any cover
    out = _batch(forged, r, c)
    assert out[1].valid and out[1].checks == ["claim"]


def test_pairing_ignores_objects_of_another_type_with_the_id(res) -> None:  # type: ignore[no-untyped-def]
    s = res.settlement
    c = claim_of(res, ALICE)
    r = _receipt(c, ALICE, claim=s.id)  # names the settlement's ID as its claim
    out = _batch(s, r)
    assert out[1].valid and out[1].checks == []
    stray = m.sign(dataclasses.replace(c.body, settlement=r.id), DONOR)  # names a receipt
    assert _batch(r, stray)[1].checks == []
