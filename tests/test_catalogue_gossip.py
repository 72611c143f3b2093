"""The catalogue over gossip between real libp2p hosts (in-process daemons): a creator's
node publishes its key document and its listing; a node where someone supports that
creator takes both and finds the listing by search; a stranger announcing the same site
is not taken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from helpers import signing_key
from nodes import eventually, network
from sitesrv import Site

from rill.node.catalogue import search
from rill.node.daemon import Daemon
from rill.protocol import messages as m
from rill.protocol import sitekeys
from rill.protocol.months import month_start
from rill.protocol.settle import settle
from rill.wallet import listings
from rill.wallet.wallet import Wallet

NOV = month_start("2026-11") + 5 * 86400
TOPIC = "rill/1/catalogue"


def _key_document(w: Wallet, origin: str, now: int) -> m.Signed[m.KeyDocument]:
    doc = m.sign(m.KeyDocument(w.config.name or "x", (origin,), (), now - 60), w.key)
    w.import_object(doc.raw, now)
    return doc


async def meshed(net: Any, *pairs: tuple[str, str]) -> None:
    """Both ends of each connection are in each other's catalogue mesh (GossipSub forwards
    to mesh peers only; before the first heartbeats a message may reach nobody)."""
    def ok() -> bool:
        for a, b in pairs:
            pa, pb = net.nodes[a].p2p, net.nodes[b].p2p
            if pa is None or pb is None or pb.peer_id not in pa.gossipsub.mesh.get(
                    TOPIC, set()) or pa.peer_id not in pb.gossipsub.mesh.get(TOPIC, set()):
                return False
        return True

    await eventually(ok, 20, "catalogue mesh")


async def test_listing_gossips_to_a_node_holding_the_key_document(tmp_path: Path) -> None:
    async with network(tmp_path, NOV) as net:
        alice = await net.start("alice")
        assert isinstance(alice, Daemon)
        mallory = await net.start("mallory")
        reader = await net.start("reader")
        await net.start("far")
        await net.connect("alice", "reader")
        await net.connect("mallory", "reader")
        await net.connect("far", "reader")  # hears Alice only through the reader
        await meshed(net, ("alice", "reader"), ("mallory", "reader"), ("far", "reader"))
        wa, wm, wr = net.wallet("alice"), net.wallet("mallory"), net.wallet("reader")
        wf = net.wallet("far")
        try:
            doc = _key_document(wa, "https://alice.example", NOV)
            fake = _key_document(wm, "https://alice.example", NOV)  # claims her site too
            assert fake.signer != doc.signer
            # the reader holds a settlement that pays Alice (someone supports her), so
            # gossip brings it her key document; it holds nothing of Mallory's
            res = settle(signing_key("donor"), "2026-10", 500, "EUR", bytes(32),
                         {"https://alice.example/old": doc.signer}, work_bits=0)
            wr.import_object(res.settlement.raw, NOV)
            wf.import_object(res.settlement.raw, NOV)
            assert wr.key_document(doc.signer) is None

            async def announce(daemon: Daemon, w: Wallet, thing: str, title: str,
                               t: int) -> None:
                obj = m.sign(m.Listing(thing, t, title, "text", "", ("essay",), "en"), w.key)
                w.import_object(obj.raw, t)  # as `rill catalogue announce` without a node
                await daemon._publish_own_listings()  # as the node does when it starts

            # the stranger first: the reader ignores his key document and his listing (no
            # key document of his names the site), so neither is stored nor forwarded
            await announce(mallory, wm, "https://alice.example/fake", "Alice's new essay",
                           NOV + 5)
            await announce(alice, wa, "https://alice.example/essay", "On small rivers",
                           NOV + 10)

            def titles() -> list[str]:
                return [r["title"] for r in search(wr, "", NOV + 20)["results"]]

            await eventually(lambda: titles() == ["On small rivers"], 20,
                             "Alice's listing on the reader")
            assert search(wr, "rivers", NOV + 20)["results"][0]["creator"] == wa.did
            assert wr.key_document(doc.signer) is not None
            # one hop further: the reader forwards the key document and the listing
            await eventually(lambda: search(wf, "rivers", NOV + 20)["results"], 20,
                             "Alice's listing two hops away")
            await eventually(lambda: reader.counters["ignored"] >= 2, 20, "the stranger's")
            assert listings.count(wr.db, fake.signer) == 0
            assert wr.key_document(fake.signer) is None
            assert reader.counters["rejected"] == 0  # a stranger's valid listing is no offence
        finally:
            for w in (wa, wm, wr, wf):
                w.close()


async def test_listings_wait_for_the_creators_site_to_verify(tmp_path: Path) -> None:
    """A reader that holds nothing of Alice's keeps her gossiped listing aside; when its
    node verifies her site (a pending flattr of a thing there), it takes the listing in,
    marked verified on site."""
    with Site() as site:
        async with network(tmp_path, NOV) as net:
            alice = await net.start("alice")
            reader = await net.start("reader")
            await net.connect("alice", "reader")
            await meshed(net, ("alice", "reader"))
            wa, wr = net.wallet("alice"), net.wallet("reader")
            try:
                doc = _key_document(wa, site.origin, NOV)
                site.document(sitekeys.render(doc))
                thing = site.origin + "/songs/rain"
                obj = m.sign(m.Listing(thing, NOV + 5, "Rain", "audio"), wa.key)
                wa.import_object(obj.raw, NOV + 5)
                await alice._publish_own_listings()
                # the key document and the listing reach the reader, which takes neither
                await eventually(lambda: reader.counters["ignored"] >= 2, 20, "both ignored")
                assert search(wr, "rain", NOV + 10)["results"] == []
                wr.set_budget(500, "EUR", NOV + 10)
                wr.click(thing, NOV + 20)  # its creator unknown: the site is checked
                with trio.fail_after(10):
                    assert await reader.resolve_pending("2026-11") == 1
                [hit] = search(wr, "rain", NOV + 30)["results"]
                assert (hit["creator"], hit["site"]) == (wa.did, "verified")
            finally:
                wa.close()
                wr.close()


async def test_a_sharded_node_publishes_its_listings_once_it_has_peers(
        tmp_path: Path, monkeypatch: Any) -> None:
    """In a sharded network a listing published before any peer waits for one, as without
    shards (it was held back as if on a shard topic, looked up in vain in the DHT, and
    dropped for the run)."""
    from rill.node import shardreach as sharding

    monkeypatch.setattr(sharding, "FIND_TRIES", 1)  # a shard topic's lookup: one try
    async with network(tmp_path, NOV) as net:
        alice = await net.start("alice", shard_bits=1)
        reader = await net.start("reader", shard_bits=1)  # in alice's shard (1 of 0, 1)
        wa, wr = net.wallet("alice"), net.wallet("reader")
        try:
            doc = _key_document(wa, "https://alice.example", NOV)
            res = settle(signing_key("donor"), "2026-10", 500, "EUR", bytes(32),
                         {"https://alice.example/old": doc.signer}, work_bits=0)
            wr.import_object(res.settlement.raw, NOV)
            wr.import_object(doc.raw, NOV)  # the key document is there already
            obj = m.sign(m.Listing("https://alice.example/essay", NOV + 10, "On small rivers",
                                   "text", "", ("essay",), "en"), wa.key)
            wa.import_object(obj.raw, NOV + 10)
            await alice._publish_own_listings()  # no peer yet
            await trio.sleep(0.5)
            await net.connect("alice", "reader")
            await eventually(lambda: [r["title"] for r in search(wr, "", NOV + 20)["results"]]
                             == ["On small rivers"], 20, "the listing at the reader")
            assert reader.counters["rejected"] == 0
        finally:
            for w in (wa, wr):
                w.close()


async def test_a_key_document_whose_shard_was_not_found_is_published_later(
        tmp_path: Path, monkeypatch: Any) -> None:
    """An object whose shard's members were not found is looked up again later (it waited
    for its signer's next start)."""
    from rill.node import shardreach as sharding

    monkeypatch.setattr(sharding, "FIND_TRIES", 1)
    monkeypatch.setattr(sharding, "UNPUBLISHED_RETRY_S", 0.5)
    async with network(tmp_path, NOV) as net:
        alice = await net.start("alice", shard_bits=1)
        await net.start("reader", shard_bits=1)  # in alice's shard (1 of 0, 1)
        wa, wr = net.wallet("alice"), net.wallet("reader")
        try:
            doc = _key_document(wa, "https://alice.example", NOV)
            res = settle(signing_key("donor"), "2026-10", 500, "EUR", bytes(32),
                         {"https://alice.example/old": doc.signer}, work_bits=0)
            wr.import_object(res.settlement.raw, NOV)  # the reader wants alice's key
            obj = m.sign(m.Listing("https://alice.example/essay", NOV + 10, "On small rivers",
                                   "text", "", ("essay",), "en"), wa.key)
            wa.import_object(obj.raw, NOV + 10)
            await alice._publish_own_listings()  # its key document first: no peer
            await eventually(lambda: alice.counters.get("unpublished", 0) >= 1, 10,
                             "the first lookup failed")
            await net.connect("alice", "reader")
            await eventually(lambda: wr.key_document(doc.signer) is not None, 20,
                             "alice's key document at the reader")
        finally:
            for w in (wa, wr):
                w.close()
