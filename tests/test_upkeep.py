"""A sharded node's connections (node/upkeep.py, SPEC §11.6 "Connections") and the
GossipSub heartbeat's back-off after a PRUNE (node/router.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from nacl.signing import SigningKey
from nodes import eventually, network
from shardnet import OCT, start_one

from rill.node import upkeep
from rill.node.host import make_gossipsub, make_host
from rill.node.pubsub import RillPubsub
from rill.node.upkeep import busy, to_trim
from rill.protocol.shard import node_shards


def pid(i: int) -> ID:
    return ID.from_pubkey(create_new_key_pair(bytes([i]) * 32).public_key)


class _Stream:
    def __init__(self, protocol: str | None) -> None:
        self.protocol = protocol

    def get_protocol(self) -> str | None:
        return self.protocol


class _Conn:
    def __init__(self, *protocols: str | None) -> None:
        self.streams = [_Stream(p) for p in protocols]

    def get_streams(self) -> tuple[_Stream, ...]:
        return tuple(self.streams)


def test_a_connection_is_busy_while_a_stream_other_than_gossipsubs_is_open() -> None:
    assert not busy(_Conn())
    assert not busy(_Conn("/meshsub/1.1.0", "/meshsub/1.1.0"))
    assert busy(_Conn("/meshsub/1.1.0", "/ipfs/kad/1.0.0"))  # a DHT request served
    assert busy(_Conn("/rill/sync/1.0.0"))
    assert busy(_Conn(None))  # still negotiating its protocol


def test_to_trim_keeps_the_kept_the_young_and_the_floor() -> None:
    peers = [pid(i) for i in range(6)]
    seen = {p: float(i) for i, p in enumerate(peers)}  # peers[0] is the oldest
    # at t = 100 all are past the grace period; peers[1] is kept; 2 connections stay
    assert to_trim(peers, {peers[1]}, seen, 100.0, grace=60.0, keep=2) == \
        [peers[0], peers[2], peers[3], peers[4]]
    # never below the floor
    assert to_trim(peers, set(), seen, 100.0, grace=60.0, keep=6) == []
    assert to_trim(peers, set(), seen, 100.0, grace=60.0, keep=5) == [peers[0]]
    # young connections stay: only peers seen at t <= 2 are past 3 s of grace at t = 5
    assert to_trim(peers, set(), seen, 5.0, grace=3.0, keep=0) == peers[:3]
    # a peer not yet seen by the trimmer is young
    assert to_trim(peers, set(), {peers[5]: 0.0}, 100.0, grace=1.0, keep=0) == [peers[5]]


async def test_a_heartbeat_prune_backs_off_so_the_next_heartbeat_grafts_others() -> None:
    """py-libp2p 0.8.1 pruned a mesh above D_high without backing off itself, so its next
    heartbeat below D_low could GRAFT the peer it had just pruned, which the peer took for
    a flood (a penalty, and a PRUNE back).  The heartbeat's prune now backs off."""
    host = make_host(hashlib.sha256(b"router").digest())
    router = make_gossipsub()
    ps = RillPubsub(host, router, strict_signing=True)
    try:
        topic = "t"
        peers = {pid(i) for i in range(20)}
        router.mesh[topic] = set(peers)
        ps.peer_topics[topic] = set(peers)
        for p in peers:
            router.peer_protocol[p] = PROTOCOL_ID_V11
        _graft, prune = router.mesh_heartbeat()
        pruned = {p for p, topics in prune.items() if topic in topics}
        assert len(pruned) == 20 - router.degree
        assert all(router._check_back_off(p, topic) for p in pruned)
        # the mesh loses its peers: the next heartbeat grafts, but none of those pruned
        router.mesh[topic] = set()
        ps.peer_topics[topic] = set(pruned)
        graft, _prune = router.mesh_heartbeat()
        assert not [p for p, topics in graft.items() if topic in topics]
        ps.peer_topics[topic] = set(peers)
        graft, _prune = router.mesh_heartbeat()
        grafted = {p for p, topics in graft.items() if topic in topics}
        assert grafted and not grafted & pruned
    finally:
        ps.seen_messages.stop()


