"""Giving anonymously: monthly pseudonyms (SPEC §2.4), disclosures (§5.10) and the
wallet that keeps the link (receipts, payments, re-settling, equivocation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from helpers import load_vectors, signing_key

from rill.protocol import cbor, keys
from rill.protocol import messages as m
from rill.protocol.disclosure import (
    hkdf_sha256,
    link_input,
    make_disclosure,
    pseudonym_key,
    pseudonym_seed,
)
from rill.protocol.errors import LocalError, RemoteError
from rill.protocol.months import month_end, month_start
from rill.protocol.settle import blind_head, open_claim, settle
from rill.wallet.errors import NotFound, Refused
from rill.wallet.wallet import Wallet

OCT, NOV, DEC = month_start("2026-10"), month_start("2026-11"), month_start("2026-12")
AFTER_OCT, AFTER_NOV, AFTER_DEC = (month_end(x) + 3600 for x in ("2026-10", "2026-11",
                                                                  "2026-12"))


def new(tmp: Path, name: str, seed_name: str | None = None, work_bits: int = 0) -> Wallet:
    w = Wallet.create(tmp / name, name, bytes(signing_key(seed_name or name)))
    w.home.config_path.write_text(f"[network]\nwork_bits = {work_bits}\n")
    return w


@pytest.fixture
def alice(tmp_path: Path) -> Wallet:
    return new(tmp_path, "alice")


@pytest.fixture
def bob(tmp_path: Path) -> Wallet:
    return new(tmp_path, "bob")


def clicks(w: Wallet, start: int, alice: Wallet, bob: Wallet) -> None:
    w.click("https://alice.example/a", start + 10, creator=alice.identity)
    w.click("https://alice.example/b", start + 20, creator=alice.identity)
    w.click("https://bob.example/", start + 30, creator=bob.identity)


def anonymous_donor(tmp: Path, alice: Wallet, bob: Wallet, **only: Any) -> tuple[Wallet, Any]:
    """A donor who clicked alice's and bob's things in October and settled it anonymously
    (``only=`` for the per-creator mode); the settle result."""
    donor = new(tmp, "donor")
    donor.set_budget(1000, "EUR", OCT - 10)
    clicks(donor, OCT, alice, bob)
    donor.set_anonymous("2026-10", True, OCT + 40, **only)
    res, _ = donor.settle("2026-10", AFTER_OCT)
    return donor, res


# -- protocol -----------------------------------------------------------------------------


def test_hkdf_matches_rfc5869_test_case_1() -> None:
    ikm = bytes([0x0B] * 22)
    salt = bytes(range(13))
    info = bytes(range(0xF0, 0xFA))
    okm = hkdf_sha256(ikm, salt, info, 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_pseudonym_vectors() -> None:
    rows = load_vectors()["pseudonyms"]
    assert {r["month"] for r in rows} == {"2026-10", "2026-11"}
    for r in rows:
        seed = pseudonym_seed(bytes.fromhex(r["identity_seed"]), r["month"])
        assert seed.hex() == r["pseudonym_seed"]
        pk = keys.public_key(nacl.signing.SigningKey(seed))
        assert keys.did_from_key(pk) == r["pseudonym"]
    assert rows[0]["pseudonym_seed"] != rows[1]["pseudonym_seed"]
    with pytest.raises(LocalError):
        pseudonym_seed(bytes(32), "2026-13")


def test_disclosure_is_signed_by_both_keys() -> None:
    ident, to = signing_key("ident"), keys.public_key(signing_key("alice"))
    d = make_disclosure(ident, "2026-10", to)
    assert d.signer == keys.public_key(ident)
    assert d.body.pseudonym == keys.public_key(pseudonym_key(ident, "2026-10"))
    assert m.decode(d.raw).body == d.body
    # the proof covers the recipient: readdressing it breaks the proof
    other = m.Disclosure(d.body.pseudonym, d.body.month, d.body.proof,
                         keys.public_key(signing_key("bob")))
    with pytest.raises(LocalError, match=r"bad-disclosure|proof"):
        m.sign(other, ident)
    # and the month
    moved = m.Disclosure(d.body.pseudonym, "2026-11", d.body.proof, to)
    with pytest.raises(LocalError):
        m.sign(moved, ident)
    # a stranger cannot claim someone's pseudonym: the proof must be the pseudonym's
    stranger = signing_key("stranger")
    forged = m.Disclosure(d.body.pseudonym, "2026-10", keys.sign(stranger, link_input(
        keys.public_key(stranger), d.body)), to)
    with pytest.raises(LocalError) as exc:
        m.sign(forged, stranger)
    assert exc.value.code == "bad-disclosure"


def test_a_claim_carries_only_its_own_disclosure() -> None:
    ident = signing_key("ident")
    alice, bob = keys.public_key(signing_key("alice")), keys.public_key(signing_key("bob"))
    p = pseudonym_key(ident, "2026-10")
    res = settle(p, "2026-10", 100, "EUR", bytes(32), {"https://b.example/": bob},
                 work_bits=0, disclosures={bob: make_disclosure(ident, "2026-10", bob).raw})
    claim = res.claims[0]
    assert m.decode(claim.raw).body.disclosure is not None
    wrong = [make_disclosure(ident, "2026-10", alice).raw,       # to another creator
             make_disclosure(ident, "2026-11", bob).raw,         # of another month's key
             make_disclosure(signing_key("x"), "2026-10", bob).raw]  # of another donor
    for raw in wrong:
        body = claim.body.to_map() | {"disclosure": raw}
        env = cbor.encode({"v": 1, "t": "claim", "body": body, "signer": claim.signer,
                           "sig": keys.sign(p, m.signing_input("claim", cbor.encode(body)))})
        with pytest.raises(RemoteError) as exc:
            m.decode(env)
        assert exc.value.code == "bad-disclosure"


# -- wallet -------------------------------------------------------------------------------


def test_an_anonymous_month_end_to_end(tmp_path: Path, alice: Wallet, bob: Wallet) -> None:
    donor = new(tmp_path, "donor", work_bits=8)
    donor.set_budget(1000, "EUR", OCT - 10)
    clicks(donor, OCT, alice, bob)
    a = donor.set_anonymous("2026-10", True, OCT + 40, only=(alice.identity,))
    assert a is not None and a.pseudonym != donor.identity
    res, made = donor.settle("2026-10", AFTER_OCT)
    assert made and res.settlement.signer == a.pseudonym
    assert res.settlement.body.head == blind_head(pseudonym_key(donor.key, "2026-10"),
                                                  donor.verify_log().head)
    assert donor.verify_log().settled == ["2026-10"]
    # settling again, here or on another device with the same seed and log: same bytes
    again, made = donor.settle("2026-10", AFTER_OCT + 99)
    assert not made and again.settlement.raw == res.settlement.raw
    twin = new(tmp_path, "twin", seed_name="donor", work_bits=8)
    twin.set_budget(1000, "EUR", OCT - 10)
    clicks(twin, OCT, alice, bob)
    twin.set_anonymous("2026-10", True, OCT + 40, only=(alice.identity,))
    twin_res, _ = twin.settle("2026-10", AFTER_OCT + 5)
    assert [o.raw for o in (twin_res.settlement, *twin_res.claims, *twin_res.sealed)] == \
        [o.raw for o in (res.settlement, *res.claims, *res.sealed)]
    with pytest.raises(Refused) as exc:  # how a month is given cannot change once settled
        donor.set_anonymous("2026-10", False, AFTER_OCT)
    assert exc.value.code == "settled"
    # every object of the month is kept as our own
    assert {k for (k,) in donor.db.execute("SELECT DISTINCT keep FROM objects")} == {2}
    # alice (hidden from) learns nothing of the donor; bob is told, in his claim alone
    for creator in (alice, bob):
        creator.import_object(res.settlement.raw, AFTER_OCT)
        for s in res.sealed:
            creator.import_object(s.raw, AFTER_OCT)
    claim_alice = next(c for c in res.claims if c.body.creator == alice.identity)
    claim_bob = next(c for c in res.claims if c.body.creator == bob.identity)
    sealed_alice = next(s for s in res.sealed if s.body.creator == alice.identity)
    opened = open_claim(sealed_alice, alice.key)
    assert opened.body.disclosure is None and donor.identity not in opened.raw
    assert alice.obligation(claim_alice.id).donor == a.pseudonym
    assert alice.disclosed_identities() == {}
    assert bob.disclosed_identities() == {a.pseudonym: donor.identity}
    assert bob.obligation(claim_bob.id).donor == a.pseudonym
    # pay, receipt: the receipt names the pseudonym and lands in the donor's wallet
    donor.pay([claim_alice.id], "LN-abc", AFTER_OCT + 10)
    receipt = alice.sign_receipt(claim_alice.id, AFTER_OCT + 20, "LN-abc")
    assert receipt.body.donor == a.pseudonym
    assert donor.import_object(receipt.raw, AFTER_OCT + 30).action == "receipted"
    assert donor.obligation(claim_alice.id).state == "receipted"
    assert donor.pseudonyms_to_sync() == [a.pseudonym]  # bob has not receipted yet
    r2 = bob.sign_receipt(claim_bob.id, AFTER_OCT + 40)
    assert donor.import_object(r2.raw, AFTER_OCT + 50).action == "receipted"
    assert donor.pseudonyms_to_sync() == []
    # the month's disclosure, on request, for whom the donor chooses
    d = donor.disclose("2026-10", to=keys.public_key(signing_key("friend")))
    assert (d.signer, d.body.pseudonym) == (donor.identity, a.pseudonym)
    with pytest.raises(NotFound):
        donor.disclose("2026-11")


def test_equivocation_is_caught_per_pseudonym_and_month(tmp_path: Path, alice: Wallet,
                                                        bob: Wallet) -> None:
    donor, res = anonymous_donor(tmp_path, alice, bob)
    # a second, different settlement signed by the same pseudonym for the same month
    p = pseudonym_key(donor.key, "2026-10")
    other = settle(p, "2026-10", 1000, "EUR", bytes(32),
                   {"https://alice.example/a": alice.identity}, work_bits=0)
    alice.import_object(res.settlement.raw, AFTER_OCT)
    r = alice.import_object(other.settlement.raw, AFTER_OCT)
    assert r.action == "equivocation"
    assert alice.equivocators() == {keys.public_key(p): "2026-10"}
    # the donor's next month's pseudonym is another key: it is not marked
    assert pseudonym_key(donor.key, "2026-11").verify_key != p.verify_key


def _atoms(v: Any, out: dict[str, set[Any]], field: str = "") -> None:
    """Every leaf value of a decoded object, by kind (bytes, text, int)."""
    if isinstance(v, dict):
        for k, x in v.items():
            _atoms(x, out, k)
    elif isinstance(v, list):
        for x in v:
            _atoms(x, out, field)
    elif isinstance(v, bytes):
        out["bytes"].add(v)
    elif isinstance(v, str):
        out["text"].add(v)
    else:
        out["int"].add((field, v))


def _gossip(objs: list[m.Signed[Any]]) -> dict[str, set[Any]]:
    out: dict[str, set[Any]] = {"bytes": set(), "text": set(), "int": set()}
    for o in objs:
        env = cbor.decode(o.raw)
        assert m.decode(o.raw).raw == o.raw  # valid objects, as gossip carries them
        _atoms(env, out)
        out["bytes"].add(o.id)
    return out


def test_an_observer_of_two_months_of_gossip_cannot_link_them(tmp_path: Path, alice: Wallet,
                                                              bob: Wallet) -> None:
    """October and November given anonymously, December normally: everything each month
    puts on the network (settlement, sealed claims, the creators' receipts) shares no
    key, salt, commitment, ID, signature, box or other byte or text value with another
    month or with the identity, and no object contains another's key bytes."""
    donor = new(tmp_path, "donor", work_bits=8)
    donor.set_budget(1000, "EUR", OCT - 10)
    months = [("2026-10", OCT, AFTER_OCT), ("2026-11", NOV, AFTER_NOV),
              ("2026-12", DEC, AFTER_DEC)]
    donor.set_anonymous("2026-10", True, OCT)
    donor.set_anonymous("2026-11", True, OCT)
    published: dict[str, list[m.Signed[Any]]] = {}
    for mo, start, after in months:
        clicks(donor, start, alice, bob)  # the same things and creators every month
        res, _ = donor.settle(mo, after)
        objs: list[m.Signed[Any]] = [res.settlement, *res.sealed]
        for creator in (alice, bob):
            creator.import_object(res.settlement.raw, after)
            for s in res.sealed:
                creator.import_object(s.raw, after)
        for c in res.claims:
            creator = alice if c.body.creator == alice.identity else bob
            ref = f"{mo}-{creator.home.config().name or 'x'}-{c.id.hex()[:6]}"
            objs.append(creator.sign_receipt(c.id, after + 60, ref))
        published[mo] = objs
    oct_, nov, dec = (_gossip(published[mo]) for mo, _, _ in months)
    creators = {alice.identity, bob.identity}
    identity = donor.identity
    signers = {mo: {o.signer for o in objs} - creators for mo, objs in published.items()}
    assert signers["2026-12"] == {identity}
    assert len(signers["2026-10"]) == len(signers["2026-11"]) == 1
    assert signers["2026-10"].isdisjoint(signers["2026-11"] | {identity})
    for a, b, what in ((oct_, nov, "October and November"), (oct_, dec, "October and "
                       "the identity's December"), (nov, dec, "November and December")):
        shared_bytes = a["bytes"] & b["bytes"]
        assert shared_bytes <= creators, (what, [x.hex() for x in shared_bytes - creators])
        # the envelope's type names and the currency; months, things, references differ
        assert a["text"] & b["text"] <= {"EUR", *m.BODY_TYPES}, what
    for mo in ("2026-10", "2026-11"):
        anon = published[mo]
        for o in anon:  # not even inside another value (a box, a claim's bytes)
            assert identity not in o.raw
            for other in ("2026-10", "2026-11"):
                if other != mo:
                    assert next(iter(signers[other])) not in o.raw
    # what the integers share is the budget's shape, not a key: the same budget split
    # over the same things (SPEC §13: amounts remain a fingerprint)
    shared_ints = {f for f, _ in oct_["int"] & nov["int"]}
    assert shared_ints <= {"v", "budget", "amount", "things"}
    assert not {v for f, v in oct_["int"] if f == "work"} & {v for f, v in nov["int"]
                                                            if f == "work"}


def test_export_and_import_keep_the_anonymous_months(tmp_path: Path, alice: Wallet,
                                                     bob: Wallet) -> None:
    from rill.wallet.portable import export_home, import_home

    donor, res = anonymous_donor(tmp_path, alice, bob, only=(bob.identity,))
    claim = next(c for c in res.claims if c.body.creator == alice.identity)
    sealed = next(s for s in res.sealed if s.body.claim == claim.id)
    donor.pay([claim.id], "REF-1", AFTER_OCT + 5)
    data = export_home(donor, with_key=True)
    restored = import_home(tmp_path / "restored", data, AFTER_OCT + 10)
    assert restored.anonymous_months() == donor.anonymous_months()
    assert restored.stored_settlement("2026-10") == res
    assert restored.obligation(claim.id).state == "paid"
    assert restored.verify_log().settled == ["2026-10"]
    # a receipt to the pseudonym lands in the restored home too
    alice.import_object(res.settlement.raw, AFTER_OCT)
    alice.import_object(sealed.raw, AFTER_OCT)
    r = alice.sign_receipt(claim.id, AFTER_OCT + 20, "REF-1")
    assert restored.import_object(r.raw, AFTER_OCT + 30).action == "receipted"
    with pytest.raises(Refused):  # settled: the choice is frozen in the restored home too
        restored.set_anonymous("2026-10", False, AFTER_OCT + 40)


def test_an_anonymous_months_claims_are_paid_apart(tmp_path: Path, alice: Wallet,
                                                   bob: Wallet) -> None:
    """One payment for the identity's and the pseudonym's claims to one creator would link
    them (the same transfer, both claim IDs in its reference): due() never sums them."""
    donor = new(tmp_path, "donor")
    donor.home.config_path.write_text("[network]\nwork_bits = 0\n[payments]\nmin_payout = 0\n")
    donor.set_budget(1000, "EUR", OCT - 10)
    clicks(donor, OCT, alice, bob)
    oct_res, _ = donor.settle("2026-10", AFTER_OCT)
    clicks(donor, NOV, alice, bob)
    a = donor.set_anonymous("2026-11", True, NOV)
    assert a is not None
    nov_res, _ = donor.settle("2026-11", AFTER_NOV)
    due = [p for p in donor.due() if p.creator == alice.identity]
    assert sorted((p.pseudonym or b"", len(p.claims)) for p in due) == sorted(
        [(b"", 1), (a.pseudonym, 1)])
    by_key = {p.pseudonym: p for p in due}
    assert by_key[None].claims == tuple(c.id for c in oct_res.claims
                                        if c.body.creator == alice.identity)
    assert by_key[a.pseudonym].claims == tuple(c.id for c in nov_res.claims
                                               if c.body.creator == alice.identity)
    assert by_key[a.pseudonym].as_json()["pseudonym"] == keys.did_from_key(a.pseudonym)


def test_a_truncated_log_is_caught_under_a_blinded_head(tmp_path: Path, alice: Wallet,
                                                        bob: Wallet) -> None:
    from rill.wallet.errors import Corrupt

    donor, res = anonymous_donor(tmp_path, alice, bob)
    head = donor.verify_log().head
    assert res.settlement.body.head not in (head, m.ZERO_HASH)  # blinded, not the entry ID
    donor.db.execute("DELETE FROM log WHERE id = ?", (head,))
    with pytest.raises(Corrupt, match="lost entries"):
        donor.verify_log()
