"""Shard bits growing at a month boundary (SPEC §11.6 "Growing"): the schedule, its
config, and six in-process daemons crossing b = 1 -> 2 at the first instant of 2026-11."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
from helpers import signing_key
from nodes import Net, eventually
from shardnet import END, OCT, PAYS, foreign, held, incoming, network, start

from rill.cli import main as _main  # noqa: F401  (loads the CLI modules in order)
from rill.cli_node import _shards_row
from rill.node.nodeconfig import NodeConfig
from rill.protocol.errors import RemoteError
from rill.protocol.months import month_start
from rill.protocol.network import TOPICS
from rill.protocol.settle import settle
from rill.protocol.shard import (
    GROW_OVERLAP,
    ShardSchedule,
    check_topic_any,
    node_shards,
    node_topics,
    object_shards,
    object_topics,
    preview_stored,
    provider_key,
    shard_of,
    shard_topic,
)

NOV = month_start("2026-11")
assert NOV == END


def test_schedule_bits_overlap_and_next_instants() -> None:
    s = ShardSchedule(1, (("2026-11", 2), ("2027-03", 3)))
    mar = month_start("2027-03")
    assert [s.at(t) for t in (OCT, NOV - 1, NOV, mar - 1, mar)] == [1, 1, 2, 2, 3]
    assert s.accepted(NOV - GROW_OVERLAP - 1) == (1,)
    assert s.accepted(NOV - GROW_OVERLAP) == (1, 2)  # joined early: clocks ahead are heard
    assert s.accepted(NOV + GROW_OVERLAP - 1) == (1, 2)
    assert s.accepted(NOV + GROW_OVERLAP) == (2,)
    assert s.next_event(OCT) == NOV - GROW_OVERLAP
    assert s.next_event(NOV - GROW_OVERLAP) == NOV
    assert s.next_event(NOV) == NOV + GROW_OVERLAP
    assert s.next_event(NOV + GROW_OVERLAP) == mar - GROW_OVERLAP
    assert s.next_event(mar + GROW_OVERLAP) is None
    assert s.pending(NOV - 1) == ("2026-11", 2) and s.pending(NOV) == ("2027-03", 3)
    key = signing_key("alice").verify_key.encode()
    both = s.topics(key, NOV)
    assert set(both) == set(node_topics(key, 1)) | set(node_topics(key, 2))
    # a node's shards at b + 1 are halves of its shards at b: it keeps what it held
    assert {i >> 1 for i in node_shards(key, 2)} == set(node_shards(key, 1))
    assert ShardSchedule(3).accepted(NOV) == (3,) and ShardSchedule(3).next_event(0) is None


def test_growing_from_one_shard_overlaps_the_global_topics() -> None:
    """0 -> 1 bit: during the overlap the four topics of §11.2 and the shard topics are
    both joined, and a settlement is accepted on either; after it, only on its shards'."""
    s = ShardSchedule(0, (("2026-11", 1),))
    key = signing_key("alice").verify_key.encode()
    assert set(s.topics(key, NOV)) == set(TOPICS) | {shard_topic(1, i)
                                                      for i in node_shards(key, 1)}
    assert set(s.topics(key, NOV + GROW_OVERLAP)) == set(node_topics(key, 1))
    raw = settle(signing_key("d"), "2026-10", 100, "EUR", bytes(32),
                 {"https://c.example/": key}).settlement.raw
    p = preview_stored(raw)
    assert p is not None
    mine = object_topics(p, 1)[0]
    for topic in ("rill/1/settlements", mine):
        check_topic_any(p, topic, s.accepted(NOV))
    check_topic_any(p, mine, s.accepted(NOV + GROW_OVERLAP))
    with pytest.raises(RemoteError) as err:
        check_topic_any(p, "rill/1/settlements", s.accepted(NOV + GROW_OVERLAP))
    assert err.value.code == "wrong-topic"
    with pytest.raises(RemoteError):  # a shard topic of 2 bits: no bits of the schedule
        check_topic_any(p, object_topics(p, 2)[0], s.accepted(NOV))


