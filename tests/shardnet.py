"""A sharded month on the in-process test network (tests/nodes.py): N daemons that know
only one bootstrap node, each a donor paying three others, then month end.  Used by
tests/test_shard_nodes.py and, for figures with shards on and off, by ``month_figures``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio
from nodes import Net, eventually, make_home, network

from rill.node.daemon import Daemon
from rill.protocol.months import month_end, month_start
from rill.protocol.shard import object_shards, preview_stored

OCT = month_start("2026-10")
END = month_end("2026-10")
#: each donor pays this many creators (the next ones by name, round the ring)
PAYS = 3


def stored(net: Net, name: str) -> list[bytes]:
    w = net.wallet(name)
    try:
        return [bytes(r[0]) for r in w.db.execute("SELECT raw FROM objects WHERE private = 0")]
    finally:
        w.close()


def incoming(net: Net, name: str) -> int:
    w = net.wallet(name)
    try:
        return sum(1 for o in w.obligations() if o.direction == "in")
    finally:
        w.close()


def foreign(node: Daemon, raws: list[bytes]) -> list[bytes]:
    """The stored objects a node should not hold: not of its shards, not about it."""
    out = []
    for raw in raws:
        p = preview_stored(raw)
        assert p is not None
        if p.type == "equivocation" or node.identity in p.subjects:
            continue
        if not node.shard_bits or object_shards(p, node.shard_bits) & node.shards:
            continue
        out.append(raw)
    return out


async def start(net: Net, n: int, ring: bool = False, **kw: Any) -> list[str]:
    """n daemons; every one dials the first (the bootstrap) and, with ``ring``, also the
    one before it (so that a network without shards is not a star: the hub's mesh
    holds at most D_high = 12 of its peers)."""
    names = [f"n{i:02d}" for i in range(n)]
    for name in names:
        await start_one(net, name, **kw)
    for i, name in enumerate(names[1:], 1):
        await net.connect(name, names[0])
        if ring and i >= 2:
            await net.connect(name, names[i - 1])
    return names


async def start_one(net: Net, name: str, **kw: Any) -> Daemon:
    """One daemon on a test network's home: no proof of work on settlements."""
    home = net.base / name
    if not home.exists():
        make_home(net.base, name)
        cfg = home / "config.toml"
        cfg.write_text(cfg.read_text().replace("work_bits = 20", "work_bits = 0"))
    return await net.start(name, **kw)


async def month(net: Net, names: list[str], timeout: float = 60.0) -> float:
    """Each node donates to the PAYS next ones; the month ends; wait until every creator
    has every claim.  Returns the seconds from month end to the last claim."""
    nodes = net.nodes
    for i, name in enumerate(names):
        w = net.wallet(name)
        w.set_budget(900, "EUR", OCT + 10)
        for j in range(1, PAYS + 1):
            creator = nodes[names[(i + j) % len(names)]]
            w.click(f"https://{names[(i + j) % len(names)]}.example/{i}", OCT + 20 + j,
                    creator=creator.identity)
        w.close()
    t0 = time.monotonic()
    net.clock.set(END + 61)
    await eventually(lambda: all(incoming(net, x) == PAYS for x in names), timeout,
                     what="every creator has every claim")
    return time.monotonic() - t0


async def month_figures(base: Path, n: int, shard_bits: int, **kw: Any) -> dict[str, Any]:
    """One month of ``n`` daemons with ``shard_bits``, on a ring with the bootstrap as hub:
    seconds to deliver every claim, and per node the objects (and bytes) stored and the
    gossip messages judged and their bytes (mean and max).  Larger simulations call this
    or read ``Daemon.traffic()`` themselves."""
    async with network(base, OCT + 3600) as net:
        names = await start(net, n, ring=True, shard_bits=shard_bits, **kw)
        if shard_bits:
            await shard_meshes(net, names)
        seconds = await month(net, names)
        await trio.sleep(2)  # late copies
        held_raw = [stored(net, x) for x in names]
        objects = [len(r) for r in held_raw]
        stored_bytes = [sum(len(o) for o in r) for r in held_raw]
        messages = [net.nodes[x].traffic()["total"].get("messages", 0) for x in names]
        received = [net.nodes[x].traffic()["total"].get("bytes", 0) for x in names]
        return {"n": n, "shard_bits": shard_bits, "seconds": round(seconds, 2),
                "objects_mean": sum(objects) / n, "objects_max": max(objects),
                "messages_mean": sum(messages) / n, "messages_max": max(messages),
                "stored_bytes_mean": sum(stored_bytes) / n,
                "received_bytes_mean": sum(received) / n}


async def shard_meshes(net: Net, names: list[str], timeout: float = 40.0) -> None:
    """Wait until every node has a gossip peer in each of its shards that has another
    member."""
    def members(index: int) -> int:
        return sum(1 for x in names if index in net.nodes[x].shards)

    def ready() -> bool:
        for x in names:
            d = net.nodes[x]
            assert d.p2p is not None
            for i in d.shards:
                topic = f"rill/1/b{d.shard_bits}/s{i}"
                if members(i) > 1 and not d.p2p.pubsub.peer_topics.get(topic):
                    return False
        return True

    await eventually(ready, timeout, what="shard meshes")


__all__ = ["END", "OCT", "PAYS", "foreign", "held", "incoming", "month", "month_figures",
           "network", "settlements_expected", "shard_meshes", "start", "start_one", "stored"]


def settlements_expected(net: Net, names: list[str]) -> dict[str, set[bytes]]:
    """Per node, the IDs of the settlements (of every node's stores) placed in its
    shards or concerning it."""
    import hashlib

    every: dict[bytes, bytes] = {}
    for x in names:
        for raw in stored(net, x):
            p = preview_stored(raw)
            if p is not None and p.type == "settlement":
                every[hashlib.sha256(raw).digest()] = raw
    out: dict[str, set[bytes]] = {}
    for x in names:
        node = net.nodes[x]
        out[x] = {oid for oid, raw in every.items() if not foreign(node, [raw])}
    return out


def held(net: Net, name: str) -> set[bytes]:
    import hashlib

    return {hashlib.sha256(raw).digest() for raw in stored(net, name)}
