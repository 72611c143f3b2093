"""The gossip gate (node/pubsub.py + node/gate.py) with real libp2p hosts on 127.0.0.1.

Attackers are bare Rill hosts (rill.node.host.running) that write hand-made messages
into their real pubsub connection to the victim: under throwaway libp2p keys, with
corrupted envelope signatures, or skipping their own gate.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
import trio
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from nodes import Net, eventually, free_port, network

from rill.node import host as h
from rill.node.daemon import Daemon
from rill.node.pubsub import envelope_only
from rill.protocol import messages as m
from rill.protocol.months import month_end

NOW = month_end("2026-10") + 3600
KEYS = "rill/1/keys"


# -- helpers ---------------------------------------------------------------------------

def key_document(daemon_or_key: Any, name: str, valid_from: int = NOW - 60) -> m.Signed[Any]:
    key = daemon_or_key.wallet.key if isinstance(daemon_or_key, Daemon) else daemon_or_key
    return m.sign(m.KeyDocument(name, (f"https://{name.lower()}.example",), (), valid_from),
                  key)


def m_key(i: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"junk signer %d" % i).digest())


def throwaway(i: int) -> KeyPair:
    return h.keypair_from_seed(hashlib.sha256(b"throwaway %d" % i).digest())


def wrap(data: bytes, kp: KeyPair, seqno: int, topic: str = KEYS,
         corrupt: bool = False) -> rpc_pb2.Message:
    """A GossipSub message from ``kp`` as py-libp2p builds it (StrictSign)."""
    msg = rpc_pb2.Message(data=data, topicIDs=[topic],
                          from_id=ID.from_pubkey(kp.public_key).to_bytes(),
                          seqno=seqno.to_bytes(8, "big"))
    sig = kp.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    if corrupt:
        sig = sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]
    msg.signature = sig
    msg.key = kp.public_key.serialize()
    return msg


async def inject(attacker: h.P2P, victim: ID, msgs: list[rpc_pb2.Message],
                 pace: float = 0.01) -> None:
    """Send each message in its own RPC on the attacker's pubsub connection to the victim
    (its outbound queue holds 32: pace)."""
    for msg in msgs:
        attacker.gossipsub.send_rpc(victim, rpc_pb2.RPC(publish=[msg]))
        await trio.sleep(pace)


@asynccontextmanager
async def attacker_host(name: str) -> AsyncIterator[h.P2P]:
    async with h.running(hashlib.sha256(b"attacker " + name.encode()).digest(),
                         [f"/ip4/127.0.0.1/tcp/{free_port()}"]) as p2p:
        await p2p.pubsub.subscribe(KEYS)
        yield p2p


async def attach(attacker: h.P2P, daemon: Daemon) -> None:
    assert daemon.p2p is not None
    await attacker.connect(daemon.p2p.addrs()[0])
    await attacker.pubsub.wait_for_peer(daemon.p2p.peer_id, timeout=10)
    await daemon.p2p.pubsub.wait_for_peer(attacker.peer_id, timeout=10)
    with trio.fail_after(10):
        while daemon.p2p.peer_id not in attacker.pubsub.peer_queues:
            await trio.sleep(0.02)


async def meshed(a: Daemon, b: Daemon, topic: str = KEYS) -> None:
    """Wait until a and b are in each other's mesh for topic (a publishes to its mesh)."""
    assert a.p2p is not None and b.p2p is not None
    pa, pb = a.p2p, b.p2p
    await eventually(lambda: pb.peer_id in pa.gossipsub.mesh.get(topic, set())
                     and pa.peer_id in pb.gossipsub.mesh.get(topic, set()), what="mesh")


def connected(daemon: Daemon, peer: ID) -> bool:
    assert daemon.p2p is not None
    return bool(daemon.p2p.host.get_network().get_connections(peer))


