"""Which shard keys a member announces in the DHT (SPEC §11.6 "Finding a shard's
members"): its own shard's always, a backbone shard's only while a lookup of the key's
providers finds fewer than OWN_PROVIDERS_ENOUGH of the shard's own members."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from helpers import signing_key
from nodes import eventually
from shardnet import END, network, start

import rill.node.sharding as sharding
import rill.protocol.shard as shard
from rill.node.host import key_from_peer_id
from rill.protocol.shard import (
    OWN_PROVIDERS_ENOUGH,
    OWN_PROVIDERS_FRESH,
    count_fresh,
    own_providers,
    provider_key,
    provides_shard,
    shard_of,
)


def key_of(name: str) -> bytes:
    return signing_key(name).verify_key.encode()


def test_own_shard_always_backbone_while_too_few_own_members_are_found() -> None:
    keys = [key_of(f"k{i}") for i in range(64)]
    me = keys[0]
    own = shard_of(me, 3)
    other = (own + 1) % 8
    assert provides_shard(me, 3, own, None)
    assert provides_shard(me, 3, own, 10**6)  # its own shard, whatever is found
    assert provides_shard(me, 3, other, None)  # not looked up: announce
    assert provides_shard(me, 3, other, OWN_PROVIDERS_ENOUGH - 1)
    assert not provides_shard(me, 3, other, OWN_PROVIDERS_ENOUGH)
    members = [k for k in keys if shard_of(k, 3) == other]
    outsiders = [k for k in keys if shard_of(k, 3) != other]
    assert members and outsiders
    # a provider counts once, only with the shard as its own; a peer ID without an
    # Ed25519 key (None) does not count
    assert own_providers([*members, *members, *outsiders, None], 3, other) == len(members)
    assert own_providers([], 3, other) == 0
    # a count that was enough stands 7 days; a short one or a failed lookup does not
    week = OWN_PROVIDERS_FRESH
    assert count_fresh(OWN_PROVIDERS_ENOUGH, week - 1)
    assert not count_fresh(OWN_PROVIDERS_ENOUGH, week)
    assert not count_fresh(OWN_PROVIDERS_ENOUGH - 1, 0)
    assert not count_fresh(None, 0)


async def test_a_backbone_shard_with_enough_own_members_announced_is_not_provided(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enough = 2  # 8 at SPEC's bits; 10 daemons at 1 bit have ~5 own members per shard
    monkeypatch.setattr(shard, "OWN_PROVIDERS_ENOUGH", enough)
    async with network(tmp_path, END + 3600) as net:
        names = await start(net, 10, ring=True, shard_bits=1, reconcile=False)
        nodes = [net.nodes[x] for x in names]
        own = {d.p2p.peer_id: shard_of(d.identity, 1) for d in nodes}  # type: ignore
        counts = {i: sum(1 for s in own.values() if s == i) for i in (0, 1)}
        assert min(counts.values()) >= enough + 1, counts  # the names give both shards
        # a node with a backbone shard that is not its own
        d = next(x for x in nodes if x.shards != {shard_of(x.identity, 1)})
        mine, other = shard_of(d.identity, 1), 1 - shard_of(d.identity, 1)
        assert d.p2p is not None

        async def announced() -> bool:  # every other member of `other` found in the DHT
            infos = await sharding.find_providers(d.p2p.dht, provider_key(1, other).hex(),
                                                  64)
            found = own_providers((key_from_peer_id(i.peer_id) for i in infos
                                   if i.peer_id != d.p2p.peer_id), 1, other)
            return found >= counts[other] - 1

        await eventually(announced, 60, what="the own members of the other shard announced")
        # the daemon's own first round chose and provided (its count was taken at start,
        # maybe before the others announced); forget that count: looked up again
        await eventually(lambda: d.counters.get("provided", 0) >= 1, 30,
                         what="the daemon's first round of provides")
        d._own_providers_at.clear()
        before = d.counters.get("own_provider_lookups", 0)
        with trio.fail_after(60):
            chosen = await d.shards_to_provide()
        assert chosen == [(1, mine)]
        assert d.own_providers[(1, other)] >= enough
        assert d.counters.get("own_provider_lookups", 0) == before + 1
        # a count that was enough is trusted (no lookup) for OWN_PROVIDERS_FRESH
        with trio.fail_after(60):
            assert await d.shards_to_provide() == [(1, mine)]
        assert d.counters["own_provider_lookups"] == before + 1
        # too few found (here: more wanted than the shard has): it announces the backbone
        # shard too, and looks again at each round
        monkeypatch.setattr(shard, "OWN_PROVIDERS_ENOUGH", 100)
        d._own_providers_at.clear()
        for extra in (1, 2):
            with trio.fail_after(60):
                assert await d.shards_to_provide() == [(1, mine), (1, other)]
            assert d.counters["own_provider_lookups"] == before + 1 + extra
        await eventually(lambda: all(x.counters.get("provided", 0) >= 1 for x in nodes), 30,
                         what="every node provided its own shard")