@pytest.mark.parametrize(("network_", "message"), [
    ({"shard_bits_from": 5}, "must be a table of months"),
    ({"shard_bits_from": {"2027-02": 6}}, "2027-02 must be 1, not 6"),
    ({"shard_bits": 4, "shard_bits_from": {"2027-02": 4}}, "must be 5, not 4"),
    ({"shard_bits": 4, "shard_bits_from": {"2027-02": 5, "2027-05": 7}}, "must be 6, not 7"),
    ({"shard_bits_from": {"February": 1}}, "'February' is not a month"),
    ({"shard_bits_from": {"2027-13": 1}}, "is not a month"),
    ({"shard_bits_from": {"2027-02": "1"}}, "not '1'"),
    ({"shard_bits": 16, "shard_bits_from": {"2027-02": 17}}, "0..16"),
])
def test_config_refuses_a_bad_schedule(network_: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=r"network\.shard_bits_from") as err:
        NodeConfig.from_toml({"network": network_})
    assert message in str(err.value)


def test_config_reads_a_schedule_and_status_shows_it() -> None:
    cfg = NodeConfig.from_toml({"network": {"shard_bits": 4,
                                            "shard_bits_from": {"2027-06": 6, "2027-02": 5}}})
    assert cfg.shard_bits == 4  # alone, shard_bits means what it always meant
    assert cfg.shard_schedule() == ShardSchedule(4, (("2027-02", 5), ("2027-06", 6)))
    assert NodeConfig.from_toml({"network": {"shard_bits": 3}}).shard_schedule() == \
        ShardSchedule(3)
    row = _shards_row({"bits": 1, "joined": [0, 1], "accepted_bits": [1, 2],
                       "pending": {"month": "2026-11", "bits": 2, "from": NOV}})
    assert row.splitlines() == ["0, 1 of 2 (shard_bits 1)",
                                "bits 1 and 2 both accepted (growth overlap)",
                                "shard_bits 2 from 2026-11-01T00:00:00Z (2026-11)"]
    row = _shards_row({"bits": 3, "joined": [1, 4, 6], "accepted_bits": [3],
                       "backbone_own_providers": {"3/4": 12, "3/6": 3, "3/7": None}})
    assert row.splitlines() == [
        "1, 4, 6 of 8 (shard_bits 3)",
        "backbone shards' own members announced: 3/4 12, 3/6 3 (announced by this node "
        "too), 3/7 lookup failed (announced by this node too)"]


def keep(net: Net, name: str, oid: bytes) -> int:
    w = net.wallet(name)
    try:
        return int(w.db.execute("SELECT keep FROM objects WHERE id = ?", (oid,)).fetchone()[0])
    finally:
        w.close()


def subscribed(net: Net, name: str) -> set[str]:
    d = net.nodes[name]
    assert d.p2p is not None
    return set(d.p2p.pubsub.topic_ids)


async def meshes(net: Net, names: list[str], bits: int, timeout: float = 40.0) -> None:
    """Every node has a gossip peer in each of its shard topics at ``bits`` that has
    another member."""
    shards = {x: node_shards(net.nodes[x].identity, bits) for x in names}

    def lonely() -> list[tuple[str, int]]:
        out = []
        for x in names:
            d = net.nodes[x]
            assert d.p2p is not None
            for i in shards[x]:
                if (sum(i in s for s in shards.values()) > 1 and
                        not d.p2p.pubsub.peer_topics.get(shard_topic(bits, i))):
                    out.append((x, i))
        return out

    try:
        await eventually(lambda: not lonely(), timeout, what=f"shard meshes at {bits} bits")
    except trio.TooSlowError:
        raise AssertionError(f"no peer in a shard at {bits} bits (node, shard): {lonely()}; "
                             f"members: {shards}; subscribed: "
                             f"{ {x: sorted(subscribed(net, x)) for x in names} }") from None