def score(daemon: Daemon, peer: ID) -> float:
    assert daemon.p2p is not None
    return daemon.p2p.score(peer, [KEYS])


def holds(net: Net, name: str, oid: bytes) -> bool:
    w = net.wallet(name)
    try:
        return w.has_object(oid)
    finally:
        w.close()


def count_checks(daemon: Daemon) -> list[bytes]:
    """Record every full (Rill signature) check the daemon's gate makes."""
    calls: list[bytes] = []
    inner = daemon.gate.check

    def check(topic: str, raw: bytes, now: int) -> Any:
        calls.append(raw)
        return inner(topic, raw, now)

    daemon.gate.check = check
    return calls


def befriend(net: Net, name: str, *signers: Any) -> None:
    """Give node ``name`` a standing relation with the signers of the key documents these
    tests gossip: a key document of a creator nobody pays is otherwise ignored
    (rill.node.admission)."""
    from rill.wallet import store

    w = net.wallet(name)
    try:
        with store.transaction(w.db):
            for signer in signers:
                key = signer.identity if isinstance(signer, Daemon) else bytes(signer.verify_key)
                w.add_relation(key, "peer", NOW)
    finally:
        w.close()


def forget_seen(*daemons: Daemon) -> None:
    """py-libp2p's seen cache lives in real time (120 s) while the test moves a manual
    clock: expire it by hand as the 20 minutes would have."""
    for d in daemons:
        assert d.p2p is not None
        cache = d.p2p.pubsub.seen_messages
        with cache.lock:
            cache.cache.clear()


# -- (a) a gate that raises ------------------------------------------------------------

async def test_a_gate_that_raises_rejects_penalises_and_logs_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rill.node.pubsub")
    async with network(tmp_path, NOW) as net:
        a = await net.start("a")
        b = await net.start("b")
        befriend(net, "b", a)
        await net.connect("a", "b")
        await meshed(a, b)
        boom = key_document(a, "Boom")
        fine = key_document(a, "Fine", NOW - 30)
        inner = b.gate.check

        def broken(topic: str, raw: bytes, now: int) -> Any:
            if raw == boom.raw:  # e.g. a month function's ValueError (issue 10, item 1)
                raise ValueError("year 10000 is out of range")
            return inner(topic, raw, now)

        b.gate.check = broken
        assert a.p2p is not None and b.p2p is not None
        await a.publish(boom.raw)
        await eventually(lambda: b.counters["rejected"] == 1, what="the internal error")
        # penalised like an invalid message (P4 weight 10, decaying 0.999 per heartbeat)
        assert -10.0 <= score(b, a.p2p.peer_id) < -9.9
        warnings = [r for r in caplog.records if "gate failed" in r.getMessage()]
        assert len(warnings) == 1 and boom.id.hex()[:16] in warnings[0].getMessage()
        # the node lives on: the next object is accepted and stored
        await a.publish(fine.raw)
        await eventually(lambda: holds(net, "b", fine.id), what="the next object")
        assert b.counters["accepted"] == 1 and not holds(net, "b", boom.id)
        # the same object from another peer: rejected again, not logged again
        async with attacker_host("m") as mallory:
            await attach(mallory, b)
            await inject(mallory, b.p2p.peer_id, [wrap(boom.raw, throwaway(1), 1)])
            await eventually(lambda: b.counters["rejected"] == 2, what="second rejection")
            assert -10.0 <= score(b, mallory.peer_id) < -9.9
        assert len([r for r in caplog.records if "gate failed" in r.getMessage()]) == 1


# -- (b) corrupted envelope signatures are scored --------------------------------------

