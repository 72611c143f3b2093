"""What the gossip gate costs (docs/NETWORK.md "gossip gate"): run
``.venv/bin/python tests/bench/gate_bench.py``.

1. In-process, a real Daemon's RillPubsub.push_msg called directly (no transport):
   a duplicate of a held object from 10,000 different forwarders and ``from`` keys; the
   same for the author's own message ID (not marked seen: it goes through the gate each
   time); a repeat that py-libp2p's seen cache drops; a junk message (valid new object,
   corrupted envelope signature) from 10,000 different forwarders; and what the sender
   pays to make one junk message.
2. End to end: a `rill node run` process receives 1,000 such junk messages at ~1,000/s
   from one peer over loopback; its CPU time (from /proc) is reported.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nacl.signing
import trio

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from libp2p.peer.id import ID  # noqa: E402
from libp2p.pubsub.pb import rpc_pb2  # noqa: E402
from nodes import network  # noqa: E402
from procnet import ProcNode  # noqa: E402
from test_gossip_gate import KEYS, NOW, attacker_host, throwaway, wrap  # noqa: E402

from rill.node import host as h  # noqa: E402
from rill.protocol import messages as m  # noqa: E402

N = 10_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def doc(i: int) -> m.Signed[Any]:
    key = nacl.signing.SigningKey(hashlib.sha256(b"bench author %d" % i).digest())
    return m.sign(m.KeyDocument(f"Bench{i}", (f"https://b{i}.example",), (), NOW - 60), key)


def stats(ns: list[int]) -> str:
    us = sorted(x / 1000 for x in ns)
    return (f"median {statistics.median(us):.1f} us, p90 {us[int(len(us) * 0.9)]:.1f} us, "
            f"n={len(us)}")


async def timed(ps: Any, pairs: list[tuple[ID, rpc_pb2.Message]]) -> list[int]:
    out = []
    for fwd, msg in pairs:
        t0 = time.perf_counter_ns()
        await ps.push_msg(fwd, msg)
        out.append(time.perf_counter_ns() - t0)
    return out


async def in_process(base: Path) -> None:
    async with network(base, NOW) as net:
        b = await net.start("b")
        assert b.p2p is not None
        ps = b.p2p.pubsub
        held = doc(0)
        b.held.add(held.id)
        keys_ = [throwaway(i) for i in range(N)]
        ids = [ID.from_pubkey(kp.public_key) for kp in keys_]
        # 1. a held object, from N forwarders, each under its own from key: IGNORE (known)
        dups = [(ids[i], wrap(held.raw, keys_[i], 1)) for i in range(N)]
        before = dict(b.counters)
        t = await timed(ps, dups)
        assert b.counters["duplicates"] - before["duplicates"] == N
        print(f"duplicate of a held object (IGNORE, then marked seen): {stats(t)}")
        # 2. the author's republish within the floor (accepted lately, seen cache expired),
        # arriving from N forwarders: IGNORE, not marked seen (see pubsub._may_mark_seen)
        b.gate._remember(held.id, b.clock.now())
        author = nacl.signing.SigningKey(hashlib.sha256(b"bench author 0").digest())
        kp = h.keypair_from_seed(bytes(author))
        own = wrap(held.raw, kp, 1)
        others = [ID(b"\x00\x24" + hashlib.sha256(b"fwd %d" % i).digest()) for i in range(N)]
        t = await timed(ps, [(others[i], own) for i in range(N)])
        assert b.counters["duplicates"] - before["duplicates"] == 2 * N
        print(f"duplicate under the author's message ID (IGNORE, not marked seen): {stats(t)}")
        # 3. a message ID already seen: py-libp2p's seen cache drops it before the gate
        t = await timed(ps, dups[:N])
        assert b.counters["duplicates"] - before["duplicates"] == 2 * N
        print(f"repeat of a seen message ID (dropped before the gate): {stats(t)}")
        # 4. junk: a valid object b does not hold, envelope signature corrupted
        fresh = doc(1)
        junk = [(ids[i], wrap(fresh.raw, keys_[i], 2, corrupt=True)) for i in range(N)]
        r0 = b.counters["rejected"]
        t = await timed(ps, junk)
        assert b.counters["rejected"] - r0 == N
        print(f"junk with a bad envelope signature (precheck + envelope, REJECT): {stats(t)}")
        wire = [rpc_pb2.RPC(publish=[msg]).SerializeToString() for _, msg in junk[:2000]]
        t0 = time.perf_counter_ns()
        for raw in wire:
            rpc_pb2.RPC().ParseFromString(raw)
        print(f"  + parsing its RPC at the receiver: "
              f"{(time.perf_counter_ns() - t0) / len(wire) / 1000:.1f} us")
        # the sender: one junk message = a protobuf with any 64 bytes as signature
        sender_id = ids[0].to_bytes()
        t0 = time.perf_counter_ns()
        for i in range(N):
            msg = rpc_pb2.Message(data=fresh.raw, topicIDs=[KEYS], from_id=sender_id,
                                  seqno=i.to_bytes(8, "big"), signature=bytes(64))
            rpc_pb2.RPC(publish=[msg]).SerializeToString()
        print(f"sender: making one junk message (no signing at all): "
              f"{(time.perf_counter_ns() - t0) / N / 1000:.1f} us")
        t0 = time.perf_counter_ns()
        for i in range(2000):
            wrap(fresh.raw, keys_[0], i, corrupt=True)
        print(f"sender: making one junk message (signing, then corrupting): "
              f"{(time.perf_counter_ns() - t0) / 2000 / 1000:.1f} us")
        print(f"gate state after {4 * N} messages: {b.gate.sizes()}")


def cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


async def end_to_end(base: Path, n: int = 1000) -> None:
    base.mkdir(parents=True, exist_ok=True)
    node = ProcNode(base, "victim", NOW)
    node.start([])
    node.wait_started()
    assert node.proc is not None
    try:
        async with attacker_host("bench") as mallory:
            victim = await mallory.connect(node.addr)
            await mallory.pubsub.wait_for_peer(victim, timeout=10)
            with trio.fail_after(10):
                while victim not in mallory.pubsub.peer_queues:
                    await trio.sleep(0.02)
            await trio.sleep(1.0)
            kp = h.keypair_from_seed(hashlib.sha256(b"attacker bench").digest())
            fresh = doc(2)
            msgs = [wrap(fresh.raw, kp, i + 1, corrupt=True) for i in range(n)]
            c0 = cpu(node.proc.pid)
            idle0 = time.perf_counter()
            await trio.sleep(1.0)
            idle = (cpu(node.proc.pid) - c0) / (time.perf_counter() - idle0)
            c0, t0 = cpu(node.proc.pid), time.perf_counter()
            sent = 0
            for msg in msgs:
                if victim not in mallory.pubsub.peer_queues:
                    break
                mallory.gossipsub.send_rpc(victim, rpc_pb2.RPC(publish=[msg]))
                sent += 1
                await trio.sleep(0.001)
            print(f"sent {sent} in {time.perf_counter() - t0:.2f} s; attacker still "
                  f"connected: {victim in mallory.pubsub.peers}")
            await trio.sleep(1.0)
            wall = time.perf_counter() - t0
            used = cpu(node.proc.pid) - c0 - idle * wall
        status = node.rill("node", "status")
        print(f"end to end: {n} junk messages sent at ~1000/s to a `rill node run` process: "
              f"it rejected {status['counters']['rejected']}, blacklisted the sender, and "
              f"spent {used * 1000:.0f} ms of CPU above idle ({idle * 1000:.0f} ms/s) in "
              f"{wall:.1f} s")
    finally:
        node.stop()
        if os.environ.get("GATE_BENCH_LOG"):
            print(node.log.read_text()[-3000:])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(in_process, Path(tmp) / "in")
        trio.run(end_to_end, Path(tmp) / "e2e")


if __name__ == "__main__":
    main()
