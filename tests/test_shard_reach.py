"""Reaching a shard the node is not in (node/shardreach.py, SPEC §11.6): members seen
before are dialled first, one dial instead of a DHT lookup; a remembered member that is
gone is forgotten and the DHT is asked."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr
from nodes import eventually
from shardnet import END, OCT, incoming, network, start_one

from rill.node import shardreach
from rill.node.shardreach import MAX_ADDRS, ShardPeers
from rill.protocol.shard import provider_key, shard_of, shard_topic


def _id(n: int) -> ID:
    return ID(bytes([0, 36, 8, 1, 18, 32]) + bytes([n]) * 32)


def _addr(port: int) -> Multiaddr:
    return Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")


def test_members_are_bounded_most_recent_first_and_relayed_addresses_are_not_kept() -> None:
    sp = ShardPeers(per_topic=3, max_topics=2)
    t = "rill/1/b2/s1"
    for n in range(5):
        sp.note(t, _id(n), [_addr(1000 + n)])
    assert [p for p, _ in sp.members(t)] == [_id(4), _id(3), _id(2)]
    sp.note(t, _id(2), [_addr(2002)])  # seen again: most recent, new address
    assert sp.members(t)[0] == (_id(2), (_addr(2002),))
    sp.forget(t, _id(2))
    assert [p for p, _ in sp.members(t)] == [_id(4), _id(3)]
    # only a relayed address: nothing to dial directly, not remembered
    relayed = Multiaddr(f"/ip4/127.0.0.1/tcp/9/p2p/{_id(9)}/p2p-circuit")
    sp.note(t, _id(9), [relayed])
    assert _id(9) not in dict(sp.members(t))
    # addresses per member are bounded
    sp.note(t, _id(8), [_addr(3000 + k) for k in range(10)])
    assert len(dict(sp.members(t))[_id(8)]) == MAX_ADDRS
    # topics are bounded: the least recently noted goes
    sp.note("rill/1/b2/s2", _id(1), [_addr(1)])
    sp.note("rill/1/b2/s3", _id(1), [_addr(1)])
    assert sp.members(t) == [] and sp.members("rill/1/b2/s3")
    # only well-formed shard topics at the accepted bits are taken from GossipSub's
    # subscriptions (topic names are anyone's text)
    sp2 = ShardPeers()
    junk = ["rill/1/receipts", "rill/1/b2/s4", "rill/1/b3/s1", "rill/1/b2/s01",
            "rill/1/b02/s1", "rill/1/b17/s0", "rill/1/b2/s+1", "rill/1/b2/s1/x", "x" * 10**5]
    sp2.note_all({**{j: [_id(1)] for j in junk}, t: [_id(2)]}, [2], lambda p: [_addr(5)])
    assert [x for x in junk if sp2.members(x)] == []  # not a shard topic at 2 bits
    assert sp2.members(t) == [(_id(2), (_addr(5),))]


async def test_a_member_seen_before_is_dialled_without_a_dht_lookup(tmp_path: Path) -> None:
    async with network(tmp_path, END + 3600) as net:
        kw = {"shard_bits": 2, "reconcile": False}
        z = await start_one(net, "m30", **kw)   # shard 0
        a = await start_one(net, "m14", **kw)   # shards 2 and 3
        assert 3 not in z.shards and 3 in a.shards
        assert z.p2p is not None and a.p2p is not None
        topic = shard_topic(2, 3)
        await net.connect("m30", "m14")
        await eventually(lambda: a.p2p.peer_id in z.p2p.pubsub.peer_topics.get(topic, ()),
                         what="z sees a's subscription")
        z._remember_members()  # what the trimming does before closing connections
        await z.p2p.host.disconnect(a.p2p.peer_id)
        await eventually(lambda: not z._peer_count(topic), what="a gone from z's peers")
        assert await z.reach_shard(topic)
        assert z.counters.get("shard_remembered") == 1
        assert "shard_lookups" not in z.counters
        assert a.p2p.peer_id in z.p2p.pubsub.peer_topics[topic]
        # the member goes away: it is forgotten, and the DHT is asked (nobody else is in
        # shard 3 here, so the shard is not reached)
        z._remember_members()
        await z.p2p.host.disconnect(a.p2p.peer_id)
        await net.stop("m14")
        await eventually(lambda: not z._peer_count(topic), what="a gone from z's peers")
        with trio.fail_after(30):
            assert not await z.reach_shard(topic)
        assert z.shard_peers.members(topic) == []
        assert z.counters["shard_lookups"] == 1
        assert z.counters["shard_remembered"] == 1


async def test_a_member_that_announced_itself_still_finds_the_others(
        tmp_path: Path) -> None:
    """py-libp2p's ``find_providers`` answers from the node's own provider records alone
    whenever it holds any: a member that had announced its shard (and is not one of the
    DHT nodes nearest the shard's key, so holds no one else's record) found only itself.
    Shard lookups ask the key's closest peers (node/discovery.py find_providers)."""
    async with network(tmp_path, END + 3600) as net:
        kw = {"shard_bits": 2, "reconcile": False}
        hub = await start_one(net, "m0", **kw)     # shards 0 and 2
        first = await start_one(net, "m2", **kw)   # own shard 3 (and 1)
        second = await start_one(net, "m9", **kw)  # own shard 3 (and 1)
        assert 3 not in hub.shards and {3} <= first.shards & second.shards
        assert first.p2p is not None and second.p2p is not None
        for name in ("m2", "m9"):
            await net.connect(name, "m0")
        key = provider_key(2, 3)
        await eventually(lambda: all(d.counters.get("provided", 0) >= 1
                                     for d in (first, second)), 30, what="both announced")
        await eventually(lambda: len(hub.p2p.dht.provider_store.get_providers(key)) >= 2,
                         30, what="the hub holds both records")
        # as on a large network: the first member holds its own record only
        records = first.p2p.dht.provider_store.providers
        records[key] = {p: r for p, r in records.get(key, {}).items()
                        if p == first.p2p.peer_id}
        assert [i.peer_id for i in first.p2p.dht.provider_store.get_providers(key)] == \
            [first.p2p.peer_id]
        topic = shard_topic(2, 3)
        first.shard_peers = ShardPeers()  # nothing remembered: the DHT is asked
        await first.p2p.host.disconnect(second.p2p.peer_id)
        await eventually(lambda: not first._peer_count(topic), what="the members apart")
        before = first.counters.get("shard_lookups", 0)
        with trio.fail_after(30):
            assert await first.reach_shard(topic)
        assert first.counters["shard_lookups"] == before + 1
        assert second.p2p.peer_id in first.p2p.pubsub.peer_topics[topic]


