"""Measurements of attacks, for benchmarks: CPU per junk message at the defenders
against the attacker's, and honest delivery latency (calm or under a flood)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio
from attacker import Attacker, FloodStats
from forge import object_id
from libp2p.peer.id import ID


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class JunkCost:
    sent: int
    elapsed_s: float
    attacker_cpu_ms_per_msg: float
    defender_cpu_ms_per_msg: dict[str, float]

    def summary(self) -> str:
        d = ", ".join(f"{k} {v:.3f}" for k, v in self.defender_cpu_ms_per_msg.items())
        return (f"{self.sent} msgs in {self.elapsed_s:.1f} s: attacker "
                f"{self.attacker_cpu_ms_per_msg:.3f} ms CPU/msg; defenders {d} ms CPU/msg")


async def junk_cost(pids: dict[str, int], send: Callable[[], Awaitable[FloodStats]],
                    *, settle_s: float = 1.5) -> JunkCost:
    """Run ``send`` (an attack returning its :class:`FloodStats`) and compare the CPU
    each defender process (name -> pid) spent per message sent with the attacker's
    (defender CPU counted until ``settle_s`` after the last message went out)."""
    before = {name: proc_cpu_s(pid) for name, pid in pids.items()}
    stats = await send()
    await trio.sleep(settle_s)
    sent = max(stats.sent, 1)
    return JunkCost(stats.sent, stats.elapsed, 1000 * stats.attacker_cpu_s / sent,
                    {name: 1000 * (proc_cpu_s(pid) - before[name]) / sent
                     for name, pid in pids.items()})


async def delivery_latency(publisher: Attacker, via: ID, observer: Attacker,
                           payloads: Sequence[bytes], interval: float = 0.2,
                           timeout: float = 10.0) -> list[float | None]:
    """Publish each payload to daemon ``via`` and time until ``observer`` (connected
    elsewhere) first sees it; None for a payload never seen within ``timeout``."""
    sent: list[tuple[bytes, float]] = []
    for data in payloads:
        sent.append((object_id(data), time.monotonic()))
        await publisher.publish(via, data)
        await trio.sleep(interval)
    with trio.move_on_after(timeout):
        while not all(oid in observer.first_seen for oid, _ in sent):
            await trio.sleep(0.02)
    return [observer.first_seen[oid] - t if oid in observer.first_seen else None
            for oid, t in sent]


def latency_summary(lat: Sequence[float | None]) -> str:
    got = sorted(x for x in lat if x is not None)
    if not got:
        return f"0/{len(lat)} delivered"
    p90 = got[min(len(got) - 1, int(0.9 * len(got)))]
    return (f"{len(got)}/{len(lat)} delivered, median {1000 * statistics.median(got):.0f} ms,"
            f" p90 {1000 * p90:.0f} ms, max {1000 * got[-1]:.0f} ms")


__all__ = ["JunkCost", "delivery_latency", "junk_cost", "latency_summary", "proc_cpu_s"]
