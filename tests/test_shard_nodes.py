"""Sharded gossip (SPEC §11.6) with real daemons on 127.0.0.1, in one process: b = 2 (four
shards), every node knowing only one bootstrap node."""

from __future__ import annotations

import time
from pathlib import Path

from shardnet import END, foreign, month, network, shard_meshes, start, stored


async def test_a_sharded_month_delivers_every_claim_and_stores_only_its_shards(
        tmp_path: Path) -> None:
    t0 = time.monotonic()
    async with network(tmp_path, END - 86400 * 30) as net:
        names = await start(net, 8, shard_bits=2)
        await shard_meshes(net, names)
        t1 = time.monotonic()
        seconds = await month(net, names)
        print(f"mesh {t1 - t0:.1f} s, month end {seconds:.1f} s")
        for x in names:
            node = net.nodes[x]
            assert foreign(node, stored(net, x)) == [], x