async def test_a_donor_alone_at_month_end_gets_its_claim_to_its_creator_once_it_meets_a_peer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The N = 200 scale run's failure: a donor with no peer at all when its month ended
    (its dials lost on a loaded machine) published into nothing.  Once it meets a peer
    (in none of the creator's shards), the claim reaches its creator within seconds,
    though its next look for the shard is an hour away here (here the creator, dialling
    the newcomer it learns of from the DHT, syncs it too: in a large network it would
    not meet it; the next test covers the look itself)."""
    monkeypatch.setattr(shardreach, "UNPUBLISHED_RETRY_S", 3600.0)
    async with network(tmp_path, OCT + 3600) as net:
        kw = {"shard_bits": 2}
        creator = await start_one(net, "m14", **kw)   # shards 2 and 3
        met = await start_one(net, "m30", **kw)       # shard 0
        d = await start_one(net, "d", **kw)
        assert creator.p2p is not None and met.p2p is not None and d.p2p is not None
        own = shard_of(creator.identity, 2)
        assert own not in met.shards
        await net.connect("m30", "m14")
        key = provider_key(2, own)
        await eventually(lambda: met.p2p.dht.provider_store.get_providers(key), timeout=30,
                         what="the creator's shard announced to the DHT")
        w = net.wallet("d")
        w.set_budget(900, "EUR", OCT + 10)
        w.click("https://m14.example/d", OCT + 20, creator=creator.identity)
        w.close()
        net.clock.set(END + 61)
        await eventually(lambda: d.counters.get("unpublished", 0) >= 1, timeout=40,
                         what="d's claim waits for peers nobody can find")
        assert not d.p2p.pubsub.peers and incoming(net, "m14") == 0
        t = trio.current_time()
        assert (await d.add_peer(met.p2p.addrs()[0]))["connected"]
        await eventually(lambda: incoming(net, "m14") == 1, timeout=40,
                         what="the claim at its creator")
        print(f"the claim at its creator {trio.current_time() - t:.1f} s after d met a peer")


async def test_objects_waiting_for_a_shard_are_looked_up_again_when_a_peer_comes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects whose shard's peers were not found wait ``retry`` before the next look
    (a minute, doubling up to 6 hours).  A node that had no gossip peer at all looks
    again as soon as it gets one, keeping ``retry``; one that had peers waits it out
    and doubles it."""
    async with network(tmp_path, END + 3600) as net:
        kw = {"shard_bits": 2, "reconcile": False}
        z = await start_one(net, "m30", **kw)
        a = await start_one(net, "m14", **kw)
        assert z.p2p is not None and a.p2p is not None
        looks: list[tuple[str, float]] = []
        monkeypatch.setattr(z, "_defer", lambda topic, raw, retry=None: looks.append(
            (topic, retry)))
        topic = shard_topic(2, 1)  # nobody's here
        assert not z.p2p.pubsub.peers
        t = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(z._defer_again, topic, [b"raw"], 3600.0)
            await trio.sleep(1.5)
            assert looks == []
            await net.connect("m30", "m14")
            await eventually(lambda: looks, timeout=10, what="a look once a peer came")
        assert looks == [(topic, 3600.0)] and trio.current_time() - t < 15
        # with peers already (and none of the topic's coming): the whole wait, doubled
        looks.clear()
        t = trio.current_time()
        await z._defer_again(topic, [b"raw"], 2.0)
        assert looks == [(topic, 4.0)] and trio.current_time() - t >= 2.0
