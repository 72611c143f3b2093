"""The periodic sync + reconciliation round (SPEC §11.4 "The periodic round", node/rounds.py):
its policy (which peers, when) and real daemons (libp2p hosts on 127.0.0.1) running it:
a few peers per round, backing off while nothing is new, bringing back what gossip dropped,
and what it costs on the wire compared with a round with every peer."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.network.connection import raw_connection
from libp2p.peer.id import ID
from nodes import eventually, make_home, network

from rill import cli  # noqa: F401  (imports cli_node the way `rill` does)
from rill.cli_node import _rounds_row
from rill.node.daemon import Daemon
from rill.node.host import framed_handler
from rill.node.nodeconfig import NodeConfig
from rill.node.rounds import RoundPacer, pick_peers
from rill.protocol.months import month_end, month_start
from rill.protocol.network import MAX_REQUEST, SYNC_PROTOCOL
from rill.protocol.reconcile import MAX_RECONCILE_REQUEST, RECONCILE_PROTOCOL
from rill.wallet.wallet import Wallet

OCT = month_start("2026-10")
END = month_end("2026-10")


# -- the policy ----------------------------------------------------------------------------


def test_the_interval_doubles_while_nothing_is_new_and_resets() -> None:
    p = RoundPacer(600, 3600)
    p.start(0)
    assert (p.interval, p.due) == (600, 600)
    waits = []
    for _ in range(5):
        p.after_round(0, p.due)
        waits.append(p.interval)
    assert waits == [1200, 2400, 3600, 3600, 3600]
    t = p.due
    p.after_round(3, t)  # something new: back to base
    assert (p.interval, p.due, p.quiet) == (600, t + 600, 0)
    p.after_round(0, p.due)
    p.after_round(0, p.due)
    assert p.interval == 2400
    # a reset (new peer, month end) moves a far round to base from now, a near one stays
    now = p.due - 2000
    assert p.reset(now) and (p.interval, p.due) == (600, now + 600)
    assert not p.reset(now + 100) and p.due == now + 600
    assert RoundPacer(600, 60).cap == 600  # a cap below the base is the base


def test_a_round_picks_at_most_k_peers_rotating_through_all() -> None:
    rng = random.Random(7)
    peers = [f"p{i}" for i in range(7)]
    last: dict[str, float] = {}
    seen: list[str] = []
    for t in range(4):  # ceil(7 / 2) rounds ask every peer
        got = pick_peers(peers, 2, last, {}, rng)
        assert len(got) == 2 and len(set(got)) == 2
        seen += got
        last.update(dict.fromkeys(got, float(t)))
    assert set(seen) == set(peers)
    assert pick_peers(peers, 0, last, {}, rng) == peers  # 0: every peer
    assert sorted(pick_peers(peers[:2], 5, {}, {}, rng)) == peers[:2]
    # the least recently asked come first
    last = {p: float(i) for i, p in enumerate(peers)}
    assert pick_peers(peers, 3, last, {}, rng) == peers[:3]


def test_with_shards_a_round_covers_the_node_shards_first() -> None:
    rng = random.Random(1)
    peers = ["a", "b", "c", "d", "e"]
    shards = {"a": frozenset({5}), "b": frozenset({5}), "c": frozenset({9}),
              "d": frozenset(), "e": frozenset()}
    last = {"d": 0.0, "e": 0.0, "a": 1.0, "b": 2.0, "c": 3.0}  # d, e asked longest ago
    assert pick_peers(peers, 2, last, shards, rng) == ["a", "c"]  # shards 5 and 9
    assert pick_peers(peers, 3, last, shards, rng) == ["a", "c", "b"]  # sharing before not
    assert pick_peers(peers, 4, last, shards, rng) == ["a", "c", "b", "d"]


def test_config() -> None:
    cfg = NodeConfig.from_toml({"node": {"sync_interval": 300, "sync_interval_max": 7200,
                                         "sync_peers": 3}})
    assert (cfg.sync_interval, cfg.sync_interval_max, cfg.sync_peers) == (300, 7200, 3)
    d = NodeConfig()
    assert (d.sync_interval, d.sync_interval_max, d.sync_peers) == (600, 3600, 2)
    for bad in ({"sync_peers": -1}, {"sync_peers": 1.5}, {"sync_interval": 1},
                {"sync_interval_max": "1h"}, {"sync_peers": True},
                {"sync_interval": 600, "sync_interval_max": 100}, {"sync_interval": 7200}):
        with pytest.raises(ValueError, match=r"node\.sync_"):
            NodeConfig.from_toml({"node": bad})


# -- real daemons ----------------------------------------------------------------------------


def count_served(node: Daemon, served: Counter[str], name: str) -> None:
    """Count the sync and reconciliation streams ``node`` serves (then serve them)."""
    assert node.p2p is not None

    def counting(kind: str, serve: Callable[[ID, bytes], Awaitable[bytes]]
                 ) -> Callable[[ID, bytes], Awaitable[bytes]]:
        async def wrapped(peer: ID, raw: bytes) -> bytes:
            served[f"{name} {kind}"] += 1
            return await serve(peer, raw)
        return wrapped

    node.p2p.host.set_stream_handler(TProtocol(SYNC_PROTOCOL), framed_handler(
        counting("sync", node._serve_sync), MAX_REQUEST))
    node.p2p.host.set_stream_handler(TProtocol(RECONCILE_PROTOCOL), framed_handler(
        counting("reconcile", node._serve_reconcile), MAX_RECONCILE_REQUEST))


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes written on every raw connection of this process (below Noise and yamux:
    what a router counts), as tests/scale/worker.py counts them."""
    total = [0]
    write = raw_connection.RawConnection.write

    async def counted(self: Any, data: bytes) -> None:
        total[0] += len(data)
        await write(self, data)

    monkeypatch.setattr(raw_connection.RawConnection, "write", counted)
    return total


