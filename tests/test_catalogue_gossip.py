"""The catalogue over gossip between real libp2p hosts (in-process daemons): a listing
announced on one node is found by search on the other; a stranger announcing the same
site is not taken; a flood of listings by one key stops at its bound."""

from __future__ import annotations

from pathlib import Path

from nodes import eventually, network

from rill.node.catalogue import search
from rill.node.daemon import Daemon
from rill.protocol import messages as m
from rill.protocol.months import month_start
from rill.wallet import listings
from rill.wallet.wallet import Wallet

NOV = month_start("2026-11") + 5 * 86400


def _key_document(w: Wallet, origin: str, now: int) -> m.Signed[m.KeyDocument]:
    doc = m.sign(m.KeyDocument(w.config.name or "x", (origin,), (), now - 60), w.key)
    w.import_object(doc.raw, now)
    return doc


async def test_listing_gossips_to_a_node_holding_the_key_document(tmp_path: Path) -> None:
    async with network(tmp_path, NOV) as net:
        alice = await net.start("alice")
        assert isinstance(alice, Daemon)
        mallory = await net.start("mallory")
        reader = await net.start("reader")
        await net.connect("alice", "reader")
        await net.connect("mallory", "reader")
        wa, wm, wr = net.wallet("alice"), net.wallet("mallory"), net.wallet("reader")
        try:
            doc = _key_document(wa, "https://alice.example", NOV)
            fake = _key_document(wm, "https://alice.example", NOV)  # claims her site too
            wr.import_object(doc.raw, NOV)  # the reader holds only Alice's document
            assert fake.signer != doc.signer

            async def announce(daemon: Daemon, w: Wallet, thing: str, title: str,
                               t: int) -> m.Signed[m.Listing]:
                obj = m.sign(m.Listing(thing, t, title, "text", "", ("essay",), "en"), w.key)
                assert await daemon._accept(obj.raw, via="cli")  # as `rill catalogue announce`
                await daemon.publish(obj.raw)
                return obj

            # the stranger first: the reader ignores it (no key document of his names the
            # site), so it is neither stored nor forwarded
            await announce(mallory, wm, "https://alice.example/fake", "Alice's new essay",
                           NOV + 5)
            await announce(alice, wa, "https://alice.example/essay", "On small rivers",
                           NOV + 10)

            def titles() -> list[str]:
                return [r["title"] for r in search(wr, "", NOV + 20)["results"]]

            await eventually(lambda: titles() == ["On small rivers"], 20,
                             "Alice's listing on the reader")
            assert search(wr, "rivers", NOV + 20)["results"][0]["creator"] == wa.did
            await eventually(lambda: reader.counters["ignored"] >= 1, 20, "the stranger's")
            assert listings.count(wr.db, fake.signer) == 0
            assert reader.counters["rejected"] == 0  # a stranger's valid listing is no offence
        finally:
            for w in (wa, wm, wr):
                w.close()