async def test_opportunistic_grafting_only_for_a_poor_mesh_once_a_minute() -> None:
    """Among honest peers (all scoring 0) no opportunistic graft ever; with a mesh of
    peers that sent invalid messages, up to 2 better peers every 60 heartbeats."""
    from rill.node.router import OPPORTUNISTIC_GRAFT_TICKS

    host = make_host(hashlib.sha256(b"router").digest())
    router = make_gossipsub()
    ps = RillPubsub(host, router, strict_signing=True)
    try:
        topic = "t"
        peers = [pid(i) for i in range(12)]
        mesh, others = set(peers[:6]), set(peers[6:])
        router.mesh[topic] = set(mesh)
        ps.peer_topics[topic] = set(peers)
        for p in peers:
            router.peer_protocol[p] = PROTOCOL_ID_V11

        def grafted() -> set[ID]:
            graft, prune = router.mesh_heartbeat()
            assert not prune
            return {p for p, topics in graft.items() if topic in topics}

        assert not any(grafted() for _ in range(2 * OPPORTUNISTIC_GRAFT_TICKS))
        assert router.mesh[topic] == mesh
        assert router.scorer is not None
        for p in mesh:
            router.scorer.on_invalid_message(p, topic)
        assert router.scorer.score(peers[0], [topic]) < 0
        rounds = [grafted() for _ in range(OPPORTUNISTIC_GRAFT_TICKS)]
        (at,) = [i for i, g in enumerate(rounds) if g]  # once in 60 heartbeats
        assert len(rounds[at]) == 2 and rounds[at] <= others
        assert router.mesh[topic] == mesh | rounds[at]
    finally:
        ps.seen_messages.stop()


