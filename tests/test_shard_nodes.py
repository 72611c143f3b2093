"""Sharded gossip (SPEC §11.6) with real daemons on 127.0.0.1, in one process: b = 2 (four
shards), every node knowing only one bootstrap node (n00).  The month test runs in
``make test``; the larger ones are soak tests."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import trio
from helpers import signing_key
from nodes import eventually
from shardnet import (
    END,
    foreign,
    held,
    month,
    month_figures,
    network,
    settlements_expected,
    shard_meshes,
    start,
    start_one,
    stored,
)

from rill.protocol.settle import settle
from rill.protocol.shard import node_shards, object_topics, preview_stored, shard_topic


async def test_a_sharded_month_equivocation_and_a_node_that_lost_its_shards(
        tmp_path: Path) -> None:
    t0 = time.monotonic()
    async with network(tmp_path, END - 86400 * 30) as net:
        names = await start(net, 6, shard_bits=2)
        await shard_meshes(net, names)
        t1 = time.monotonic()
        # a month: every creator gets every claim, by gossip through its shard
        seconds = await month(net, names)
        for x in names:  # each node holds only its shards' objects and its own
            assert foreign(net.nodes[x], stored(net, x)) == [], x
        # a newcomer that knows only the bootstrap finds a shard neither is in (3)
        # through the DHT's provider records
        z = await net.start("z", shard_bits=2)
        n00 = net.nodes["n00"]
        assert 3 not in z.shards | n00.shards
        await net.connect("z", "n00")
        topic = shard_topic(2, 3)
        with trio.fail_after(20):
            while not await z.reach_shard(topic):
                await trio.sleep(0.5)  # n00 may not know the providers yet
        assert z.p2p is not None
        found = set(z.p2p.pubsub.peer_topics[topic])
        members = {net.nodes[x].p2p.peer_id for x in names if 3 in net.nodes[x].shards}
        assert found and found <= members
        # an equivocating donor: its two settlements meet in its shard, the proof
        # goes to every node on the global topic
        key = signing_key("cheater")
        creator = net.nodes["n04"].identity
        one = settle(key, "2026-10", 100, "EUR", bytes(32), {"https://1.example/": creator})
        two = settle(key, "2026-10", 100, "EUR", bytes(32), {"https://2.example/": creator})
        await net.nodes["n01"].publish(one.settlement.raw)
        await net.nodes["n05"].publish(two.settlement.raw)
        donor = one.settlement.signer
        await eventually(lambda: all(donor in n.marked for n in net.nodes.values()), 20,
                         what="every node marks the donor")
        # a node loses every object of its shards that does not concern it; after a
        # restart it reconciles shard by shard with its shards' peers and has them back
        victim = net.nodes["n03"]
        ident = victim.identity
        lost = []
        for raw in stored(net, "n03"):
            p = preview_stored(raw)
            assert p is not None
            # (the cheater's settlements are not taken again: its month is proven)
            if ident not in p.subjects and p.type != "equivocation" and p.signer != donor:
                lost.append(hashlib.sha256(raw).digest())
        assert len(lost) >= 5

        def lose() -> None:
            victim.wallet.db.execute("PRAGMA foreign_keys = ON")
            victim.wallet.db.executemany("DELETE FROM objects WHERE id = ?",
                                         [(oid,) for oid in lost])
            victim.wallet.db.commit()
            victim._forget(lost)

        await victim.db(lose)
        assert not set(lost) & held(net, "n03")
        # one round with each peer, as after a sync: per shard, only shared shards
        assert victim.p2p is not None
        got = 0
        for peer in list(victim.p2p.pubsub.peers):
            got += await victim.reconcile_with(peer)
        assert got == len(lost) and set(lost) <= held(net, "n03")
        assert foreign(victim, stored(net, "n03")) == []
        print(f"meshes {t1 - t0:.1f} s, month end {seconds:.1f} s, "
              f"total {time.monotonic() - t0:.1f} s")
        t2 = time.monotonic()
    print(f"teardown {time.monotonic() - t2:.1f} s")


async def test_a_node_in_two_shards_of_a_settlement_forwards_it_in_both(
        tmp_path: Path) -> None:
    """P (shard 0) publishes a settlement placed in shards 1 and 2 through X (shards 0, 1,
    2), its only peer; Y (shards 2, 3) hears only X.  The two copies have one message ID:
    X accepts the first (shard 1) and must forward the second on shard 2, or Y never
    gets it (gossip alone: no sync, no reconciliation)."""
    async with network(tmp_path, END + 3600) as net:
        kw = {"shard_bits": 2, "reconcile": False}
        y = await start_one(net, "m14", **kw)
        x = await start_one(net, "m01", **kw)
        assert y.p2p is not None
        # P never connects with Y (the DHT would otherwise dial it while providing)
        p = await start_one(net, "m30", blocked=[str(y.p2p.peer_id)], **kw)
        assert (p.shards, x.shards, y.shards) == ({0}, {0, 1, 2}, {2, 3})
        await net.connect("m30", "m01")
        await net.connect("m14", "m01")
        s1, s2 = shard_topic(2, 1), shard_topic(2, 2)
        assert p.p2p is not None and x.p2p is not None and y.p2p is not None
        await eventually(lambda: x.p2p.peer_id in p.p2p.pubsub.peer_topics.get(s1, ()) and
                         x.p2p.peer_id in p.p2p.pubsub.peer_topics.get(s2, ()) and
                         y.p2p.peer_id in x.p2p.gossipsub.mesh.get(s2, ()),
                         what="P sees X in shards 1 and 2, X has Y in its shard-2 mesh")
        creator = signing_key("k4").verify_key.encode()
        res = settle(signing_key("k2"), "2026-10", 100, "EUR", bytes(32),
                     {"https://k4.example/": creator})
        assert object_topics(preview_stored(res.settlement.raw), 2) == (s1, s2)  # type: ignore
        await p.publish(res.settlement.raw)
        await eventually(lambda: res.settlement.id in held(net, "m14"), 10,
                         what="Y has the settlement")
        assert x.p2p.pubsub.forwarded_on_another_topic >= 1
        assert y.counters["received"] == 1 and y.traffic()["topics"][s2]["accept"] == 1


async def test_an_object_on_a_shard_topic_not_its_own_is_rejected_and_scored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from rill.node.pubsub import envelope_only

    caplog.set_level(logging.INFO, logger="rill.node")
    async with network(tmp_path, END + 3600) as net:
        a = await start_one(net, "n00", shard_bits=2)
        b = await start_one(net, "n01", shard_bits=2)
        assert {0} <= a.shards & b.shards
        await net.connect("n00", "n01")
        creator = signing_key("k4").verify_key.encode()
        res = settle(signing_key("k0"), "2026-10", 100, "EUR", bytes(32),
                     {"https://k4.example/": creator})  # placed in shards 3 and 2
        p = preview_stored(res.settlement.raw)
        assert p is not None and object_topics(p, 2) == (shard_topic(2, 2), shard_topic(2, 3))
        assert a.p2p is not None and b.p2p is not None
        await eventually(lambda: a.p2p.peer_id in b.p2p.gossipsub.mesh.get(shard_topic(2, 0),
                                                                          ()))
        a.p2p.pubsub.set_gate(envelope_only)  # as a node that ignores the shard rule
        await a.p2p.pubsub.publish(shard_topic(2, 0), res.settlement.raw)
        await eventually(lambda: b.counters["rejected"] >= 1, 10, what="rejected")
        assert b.topic_counters[shard_topic(2, 0)]["reject"] == 1
        assert b.p2p.scorer.score(a.p2p.peer_id, [shard_topic(2, 0)]) < 0
        assert res.settlement.id not in held(net, "n01")
        assert any("does not belong on rill/1/b2/s0" in r.getMessage() for r in caplog.records)


@pytest.mark.soak
async def test_gossip_alone_brings_every_node_the_settlements_of_its_shards(
        tmp_path: Path) -> None:
    """A settlement travels on several shard topics under one message ID: a node in two of
    them forwards it on both (SPEC §11.6), so members of the second shard get it too."""
    async with network(tmp_path, END - 86400 * 30) as net:
        names = await start(net, 12, shard_bits=2, reconcile=False)
        await shard_meshes(net, names)
        await month(net, names)
        want = settlements_expected(net, names)
        await eventually(lambda: all(want[x] <= held(net, x) for x in names), 10,
                         what="every settlement in every node of its shards")
        assert sum(net.nodes[x].p2p.pubsub.forwarded_on_another_topic  # type: ignore
                   for x in names) > 0


@pytest.mark.soak
@pytest.mark.parametrize(("n", "bits"), [(8, 2), (16, 2), (16, 3), (24, 3)])
async def test_figures_with_shards_on_and_off(tmp_path: Path, n: int, bits: int) -> None:
    """Per node: objects stored and gossip messages judged, b = 0 against b = bits."""
    off = await month_figures(tmp_path / "off", n, 0)
    on = await month_figures(tmp_path / "on", n, bits)
    print(f"\nshards off: {off}\nshards on:  {on}")
    assert on["objects_mean"] < off["objects_mean"]
    assert on["messages_mean"] < off["messages_mean"]


def test_the_names_used_here_fall_in_the_shards_assumed() -> None:
    from nacl.signing import SigningKey

    def ident(name: str) -> bytes:
        return bytes(SigningKey(hashlib.sha256(b"node " + name.encode()).digest()).verify_key)

    assert node_shards(ident("n00"), 2) == {0, 1} and node_shards(ident("z"), 2) == {0, 2}
    assert node_shards(ident("n03"), 2) == {1, 2, 3}


def test_rill_node_run_reads_shard_bits_from_config(tmp_path: Path) -> None:
    """Two `rill node run` processes with ``[network] shard_bits = 2`` (and a growth
    scheduled for 2099): they join their shards' topics (and the equivocation topic), and
    `rill node status` says which, and when the bits change next."""
    from nodes import make_home
    from procnet import ProcNode, wait_for

    nodes = [ProcNode(tmp_path, n, END + 3600) for n in ("n00", "z")]
    for node in nodes:
        make_home(tmp_path, node.name)
        cfg = node.home / "config.toml"
        cfg.write_text(cfg.read_text().replace("work_bits = 20",
                                               "work_bits = 0\nshard_bits = 2\n"
                                               'shard_bits_from = { "2099-01" = 3 }'))
    try:
        nodes[0].start([])
        nodes[0].wait_started()
        nodes[1].start([nodes[0].addr])
        nodes[1].wait_started()
        want = {"n00": [0, 1], "z": [0, 2]}
        for node in nodes:
            s = node.rill("node", "status")
            counted = s["shards"].pop("backbone_own_providers")  # as the lookups go
            assert set(counted) <= {f"2/{i}" for i in want[node.name]}
            assert all(n is None or n >= 0 for n in counted.values())
            assert s["shards"] == {"bits": 2, "joined": want[node.name], "accepted_bits": [2],
                                   "overlap_s": 3600, "pending": {
                                       "month": "2099-01", "bits": 3, "from": 4070908800}}
            assert s["topics"] == sorted([*(f"rill/1/b2/s{i}" for i in want[node.name]),
                                          "rill/1/equivocations", "rill/1/catalogue"])
        # they share shard 0: each becomes the other's peer in its topic
        wait_for(lambda: nodes[1].rill("node", "status")["mesh"]["rill/1/b2/s0"] == 1, 20,
                 "a mesh peer in shard 0")
        import subprocess

        from procnet import RILL
        out = subprocess.run([RILL, "node", "status"], env=nodes[1].env(), text=True,
                             capture_output=True, timeout=60).stdout
        assert "0, 2 of 4 (shard_bits 2)" in out
        assert "shard_bits 3 from 2099-01-01T00:00:00Z (2099-01)" in out
    finally:
        for node in nodes:
            node.stop()