async def test_six_daemons_grow_from_one_to_two_bits_at_a_month_boundary(
        tmp_path: Path) -> None:
    t0 = time.monotonic()
    async with network(tmp_path, OCT + 3600) as net:
        names = await start(net, 6, shard_bits=1, shard_bits_from={"2026-11": 2})
        nodes = [net.nodes[x] for x in names]
        for d in nodes:
            assert d.shard_bits == 1 and subscribed(net, d.home.name) == set(
                node_topics(d.identity, 1))
        status = await nodes[0].status()
        assert status["shards"]["pending"] == {"month": "2026-11", "bits": 2, "from": NOV}
        # the overlap begins: both bits' topics, publishing still at 1 bit
        net.clock.set(NOV - GROW_OVERLAP)
        t_overlap = time.monotonic()
        await eventually(lambda: all(
            subscribed(net, x) == set(node_topics(net.nodes[x].identity, 1)) |
            set(node_topics(net.nodes[x].identity, 2)) for x in names), 10,
            what="every node in both bits' topics")
        assert all(d.shard_bits == 1 for d in nodes)
        await meshes(net, names, 2)
        t_mesh = time.monotonic()
        # the shards at 2 bits are provided in the DHT already: a node outside one finds
        # its members there
        target = next(i for i in range(4) if any(i not in node_shards(d.identity, 2)
                                                 for d in nodes))
        seeker = next(d for d in nodes if target not in node_shards(d.identity, 2))
        members = {d.p2p.peer_id for d in nodes if target in node_shards(d.identity, 2)}

        async def found() -> bool:
            assert seeker.p2p is not None
            infos = await seeker.p2p.dht.find_providers(provider_key(2, target).hex())
            return bool(infos) and {i.peer_id for i in infos} <= members

        await eventually(found, 20, what="providers of a shard at 2 bits")
        t1 = time.monotonic()
        # a month of donations; it ends at the boundary: its claims go out at 2 bits
        for i, name in enumerate(names):
            w = net.wallet(name)
            w.set_budget(900, "EUR", OCT + 10)
            for j in range(1, PAYS + 1):
                other = names[(i + j) % len(names)]
                w.click(f"https://{other}.example/{i}", OCT + 20 + j,
                        creator=net.nodes[other].identity)
            w.close()
        net.clock.set(NOV + 61)  # one grace period (60 s) after the boundary
        await eventually(lambda: all(d.shard_bits == 2 for d in nodes), 10,
                         what="every node at 2 bits")
        await eventually(lambda: all(incoming(net, x) == PAYS for x in names), 60,
                         what="every creator has every claim")
        for d in nodes:  # reconciliation, of every month, at the bits in force
            assert d.p2p is not None
            assert {s[0] for peer in d.p2p.pubsub.peers for s in d.reconcile_scopes(peer)
                    if s is not None} == {2}
        t2 = time.monotonic()
        for d in nodes:  # what was published went on the topics of 2 bits
            received = d.traffic()["topics"]
            assert not any(t.startswith("rill/1/b1/") and c.get("accept")
                           for t, c in received.items()), received
        # during the overlap a message on an old topic is accepted, by the gate and by
        # the old topic's members over the network
        # (a settlement whose donor and creator are both in shard h at 2 bits, and a
        # member of its shard at 1 bit, h >> 1, that is not in h: it must prune it)
        dropper, h = next((d, h) for d in nodes for i in node_shards(d.identity, 1)
                          for h in (2 * i, 2 * i + 1) if h not in d.shards)
        old = shard_topic(1, h >> 1)
        donor, creator = [k for k in (signing_key(f"late-{n}") for n in range(100))
                          if shard_of(k.verify_key.encode(), 2) == h][:2]
        raw = settle(donor, "2026-10", 100, "EUR", bytes(32),
                     {"https://late.example/": creator.verify_key.encode()}).settlement.raw
        p = preview_stored(raw)
        assert p is not None and object_shards(p, 2) == {h}
        sender = next(d for d in nodes if d is not dropper and old in d.topics)
        hearers = [d for d in nodes if d is not sender and old in d.topics]
        assert dropper in hearers
        sender._gossip_precheck(old, raw, net.clock.now())
        await sender._publish_on(old, raw)
        await eventually(lambda: all(d.topic_counters.get(old, {}).get("accept")
                                     for d in hearers), 10,
                         what="the old topic's members accept the late message")
        await eventually(lambda: all(p.id in held(net, d.home.name) for d in hearers), 10,
                         what="the old topic's members store it")
        # the overlap ends: only the topics of 2 bits, the old topic refused, the
        # objects of other shards pruned; by the node that must drop the late settlement
        # too, though it was off meanwhile: it prunes when it starts
        off = dropper.home.name
        await net.stop(off)
        net.clock.set(NOV + GROW_OVERLAP)
        dropper = await net.start(off, shard_bits=1, shard_bits_from={"2026-11": 2})
        nodes = [net.nodes[x] for x in names]
        await eventually(lambda: all(
            subscribed(net, x) == set(node_topics(net.nodes[x].identity, 2))
            for x in names), 10, what="every node in exactly its topics of 2 bits")
        with pytest.raises(RemoteError) as err:
            sender._gossip_precheck(old, raw, net.clock.now())
        assert err.value.code == "wrong-topic"
        status = await nodes[0].status()
        assert status["shards"]["pending"] is None
        assert status["shards"]["accepted_bits"] == [2]

        def unplaced(d: object) -> list[bytes]:
            w = net.wallet(d.home.name)  # type: ignore[attr-defined]
            try:
                raws = [bytes(r[0]) for r in w.db.execute(
                    "SELECT raw FROM objects WHERE private = 0 AND keep = 0")]
            finally:
                w.close()
            return foreign(d, raws)  # type: ignore[arg-type]

        await eventually(lambda: all(not unplaced(d) for d in nodes), 10,
                         what="objects of other shards pruned")
        # the late settlement left the old shard's members that are not in h
        oid = p.id
        assert oid not in held(net, off)
        await eventually(lambda: dropper.counters["evicted"] >= 1, 5, what="counted")
        assert all(oid in held(net, d.home.name) for d in hearers if h in d.shards)
        print(f"late settlement: {len(hearers)} heard it, "
              f"{sum(h not in d.shards for d in hearers)} pruned it")
        print(f"start {t_overlap - t0:.1f} s, overlap start to meshes at 2 bits "
              f"{t_mesh - t_overlap:.1f} s, to a provider found {t1 - t_overlap:.1f} s, "
              f"month end {t2 - t1:.1f} s, total {time.monotonic() - t0:.1f} s")