async def test_bad_envelope_signatures_are_scored_and_the_sender_cut_off(
        tmp_path: Path) -> None:
    async with network(tmp_path, NOW) as net:
        b = await net.start("b")
        assert b.p2p is not None
        befriend(net, "b", *(m_key(i) for i in range(50)))  # all else would be fine
        docs = [key_document(m_key(i), f"Junk{i}") for i in range(50)]
        async with attacker_host("m") as mallory:
            await attach(mallory, b)
            kp = h.keypair_from_seed(hashlib.sha256(b"attacker m").digest())
            msgs = [wrap(d.raw, kp, i + 1, corrupt=True) for i, d in enumerate(docs)]
            await inject(mallory, b.p2p.peer_id, msgs)
            await eventually(lambda: b.p2p is not None
                             and b.p2p.pubsub.is_peer_blacklisted(mallory.peer_id),
                             what="blacklisted")
            rejected = b.counters["rejected"]
            # cut off after the 6th (score -60 < publish threshold -50): the rest are
            # dropped before the gate; -60 < graylist -55: blacklisted by the daemon
            assert 6 <= rejected <= 7, rejected
            assert b.counters["accepted"] == b.counters["received"] == 0
            await eventually(lambda: b.p2p is not None
                             and mallory.peer_id not in b.p2p.pubsub.peers
                             and not connected(b, mallory.peer_id), what="cut off")
            print(f"\nbad envelopes: cut off after {rejected} of 50")
        assert not any(holds(net, "b", d.id) for d in docs)


# -- (c) IGNORE: no penalty, no forwarding ---------------------------------------------

async def test_ignored_messages_are_neither_penalised_nor_forwarded(tmp_path: Path) -> None:
    async with network(tmp_path, NOW) as net:
        a = await net.start("a")
        b = await net.start("b")
        c = await net.start("c")
        befriend(net, "b", a)
        befriend(net, "c", a)
        await net.connect("a", "b")
        await net.connect("b", "c")
        await meshed(a, b)
        await meshed(b, c)
        assert a.p2p is not None and b.p2p is not None
        # a node whose clock runs an hour ahead: valid there, "future" here
        early = key_document(a, "Early", NOW + 3600)
        a.p2p.pubsub.set_gate(envelope_only)  # its own gate would not publish it
        await a.p2p.pubsub.publish(KEYS, early.raw)
        await eventually(lambda: b.counters["ignored"] == 1, what="b ignores it")
        assert b.counters["rejected"] == 0 and b.counters["duplicates"] == 0
        assert score(b, a.p2p.peer_id) == 0.0
        stats = b.p2p.scorer.get_score_stats(a.p2p.peer_id, KEYS)
        assert stats["invalid_messages"] == 0
        # the path a -> b -> c works: a valid object reaches c, the ignored one never did
        ok = key_document(a, "Now")
        await a.p2p.pubsub.publish(KEYS, ok.raw)
        await eventually(lambda: holds(net, "c", ok.id), what="the valid object at c")
        assert (c.counters["accepted"], c.counters["ignored"], c.counters["rejected"]) == \
            (1, 0, 0)
        assert not holds(net, "b", early.id) and not holds(net, "c", early.id)
        assert score(b, a.p2p.peer_id) == 0.0


# -- (d) replays under throwaway keys ----------------------------------------------------

