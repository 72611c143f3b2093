"""rill.wallet end to end through its API (no network, no clock: `now` is passed in)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from helpers import signing_key

from rill.protocol import messages as m
from rill.protocol.errors import LocalError, RemoteError
from rill.protocol.months import month_end, month_start
from rill.protocol.work import find_work, work_bits
from rill.wallet.errors import Corrupt, HomeError, NotFound, Refused
from rill.wallet.home import Config
from rill.wallet.portable import export_home, import_home
from rill.wallet.wallet import Wallet

OCT = month_start("2026-10")
NOV = month_start("2026-11")
AFTER = month_end("2026-10") + 3600


def new(tmp: Path, name: str) -> Wallet:
    return Wallet.create(tmp / name, name, bytes(signing_key(name)))


@pytest.fixture
def donor(tmp_path: Path) -> Wallet:
    w = new(tmp_path, "donor")
    w.set_budget(1000, "EUR", OCT - 10)
    return w


@pytest.fixture
def alice(tmp_path: Path) -> Wallet:
    return new(tmp_path, "alice")


@pytest.fixture
def bob(tmp_path: Path) -> Wallet:
    return new(tmp_path, "bob")


def test_init_refuses_to_overwrite_and_key_is_private(tmp_path: Path) -> None:
    w = new(tmp_path, "x")
    assert (tmp_path / "x" / "identity.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(HomeError):
        Wallet.create(tmp_path / "x", "x", bytes(32))
    assert Wallet.open(tmp_path / "x").did == w.did
    with pytest.raises(HomeError, match="rill init"):
        Wallet.open(tmp_path / "nothing")
    (tmp_path / "x" / "identity.key").chmod(0o644)
    with pytest.raises(HomeError, match="chmod 600"):
        Wallet.open(tmp_path / "x")


def test_database_settings(donor: Wallet) -> None:
    assert donor.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert donor.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_one_flattr_per_thing_per_month(donor: Wallet, alice: Wallet) -> None:
    assert donor.click("https://a.example/1", OCT + 1).new
    assert not donor.click("HTTPS://A.example/1#frag", OCT + 2).new
    # naming the creator later adds the entry that tells who made it
    assert donor.click("https://a.example/1", OCT + 3, creator=alice.identity).new
    assert not donor.click("https://a.example/1", OCT + 4, creator=alice.identity).new
    assert donor.click("https://a.example/1", NOV + 1).new  # a new month
    assert donor.month_view("2026-10").things == {"https://a.example/1": alice.identity}


def test_clicks_refused_in_the_future_and_in_settled_months(donor: Wallet, alice: Wallet
                                                            ) -> None:
    donor.click("https://a.example/", OCT + 5, creator=alice.identity)
    with pytest.raises(Refused, match="future"):
        donor.click("https://b.example/", OCT + 10, at=NOV + 86400)
    donor.settle("2026-10", AFTER)
    size = donor._log_size()
    with pytest.raises(Refused, match="settled"):
        donor.click("https://b.example/", AFTER, at=OCT + 100)
    with pytest.raises(Refused, match="settled"):
        donor.click("https://a.example/", AFTER, at=OCT + 100)  # even a repeat
    assert donor._log_size() == size
    # clicks at the current time still work
    assert donor.click("https://b.example/", AFTER).new


def test_bad_input_changes_nothing(donor: Wallet) -> None:
    size = donor._log_size()
    with pytest.raises(LocalError):
        donor.click("not a url", OCT)
    with pytest.raises(LocalError):
        donor.set_budget(100, "XYZ", OCT)
    with pytest.raises(LocalError):
        donor.subscribe("did:key:z6Mkwrong", OCT)
    with pytest.raises(NotFound):
        donor.unsubscribe("https://never.example/", OCT)
    with pytest.raises(Refused):
        donor.set_budget(-5, "EUR", OCT)
    with pytest.raises(NotFound):
        donor.pay([b"\x01" * 32], "ref", OCT)
    assert donor._log_size() == size


def test_budget_change_applies_from_its_month(donor: Wallet) -> None:
    donor.set_budget(2000, "EUR", NOV + 10)
    assert donor.budget("2026-10") == (1000, "EUR")
    assert donor.budget("2026-11") == (2000, "EUR")


def test_settlement_is_exact_idempotent_and_leaves_pending_out(donor: Wallet, alice: Wallet,
                                                               bob: Wallet) -> None:
    donor.click("https://a.example/1", OCT + 1, creator=alice.identity)
    donor.click("https://a.example/2", OCT + 2, creator=alice.identity)
    donor.click("https://b.example/", OCT + 3, creator=bob.identity)
    donor.click("https://unknown.example/", OCT + 4)  # pending: left out
    with pytest.raises(Refused, match="not ended"):
        donor.settle("2026-10", month_end("2026-10") - 1)
    res, new = donor.settle("2026-10", AFTER)
    assert new
    s = res.settlement.body
    assert (s.budget, s.things) == (1000, 3)
    # 1000 over 3 things: 334 + 333 + 333; the leftover unit goes to the first in split order
    assert sorted(c.body.amount for c in res.claims) in ([333, 667], [334, 666])
    again, new2 = donor.settle("2026-10", AFTER + 999)
    assert not new2
    assert again.settlement.raw == res.settlement.raw
    assert [c.raw for c in again.claims] == [c.raw for c in res.claims]
    assert [c.raw for c in again.sealed] == [c.raw for c in res.sealed]
    # a later month settled freezes the earlier ones too
    donor.settle("2026-11", month_end("2026-11"))
    with pytest.raises(Refused):
        donor.settle("2026-09", month_end("2026-11"))


def test_no_budget_no_settlement(tmp_path: Path) -> None:
    w = new(tmp_path, "nobudget")
    w.click("https://a.example/", OCT)
    with pytest.raises(Refused, match="no budget"):
        w.settle("2026-10", AFTER)


def test_subscriptions_count_every_month(donor: Wallet, alice: Wallet) -> None:
    donor.subscribe(alice.did, OCT + 5, months=2)
    donor.subscribe("https://feed.example/", OCT + 6, creator=alice.identity)
    assert set(donor.subscriptions(OCT + 7)) == {alice.did, "https://feed.example/"}
    donor.unsubscribe("https://feed.example/", NOV + 5)
    assert set(donor.month_view("2026-10").known) == {alice.did, "https://feed.example/"}
    assert set(donor.month_view("2026-11").known) == {alice.did}
    assert donor.month_view("2026-12").known == {}
    assert donor.subscriptions(month_start("2026-12")) == {}


def _settled_pair(donor: Wallet, alice: Wallet) -> tuple[m.Signed[m.Claim], m.Signed]:  # type: ignore[type-arg]
    donor.click("https://a.example/1", OCT + 1, creator=alice.identity)
    res, _ = donor.settle("2026-10", AFTER)
    return res.claims[0], res


def test_obligation_lifecycle(donor: Wallet, alice: Wallet, bob: Wallet) -> None:
    claim, res = _settled_pair(donor, alice)
    assert donor.obligation(claim.id).state == "owed"
    # the creator takes in the settlement and its sealed claim
    assert alice.import_object(res.settlement.raw, AFTER).action == "stored"
    got = alice.import_object(res.sealed[0].raw, AFTER)
    assert got.action == "claim-received" and got.id == claim.id
    assert alice.obligation(claim.id).direction == "in"
    e = alice.earnings()[0]  # an IOU is a promise: not support until it is paid
    assert (e["promisers"], e["supporters"], e["promised"], e["paid"]) == (1, 0, 1000, 0)
    assert e["new_promisers"] == [donor.did] and e["new_supporters"] == []
    # bob cannot open alice's sealed claim: it is just stored
    bob.import_object(res.settlement.raw, AFTER)
    assert bob.import_object(res.sealed[0].raw, AFTER).action == "stored"
    with pytest.raises(NotFound):
        bob.obligation(claim.id)
    donor.pay([claim.id], "SEPA-E2E-1", AFTER + 10)
    assert donor.obligation(claim.id).state == "paid"
    receipt = alice.sign_receipt(claim.id, AFTER + 20, "SEPA-E2E-1")
    assert alice.sign_receipt(claim.id, AFTER + 30).raw == receipt.raw  # idempotent
    assert alice.obligation(claim.id).state == "receipted"
    e = alice.earnings()[0]
    assert (e["promisers"], e["supporters"], e["promised"], e["paid"]) == (0, 1, 0, 1000)
    assert e["new_supporters"] == [donor.did] and e["top_things"][0]["supporters"] == 1
    assert alice.relations() == {donor.identity: "paid-us"}
    assert donor.import_object(receipt.raw, AFTER + 40).action == "receipted"
    assert donor.obligation(claim.id).state == "receipted"
    assert donor.import_object(receipt.raw, AFTER + 50).action == "duplicate"
    # receipted is final
    with pytest.raises(Refused):
        donor.pay([claim.id], "again", AFTER + 60)
    with pytest.raises(sqlite3.IntegrityError):
        donor.db.execute("UPDATE obligations SET state = 'owed' WHERE claim = ?", (claim.id,))


def test_receipt_signed_by_the_wrong_key_is_refused(donor: Wallet, alice: Wallet,
                                                    bob: Wallet) -> None:
    claim, _ = _settled_pair(donor, alice)
    forged = m.sign(m.Receipt(claim.id, donor.identity, "2026-10", "EUR", 1000, "x",
                              AFTER + 5), bob.key)
    with pytest.raises(Refused, match="not signed by the claim's creator"):
        donor.import_object(forged.raw, AFTER + 10)
    assert donor.obligation(claim.id).state == "owed"
    unknown = m.sign(m.Receipt(b"\x07" * 32, donor.identity, "2026-10", "EUR", 1, "",
                               AFTER + 5), alice.key)
    with pytest.raises(NotFound):
        donor.import_object(unknown.raw, AFTER + 10)
    with pytest.raises(RemoteError):
        donor.import_object(forged.raw[:-1], AFTER + 10)


def test_a_claim_waits_for_its_settlement(donor: Wallet, alice: Wallet) -> None:
    claim, res = _settled_pair(donor, alice)
    assert alice.import_object(res.sealed[0].raw, AFTER).action == "pending"
    assert alice.obligations() == []
    r = alice.import_object(res.settlement.raw, AFTER)
    assert "1 waiting claim(s) taken in" in r.detail
    assert alice.obligation(claim.id).state == "owed"
    # the opened claim is private: never among what peers may fetch
    assert alice.db.execute("SELECT private FROM objects WHERE id = ?",
                            (claim.id,)).fetchone()[0] == 1


def test_equivocation_is_detected_and_marked(tmp_path: Path, alice: Wallet, bob: Wallet
                                             ) -> None:
    from rill.protocol.settle import settle

    key = signing_key("cheat")
    a = settle(key, "2026-10", 100, "EUR", bytes(32), {"https://a.example/": alice.identity})
    b = settle(key, "2026-10", 100, "EUR", bytes(32), {"https://b.example/": alice.identity})
    alice.import_object(a.settlement.raw, AFTER)
    r = alice.import_object(b.settlement.raw, AFTER)
    assert r.action == "equivocation"
    assert "2026-10" in alice.equivocators().values()
    proof_id = bytes.fromhex(r.detail.rsplit(" ", 1)[1])
    proof = alice._object(proof_id, m.Equivocation)
    # the proof convinces anyone else
    bob.import_object(proof.raw, AFTER)
    assert list(bob.equivocators().values()) == ["2026-10"]


def test_carry_forward_below_minimum_payout(donor: Wallet, alice: Wallet, bob: Wallet) -> None:
    donor.home.config_path.write_text("[payments]\nmin_payout = 600\n")
    donor.click("https://a.example/", OCT + 1, creator=alice.identity)
    donor.click("https://b.example/", OCT + 2, creator=bob.identity)
    donor.settle("2026-10", AFTER)  # 500 each: below 600, carried forward
    assert [p.payable for p in donor.due()] == [False, False]
    assert not any(o.payable for o in donor.obligations())
    donor.click("https://a.example/2", NOV + 1, creator=alice.identity)
    donor.settle("2026-11", month_end("2026-11"))  # alice: 500 + 1000 -> payable
    due = {p.creator: p for p in donor.due()}
    assert due[alice.identity].amount == 1500 and due[alice.identity].payable
    assert len(due[alice.identity].claims) == 2
    assert not due[bob.identity].payable


def test_payment_instructions_use_the_creators_payto(donor: Wallet, alice: Wallet) -> None:
    claim, _ = _settled_pair(donor, alice)
    assert donor.due()[0].uris == ()
    doc = m.sign(m.KeyDocument("Alice", ("https://a.example",),
                               ("payto://iban/DE75512108001245126199",), OCT), alice.key)
    donor.import_object(doc.raw, AFTER)
    (p,) = donor.due()
    assert p.uris == ("payto://iban/DE75512108001245126199?amount=EUR:10.00&message="
                      + claim.id.hex(),)


def test_tampered_rows_are_detected(donor: Wallet, alice: Wallet, tmp_path: Path) -> None:
    for i in range(5):
        donor.click(f"https://a.example/{i}", OCT + i, creator=alice.identity)
    donor.verify_log()
    # change a row's indexed column
    donor.db.execute("UPDATE log SET target = 'https://evil.example/' WHERE seq = 2")
    with pytest.raises(Corrupt, match="row 2"):
        donor.verify_log()
    with pytest.raises(Refused):
        pass_through_settle(donor)
    donor.db.execute("UPDATE log SET target = 'https://a.example/1' WHERE seq = 2")
    donor.verify_log()
    # change a signed entry and its columns consistently: the next entry's link breaks
    rid, raw = donor.db.execute("SELECT id, raw FROM log WHERE seq = 1").fetchone()
    bad = raw.replace(b"a.example/0", b"b.example/0")
    assert bad != raw
    import hashlib

    donor.db.execute("UPDATE log SET raw = ?, id = ?, target = 'https://b.example/0' "
                     "WHERE seq = 1", (bad, hashlib.sha256(bad).digest()))
    with pytest.raises(Corrupt, match="seq 2"):
        donor.verify_log()
    donor.db.execute("UPDATE log SET raw = ?, id = ?, target = 'https://a.example/0' "
                     "WHERE seq = 1", (raw, rid))
    donor.verify_log()
    # the head itself: its signature no longer verifies, even when opening
    head = donor.db.execute("SELECT raw FROM log ORDER BY seq DESC LIMIT 1").fetchone()[0]
    donor.db.execute("UPDATE log SET raw = ? WHERE seq = 5",
                     (head[:-40] + bytes([head[-40] ^ 1]) + head[-39:],))
    with pytest.raises(Corrupt):
        Wallet.open(donor.home.path)


def pass_through_settle(w: Wallet) -> None:
    try:
        w.settle("2026-10", AFTER)
    except Corrupt as exc:
        raise Refused(str(exc)) from None


def test_export_import_round_trip(donor: Wallet, alice: Wallet, tmp_path: Path) -> None:
    claim, res = _settled_pair(donor, alice)
    donor.click("https://later.example/", NOV + 5)
    donor.pay([claim.id], "REF-9", AFTER)
    alice.import_object(res.settlement.raw, AFTER)
    alice.import_object(res.sealed[0].raw, AFTER)
    rec = alice.sign_receipt(claim.id, AFTER + 1, "REF-9")
    donor.import_object(rec.raw, AFTER + 2)

    data = export_home(donor)
    with pytest.raises(Refused, match="no private key"):
        import_home(tmp_path / "restored", data, AFTER)
    assert not (tmp_path / "restored").exists()
    full = export_home(donor, with_key=True)
    restored = import_home(tmp_path / "restored", full, AFTER)
    assert restored.did == donor.did
    assert restored.verify_log().size == donor.verify_log().size
    assert [o.as_json() for o in restored.obligations()] == [
        o.as_json() for o in donor.obligations()]
    again, new = restored.settle("2026-10", AFTER + 100)
    assert not new and again.settlement.raw == res.settlement.raw
    # the creator's side too
    a2 = import_home(tmp_path / "alice2", export_home(alice, with_key=True), AFTER)
    assert a2.earnings() == alice.earnings()
    # importing again into the same home is harmless; into another identity is refused
    import_home(tmp_path / "restored", full, AFTER).close()
    with pytest.raises(Refused, match="another identity"):
        import_home(alice.home.path, full, AFTER)


def test_import_verifies_everything_before_writing(donor: Wallet, alice: Wallet,
                                                   tmp_path: Path) -> None:
    for i in range(3):
        donor.click(f"https://a.example/{i}", OCT + i, creator=alice.identity)
    good = export_home(donor, with_key=True)
    # flip one byte inside the second log entry's signature
    entry = donor.db.execute("SELECT raw FROM log WHERE seq = 1").fetchone()[0]
    at = good.index(entry) + len(entry) - 45
    bad = good[:at] + bytes([good[at] ^ 1]) + good[at + 1:]
    with pytest.raises(Refused, match="log entry 1"):
        import_home(tmp_path / "r", bad, AFTER)
    assert not (tmp_path / "r").exists()
    with pytest.raises(Refused, match="not a Rill export"):
        import_home(tmp_path / "r", b"garbage", AFTER)


def test_config_work_bits() -> None:
    assert Config.parse("").work_bits == 20
    assert Config.parse("[network]\nwork_bits = 0\n").work_bits == 0
    assert Config.parse("[network]\nwork_bits = 32\n").work_bits == 32
    for bad in ("-1", "33", '"20"', "20.0", "true"):
        with pytest.raises(HomeError, match="work_bits"):
            Config.parse(f"[network]\nwork_bits = {bad}\n")
    with pytest.raises(HomeError, match=r"\[network\]"):
        Config.parse("network = 5\n")


def test_settlements_carry_the_configured_work(donor: Wallet, alice: Wallet) -> None:
    assert donor.config.work_bits == 20  # what `rill init` writes
    donor.home.config_path.write_text("[network]\nwork_bits = 6\n")
    donor.click("https://a.example/", OCT + 1, creator=alice.identity)
    res, _ = donor.settle("2026-10", AFTER)
    s = res.settlement.body
    assert s.work == find_work(donor.identity, "2026-10", 6)
    assert work_bits(donor.identity, "2026-10", s.work) >= 6
    donor.home.config_path.write_text("[network]\nwork_bits = 0\n")
    donor.click("https://a.example/2", NOV + 1, creator=alice.identity)
    res, _ = donor.settle("2026-11", month_end("2026-11"))
    assert res.settlement.body.work is None
    donor.home.config_path.write_text("[network]\nwork_bits = 99\n")
    with pytest.raises(HomeError):
        Wallet.open(donor.home.path)