def test_rill_node_run_refuses_a_bad_schedule(tmp_path: Path) -> None:
    """A schedule that skips a bit stops ``rill node run`` before anything starts: one line
    naming the key, and the JSON error of every command with --json."""
    from clitools import fast_home, rill

    fast_home(tmp_path)
    cfg = tmp_path / "config.toml"
    cfg.write_text(cfg.read_text().replace(
        "work_bits = 0", 'work_bits = 0\nshard_bits = 2\nshard_bits_from = { "2027-02" = 4 }'))
    out = rill("node", "run", "--listen", "/ip4/127.0.0.1/tcp/0", home=tmp_path, code=None)
    assert out.code != 0
    assert ("config.toml: network.shard_bits_from: shard bits grow by one at a time: "
            "2027-02 must be 3, not 4 (network.shard_bits is 2)") in out.stderr
    err = rill("--json", "node", "run", home=tmp_path, code=None)
    assert err.code != 0 and "network.shard_bits_from" in err.json()["error"]


@pytest.mark.soak
async def test_eight_daemons_grow_twice_and_every_month_is_delivered(tmp_path: Path) -> None:
    """b = 1 -> 2 at 2026-11 -> 3 at 2026-12, eight daemons, two months of donations: the
    claims of October go out at 2 bits, those of November (the first month after a
    change) at 3; every creator has every claim, every node ends in exactly its topics
    of 3 bits and holds nothing of other shards for others."""
    dec = month_start("2026-12")
    schedule = {"2026-11": 2, "2026-12": 3}
    async with network(tmp_path, OCT + 3600) as net:
        names = await start(net, 8, ring=True, shard_bits=1, shard_bits_from=schedule)
        nodes = [net.nodes[x] for x in names]

        def donate(month_start_: int) -> None:
            for i, name in enumerate(names):
                w = net.wallet(name)
                if month_start_ == OCT:
                    w.set_budget(900, "EUR", OCT + 10)
                for j in range(1, PAYS + 1):
                    other = names[(i + j) % len(names)]
                    w.click(f"https://{other}.example/{month_start_}/{i}",
                            month_start_ + 20 + j, creator=net.nodes[other].identity)
                w.close()

        for month_start_, boundary, bits, months in ((OCT, NOV, 2, 1), (NOV, dec, 3, 2)):
            net.clock.set(boundary - GROW_OVERLAP)
            await meshes(net, names, bits)
            donate(month_start_)
            net.clock.set(boundary + 61)
            await eventually(lambda m=months: all(incoming(net, x) == m * PAYS  # type: ignore[misc]
                                                  for x in names), 90,
                             what="every creator has every claim")
            assert all(d.shard_bits == bits for d in nodes)
            net.clock.set(boundary + GROW_OVERLAP)
            await eventually(lambda b=bits: all(  # type: ignore[misc]
                subscribed(net, x) == set(node_topics(net.nodes[x].identity, b))
                for x in names), 10, what=f"every node in exactly its topics of {bits} bits")
        for d in nodes:  # the claims of each month went out at the bits then in force
            received = d.traffic()["topics"]
            assert not any(t.startswith("rill/1/b1/") and c.get("accept")
                           for t, c in received.items()), received
        w = net.wallet(names[0])
        try:
            raws = [bytes(r[0]) for r in w.db.execute(
                "SELECT raw FROM objects WHERE private = 0 AND keep = 0")]
        finally:
            w.close()
        assert foreign(nodes[0], raws) == []