async def test_a_message_id_is_asked_for_once_per_followup_time(
        autojump_clock: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three peers advertise a message before it arrives: one IWANT, not three (each
    answered with the whole message); after IWANT_FOLLOWUP_S an advertiser is asked
    again, and a message seen meanwhile is not asked for at all."""
    from libp2p.pubsub.pb import rpc_pb2

    from rill.node import router as router_mod

    host = make_host(hashlib.sha256(b"router").digest())
    router = make_gossipsub()
    ps = RillPubsub(host, router, strict_signing=True)
    asked: list[tuple[ID, list[bytes]]] = []

    async def sent(control: rpc_pb2.ControlMessage, peer: ID) -> None:
        for iwant in control.iwant:
            asked.append((peer, list(iwant.messageIDs)))

    monkeypatch.setattr(router, "emit_control_message", sent)
    m1, m2, m3 = (hashlib.sha256(b"m%d" % i).digest() for i in range(3))

    async def ihave(peer: ID, *ids: bytes) -> None:
        await router.handle_ihave(rpc_pb2.ControlIHave(
            topicID="t", messageIDs=list(ids)), peer)

    try:
        await ihave(pid(1), m1, m2)
        await ihave(pid(2), m1, m3)
        await ihave(pid(3), m1)
        assert asked == [(pid(1), [m1, m2]), (pid(2), [m3])]
        assert router.iwant_spared == 2
        ps.seen_messages.add(m2)
        await trio.sleep(router_mod.IWANT_FOLLOWUP_S + 0.1)  # pid(1) did not deliver m1
        await ihave(pid(3), m1, m2)
        assert asked[-1] == (pid(3), [m1])
        # the memory of IDs asked for is bounded
        monkeypatch.setattr(router_mod, "ASKED_MAX", 2)
        await ihave(pid(4), *(hashlib.sha256(b"x%d" % i).digest() for i in range(5)))
        assert len(asked[-1][1]) == 5 and len(router._asked) == 2
        # an ID no message can have (a stranger's megabyte) is neither asked nor kept
        n = len(asked)
        await ihave(pid(5), bytes(range(256)) * 4000)
        assert len(asked) == n and len(router._asked) == 2
    finally:
        ps.seen_messages.stop()


def ident(name: str) -> bytes:
    return bytes(SigningKey(hashlib.sha256(b"node " + name.encode()).digest()).verify_key)


def test_the_names_used_here_fall_in_the_shards_assumed() -> None:
    assert node_shards(ident("n00"), 3) == {0, 1, 2}
    assert node_shards(ident("n01"), 3) == {1, 3, 4}  # shares shard 1 with n00
    assert node_shards(ident("a"), 3) == {5, 6, 7}  # shares none


@pytest.fixture
def quick_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upkeep, "TRIM_EVERY_S", 0.2)
    monkeypatch.setattr(upkeep, "TRIM_GRACE_S", 1.0)
    monkeypatch.setattr(upkeep, "KEEP_CONNECTIONS", 0)


async def test_a_sharded_node_syncs_and_keeps_its_shards_peers_only(
        tmp_path: Path, quick_trim: None) -> None:
    async with network(tmp_path, OCT + 3600) as net:
        for name in ("n00", "n01", "a"):
            await start_one(net, name, shard_bits=3)
        n00, n01, a = (net.nodes[x] for x in ("n00", "n01", "a"))
        assert n00.p2p and n01.p2p and a.p2p
        await net.connect("n01", "n00")
        await net.connect("a", "n00")
        # a shares no shard with n00: never synced with, then disconnected
        await eventually(lambda: a.p2p.peer_id not in n00.p2p.pubsub.peers
                         and not n00.p2p.host.get_network().get_connections(a.p2p.peer_id),
                         what="the connection with a peer of no shard of ours closed")
        # (either side may close it first: each is in none of the other's shards, and a
        # side keeps a connection while a stream other than GossipSub's is open on it)
        assert n00.counters["not_greeted"] >= 1
        assert n00.counters.get("trimmed", 0) + a.counters.get("trimmed", 0) >= 1
        assert n00.peers[a.p2p.peer_id].last_sync is None
        # n01 shares shard 1: synced with, and still connected after several trim rounds
        await eventually(lambda: n00.peers[n01.p2p.peer_id].last_sync is not None,
                         what="a sync with the peer of a shard of ours")
        await trio.sleep(1.0)  # 5 trim rounds past its grace period
        assert n01.p2p.peer_id in n00.p2p.pubsub.peers  # (a may come back, and go again)
        assert n00.peers[a.p2p.peer_id].last_sync is None


async def test_a_relay_in_none_of_our_shards_is_kept_both_ways(
        tmp_path: Path, quick_trim: None) -> None:
    """A private node reserved on a relay outside its shards: neither side closes it."""
    async with network(tmp_path, OCT + 3600) as net:
        relay = await start_one(net, "a", shard_bits=3)
        assert relay.p2p is not None
        private = await start_one(net, "n00", shard_bits=3, listen=[],
                                  bootstrap=[relay.p2p.addrs()[0] +
                                             f"/p2p/{relay.p2p.peer_id}"])
        assert private.p2p is not None
        await eventually(lambda: private.p2p.nat.reserved(), what="a reservation")
        await trio.sleep(1.5)  # past the grace period, 7 trim rounds
        assert private.p2p.nat.reserved()
        assert relay.p2p.peer_id in private.p2p.pubsub.peers
        assert "trimmed" not in private.counters and "trimmed" not in relay.counters


async def test_past_the_cap_a_node_keeps_its_mesh_peers_and_closes_the_others(
        tmp_path: Path, quick_trim: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections to peers of our shards pile up on a large network (their newcomers
    and publishers dial a few members each): beyond MAX_CONNECTIONS, those to peers in
    none of our GossipSub meshes close, oldest first; mesh peers stay.  (Here the closed
    peers, left with no peer of their shards, dial the node again: it closes them again.)"""
    mine = node_shards(ident("n00"), 3)
    names = [x for x in (f"m{i:02d}" for i in range(40))
             if node_shards(ident(x), 3) & mine][:4]
    assert len(names) == 4
    monkeypatch.setattr(upkeep, "MAX_CONNECTIONS", 2)
    async with network(tmp_path, OCT + 3600) as net:
        n00 = await start_one(net, "n00", shard_bits=3)
        for x in names:
            await start_one(net, x, shard_bits=3)
            await net.connect(x, "n00")
        assert n00.p2p is not None
        meshed = net.nodes[names[0]].p2p.peer_id  # type: ignore[union-attr]
        n00._mesh_peers = lambda: {meshed}  # type: ignore[method-assign]
        host = n00.p2p.host
        closed: list[ID] = []
        disconnect = host.disconnect

        async def recorded(peer: ID) -> None:
            closed.append(peer)
            await disconnect(peer)

        host.disconnect = recorded  # type: ignore[method-assign]
        await eventually(lambda: len(set(closed)) >= 2, what="connections over the cap closed")
        await trio.sleep(1.0)  # 5 rounds more
        assert meshed not in closed  # the mesh peer is kept whatever the count
        assert set(closed) <= {net.nodes[x].p2p.peer_id for x in names[1:]}  # type: ignore
        assert n00.counters.get("capped", 0) >= 2
        assert "trimmed" not in n00.counters  # all of them peers of our shards
