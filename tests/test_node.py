"""The node daemon with real libp2p hosts on 127.0.0.1, in one process (manual clock)."""

from __future__ import annotations

import threading
from pathlib import Path

import trio
from helpers import signing_key
from nodes import eventually, listening, network

from rill.node.pubsub import envelope_only
from rill.protocol import messages as m
from rill.protocol.months import month_end, month_start

OCT = month_start("2026-10")
END = month_end("2026-10")


def obligations(net, name: str) -> list:  # type: ignore[no-untyped-def]
    w = net.wallet(name)
    try:
        return w.obligations()
    finally:
        w.close()


async def test_month_end_claims_and_receipts_over_gossip(tmp_path: Path) -> None:
    threads_before = {t.ident for t in threading.enumerate()}
    async with network(tmp_path, OCT + 3600) as net:
        donor = await net.start("donor")
        alice = await net.start("alice")
        bob = await net.start("bob")
        await net.connect("donor", "alice")
        await net.connect("alice", "bob")  # bob hears the donor only through alice
        w = net.wallet("donor")
        w.set_budget(900, "EUR", OCT + 10)
        w.click("https://alice.example/1", OCT + 20, creator=alice.identity)
        w.click("https://bob.example/1", OCT + 30, creator=bob.identity)
        w.click("https://bob.example/2", OCT + 40, creator=bob.identity)
        w.close()
        ports = list(net.ports.values())
        # the month ends; after the grace period the donor settles by itself
        net.clock.set(END + 61)
        await eventually(lambda: len(obligations(net, "alice")) == 1, what="alice's claim")
        await eventually(lambda: len(obligations(net, "bob")) == 1, what="bob's claim")
        (a,) = obligations(net, "alice")
        (b,) = obligations(net, "bob")
        assert (a.amount, b.amount, a.direction) == (300, 600, "in")
        assert donor.counters["settled"] == 1
        # receipts signed from the CLI side are published by the creators' daemons
        for name, ob in (("alice", a), ("bob", b)):
            cw = net.wallet(name)
            cw.sign_receipt(ob.claim, END + 120, f"ref-{name}")
            cw.close()
        await eventually(lambda: all(o.state == "receipted"
                                     for o in obligations(net, "donor")), what="receipts")
        assert {o.state for o in obligations(net, "donor")} == {"receipted"}
        assert all(listening(p) for p in ports)
    # teardown: no listener, no thread left behind
    assert not any(listening(p) for p in ports)
    await trio.sleep(0)
    # trio keeps idle worker threads ("Trio thread N") for reuse: those are not leaks;
    # libp2p's seen-cache sweepers and anything else must be gone
    leftover = [t.name for t in threading.enumerate()
                if t.ident not in threads_before and not t.name.startswith("Trio thread")]
    assert leftover == []


async def test_tampered_copy_is_refused_and_not_forwarded(tmp_path: Path) -> None:
    async with network(tmp_path, END + 3600) as net:
        await net.start("a")
        # gossip alone here: reconciliation would fetch a's settlement from its store
        b = await net.start("b", reconcile=False)
        c = await net.start("c", reconcile=False)
        await net.connect("a", "b")
        await net.connect("b", "c")
        wa = net.wallet("a")
        wa.set_budget(100, "EUR", OCT)
        wa.click("https://x.example/", OCT + 5, creator=c.identity)
        res, _ = wa.settle("2026-10", END + 3600)
        wa.close()
        pa = net.nodes["a"].p2p
        assert pa is not None
        raw = res.settlement.raw
        tampered = raw[:-70] + bytes([raw[-70] ^ 1]) + raw[-69:]
        # publish straight through pubsub (the daemon's own publish would refuse it);
        # a's own gate judges its publishes too, so replace it as a malicious node would
        pa.pubsub.set_gate(envelope_only)
        await pa.pubsub.publish("rill/1/settlements", tampered)
        await trio.sleep(0.5)
        assert b.counters["rejected"] >= 1
        assert b.counters["stored"] == 0 and c.counters["received"] == 0
        await pa.pubsub.publish("rill/1/settlements", raw)
        await eventually(lambda: c.counters["stored"] == 1, what="the good copy")
        wc = net.wallet("c")
        assert wc.has_object(res.settlement.id)
        wc.close()