async def quiet(served: Counter[str]) -> None:
    """Until no stream was served for a while (the syncs on connect are over: new peers
    are looked for every second, node/peering.py)."""
    before = None
    with trio.fail_after(30):
        while before != dict(served):
            before = dict(served)
            await trio.sleep(1.5)


def third_party_settlement(base: Path, to: bytes) -> bytes:
    """A valid settlement of a wallet that never ran a node: a copy the network carries."""
    make_home(base, "third")
    w = Wallet.open(base / "third")
    try:
        w.set_budget(100, "EUR", OCT)
        w.click("https://x.example/", OCT + 5, creator=to)
        res, _ = w.settle("2026-10", END + 60)
        return res.settlement.raw
    finally:
        w.close()


async def test_a_round_asks_few_peers_and_costs_a_fraction_of_the_full_round(
        tmp_path: Path, wire: list[int]) -> None:
    """A hub with 4 peers on a network that agrees: each periodic round asks exactly 2 of
    them (a sync and a reconciliation each), two rounds ask all 4, and the wire bytes of a
    round are about half those of the full round with every peer."""
    async with network(tmp_path, END + 3600) as net:
        hub = await net.start("hub", sync_peers=2)
        served: Counter[str] = Counter()
        names = [f"n{i}" for i in range(4)]
        for name in names:
            count_served(await net.start(name), served, name)
            await net.connect("hub", name)
        await eventually(lambda: len(served) == 8, what="the syncs on connect")
        await quiet(served)
        rounds: list[set[str]] = []
        costs: list[int] = []
        for _ in range(4):
            served.clear()
            before = wire[0]
            assert await hub._periodic_round() == 0
            costs.append(wire[0] - before)
            asked = {k.split()[0] for k in served}
            assert len(asked) == 2, served
            assert all(served[f"{n} sync"] == 1 and served[f"{n} reconcile"] == 1
                       for n in asked), served
            rounds.append(asked)
        assert rounds[0] | rounds[1] == set(names) == rounds[2] | rounds[3]
        assert hub.rounds.rounds == 4 and hub.rounds.quiet == 4
        full: list[int] = []
        for _ in range(2):
            served.clear()
            before = wire[0]
            assert await hub._sync_all() == 0
            full.append(wire[0] - before)
            assert len({k.split()[0] for k in served}) == 4
        per_round, per_full = min(costs), min(full)
        print(f"agreeing network, 4 peers: periodic round (2 peers) {costs} B, "
              f"full round (4 peers) {full} B")
        assert per_round < 0.7 * per_full


async def test_what_gossip_dropped_comes_back_by_the_periodic_rounds(tmp_path: Path) -> None:
    """A settlement held by one of the hub's 3 peers only (it never travelled by gossip):
    with one peer per round the hub has it within ceil(3 / 1) = 3 rounds; the quiet rounds
    before doubled the interval, the one that found it set it back to the base."""
    async with network(tmp_path, END + 3600) as net:
        hub = await net.start("hub", sync_peers=1, sync_interval=600.0,
                              sync_interval_max=3600.0)
        served: Counter[str] = Counter()
        for name in ("n0", "n1", "n2"):
            count_served(await net.start(name), served, name)
            await net.connect("hub", name)
        await eventually(lambda: len(served) == 6, what="the syncs on connect")
        await quiet(served)
        # to a creator that is none of the nodes: nothing concerns them, only
        # reconciliation (the copies carried for others) can bring it
        make_home(tmp_path, "creator")
        w = Wallet.open(tmp_path / "creator")
        creator = w.identity
        w.close()
        raw = third_party_settlement(tmp_path, creator)
        holder = net.nodes["n2"]
        assert await holder._accept(raw, via="test")
        oid = next(iter(holder.held - hub.held))
        intervals = []
        for _ in range(3):
            found = await hub._periodic_round()
            intervals.append(hub.rounds.interval)
            if found:
                break
        assert oid in hub.held
        assert intervals[-1] == 600 and intervals[:-1] == [1200, 2400][:len(intervals) - 1]
        assert hub.counters["reconciled"] == 1 and hub.counters["synced"] == 0


async def test_the_loop_backs_off_and_a_new_peer_brings_it_back(tmp_path: Path) -> None:
    """The daemon's own loop (short intervals here): quiet rounds double the wait up to the
    cap; a peer that connects sets it back to the base at once."""
    async with network(tmp_path, END + 3600) as net:
        hub = await net.start("hub", sync_interval=0.2, sync_interval_max=0.8)
        await net.start("a")
        await net.connect("hub", "a")
        await eventually(lambda: hub.rounds.quiet >= 3, timeout=20, what="3 quiet rounds")
        assert hub.rounds.interval == 0.8
        start = trio.current_time()
        await net.start("b")
        await net.connect("hub", "b")
        await eventually(lambda: hub.rounds.interval < 0.8 or hub.rounds.quiet <= 1,
                         timeout=5, what="back to base")
        assert trio.current_time() - start < 5
        n = hub.rounds.rounds
        await eventually(lambda: hub.rounds.rounds > n, timeout=10, what="rounds go on")
        st = (await hub.status())["sync_rounds"]
        assert st["peers_per_round"] == 2 and st["rounds"] >= n + 1
        assert 0 <= st["next_in_s"] <= 0.8
        assert _rounds_row(st).startswith("2 peers every ")
