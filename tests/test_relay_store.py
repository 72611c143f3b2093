"""The relay store under spam: protection classes, per-signer quota, eviction of the
newest signers first, the cap held exactly, and the schema upgrade that brought them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from helpers import signing_key

from rill.node import relay
from rill.protocol.months import month_end, month_start
from rill.protocol.settle import settle
from rill.wallet.errors import Refused
from rill.wallet.wallet import Wallet

OCT = month_start("2026-10")
AFTER = month_end("2026-10") + 3600


def _settlement(name: str, creators: list[bytes], month: str = "2026-10") -> Any:
    things = {f"https://{name}.example/{i}": c for i, c in enumerate(creators)}
    return settle(signing_key(name), month, 1000, "EUR", bytes(32), things, work_bits=4)


def _objects(w: Wallet) -> dict[bytes, int]:
    return {bytes(i): k for i, k in w.db.execute("SELECT id, keep FROM objects")}


@pytest.fixture
def node(tmp_path: Path) -> Any:
    w = Wallet.create(tmp_path / "node", "node", bytes(signing_key("node")))
    yield w
    w.close()


def test_classes_quota_and_newest_signers_evicted_first(node: Wallet) -> None:
    me = node.identity
    # old honest third parties, a settlement that pays us, then a flood of new signers
    honest = [_settlement(f"honest{i}", [bytes(signing_key("c").verify_key)]) for i in range(5)]
    mine = _settlement("donor-of-mine", [me])
    for r in honest:
        for obj in (r.settlement, *r.sealed):
            node.import_object(obj.raw, AFTER)
    node.import_object(mine.settlement.raw, AFTER)
    node.import_object(mine.sealed[0].raw, AFTER)
    classes = _objects(node)
    assert classes[mine.settlement.id] == 2 and classes[mine.sealed[0].id] == 2
    assert {classes[r.settlement.id] for r in honest} == {0}
    honest_ids = {o.id for r in honest for o in (r.settlement, *r.sealed)}
    before = relay.totals(node)
    cap = before.relay + 3000  # room for a few more objects, not for the flood
    spam = [_settlement(f"sybil{i}", [bytes(signing_key("c").verify_key)]) for i in range(40)]
    evicted: list[bytes] = []
    for r in spam:
        for obj in (r.settlement, *r.sealed):
            node.import_object(obj.raw, AFTER)
        evicted += relay.enforce_cap(node, cap)
        assert relay.totals(node).relay <= cap  # held after every batch
    held = set(_objects(node))
    assert honest_ids <= held  # nothing honest and old was pushed out
    assert mine.settlement.id in held and mine.sealed[0].id in held
    spam_ids = [o.id for r in spam for o in (r.settlement, *r.sealed)]
    assert evicted and set(evicted) <= set(spam_ids)
    # the first spammers got in while there was room; the later ones were the ones evicted
    assert spam[0].settlement.id in held and spam[-1].settlement.id not in held
    # a signer over its quota is refused outright
    node.relay_quota = 10
    extra = _settlement("latecomer", [bytes(signing_key("c").verify_key)])
    with pytest.raises(Refused, match="quota"):
        node.import_object(extra.settlement.raw, AFTER)
    assert not node.has_object(extra.settlement.id)


def test_cap_counts_only_other_peoples_objects_and_class_two_is_never_evicted(
        node: Wallet) -> None:
    own = _settlement("payer", [node.identity])
    node.import_object(own.settlement.raw, AFTER)
    node.import_object(own.sealed[0].raw, AFTER)
    t = relay.totals(node)
    assert t.own > 0 and t.relay == 0
    assert relay.enforce_cap(node, 0) == []  # nothing to evict: it concerns us
    other = _settlement("other", [bytes(signing_key("c").verify_key)])
    node.import_object(other.settlement.raw, AFTER)
    assert relay.enforce_cap(node, 0) == [other.settlement.id]
    assert relay.totals(node).relay == 0 and node.has_object(own.settlement.id)
    # the byte totals the triggers keep equal a recount
    total = node.db.execute("SELECT coalesce(sum(length(raw)), 0) FROM objects").fetchone()[0]
    t = relay.totals(node)
    assert t.own + t.relay == total


def test_relations_protect_a_signer_before_strangers(node: Wallet) -> None:
    c = bytes(signing_key("c").verify_key)
    friend = _settlement("friend", [c])
    stranger = _settlement("stranger", [c])
    node.import_object(friend.settlement.raw, AFTER)
    node.import_object(stranger.settlement.raw, AFTER)
    node.db.execute("BEGIN")
    assert node.add_relation(friend.settlement.signer, "peer", AFTER)
    node.db.execute("COMMIT")
    assert _objects(node)[friend.settlement.id] == 1
    assert _objects(node)[stranger.settlement.id] == 0
    # the stranger arrived later but is class 0: it goes first even if the friend is newer
    gone = relay.enforce_cap(node, len(friend.settlement.raw))
    assert gone == [stranger.settlement.id]
    assert node.has_object(friend.settlement.id)


def test_window_prune_keeps_what_concerns_us(node: Wallet) -> None:
    old_other = _settlement("old", [bytes(signing_key("c").verify_key)], "2026-01")
    old_mine = _settlement("oldpayer", [node.identity], "2026-01")
    for r in (old_other, old_mine):
        node.import_object(r.settlement.raw, AFTER)
    gone = relay.prune_window(node, "2026-07")
    assert gone == [old_other.settlement.id]
    assert node.has_object(old_mine.settlement.id)
    assert node.db.execute("SELECT count(*) FROM signers WHERE key = ?",
                           (old_other.settlement.signer,)).fetchone()[0] == 0


def test_one_equivocation_proof_per_donor_and_month(node: Wallet, tmp_path: Path) -> None:
    c = bytes(signing_key("c").verify_key)
    key = signing_key("cheater")
    one = settle(key, "2026-10", 100, "EUR", bytes(32), {"https://1.example/": c}, work_bits=4)
    two = settle(key, "2026-10", 100, "EUR", bytes(32), {"https://2.example/": c}, work_bits=4)
    node.import_object(one.settlement.raw, AFTER)
    made = node.import_object(two.settlement.raw, AFTER)
    assert made.action == "equivocation"
    # another node's proof of the same donor and month is not kept
    other = Wallet.create(tmp_path / "other", "o", bytes(signing_key("other")))
    other.import_object(two.settlement.raw, AFTER)
    theirs = other.import_object(one.settlement.raw, AFTER)
    other.close()
    proof_raw = [raw for (raw,) in sqlite3.connect(tmp_path / "other" / "rill.db").execute(
        "SELECT raw FROM objects WHERE type = 'equivocation'")]
    assert theirs.action == "equivocation" and len(proof_raw) == 1
    assert node.import_object(proof_raw[0], AFTER).action == "duplicate"
    assert node.db.execute("SELECT count(*) FROM objects WHERE type = 'equivocation'"
                           ).fetchone()[0] == 1
    # a third settlement of the same month makes no second proof
    three = settle(key, "2026-10", 100, "EUR", bytes(32), {"https://3.example/": c}, work_bits=4)
    assert node.import_object(three.settlement.raw, AFTER).action == "stored"
    assert len(node.equivocation_proofs()) == 1


#: Schema 1 as the previous release created it (the upgrade test starts from it).
V1 = """
CREATE TABLE log (seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, time INTEGER NOT NULL,
    kind TEXT NOT NULL, target TEXT, raw BLOB NOT NULL);
