"""What one run of the scale simulation (tests/scale/sim.py) records, and the arithmetic
it needs on the way: the claims and objects each node should end up with, and bytes per
node between two statuses.  Kept apart from the driver so that the record's fields, which
docs/scale-runs.json stores and tests/scale/report.py reads, are in one place."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def key_of(name: str) -> bytes:
    import nacl.signing
    return bytes(nacl.signing.SigningKey(hashlib.sha256(b"node " + name.encode()).digest())
                 .verify_key)


@dataclass
class Run:
    n: int
    procs: int
    shard_bits: int
    k: int
    creators: int
    fanout: int
    start_s: float = 0.0
    mesh_s: float = 0.0
    claims: int = 0
    gossip_s: float | None = None
    gossip_complete: str = ""
    full_s: float | None = None
    full_complete: str = ""
    idle_bytes_s: float = 0.0
    idle_cpu_s: float = 0.0
    #: idle payload bytes per node and second, by stream protocol
    idle_by_protocol: dict[str, float] = field(default_factory=dict)
    #: bytes per node and second in the last window of start-up and each idle window
    idle_windows: list[float] = field(default_factory=list)
    #: GossipSub peers (connections) per node at the end of idle, median: each costs
    #: Yamux's pings, which no run is long enough to see (tests/scale/model.py PING_BPS)
    idle_peers: float | None = None
    #: GossipSub RPC bytes sent per node and second while idle, by part (worker.py)
    idle_rpcs: dict[str, float] = field(default_factory=dict)
    #: seconds from the clicks until the network is quiet (start-up traffic over), and
    #: the bytes per node moved meanwhile (a node's cost of joining, once per start)
    settle_s: float = 0.0
    settle_bytes: float = 0.0
    month_end_bytes: list[int] = field(default_factory=list)
    month_end_cpu_s: float = 0.0
    stored: list[int] = field(default_factory=list)
    objects_held: list[int] = field(default_factory=list)
    unattributed: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    rounds: int = 0
    #: one periodic round (NodeConfig.sync_peers peers each) on an agreeing network
    round_bytes: float = 0.0
    #: one round with every peer (month end's) on an agreeing network
    full_round_bytes: float = 0.0
    #: seconds from the month end to the last figure of it
    month_end_s: float = 0.0
    dials_failed: int = 0
    redials: int = 0
    #: nodes still with fewer than 2 gossip peers when the month ended
    lonely: int = 0
    #: one refresh of the DHT's routing table, per node (bytes, CPU-s, idle deducted)
    refresh_bytes: float | None = None
    refresh_cpu_s: float | None = None
    month_end_by_protocol: dict[str, float] = field(default_factory=dict)
    #: GossipSub RPC KB sent per node at month end, by part (worker.py ``rpc_kinds``)
    month_end_rpcs: dict[str, float] = field(default_factory=dict)
    #: what the refresh's bytes were: payload KB per node by protocol, connections opened
    refresh_by_protocol: dict[str, float] = field(default_factory=dict)
    refresh_rpcs: dict[str, float] = field(default_factory=dict)
    refresh_connections: float | None = None
    #: what the refresh does (tests/scale/model.py REFRESH_KIND): the node's own ID only
    refresh_kind: str = "own-id"
    #: one round of a node's repeated provides (its shards' keys and the rendezvous key),
    #: per node: bytes, CPU-s (idle deducted), keys provided, by protocol, connections
    provide_bytes: float | None = None
    provide_cpu_s: float | None = None
    provide_keys: float | None = None
    provide_by_protocol: dict[str, float] = field(default_factory=dict)
    provide_connections: float | None = None
    provide_outcomes: dict[str, int] = field(default_factory=dict)
    #: nodes incomplete when the run ended (at most 20): claims to it and objects held,
    #: each as [have, expected], gossip peers, bytes moved since month end
    lacking: list[dict[str, Any]] = field(default_factory=list)
    #: the seconds the idle figures were taken over: IDLE_WINDOWS windows of IDLE_S and
    #: the status calls between them (0: a run from before it was kept)
    idle_span_s: float = 0.0
    #: after the month end's measurement: the bytes per node (mean) until the network was
    #: quiet again, and over how long (copies GossipSub still forwarded)
    tail_bytes: float | None = None
    tail_s: float | None = None


def expected(names: list[str], plan: dict[str, list[str]], shard_bits: int
             ) -> tuple[dict[str, int], dict[str, int]]:
    """Per node: incoming claims expected, and public objects of the month expected."""
    incoming = {n: 0 for n in names}
    for creators in plan.values():
        for c in creators:
            incoming[c] += 1
    total = len(plan) + sum(len(v) for v in plan.values())
    if not shard_bits:
        return incoming, {n: total for n in names}
    from rill.protocol.shard import node_shards, shard_of
    key = {n: key_of(n) for n in names}
    shard = {n: shard_of(key[n], shard_bits) for n in names}
    joined = {n: node_shards(key[n], shard_bits) for n in names}
    held = {n: 0 for n in names}
    for d, creators in plan.items():
        # the settlement: the donor's shard and its creators' (SPEC §11.6); each sealed
        # claim: its creator's; a node keeps what is placed in its shards or concerns it
        s_shards = {shard[d], *(shard[c] for c in creators)}
        for n in names:
            if joined[n] & s_shards or n == d or n in creators:
                held[n] += 1
            for c in creators:
                if shard[c] in joined[n] or n in (d, c):
                    held[n] += 1
    return incoming, held



def per_node(after: dict[str, int], before: dict[str, int], n: int) -> dict[str, float]:
    """Payload KB per node by protocol between two statuses, largest first."""
    kb = {k: round((v - before.get(k, 0)) / n / 1e3, 1) for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in kb.items() if v), key=lambda kv: -kv[1]))


def node_bytes(st: dict[str, Any], name: str) -> int:
    s = st["nodes"][name]
    return int(s["sent"]) + int(s["received"])
