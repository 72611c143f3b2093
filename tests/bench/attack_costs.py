#!/usr/bin/env python3
"""What an outside attacker's junk costs the daemons compared with the attacker, and what
a 1,000 msg/s flood does to honest delivery.  Five `rill node run` processes in a ring
(tests/attacknet.py), the attacker of tests/attacker.py; prints one line per figure.

    .venv/bin/python tests/bench/attack_costs.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attackcost import delivery_latency, junk_cost, latency_summary
from attacker import SETTLEMENTS, Attacker, FloodStats, throwaway_signers
from attacknet import AttackNet
from forge import forge_empty_settlements, forge_settlement, rill_key

from rill.protocol.months import month_start

START = month_start("2026-11") + 7200
MONTH = "2026-10"


async def measure(net: AttackNet) -> None:
    pids = {n: net.pid(n) for n in net.names}
    creator = net.identity("n3")

    # 1. bad envelope signatures, 5,000 at 1,000/s, at n2
    async with Attacker.running() as evil:
        target = await evil.connect(net.nodes["n2"].addr)
        payloads = forge_empty_settlements(rill_key(), MONTH, 5000)
        cost = await junk_cost({"n2": pids["n2"]}, lambda: evil.flood_bad_signatures(
            [target], payloads, 5000, 1000.0))
        print("bad envelope signature:", cost.summary())

    # 2. one valid object replayed under 1,000 throwaway keys through one connection
    obj = forge_settlement(rill_key(), MONTH, [creator], filler=2).settlement
    async with Attacker.running() as evil:
        target = await evil.connect(net.nodes["n2"].addr)
        await evil.publish(target, obj)  # the network learns it first
        await trio.sleep(2)
        signers = throwaway_signers(1000)
        cost = await junk_cost(pids, lambda: evil.publish_as(target, obj, signers,
                                                             rate=1000.0), settle_s=3.0)
        print("replay under throwaway keys (every daemon):", cost.summary())

    # 3. garbage bytes under the attacker's own key (it should be cut off quickly)
    async with Attacker.running() as evil:
        target = await evil.connect(net.nodes["n2"].addr)
        msgs = [evil.signer.message(SETTLEMENTS, b"\xa1junk%d" % i) for i in range(3000)]

        async def garbage() -> FloodStats:
            return await evil.flood({target: msgs}, rate=1000.0)

        cost = await junk_cost({"n2": pids["n2"]}, garbage)
        print("invalid CBOR under own key:", cost.summary())

    # 4. honest delivery n0 -> observer at n2, calm and under 1,000 msg/s junk at n2
    async with Attacker.running() as pub, Attacker.running() as obs, \
            Attacker.running() as evil:
        via = await pub.connect(net.nodes["n0"].addr)
        at = await obs.connect(net.nodes["n2"].addr)
        await obs.wait_mesh(at, [SETTLEMENTS])
        calm = [forge_settlement(rill_key(), MONTH, [creator]).settlement for _ in range(20)]
        storm = [forge_settlement(rill_key(), MONTH, [creator]).settlement for _ in range(20)]
        base = await delivery_latency(pub, via, obs, calm)
        target = await evil.connect(net.nodes["n2"].addr)
        junk = forge_empty_settlements(rill_key(), MONTH, 10_000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(evil.flood_bad_signatures, [target], junk, 10_000, 1000.0)
            await trio.sleep(0.5)
            loaded = await delivery_latency(pub, via, obs, storm)
            nursery.cancel_scope.cancel()
        print("honest delivery n0 -> n2, calm:", latency_summary(base))
        print("honest delivery n0 -> n2, 1,000 bad-signature msg/s at n2:",
              latency_summary(loaded))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        net = AttackNet(Path(tmp), 5, START)
        try:
            net.start()
            trio.run(measure, net)
        finally:
            net.stop()


if __name__ == "__main__":
    main()