CREATE TABLE objects (n INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL UNIQUE,
    type TEXT NOT NULL, signer BLOB NOT NULL, month TEXT, raw BLOB NOT NULL,
    received INTEGER NOT NULL, private INTEGER NOT NULL DEFAULT 0);
CREATE TABLE subjects (object BLOB NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    subject BLOB NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (subject, n, object)) WITHOUT ROWID;
CREATE TABLE settled (month TEXT PRIMARY KEY, settlement BLOB NOT NULL UNIQUE);
CREATE TABLE obligations (claim BLOB PRIMARY KEY, direction TEXT NOT NULL, month TEXT NOT NULL,
    donor BLOB NOT NULL, creator BLOB NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
    settlement BLOB NOT NULL, sealed BLOB, state TEXT NOT NULL, reference TEXT,
    paid_at INTEGER, receipt BLOB);
CREATE TABLE equivocators (donor BLOB PRIMARY KEY, month TEXT NOT NULL, proof BLOB NOT NULL);
CREATE TABLE sites (origin TEXT PRIMARY KEY, creator BLOB, document BLOB,
    checked_at INTEGER NOT NULL, expires INTEGER NOT NULL, reason TEXT);
CREATE TABLE meta (key TEXT PRIMARY KEY, value);
PRAGMA user_version = 1;
"""


def test_a_schema_1_home_is_upgraded_in_place(tmp_path: Path) -> None:
    w = Wallet.create(tmp_path / "h", "h", bytes(signing_key("upgrader")))
    me = w.identity
    w.close()
    db_path = tmp_path / "h" / "rill.db"
    db_path.unlink()
    db = sqlite3.connect(db_path)
    db.executescript(V1)
    mine = _settlement("payer2", [me])
    other = _settlement("someone", [bytes(signing_key("c").verify_key)])
    for i, obj in enumerate((mine.settlement, other.settlement)):
        db.execute("INSERT INTO objects (id, type, signer, month, raw, received) "
                   "VALUES (?,?,?,?,?,?)", (obj.id, obj.type, obj.signer, "2026-10",
                                           obj.raw, AFTER + i))
        for s in ({obj.signer} | {line.creator for line in obj.body.lines}):
            db.execute("INSERT INTO subjects VALUES (?,?,?)", (obj.id, s, i + 1))
    payer, payee, stranger = (bytes(signing_key(n).verify_key) for n in ("p", "q", "s"))
    for claim, direction, donor, creator, state in (
            (b"1" * 32, "in", payer, me, "receipted"), (b"2" * 32, "in", stranger, me, "owed"),
            (b"3" * 32, "out", me, payee, "owed")):
        db.execute("INSERT INTO obligations (claim, direction, month, donor, creator, amount,"
                   " currency, settlement, state) VALUES (?,?,?,?,?,?,?,?,?)",
                   (claim, direction, "2026-10", donor, creator, 1, "EUR", bytes(32), state))
    db.commit()
    db.close()
    w = Wallet.open(tmp_path / "h")
    try:
        assert w.db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert _objects(w) == {mine.settlement.id: 2, other.settlement.id: 0}
        t = relay.totals(w)
        assert (t.own, t.relay) == (len(mine.settlement.raw), len(other.settlement.raw))
        assert w.db.execute("SELECT count(*) FROM signers").fetchone()[0] == 2
        assert w.db.execute("SELECT count(*) FROM meta WHERE key = 'reclassify'"
                            ).fetchone()[0] == 0
        # relations and the month's newcomers are derived from the obligations held
        assert w.relations() == {payer: "paid-us", payee: "paid-by-us"}
        assert [bytes(d) for (d,) in w.db.execute("SELECT donor FROM newcomers")] == [stranger]
    finally:
        w.close()


def test_strangers_claims_and_settlements_to_a_creator_are_bounded_per_month(
        node: Wallet) -> None:
    """What names us is kept whatever the cap, so strangers who never paid us get a
    bounded number of donors a month ([creator] new_donors_per_month)."""
    cfg = node.home.config_path
    cfg.write_text(cfg.read_text().replace("new_donors_per_month = 1000",
                                           "new_donors_per_month = 2"))
    donors = [_settlement(f"stranger{i}", [node.identity]) for i in range(4)]
    for r in donors[:2]:
        node.import_object(r.settlement.raw, AFTER)
        assert node.import_object(r.sealed[0].raw, AFTER).action == "claim-received"
    with pytest.raises(Refused, match="never paid you"):
        node.import_object(donors[2].settlement.raw, AFTER)
    with pytest.raises(Refused, match="never paid you"):  # its claim alone: refused too
        node.import_object(donors[2].sealed[0].raw, AFTER)
    assert not node.has_object(donors[2].settlement.id)
    # a donor who paid us before is never a stranger
    node.db.execute("BEGIN")
    node.add_relation(donors[3].settlement.signer, "paid-us", AFTER)
    node.db.execute("COMMIT")
    node.import_object(donors[3].settlement.raw, AFTER)
    assert node.import_object(donors[3].sealed[0].raw, AFTER).action == "claim-received"
    # the first two still count as the month's newcomers; another month starts afresh
    later = _settlement("stranger2", [node.identity], "2026-11")
    node.import_object(later.settlement.raw, month_end("2026-11") + 10)


def test_a_claim_in_clear_given_as_a_file_is_never_served(node: Wallet) -> None:
    """A creator may import its claim in clear (a file from the donor): it shows the
    donor's things, so neither sync nor reconciliation ever serves it (SPEC §11.2)."""
    from rill.node.reconciling import month_ids, objects_by_id
    from rill.node.sharding import Placements, shard_month_ids

    res = _settlement("donor", [node.identity])
    (claim,) = res.claims
    node.import_object(res.settlement.raw, AFTER)
    node.import_object(claim.raw, AFTER)
    assert node.db.execute("SELECT private FROM objects WHERE id = ?",
                           (claim.id,)).fetchone() == (1,)
    donor = res.settlement.signer
    for subject in (donor, node.identity):
        served, _cursor, _more = relay.objects_for(node, subject, 0, 100, 1 << 20)
        assert claim.raw not in served and res.settlement.raw in served
    assert month_ids(node, "2026-10") == [res.settlement.id]
    assert objects_by_id(node, (claim.id,), 1 << 20).objects == ()
    assert claim.id not in shard_month_ids(node, "2026-10", (1, 0), Placements()) + \
        shard_month_ids(node, "2026-10", (1, 1), Placements())
    # one stored public before this rule (an older version): still never served
    node.db.execute("UPDATE objects SET private = 0 WHERE id = ?", (claim.id,))
    assert claim.raw not in relay.objects_for(node, donor, 0, 100, 1 << 20)[0]
    assert month_ids(node, "2026-10") == [res.settlement.id]
    assert objects_by_id(node, (claim.id,), 1 << 20).objects == ()
