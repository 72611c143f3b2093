"""The catalogue on one node: the listing object (SPEC §5.8), what the store keeps (updates
replace, the tie rule, the per-signer bound, the key-document rule), FTS5 search, the
supporters ranking, and the gossip gate against a flood of listings by one key."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from helpers import signing_key

from rill.node.admission import Admission
from rill.node.catalogue import most_supported, search, show
from rill.node.gate import ACCEPT, IGNORE, Gate
from rill.protocol import messages as m
from rill.protocol.errors import RemoteError
from rill.protocol.listing import Listing
from rill.protocol.months import month_end, month_start
from rill.protocol.network import check_gossip
from rill.protocol.preview import check_preview, preview
from rill.protocol.settle import settle
from rill.wallet import listings
from rill.wallet.errors import Refused
from rill.wallet.wallet import Wallet

NOW = month_start("2026-11") + 5 * 86400
TOPIC = "rill/1/catalogue"
ALICE, BOB, MALLORY = signing_key("alice"), signing_key("bob"), signing_key("mallory")


def listing(key: Any, thing: str, t: int = NOW - 100, title: str | None = "A title",
            kind: str | None = "text", **kw: Any) -> m.Signed[Listing]:
    return m.sign(Listing(thing, t, title, kind, **kw), key)


def keydoc(key: Any, *origins: str, t: int = NOW - 1000) -> m.Signed[m.KeyDocument]:
    return m.sign(m.KeyDocument("creator", tuple(sorted(origins)), (), t), key)


@pytest.fixture
def w(tmp_path: Path) -> Any:
    wallet = Wallet.create(tmp_path / "n", "n", bytes(signing_key("node")))
    for key, origin in ((ALICE, "https://alice.example"), (BOB, "https://bob.example"),
                        (MALLORY, "https://alice.example")):
        wallet.import_object(keydoc(key, origin).raw, NOW)
    yield wallet
    wallet.close()


# -- the object ------------------------------------------------------------------------


def test_largest_listing_fits_its_cap_and_round_trips() -> None:
    thing = "https://alice.example/" + "a" * (2048 - len("https://alice.example/"))
    big = listing(ALICE, thing, 2**53 - 1, title="t" * 200, kind="software",
                  description="d" * 1000, tags=tuple(f"{i:02d}" + "x" * 30 for i in range(10)),
                  lang="abc-12345678-12345678")
    assert len(big.raw) == 3812 <= Listing.MAX_SIZE  # the figure in SPEC §5.8
    assert m.decode(big.raw).body == big.body
    gone = m.decode(listing(ALICE, "https://alice.example/a", title=None, kind=None).raw)
    assert gone.body.withdrawn and gone.body.to_map() == {"thing": "https://alice.example/a",
                                                         "time": NOW - 100}


def test_gossip_checks_a_listing_like_any_object() -> None:
    ok = listing(ALICE, "https://alice.example/x")
    assert check_gossip(TOPIC, ok.raw, NOW).body == ok.body
    with pytest.raises(RemoteError) as e:
        check_gossip("rill/1/keys", ok.raw, NOW)
    assert e.value.code == "wrong-topic"
    future = listing(ALICE, "https://alice.example/x", t=NOW + 3600)
    old = listing(ALICE, "https://alice.example/x", t=month_start("2026-07"))
    for obj, code in ((future, "future"), (old, "outside-window")):
        with pytest.raises(RemoteError) as e:
            check_gossip(TOPIC, obj.raw, NOW)
        assert e.value.code == code
        with pytest.raises(RemoteError) as e:  # the gate's cheap preview agrees
            check_preview(preview(TOPIC, obj.raw), NOW, 3, 20)
        assert e.value.code == code
    assert preview(TOPIC, ok.raw).month == "2026-11"


# -- the store -------------------------------------------------------------------------


def test_updates_replace_and_the_greater_time_then_id_wins(w: Any) -> None:
    a1 = listing(ALICE, "https://alice.example/x", NOW - 100, "First")
    a2 = listing(ALICE, "https://alice.example/x", NOW - 50, "Second")
    assert w.import_object(a1.raw, NOW).action == "listed"
    assert w.import_object(a2.raw, NOW).action == "updated"
    assert not w.has_object(a1.id)  # the replaced object is gone from the store too
    assert w.import_object(a1.raw, NOW).detail.startswith("stale")
    assert [r["title"] for r in show(w, "https://alice.example/x", NOW)] == ["Second"]
    # equal times: the greater object ID wins, whichever arrives first
    ties = [listing(ALICE, "https://alice.example/x", NOW - 10, f"Tie {i}") for i in range(2)]
    winner = max(ties, key=lambda o: o.id)
    for o in sorted(ties, key=lambda o: o.id, reverse=True):
        w.import_object(o.raw, NOW)
    assert show(w, "https://alice.example/x", NOW)[0]["id"] == winner.id_hex


def test_only_a_signer_whose_key_document_names_the_origin_is_taken(w: Any) -> None:
    with pytest.raises(Refused) as e:
        w.import_object(listing(BOB, "https://alice.example/x").raw, NOW)
    assert e.value.code == "unlisted-origin"
    stranger = signing_key("stranger")  # no key document at all
    with pytest.raises(Refused):
        w.import_object(listing(stranger, "https://stranger.example/").raw, NOW)


def test_a_signer_holds_at_most_256_listings(w: Any) -> None:
    for i in range(listings.MAX_PER_SIGNER):
        w.import_object(listing(BOB, f"https://bob.example/{i}").raw, NOW)
    with pytest.raises(Refused) as e:
        w.import_object(listing(BOB, "https://bob.example/one-more").raw, NOW)
    assert e.value.code == "listing-limit"
    # an update of a thing held is still taken; so is another signer's listing
    assert w.import_object(listing(BOB, "https://bob.example/0", NOW - 1).raw,
                           NOW).action == "updated"
    assert w.import_object(listing(ALICE, "https://alice.example/").raw, NOW).action == "listed"


def test_an_evicted_listing_leaves_the_index(w: Any) -> None:
    a = listing(ALICE, "https://alice.example/x", title="Otters at dusk")
    w.import_object(a.raw, NOW)
    assert search(w, "otters", NOW)["results"]
    w.db.execute("DELETE FROM objects WHERE id = ?", (a.id,))  # as relay.enforce_cap does
    assert search(w, "otters", NOW)["results"] == []
    assert listings.count(w.db, a.signer) == 0


# -- search ----------------------------------------------------------------------------


def test_search_words_prefixes_filters_and_withdrawal(w: Any) -> None:
    w.import_object(listing(ALICE, "https://alice.example/rain", title="Pluie sur le toit",
                            kind="audio", description="Une averse d'été",
                            tags=("field-recording", "rain")).raw, NOW)
    w.import_object(listing(BOB, "https://bob.example/essay", title="On rain and rivers",
                            tags=("essay",)).raw, NOW)

    def things(q: str, **kw: Any) -> list[str]:
        return sorted(r["thing"] for r in search(w, q, NOW, **kw)["results"])

    assert things("rain") == ["https://alice.example/rain", "https://bob.example/essay"]
    assert things("rain rivers") == ["https://bob.example/essay"]  # every word
    assert things("riv") == ["https://bob.example/essay"]  # prefixes
    assert things("ete") == ["https://alice.example/rain"]  # diacritics folded
    assert things("", kind="audio") == ["https://alice.example/rain"]
    assert things("", tag="essay") == ["https://bob.example/essay"]
    assert things("", tag="ess") == []  # tags match whole
    for hostile in ('"', "NOT", "rain OR", "*", "a:b", "(", "NEAR(rain"):
        search(w, hostile, NOW)  # typed operators are words, never an error
    w.import_object(listing(ALICE, "https://alice.example/rain", NOW - 10, None, None).raw,
                    NOW)
    assert things("rain") == ["https://bob.example/essay"]


def test_site_verified_for_another_key_hides_the_stranger(w: Any) -> None:
    fake = listing(MALLORY, "https://alice.example/new", title="Alice's new album")
    real = listing(ALICE, "https://alice.example/album", title="Alice's album")
    for o in (fake, real):
        w.import_object(o.raw, NOW)
    assert {r["site"] for r in search(w, "album", NOW)["results"]} == {"unverified"}
    w.record_site("https://alice.example", keydoc(ALICE, "https://alice.example"), None, NOW)
    [hit] = search(w, "album", NOW)["results"]
    assert (hit["thing"], hit["site"]) == ("https://alice.example/album", "verified")
    [shown] = show(w, "https://alice.example/new", NOW)
    assert shown["site"] == "conflict" and shown["site_creator"] == hit["creator"]


def test_most_supported_counts_distinct_donors_in_the_last_month(w: Any) -> None:
    for o in (listing(ALICE, "https://alice.example/a"), listing(BOB, "https://bob.example/b")):
        w.import_object(o.raw, NOW)
    alice, bob = (bytes(k.verify_key) for k in (ALICE, BOB))
    backers = {"d1": [alice, bob], "d2": [alice], "d3": [alice]}
    for donor, creators in backers.items():
        things = {f"https://{donor}-{i}.example/": c for i, c in enumerate(creators)}
        res = settle(signing_key(donor), "2026-10", 1000, "EUR", bytes(32), things,
                     work_bits=0)
        w.import_object(res.settlement.raw, month_end("2026-10") + 10)
    top = most_supported(w, NOW)
    assert top["month"] == "2026-10"
    assert [(c["name"], c["supporters"]) for c in top["creators"]] == [("creator", 3),
                                                                      ("creator", 1)]
    assert search(w, "", NOW)["results"][0]["supporters"] == 3  # most supported first


# -- the gate --------------------------------------------------------------------------


def test_a_flood_by_one_key_is_ignored_before_any_signature_check(w: Any) -> None:
    adm = Admission(w.home.db_path, w.identity, now=lambda: NOW)
    checked = 0

    def check(topic: str, raw: bytes, now: int) -> Any:
        nonlocal checked
        checked += 1
        return check_gossip(topic, raw, now)

    def precheck(topic: str, raw: bytes, now: int) -> Any:
        p = preview(topic, raw)
        check_preview(p, now, 3, 20)
        return p

    def relate(p: Any) -> Any:
        outcome, reason = adm.relate(p)
        return {"accept": ACCEPT, "ignore": IGNORE}[outcome], reason

    gate = Gate(held=lambda oid: False, precheck=precheck, check=check, now=lambda: NOW,
                relate=relate)
    flood = [listing(BOB, f"https://bob.example/{i}").raw for i in range(600)]
    outcomes: dict[str, int] = {}
    try:
        for i, raw in enumerate(flood):
            v = gate.judge(f"peer{i}", bytes([i % 256, i // 256]), [TOPIC], raw, None,
                           lambda: True)
            outcomes[v.outcome.value] = outcomes.get(v.outcome.value, 0) + 1
            if v.outcome is ACCEPT:
                w.import_object(raw, NOW, signature_checked=True)
        assert outcomes == {"accept": 256, "ignore": 344}
        assert checked == 256  # the 344 beyond the bound cost no signature check
        assert listings.count(w.db, bytes(BOB.verify_key)) == 256
        # an update of a listing taken less than 10 minutes ago is ignored too
        update = listing(BOB, "https://bob.example/0", NOW - 1, "changed")
        assert adm.relate(preview(TOPIC, update.raw))[0] == "ignore"
        adm.now = lambda: NOW + 601
        assert adm.relate(preview(TOPIC, update.raw))[0] == "accept"
        # what one ignored listing costs the node
        extra = [listing(BOB, f"https://bob.example/x{i}").raw for i in range(200)]
        start = time.perf_counter()
        for raw in extra:
            assert adm.relate(precheck(TOPIC, raw, NOW))[0] == "ignore"
        per = (time.perf_counter() - start) / len(extra)
        print(f"an ignored listing beyond the bound: {per * 1e6:.0f} µs")
        assert per < 0.005
    finally:
        adm.close()


def test_listings_kept_aside_are_bounded() -> None:
    from rill.node.catalogue import MAX_ASIDE, MAX_ASIDE_PER_SIGNER, Aside

    aside = Aside()
    one = b"k" * 32
    kept = sum(aside.hold(one, bytes([i % 256, i // 256])) for i in range(100))
    assert kept == MAX_ASIDE_PER_SIGNER
    assert not aside.hold(one, bytes([0, 0]))  # the same bytes twice: once
    for i in range(MAX_ASIDE):  # many signers: the one seen longest ago goes first
        aside.hold(i.to_bytes(32, "big"), b"x")
    assert aside.count <= MAX_ASIDE and aside.take(one) == []
    assert aside.take((MAX_ASIDE - 1).to_bytes(32, "big")) == [b"x"]
    assert aside.count == sum(len(v) for v in aside.waiting.values())
