"""Benchmarks of the open network (SPEC §11.2, §13): what a duplicate and each kind of
junk cost a node compared with what they cost the sender, and honest delivery under a
flood.  Called by tests/bench/run.py (rows for docs/BENCHMARKS.md).

In process: a real Daemon (its libp2p host, RillPubsub and gate) whose ``push_msg`` is
called directly with hand-made GossipSub messages, each from another forwarder (so that
no cut-off hides the cost): the time per message is the node's whole decision.

Across processes: five `rill node run` daemons (tests/attacknet.py) and the outside
attacker of tests/attacker.py; CPU from /proc.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from libp2p.peer.id import ID  # noqa: E402
from libp2p.pubsub.pb import rpc_pb2  # noqa: E402
from nodes import network  # noqa: E402
from test_gossip_gate import NOW, throwaway, wrap  # noqa: E402

from rill.protocol import cbor  # noqa: E402
from rill.protocol import messages as m  # noqa: E402
from rill.protocol.months import month_start  # noqa: E402

Row = tuple[str, str, str, str]
N = 3000
SETTLEMENTS = "rill/1/settlements"
RECEIPTS = "rill/1/receipts"


def _us(ns: list[int]) -> float:
    return statistics.median(ns) / 1000


def _fake_ids(n: int, tag: bytes) -> list[ID]:
    return [ID(b"\x00\x24" + hashlib.sha256(tag + b"%d" % i).digest()) for i in range(n)]


async def _timed(ps: Any, pairs: list[tuple[ID, rpc_pb2.Message]]) -> list[int]:
    out = []
    for fwd, msg in pairs:
        t0 = time.perf_counter_ns()
        await ps.push_msg(fwd, msg)
        out.append(time.perf_counter_ns() - t0)
    return out


def _make_cost(make: Callable[[int], Any], n: int = 1000) -> float:
    """Median microseconds for the sender to make one message."""
    ts = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        make(i)
        ts.append(time.perf_counter_ns() - t0)
    return statistics.median(ts) / 1000


async def _in_process(base: Path) -> list[Row]:
    import nacl.signing

    from rill.protocol.settle import settle as settle_

    rows: list[Row] = []
    async with network(base, NOW) as net:
        b = await net.start("b")
        assert b.p2p is not None
        ps = b.p2p.pubsub
        keys_ = [throwaway(i) for i in range(N)]
        # a settlement b holds: a real donor's, with the network's 20 bits of work
        donor = hashlib.sha256(b"bench donor").digest()
        dkey = nacl.signing.SigningKey(donor)
        creator = bytes(nacl.signing.SigningKey(hashlib.sha256(b"bench c").digest()).verify_key)
        held = settle_(dkey, "2026-10", 1000, "EUR", bytes(32),
                       {"https://c.example/1": creator}).settlement
        w = net.wallet("b")
        w.import_object(held.raw, NOW)
        w.close()
        b.held.add(held.id)

        # 1. a duplicate: the held object under N throwaway libp2p keys, N forwarders
        fwd = _fake_ids(N, b"dup")
        dups = [(fwd[i], wrap(held.raw, keys_[i], 1, SETTLEMENTS)) for i in range(N)]
        d0 = b.counters["duplicates"]
        t_dup = await _timed(ps, dups)
        assert b.counters["duplicates"] - d0 == N
        make_dup = _make_cost(lambda i: wrap(held.raw, keys_[i % N], i + 2, SETTLEMENTS))
        rows.append(("duplicate of a held object (ignored: one hash, one lookup, no "
                     "signature check)", f"{_us(t_dup):.1f}", "us per message at the node",
                     f"target < 50 us: {'met' if _us(t_dup) < 50 else 'NOT met'}; the sender "
                     f"pays {make_dup:.0f} us to wrap it under a throwaway key"))

        # 2. junk of each kind, each message from another forwarder
        garbage = [wrap(b"\xa1junk%d" % i, keys_[i], 1, SETTLEMENTS) for i in range(N)]
        fw = _fake_ids(N, b"garbage")
        r0 = b.counters["rejected"]
        t_garbage = await _timed(ps, list(zip(fw, garbage, strict=True)))
        assert b.counters["rejected"] - r0 == N
        make_garbage = _make_cost(lambda i: wrap(b"\xa1junk%d" % i, keys_[i % N], i,
                                                 SETTLEMENTS))
        rows.append(("junk: not a Rill object (rejected, no crypto)",
                     f"{_us(t_garbage):.0f}", "us per message at the node",
                     f"the sender: {make_garbage:.0f} us (ratio "
                     f"{_us(t_garbage) / make_garbage:.2f}); a sender is cut off after ~6"))

        # a receipt hanging off nothing b holds: ignored before any signature check
        ckey = nacl.signing.SigningKey(hashlib.sha256(b"bench stranger").digest())
        strays = [m.sign(m.Receipt(hashlib.sha256(b"%d" % i).digest(), creator, "2026-10",
                                   "EUR", 1, "", NOW), ckey).raw for i in range(N)]
        fw = _fake_ids(N, b"stray")
        i0 = b.counters["ignored"]
        t_stray = await _timed(ps, [(fw[i], wrap(strays[i], keys_[i], 1, RECEIPTS))
                                    for i in range(N)])
        assert b.counters["ignored"] - i0 == N
        make_stray = _make_cost(lambda i: (m.sign(m.Receipt(
            hashlib.sha256(b"x%d" % i).digest(), creator, "2026-10", "EUR", 1, "", NOW),
            ckey), wrap(strays[i % N], keys_[i % N], i, RECEIPTS)))
        rows.append(("junk: valid object hanging off nothing held (ignored before any "
                     "signature check)", f"{_us(t_stray):.0f}", "us per message at the node",
                     f"the sender: {make_stray:.0f} us to sign the object and the envelope "
                     f"(ratio {_us(t_stray) / make_stray:.2f}); 200 per forwarder, then "
                     "rejected"))

        # a bad envelope signature on a settlement that carries its work: the one junk
        # that reaches a signature check (the sender paid 2^20 hashes for the stamp once)
        fresh = settle_(nacl.signing.SigningKey(hashlib.sha256(b"bench junk donor").digest()),
                        "2026-10", 1000, "EUR", bytes(32), {"https://j.example/": creator}
                        ).settlement
        body = m.decode(fresh.raw).body.to_map()
        jkey = nacl.signing.SigningKey(hashlib.sha256(b"bench junk donor").digest())

        def variant(i: int) -> bytes:
            return cbor.encode({"v": 1, "t": "settlement", "body": dict(body, budget=i),
                                "signer": bytes(jkey.verify_key), "sig": bytes(64)})

        variants = [variant(i) for i in range(N)]
        fw = _fake_ids(N, b"badenv")
        r0 = b.counters["rejected"]
        t_env = await _timed(ps, [(fw[i], wrap(variants[i], keys_[i], 1, SETTLEMENTS,
                                               corrupt=True)) for i in range(N)])
        assert b.counters["rejected"] - r0 == N
        make_env = _make_cost(lambda i: wrap(variants[i % N], keys_[i % N], i, SETTLEMENTS,
                                             corrupt=True))
        rows.append(("junk: bad libp2p signature on a stamped settlement (rejected after "
                     "the envelope check)", f"{_us(t_env):.0f}", "us per message at the node",
                     f"the sender: {make_env:.0f} us per message after one stamp (~1 s) "
                     f"(ratio {_us(t_env) / make_env:.1f}); cut off after ~6"))

        # a plain claim with 10,000 distinct things: no topic carries plain claims, so it is
        # rejected on its preview (wrong-topic), before any of its things is checked
        things = sorted(f"https://t.example/{i:05d}" for i in range(10_000))
        ckeyd = nacl.signing.SigningKey(hashlib.sha256(b"bench claimer").digest())

        def big_claim(i: int) -> bytes:
            return m.sign(m.Claim(hashlib.sha256(b"nowhere %d" % i).digest(), "2026-10",
                                  creator, "EUR", 1, tuple(things), bytes(32)), ckeyd).raw

        t_make0 = time.perf_counter()
        claims = [big_claim(i) for i in range(20)]
        make_claim = (time.perf_counter() - t_make0) / 20 * 1e6
        fw = _fake_ids(20, b"bigclaim")
        r0 = b.counters["rejected"]
        t_claim = await _timed(ps, [(fw[i], wrap(claims[i], keys_[i], 1, SETTLEMENTS))
                                    for i in range(20)])
        assert b.counters["rejected"] - r0 == 20
        t_full = []
        for raw in claims[:5]:
            t0 = time.perf_counter_ns()
            m.decode(raw, verify_signature=False)
            t_full.append(time.perf_counter_ns() - t0)
        rows.append(("junk: a plain claim of 10,000 things (rejected on its preview: plain "
                     "claims travel by no topic)", f"{_us(t_claim) / 1000:.1f}",
                     "ms per message at the node",
                     f"{len(claims[0]):,} bytes; checking all its things would cost "
                     f"{_us(t_full) / 1000:.0f} ms; the sender: {make_claim / 1000:.1f} ms to "
                     "sign one (the things normalised by messages.sign too)"))

        # the largest dense junk a topic carries: valid CBOR, 266 KB of empty maps
        dense = cbor.encode({"v": 1, "t": "settlement", "body": {"lines": [{}] * 130_000},
                             "signer": bytes(32), "sig": bytes(64)})[:266_240]
        fw = _fake_ids(20, b"dense")
        r0 = b.counters["rejected"]
        t_dense = await _timed(ps, [(fw[i], wrap(dense, keys_[i], 1, SETTLEMENTS))
                                    for i in range(20)])
        rows.append(("junk: 266 KB of dense CBOR (the worst decode a topic admits)",
                     f"{_us(t_dense) / 1000:.1f}", "ms per message at the node",
                     f"the sender reuses it ({len(dense):,} bytes on the wire each); "
                     f"rejected {b.counters['rejected'] - r0} of 20; a sender is cut off "
                     "after ~6"))
    return rows


def gate_costs() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        return trio.run(_in_process, Path(tmp))


async def _across(net: Any) -> list[Row]:
    from attackcost import delivery_latency, junk_cost, latency_summary
    from attacker import SETTLEMENTS as TOPIC
    from attacker import Attacker, FloodStats, throwaway_signers
    from forge import forge_empty_settlements, forge_settlement, rill_key

    rows: list[Row] = []
    pids = {n: net.pid(n) for n in net.names}
    creator = net.identity("n3")

    def row(what: str, cost: Any, note: str) -> Row:
        """The whole attack's CPU at the daemons against the attacker's (the cut-off
        ends it within a few messages, so per-message figures would mostly be set-up)."""
        d = cost.defender_cpu_ms_per_msg
        return (what, ", ".join(f"{k} {v * cost.sent:.0f}" for k, v in d.items()),
                "ms CPU in all, per daemon",
                f"{cost.sent} messages went out before the cut-off closed the connection "
                f"({cost.elapsed_s:.1f} s); the attacker's process used "
                f"{cost.attacker_cpu_ms_per_msg * cost.sent:.0f} ms CPU; {note}")

    async with Attacker.running() as evil:
        target = await evil.connect(net.nodes["n2"].addr)
        payloads = forge_empty_settlements(rill_key(), "2026-10", 5000)
        cost = await junk_cost({"n2": pids["n2"]}, lambda: evil.flood_bad_signatures(
            [target], payloads, 5000, 1000.0))
        rows.append(row("5,000 bad libp2p signatures at 1,000/s, one connection", cost,
                        "the rest could not be written"))
    obj = forge_settlement(rill_key(), "2026-10", [creator], filler=2).settlement
    async with Attacker.running() as evil:
        target = await evil.connect(net.nodes["n2"].addr)
        await evil.publish(target, obj)
        await trio.sleep(2)
        signers = throwaway_signers(1000)
        cost = await junk_cost(pids, lambda: evil.publish_as(target, obj, signers,
                                                             rate=1000.0), settle_s=3.0)
        rows.append(row("one object replayed under 1,000 throwaway keys at 1,000/s", cost,
                        "only n2 is connected to the attacker"))
    async with Attacker.running() as evil:
        target = await evil.connect(net.nodes["n2"].addr)
        msgs = [evil.signer.message(TOPIC, b"\xa1junk%d" % i) for i in range(3000)]

        async def garbage() -> FloodStats:
            return await evil.flood({target: msgs}, rate=1000.0)

        cost = await junk_cost({"n2": pids["n2"]}, garbage)
        rows.append(row("3,000 invalid messages at 1,000/s under the attacker's own key",
                        cost, "cut off after ~6"))
    async with Attacker.running() as pub, Attacker.running() as obs:
        via = await pub.connect(net.nodes["n0"].addr)
        at = await obs.connect(net.nodes["n2"].addr)
        await obs.wait_mesh(at, [TOPIC])
        calm = [forge_settlement(rill_key(), "2026-10", [creator]).settlement
                for _ in range(20)]
        storm = [forge_settlement(rill_key(), "2026-10", [creator]).settlement
                 for _ in range(20)]
        base = await delivery_latency(pub, via, obs, calm)
        junk = forge_empty_settlements(rill_key(), "2026-10", 10_000)
        # a fresh attacker connection every 50 messages: the cut-off does not end it
        async with trio.open_nursery() as nursery:
            async def flood() -> None:
                for i in range(0, len(junk), 50):
                    async with Attacker.running() as e:
                        t = await e.connect(net.nodes["n2"].addr)
                        await e.flood_bad_signatures([t], junk[i:i + 50], 50, 1000.0)

            nursery.start_soon(flood)
            await trio.sleep(0.5)
            loaded = await delivery_latency(pub, via, obs, storm)
            nursery.cancel_scope.cancel()
        rows.append(("honest delivery, 2 hops (n0 -> n1 -> n2), calm",
                     latency_summary(base), "", "20 stamped settlements, one every 0.2 s"))
        rows.append(("honest delivery, same path, while n2 receives ~1,000 bad-signature "
                     "msg/s from ever new connections", latency_summary(loaded), "",
                     "each attacker connection is cut off after ~6; a new one replaces it"))
    return rows


def attack_costs() -> list[Row]:
    from attacknet import AttackNet

    with tempfile.TemporaryDirectory() as tmp:
        net = AttackNet(Path(tmp), 5, month_start("2026-11") + 7200)
        try:
            net.start()
            return trio.run(_across, net)
        finally:
            net.stop()


__all__ = ["attack_costs", "gate_costs"]
