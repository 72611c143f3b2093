"""The gossip gate's relation checks: what a node forwards only when it hangs off
something it holds (rill.node.admission)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import signing_key

from rill.node.admission import ACCEPT, IGNORE, MAX_ORPHANS, REJECT, Admission
from rill.protocol import messages as m
from rill.protocol.months import month_end
from rill.protocol.network import TOPIC_OF
from rill.protocol.preview import Preview, preview
from rill.protocol.settle import settle
from rill.wallet.wallet import Wallet

AFTER = month_end("2026-10") + 3600
C = bytes(signing_key("creator").verify_key)


def pv(obj: Any) -> Preview:
    """The gate's preview of an object (what relate() decides on)."""
    return preview(TOPIC_OF[obj.type], obj.raw)


def _settle(name: str, creators: list[bytes], tag: str = "") -> Any:
    things = {f"https://{name}{tag}.example/{i}": c for i, c in enumerate(creators)}
    return settle(signing_key(name), "2026-10", 1000, "EUR", bytes(32), things,
                  work_bits=4)


@pytest.fixture
def node(tmp_path: Path) -> Any:
    w = Wallet.create(tmp_path / "n", "n", bytes(signing_key("node")))
    gate = Admission(w.home.db_path, w.identity)
    yield w, gate
    gate.close()
    w.close()


def test_claims_need_their_settlement_and_must_match_it(node: Any) -> None:
    w, gate = node
    other = bytes(signing_key("other-creator").verify_key)
    res = _settle("donor", [C, other])
    sealed = next(s for s in res.sealed if s.body.creator == C)
    assert gate.relate(pv(sealed))[0] == IGNORE  # no settlement yet
    w.import_object(res.settlement.raw, AFTER)
    assert gate.relate(pv(sealed)) == (ACCEPT, "matches its settlement")
    # plain claims: no gossip topic carries them (their things are in clear)
    assert all(c.type not in TOPIC_OF for c in res.claims)
    # a cover for a creator the settlement does not pay, signed by the donor
    bogus = m.sign(m.SealedClaim(res.settlement.id, "2026-10",
                                 bytes(signing_key("nobody").verify_key),
                                 sealed.body.claim, sealed.body.box), signing_key("donor"))
    assert gate.relate(pv(bogus))[0] == REJECT
    # the first cover of a line wins
    w.import_object(sealed.raw, AFTER)
    second = m.sign(m.SealedClaim(res.settlement.id, "2026-10", C, sealed.body.claim,
                                  sealed.body.box + b"x"), signing_key("donor"))
    assert gate.relate(pv(second))[0] == IGNORE
    assert gate.relate(pv(sealed))[0] == ACCEPT  # the held one itself (republish)


def test_receipts_keys_and_proofs_hang_off_what_is_held(node: Any) -> None:
    w, gate = node
    res = _settle("donor", [C])
    receipt = m.sign(m.Receipt(res.claims[0].id, res.settlement.signer, "2026-10", "EUR",
                               1000, "ref", AFTER), signing_key("creator"))
    doc = m.sign(m.KeyDocument("C", ("https://c.example",), (), AFTER - 10),
                 signing_key("creator"))
    stranger_doc = m.sign(m.KeyDocument("S", ("https://s.example",), (), AFTER - 10),
                          signing_key("stranger"))
    assert gate.relate(pv(receipt))[0] == IGNORE
    assert gate.relate(pv(doc))[0] == IGNORE
    w.import_object(res.settlement.raw, AFTER)
    w.import_object(res.sealed[0].raw, AFTER)
    assert gate.relate(pv(receipt))[0] == ACCEPT
    assert gate.relate(pv(doc))[0] == ACCEPT  # C is paid by a settlement held here
    assert gate.relate(pv(stranger_doc))[0] == IGNORE
    # equivocation: the first proof wins, later settlements of the month go nowhere
    two = _settle("donor", [C], tag="-again")
    assert gate.relate(pv(two.settlement))[0] == ACCEPT
    assert w.import_object(two.settlement.raw, AFTER).action == "equivocation"
    (_, _, proof_id), = w.equivocation_proofs()
    ours = w._object(proof_id)
    assert gate.relate(pv(ours))[0] == ACCEPT  # we publish our own
    theirs = m.sign(m.Equivocation(ours.body.a, ours.body.b), signing_key("reporter"))
    assert gate.relate(pv(theirs))[0] == IGNORE
    three = _settle("donor", [C], tag="-third")
    assert gate.relate(pv(three.settlement))[0] == IGNORE


def test_what_concerns_us_is_always_taken(node: Any) -> None:
    w, gate = node
    res = _settle("donor", [w.identity])
    assert gate.relate(pv(res.sealed[0])) == (ACCEPT, "concerns us")
    mine = m.sign(m.KeyDocument("me", ("https://me.example",), (), AFTER), w.key)
    assert gate.relate(pv(mine))[0] == ACCEPT


def test_orphans_wait_bounded_and_are_adopted(node: Any) -> None:
    _w, gate = node
    res = _settle("donor", [C])
    sid = res.settlement.id
    assert gate.hold_orphan(sid, res.sealed[0].raw)
    assert not gate.hold_orphan(sid, res.sealed[0].raw)  # once
    for i in range(MAX_ORPHANS + 5):
        gate.hold_orphan(i.to_bytes(32, "big"), b"x")
    assert gate.orphan_count == MAX_ORPHANS
    assert gate.adopt(sid) == []  # the oldest went first
    gate.hold_orphan(sid, res.sealed[0].raw)
    assert gate.adopt(sid) == [res.sealed[0].raw] and gate.adopt(sid) == []