async def test_creator_offline_at_month_end_catches_up_by_sync(tmp_path: Path) -> None:
    async with network(tmp_path, OCT + 3600) as net:
        await net.start("donor")
        creator = await net.start("creator")
        await net.start("relay")
        await net.connect("donor", "relay")
        w = net.wallet("donor")
        w.set_budget(1000, "EUR", OCT)
        for i in range(20):
            w.click(f"https://c.example/{i}", OCT + i, creator=creator.identity)
        w.close()
        await net.stop("creator")
        net.clock.set(END + 61)
        await eventually(lambda: net.nodes["relay"].counters["stored"] >= 2,
                         what="the relay stores the settlement and the sealed claim")
        # restart the relay and stop the donor: nothing is left in any gossip cache,
        # so only the sync protocol can bring the claim to the creator
        await net.stop("donor")
        await net.stop("relay")
        await net.start("relay")
        creator = await net.start("creator")
        await net.connect("creator", "relay")  # a new peer: the creator syncs from it
        await eventually(lambda: len(obligations(net, "creator")) == 1, what="catch-up")
        (o,) = obligations(net, "creator")
        assert o.amount == 1000 and o.state == "owed"
        # the obligation is committed (and visible here) while the sync loop is still
        # inside its last import; it counts what it took in once that returns
        await eventually(lambda: creator.counters["synced"] >= 2, what="counted as synced")
        assert creator.counters["stored"] == creator.counters["synced"]  # none by gossip
        # the relay serves reconciliation, so the creator asked it for IDs and fetched
        # the objects it lacked; asked again from the start, it fetches none
        relay = net.nodes["relay"]
        assert relay.p2p is not None
        state = creator.peers[relay.p2p.peer_id]
        assert state.sync_ids is True
        state.cursor = 0
        assert await creator.sync_with(relay.p2p.peer_id) == 0
        assert creator.counters["sync_ids_skipped"] >= 2


async def test_equivocating_donor_is_marked_everywhere(tmp_path: Path) -> None:
    from rill.protocol.settle import settle

    async with network(tmp_path, END + 3600) as net:
        for n in ("a", "b", "c", "d"):
            await net.start(n)
        await net.connect("a", "b")
        await net.connect("b", "c")
        await net.connect("c", "d")
        key = signing_key("cheater")
        creator = net.nodes["d"].identity
        one = settle(key, "2026-10", 100, "EUR", bytes(32), {"https://1.example/": creator})
        two = settle(key, "2026-10", 100, "EUR", bytes(32), {"https://2.example/": creator})
        await net.nodes["a"].publish(one.settlement.raw)
        await eventually(lambda: net.nodes["d"].counters["stored"] >= 1)
        await net.nodes["d"].publish(two.settlement.raw)
        donor = one.settlement.signer
        await eventually(lambda: all(donor in n.marked for n in net.nodes.values()),
                         what="every node marks the donor")


async def test_forged_replayed_and_oversized_messages_never_delivered(tmp_path: Path) -> None:
    async with network(tmp_path, END + 3600) as net:
        honest = await net.start("honest")
        await net.start("evil", grace=10**9)  # its daemon never settles on its own
        we = net.wallet("evil")
        we.set_budget(100, "EUR", OCT)
        we.click("https://y.example/", OCT + 5, creator=honest.identity)
        res, _ = we.settle("2026-10", END + 3600)
        we.close()
        await net.connect("evil", "honest")
        # the valid objects arrive by sync: the honest node took them in
        await eventually(lambda: honest.counters["stored"] == 2, what="sync of valid objects")
        stored_before = honest.counters["stored"]
        evil = net.nodes["evil"].p2p
        hp = honest.p2p
        assert evil is not None and hp is not None
        evil.pubsub.set_gate(envelope_only)  # a malicious node skips its checks
        good = res.settlement.raw
        other = m.decode(good).body
        forged_copy = m.cbor.encode({"v": 1, "t": "settlement", "body": other.to_map(),
                                     "signer": hp.peer_id.extract_public_key().to_bytes(),
                                     "sig": res.settlement.signature})
        junk = [
            good[:-40] + bytes([good[-40] ^ 1]) + good[-39:],  # flipped byte in the key
            forged_copy,                                        # claims another author
            good + b"\x00",                                     # trailing byte
            bytes(300_000),                                     # oversized
            m.cbor.encode({"v": 1, "t": "receipt"}),            # nonsense
            good.replace(b"EUR", b"USD"),                       # altered body
        ]
        for raw in junk:
            await evil.pubsub.publish("rill/1/settlements", raw)
            await trio.sleep(0.02)
        # a replay of a valid object under the evil node's identity: delivered at most once
        await evil.pubsub.publish("rill/1/settlements", good)
        await eventually(lambda: hp.pubsub.is_peer_blacklisted(evil.peer_id),
                         what="the injector is cut off")
        assert honest.counters["stored"] == stored_before  # 0 of the junk, no duplicate
        assert honest.counters["rejected"] >= 6
        score = hp.score(evil.peer_id, ["rill/1/settlements"])
        assert score < -55, score  # below the graylist threshold
        # from now on not even a valid, new message of the cut-off peer gets through
        we = net.wallet("evil")
        doc = m.sign(m.KeyDocument("Evil", ("https://evil.example",), (), END), we.key)
        we.close()
        await evil.pubsub.publish("rill/1/keys", doc.raw)
        await trio.sleep(0.5)
        assert honest.counters["stored"] == stored_before
        hw = net.wallet("honest")
        assert not hw.has_object(doc.id)
        types = sorted(t for (t,) in hw.db.execute("SELECT type FROM objects"))
        hw.close()
        assert types == ["claim", "sealed-claim", "settlement"]