async def test_replays_under_throwaway_keys_are_checked_once_and_cut_off(
        tmp_path: Path) -> None:
    async with network(tmp_path, NOW) as net:
        a = await net.start("a")
        b = await net.start("b")
        c = await net.start("c")
        befriend(net, "b", a)
        befriend(net, "c", a)
        await net.connect("a", "b")
        await net.connect("b", "c")
        await meshed(a, b)
        await meshed(b, c)
        assert b.p2p is not None
        checks = count_checks(b)
        doc = key_document(a, "Recorded")
        await a.publish(doc.raw)
        await eventually(lambda: holds(net, "c", doc.id), what="the original reaches c")
        assert checks == [doc.raw] and b.counters["stored"] == 1
        async with attacker_host("m") as mallory:
            await attach(mallory, b)
            replays = [wrap(doc.raw, throwaway(i), 1) for i in range(100)]
            await inject(mallory, b.p2p.peer_id, replays)
            await eventually(lambda: b.p2p is not None
                             and b.p2p.pubsub.is_peer_blacklisted(mallory.peer_id),
                             what="the replayer is cut off")
            judged = b.counters["duplicates"] + b.counters["rejected"]
            # the first replay is only a duplicate (mallory never sent it before), each
            # further one a strike; cut off after 6 strikes
            assert b.counters["duplicates"] == 1 and 6 <= b.counters["rejected"] <= 7
            await eventually(lambda: b.p2p is not None
                             and mallory.peer_id not in b.p2p.pubsub.peers
                             and not connected(b, mallory.peer_id), what="cut off")
            print(f"\nreplays: {judged} of 100 judged before the cut-off")
        await trio.sleep(0.3)
        assert checks == [doc.raw]  # the Rill signature was checked once, for the original
        assert b.counters["stored"] == 1 and b.counters["accepted"] == 1
        assert c.counters["accepted"] == 1  # the original only: no replay forwarded
        assert c.counters["ignored"] == c.counters["rejected"] == 0


# -- (e) an author's republish ------------------------------------------------------------

async def test_an_authors_republish_after_the_floor_reaches_a_node_two_hops_away(
        tmp_path: Path) -> None:
    async with network(tmp_path, NOW) as net:
        a = await net.start("a")
        b = await net.start("b")
        c = await net.start("c")
        befriend(net, "b", a)
        befriend(net, "c", a)
        await net.connect("a", "b")
        await meshed(a, b)
        assert b.p2p is not None and c.p2p is not None
        doc = key_document(a, "Author")  # concerns a only: c's sync will not fetch it
        await a.publish(doc.raw)
        await eventually(lambda: holds(net, "b", doc.id), what="b stores it")
        # c joins once the object left b's gossip caches: c missed it
        await eventually(lambda: b.p2p is not None and all(
            msg.data != doc.raw for msg in b.p2p.gossipsub.mcache.msgs.values()),
            what="out of b's message cache (IHAVE/IWANT)")
        await net.connect("b", "c")
        await meshed(b, c)
        await eventually(lambda: b.p2p is not None
                         and c.peers.get(b.p2p.peer_id) is not None
                         and c.peers[b.p2p.peer_id].last_sync is not None, what="c synced")
        assert not holds(net, "c", doc.id), (c.counters, b.counters)
        checks = count_checks(b)
        # 10 minutes later: within the floor, b ignores the republish
        net.clock.set(NOW + 600)
        forget_seen(a, b)
        await a.publish(doc.raw)
        await eventually(lambda: b.counters["duplicates"] == 1, what="ignored within the floor")
        # 21 minutes after b accepted it: the republish passes b and reaches c
        net.clock.set(NOW + 21 * 60)
        forget_seen(a, b)
        await a.publish(doc.raw)
        await eventually(lambda: holds(net, "c", doc.id), what="the republish reaches c")
        assert checks == [doc.raw]  # checked again once, at the floor
        assert b.counters["rejected"] == 0 and c.counters["accepted"] == 1


async def test_objects_stored_before_a_start_are_known(tmp_path: Path) -> None:
    async with network(tmp_path, NOW) as net:
        b = await net.start("b")
        doc = key_document(m_key(7), "Stored")
        w = net.wallet("b")
        w.import_object(doc.raw, NOW)  # e.g. by `rill import`, or before a restart
        w.close()
        await net.stop("b")
        b = await net.start("b")
        assert b.p2p is not None and doc.id in b.held
        checks = count_checks(b)
        async with attacker_host("m") as relay:
            await attach(relay, b)
            await inject(relay, b.p2p.peer_id, [wrap(doc.raw, throwaway(0), 1)])
            await eventually(lambda: b.counters["duplicates"] == 1, what="known at once")
        assert checks == [] and b.counters["accepted"] == b.counters["rejected"] == 0