async def test_a_claim_before_its_settlement_waits_then_is_forwarded(tmp_path: Path) -> None:
    """Gossip may deliver a sealed claim before its settlement.  A relay that does not
    hold the settlement ignores the claim (a stranger could sign such claims for free)
    but keeps it aside; when the settlement arrives, the relay checks the claim, takes it
    in and forwards it itself, so the creator behind it still gets its claim."""
    async with network(tmp_path, END + 3600) as net:
        donor = await net.start("donor", grace=10**9)  # settles only when told
        relay = await net.start("relay")
        creator = await net.start("creator")
        await net.connect("donor", "relay")
        await net.connect("relay", "creator")  # the creator hears the donor via the relay
        w = net.wallet("donor")
        w.set_budget(500, "EUR", OCT)
        w.click("https://c.example/1", OCT + 5, creator=creator.identity)
        res, _ = w.settle("2026-10", END + 3600)
        w.close()
        sealed = res.sealed[0]
        await donor.publish(sealed.raw)  # the claim first
        await eventually(lambda: relay.admission is not None
                         and relay.admission.orphan_count == 1, what="kept aside")
        assert relay.counters["ignored"] == 1 and relay.counters["rejected"] == 0
        assert not obligations(net, "creator")
        await donor.publish(res.settlement.raw)  # then its settlement
        await eventually(lambda: len(obligations(net, "creator")) == 1,
                         what="the creator gets its claim through the relay")
        assert relay.admission is not None and relay.admission.orphan_count == 0
        rw = net.wallet("relay")
        assert rw.has_object(sealed.id) and rw.has_object(res.settlement.id)
        rw.close()


async def test_an_adopted_claim_keeps_the_relay_store_under_its_cap(tmp_path: Path) -> None:
    """A claim taken in when its settlement arrives (adopted) is stored outside the
    gossip batches: the cap must hold after it too, not only at the next housekeeping
    (the Sybil soak sampled a relay store 1,675 bytes over its cap)."""
    from rill.node import relay as relay_store

    async with network(tmp_path, END + 3600) as net:
        donor = await net.start("donor", grace=10**9)
        relay = await net.start("relay", housekeeping=3600.0)  # no pruning meanwhile
        creator = await net.start("creator")
        await net.connect("donor", "relay")
        await net.connect("relay", "creator")
        w = net.wallet("donor")
        w.set_budget(500, "EUR", OCT)
        w.click("https://c.example/1", OCT + 5, creator=creator.identity)
        res, _ = w.settle("2026-10", END + 3600)
        w.close()
        # room for the settlement, not for the settlement and its sealed claim
        relay.config.disk_cap = len(res.settlement.raw) + 10
        await donor.publish(res.sealed[0].raw)
        await eventually(lambda: relay.admission is not None
                         and relay.admission.orphan_count == 1, what="kept aside")
        await donor.publish(res.settlement.raw)
        await eventually(lambda: relay.admission is not None
                         and relay.admission.orphan_count == 0
                         and relay.counters["stored"] == 2, what="the claim adopted")
        rw = net.wallet("relay")
        try:
            assert relay_store.totals(rw).relay <= relay.config.disk_cap
        finally:
            rw.close()
        assert relay.counters["evicted"] >= 1
        await eventually(lambda: len(obligations(net, "creator")) == 1,
                         what="the creator still gets its claim")


async def test_a_daemon_that_sees_the_month_end_settles_one_grace_period_later(
        tmp_path: Path) -> None:
    """When the month-end loop looked at the clock after a month's end but before the
    grace period was over, it slept until the sync two grace periods on: the
    settlement came only at its next 60-second re-check (the Sybil soak's donors
    settled up to 19 s late)."""
    async with network(tmp_path, END + 1) as net:  # October over, grace (60 s) not
        asked: list[int] = []
        sleep_until = net.clock.sleep_until

        async def noting(t: int) -> None:
            asked.append(t)
            await sleep_until(t)

        net.clock.sleep_until = noting  # type: ignore[method-assign]
        donor = await net.start("donor")
        w = net.wallet("donor")
        w.set_budget(500, "EUR", OCT)
        w.click("https://c.example/1", OCT + 5, creator=bytes(signing_key("c").verify_key))
        w.close()
        await eventually(lambda: asked, what="the month-end loop asleep")
        assert min(asked) == END + 60
        net.clock.set(END + 61)
        await eventually(lambda: donor.counters["settled"] == 1, timeout=10,
                         what="settled at the end of the grace period")
