"""The scale simulation's report and model: the measured runs as a table, then a model
fitted on them and extrapolated to 10^4..10^6 participants.

The model is mechanistic, not a curve through N: a node's month-end cost is taken as
proportional to the objects it handles, and how many objects a node handles at N
participants with ``b`` shard bits follows from SPEC §11.6's placement rules
(:func:`objects_per_node`).  So the runs give the cost per object (least squares through
the points of both settings), and the placement arithmetic gives the objects at any N.
A straight line y = a + b·N per setting is printed too, to show the slope the runs have.
The tables and the command that writes docs/SCALE.md are in tests/scale/report.py.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from rill.node.keepalive import PING_FRAME_BYTES, PING_FRAMES, YAMUX_PING_S
from rill.node.upkeep import MAX_CONNECTIONS
from rill.protocol.shard import (
    BACKBONE_SHARDS,
    OWN_PROVIDERS_ENOUGH,
    OWN_PROVIDERS_FRESH,
    RENDEZVOUS_SPARE_BITS,
)

#: seconds of one month
MONTH_S = 30 * 86400
#: the daemon's periodic round on a network that agrees: it backs off from
#: NodeConfig.sync_interval (600 s) to sync_interval_max (3,600 s) after three quiet
#: rounds, asking sync_peers (2) peers each time
PERIODIC_S = 3600
#: the DHT's routing table refresh (node/patches.py DHT_REFRESH_S) and what it does:
#: "own-id", a lookup of the node's own ID (node/patches.py since 2026-12-04), where runs
#: before measured py-libp2p's "every-bucket" refresh (one lookup more per non-empty
#: bucket).  Runs that did not measure the current kind take the median of those that did.
REFRESH_S = 86400
REFRESH_KIND = "own-id"
#: a node provides the shards' keys it announces and the rendezvous key again this often
#: (protocol/shard.py PROVIDE_EVERY, node/discovery.py PROVIDE_EVERY_S)
PROVIDE_S = 24 * 3600
#: SPEC §11.6: a backbone shard's key is provided only while fewer than OWN_ENOUGH of the
#: shard's own members are found announced; a count that was enough is looked up again
#: after OWN_FRESH_S.  SPEC §11.1: a node announces the rendezvous key when its shard
#: point's first max(0, b - RENDEZVOUS_SPARE_BITS) bits are zero.
OWN_ENOUGH, OWN_FRESH_S = OWN_PROVIDERS_ENOUGH, OWN_PROVIDERS_FRESH
#: Kademlia's k and alpha: a lookup asks about k + alpha * log2(N / k) peers (the k closest
#: and about alpha per halving of the distance on the way); the refresh's measured cost is
#: scaled by that count from the size it was measured at to the size extrapolated to
K, ALPHA = 20, 3


def lookup_peers(n: int) -> float:
    """Peers one DHT lookup asks at ``n`` nodes (at least k, or n - 1 if fewer)."""
    return min(n - 1, K + ALPHA * max(0.0, math.log2(n / K)))
#: Yamux's pings (node/keepalive.py): the dialling end of an idle connection pings once
#: an interval (YAMUX_PING_S) with nothing heard, the accepting end never; a node counts
#: the ping and its answer (PING_FRAMES), sent or received, each a 12-byte Yamux header in
#: a Noise frame (PING_FRAME_BYTES).  No run's idle window comes an interval after the
#: connections' first pings, so no run sees one: B/s per connection kept, times the runs'
#: GossipSub peers per node at rest (runrecord.Run.idle_peers)
PING_BPS = PING_FRAMES * PING_FRAME_BYTES / YAMUX_PING_S


def connections(sharded: bool, measured: float) -> float:
    """Connections a node keeps at the sizes extrapolated to (10³ and up): with shards,
    MAX_CONNECTIONS (node/upkeep.py; its three shards then have ≥ 90 members each, whose
    newcomers and publishers dial it, so it fills up to the cap over a month); without,
    what the runs measured (a low guess: nothing bounds them)."""
    return float(MAX_CONNECTIONS) if sharded else measured
#: things each donor clicks in SPEC §11.6's arithmetic (8 creators a month)
SPEC_K = 8
#: backbone shards per node (SPEC §11.6, [network] shard_backbone)
BACKBONE = BACKBONE_SHARDS


def keys_per_node(n: int, bits: int) -> float:
    """Provides (or lookups of a key's providers, taken as costing as much) per node and
    round of provides, by SPEC §11.1 and §11.6's rules: the rendezvous key for a fraction
    2^-max(0, b - 2) of the nodes; with shards, the own shard's key, and for each of the
    BACKBONE backbone shards (other than the own one: 1 - 1/S of them) a lookup of its
    providers every OWN_FRESH_S while it has OWN_ENOUGH own members announced (N/S of them
    on average, Poisson), else a lookup and a provide every round."""
    rendezvous = 2.0 ** -max(0, bits - RENDEZVOUS_SPARE_BITS)
    if not bits:
        return rendezvous
    shards = 2 ** bits
    mean = n / shards
    short = sum(math.exp(-mean) * mean ** j / math.factorial(j) for j in range(OWN_ENOUGH))
    backbone = BACKBONE * (1 - 1 / shards)
    return 1 + rendezvous + backbone * (2 * short + (1 - short) * PROVIDE_S / OWN_FRESH_S)


def spec_bits(n: int) -> int:
    """SPEC §11.6: b = max(0, floor(log2(N/16)))."""
    return max(0, (n // 16).bit_length() - 1) if n >= 16 else 0


def objects_per_node(n: int, bits: int, k: int) -> float:
    """Expected public objects of a month a node holds (settlements and sealed claims) when
    each of ``n`` participants settles one month with ``k`` creators (SPEC §11.6).

    Without shards: every object, n·(1 + k).  With S = 2^bits shards, a node is in s of
    them (its own and BACKBONE backbone shards, uniform and independent, so
    E[s] = S·(1 − (1 − 1/S)^(1+BACKBONE))); it holds a sealed claim whose creator's shard
    is one of its s (probability s/S), and a settlement when one of the 1 + k shards of its
    donor and creators is (probability 1 − (1 − s/S)^(1+k))."""
    if not bits:
        return n * (1 + k)
    shards = 2 ** bits
    s = shards * (1 - (1 - 1 / shards) ** (1 + BACKBONE))
    p = s / shards
    return n * k * p + n * (1 - (1 - p) ** (1 + k))


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares y = a + b·x."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - b * mx, b


def dht_growth(points: list[Point], fn: int,
               dht: list[dict[str, Any]] | None = None) -> tuple[Any, str]:
    """How the cost of one DHT lookup grows with N, as a factor on its value at ``fn``
    nodes: the larger of ``lookup_peers``'s ratio and a straight line against log2(N) (a
    Kademlia lookup's hops grow with log N) through, when the DHT-only simulation
    (tests/scale/dhtsim.py) measured two sizes or more, its refresh + provide per
    operation; else, when runs of two sizes or more measured both the refresh and the
    provides, their upkeep with one key provided a round (the keys per node are counted
    apart, by ``keys_per_node``)."""
    line, basis = None, ""
    if dht and len({r["n"] for r in dht}) >= 2:
        line = fit([(math.log2(r["n"]), r["refresh"]["kb"] + r["provide"]["kb"])
                    for r in dht])
        basis = (f" and a line through the DHT-only simulation's refresh + provide against "
                 f"log₂ N ({line[0]:.0f} + {line[1]:.1f}·log₂ N KB, N = "
                 f"{min(r['n'] for r in dht):,}–{max(r['n'] for r in dht):,})")
    measured = [p for p in points if p.refresh_kb is not None and p.provide_kb is not None
                and p.provide_keys]
    if line is None and len({p.n for p in measured}) >= 2:
        line = fit([(math.log2(p.n), p.dht_month(keys=1.0)[0]) for p in measured])
        basis = (f" and a line through the runs' upkeep with one key provided a round "
                 f"against log₂ N ({line[0]:.1f} + {line[1]:.2f}·log₂ N MB a month)")
    def factor(n: int) -> float:
        by_lookup = lookup_peers(n) / lookup_peers(fn)
        if line is None:
            return by_lookup
        a, c = line
        return max(by_lookup, (a + c * math.log2(n)) / (a + c * math.log2(fn)))
    how = (f"the larger of the peers one lookup asks (`lookup_peers`: {lookup_peers(fn):.0f} "
           f"at N = {fn}, {lookup_peers(10**6):.0f} at 10⁶)" + basis +
           f": ×{factor(10**6):.1f} from N = {fn} to 10⁶")
    return factor, how


class Point:
    """One run's figures, per node (from runrecord.Run's fields)."""

    def __init__(self, r: dict[str, Any]) -> None:
        self.r = r
        self.n: int = r["n"]
        self.bits: int = r["shard_bits"]
        self.k: int = r["k"]
        self.held = statistics.mean(r["objects_held"])
        self.idle_cpu = r["idle_cpu_s"]  # CPU-s per s per node
        self.idle_bps = r["idle_bytes_s"]
        #: GossipSub peers per node at rest, or None if not measured (then the median of
        #: the runs that did: ``peers_default``); Yamux pings cost PING_BPS each
        self.peers: float | None = r.get("idle_peers")
        self.peers_default = 0.0
        # the month end's own cost: what the window cost minus what the nodes would have
        # spent idle over it (heartbeats; with shards, DHT upkeep), which the monthly
        # figure counts apart
        window = r.get("month_end_s") or r["full_s"] or 0.0
        self.month_end_mb = max(0.0, statistics.mean(r["month_end_bytes"]) / 1e6
                                - self.idle_bps * window / 1e6)
        self.month_end_cpu = max(0.0, r["month_end_cpu_s"] / self.n - self.idle_cpu * window)
        self.round_kb = r["round_bytes"] / 1e3
        self.stored_mb = statistics.median(r["stored"]) / 1e6
        #: one DHT refresh (KB, CPU-s), or None when the run did not measure it, and what
        #: kind of refresh it measured (None of the current kind counts as not measured)
        self.refresh_kind = r.get("refresh_kind", "every-bucket")
        measured = r.get("refresh_bytes") is not None and self.refresh_kind == REFRESH_KIND
        self.refresh_kb = r["refresh_bytes"] / 1e3 if measured else None
        self.refresh_cpu = r.get("refresh_cpu_s") if measured else None
        self.refresh_default = (0.0, 0.0)
        #: one round of the node's repeated provides (KB, CPU-s), or None if not measured
        self.provide_kb = (None if r.get("provide_bytes") is None
                           else r["provide_bytes"] / 1e3)
        self.provide_cpu = r.get("provide_cpu_s")
        self.provide_default = (0.0, 0.0)
        #: keys provided per node in that round (what a key costs: the round over them)
        self.provide_keys: float | None = r.get("provide_keys") or None

    def ping_bps(self) -> float:
        """Yamux pings per node at rest (B/s): the connections kept, each PING_BPS."""
        return PING_BPS * (self.peers if self.peers is not None else self.peers_default)

    def idle_total_bps(self) -> float:
        """Idle traffic per node (B/s): measured at rest, and the pings no run sees."""
        return self.idle_bps + self.ping_bps()

    def refresh(self) -> tuple[float, float]:
        """One DHT refresh per node (KB, CPU-s): measured, or the setting's median."""
        if self.refresh_kb is None or self.refresh_cpu is None:
            return self.refresh_default
        return self.refresh_kb, self.refresh_cpu

    def provide(self) -> tuple[float, float]:
        """One round of provides per node (KB, CPU-s): measured, or the setting's median."""
        if self.provide_kb is None or self.provide_cpu is None:
            return self.provide_default
        return self.provide_kb, self.provide_cpu

    def per_key(self) -> tuple[float, float]:
        """One key provided (KB, CPU-s): the measured round over its keys (the whole round
        when the keys were not counted)."""
        kb, cpu = self.provide()
        keys = self.provide_keys if self.provide_kb is not None and self.provide_keys else 1
        return kb / keys, cpu / keys

    def dht_month(self, keys: float | None = None) -> tuple[float, float]:
        """The DHT's upkeep per node and month (MB, CPU-s): refreshes and provides (the
        measured round, or ``keys`` keys at the measured cost per key)."""
        (fkb, fcpu) = self.refresh()
        pkb, pcpu = self.provide() if keys is None else (
            keys * self.per_key()[0], keys * self.per_key()[1])
        return ((fkb * MONTH_S / REFRESH_S + pkb * MONTH_S / PROVIDE_S) / 1e3,
                fcpu * MONTH_S / REFRESH_S + pcpu * MONTH_S / PROVIDE_S)

    def month_mb(self) -> float:
        """Traffic per node and month: the month end (measured), idle traffic over a month,
        the periodic rounds at their pace on an agreeing network, and the DHT's refreshes."""
        return (self.month_end_mb + self.idle_total_bps() * MONTH_S / 1e6 +
                self.round_kb * MONTH_S / PERIODIC_S / 1e3 +
                self.dht_month()[0])

    def core_pct(self) -> float:
        """CPU per node averaged over a month, % of one core."""
        return 100 * (self.month_end_cpu + self.idle_cpu * MONTH_S +
                      self.dht_month()[1]) / MONTH_S


Fixed = tuple[float, float, float, tuple[float, float], tuple[float, float], int]


def _fixed(points: list[Point]) -> Fixed:
    """Per node, medians of the runs: idle CPU (CPU-s per s), idle traffic (B/s), the
    periodic round (KB), one DHT refresh and one key provided (KB, CPU-s each) and the
    size they were measured at."""
    refreshed = [p for p in points if p.refresh_kb is not None] or points
    return (statistics.median(p.idle_cpu for p in points),
            statistics.median(p.idle_total_bps() for p in points),
            statistics.median(p.round_kb for p in points),
            (statistics.median(p.refresh()[0] for p in points),
             statistics.median(p.refresh()[1] for p in points)),
            (statistics.median(p.per_key()[0] for p in points),
             statistics.median(p.per_key()[1] for p in points)),
            int(statistics.median(p.n for p in refreshed)))


def upkeep(fixed: Fixed, n: int, bits: int) -> tuple[float, float]:
    """The DHT's upkeep per node and month (MB, CPU-s) at the size the fixed costs were
    measured at, with the keys a node provides at ``n`` and ``bits`` (``keys_per_node``);
    the growth of each lookup with N is applied apart."""
    (fkb, fcpu), (kkb, kcpu), keys = fixed[3], fixed[4], keys_per_node(n, bits)
    return ((fkb * MONTH_S / REFRESH_S + keys * kkb * MONTH_S / PROVIDE_S) / 1e3,
            fcpu * MONTH_S / REFRESH_S + keys * kcpu * MONTH_S / PROVIDE_S)


def fill_defaults(points: list[Point], what: str, across: bool) -> None:
    """Runs that did not measure ``what`` ("refresh" or "provide": the attributes
    ``<what>_kb``, ``<what>_cpu`` and ``<what>_default``) take the median of the runs of
    their setting that did; with ``across``, of every run that did when none of the
    setting did (else they keep 0, and the table says "not measured")."""
    measured = [p for p in points if getattr(p, f"{what}_kb") is not None
                and getattr(p, f"{what}_cpu") is not None]
    for sharded in (False, True):
        own = [p for p in measured if bool(p.bits) == sharded] or (measured if across
                                                                  else [])
        if own:
            default = (statistics.median(getattr(p, f"{what}_kb") for p in own),
                       statistics.median(getattr(p, f"{what}_cpu") for p in own))
            for p in points:
                if bool(p.bits) == sharded:
                    setattr(p, f"{what}_default", default)


def fill_peers(points: list[Point]) -> None:
    """Runs that did not count their peers at rest take the median of their setting's
    runs that did, else of every run that did."""
    measured = [p for p in points if p.peers is not None]
    for sharded in (False, True):
        own = [p for p in measured if bool(p.bits) == sharded] or measured
        if own:
            for p in points:
                if bool(p.bits) == sharded:
                    p.peers_default = statistics.median(float(q.peers or 0) for q in own)


Fit = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]


def fit_per_object(basis: list[Point]) -> Fit:
    """Least squares of the month end's traffic (MB), CPU (s) and the bytes stored (MB)
    against the objects held."""
    return (fit([(p.held, p.month_end_mb) for p in basis]),
            fit([(p.held, p.month_end_cpu) for p in basis]),
            fit([(p.held, p.stored_mb) for p in basis]))


def model(points: list[Point], dht: list[dict[str, Any]] | None = None) -> list[str]:
    """The per-object fits and their extrapolation, then the straight lines in N.

    Each setting (shards off, on) has its own fit when it has runs of two sizes (a sharded
    month end also looks shards' members up in the DHT: a cost per publish the other has
    not), else both use the fit over every run; the fixed costs (idle, periodic round,
    start-up) are each setting's own."""
    off = [p for p in points if not p.bits]
    on = [p for p in points if p.bits]
    every = fit_per_object(points)
    fits = {sharded: fit_per_object(ps) if len({p.held for p in ps}) >= 2 else every
            for sharded, ps in ((False, off), (True, on))}
    fixed = {False: _fixed(off or points), True: _fixed(on or points)}
    growth = {sharded: dht_growth(ps or points, fixed[sharded][5], dht)
              for sharded, ps in ((False, off), (True, on))}
    lines = [""]
    for sharded in (False, True):
        (mb, cpu, st) = fits[sharded]
        lines.append(
            f"**Per object handled {'with' if sharded else 'without'} shards** (least "
            f"squares over {'those runs' if fits[sharded] is not every else 'every run'}): "
            f"month-end traffic = {mb[0]:.3f} MB + {1e3 * mb[1]:.2f} KB × objects held; "
            f"month-end CPU = {cpu[0]:.2f} s + {1e3 * cpu[1]:.2f} ms × objects held; stored "
            f"= {st[0]:.3f} MB + {1e3 * st[1]:.2f} KB × objects held.")
    for sharded, f in fixed.items():
        icpu, ibps, rkb, (fkb, _), (kkb, _), fn = f
        bits = spec_bits(fn) if sharded else 0
        dmb, dcpu = upkeep(f, fn, bits)
        keys_at_million = keys_per_node(10**6, spec_bits(10**6) if sharded else 0)
        month = ibps * MONTH_S / 1e6 + rkb * MONTH_S / PERIODIC_S / 1e3 + dmb
        core = 100 * (icpu + dcpu / MONTH_S)
        lines.append(f"Fixed per node and month {'with' if sharded else 'without'} shards "
                     f"(medians of those runs): idle traffic {ibps:,.1f} B/s, the "
                     f"periodic round {rkb:.1f} KB an hour, a DHT refresh ({REFRESH_KIND}, "
                     f"every {REFRESH_S / 3600:g} h) {fkb:.0f} KB and a key provided "
                     f"(every {PROVIDE_S / 3600:g} h) {kkb:.0f} KB, "
                     f"{keys_per_node(fn, bits):.2f} keys a node at N = {fn} "
                     f"(`keys_per_node`, {keys_at_million:.2f} at 10⁶): the DHT's "
                     f"upkeep {dmb:.1f} MB and {dcpu:.0f} CPU-s a "
                     f"month; {month:,.1f} MB a month at N = {fn}; idle CPU with the "
                     f"DHT's upkeep {core:.3f}% of a core. Extrapolated, each lookup's cost "
                     f"grows as {growth[sharded][1]}.")
    for sharded, ps in ((False, off), (True, on)):
        ps = [p for p in ps if p.r.get("settle_s")]
        if ps:
            quiet = statistics.median(p.r["settle_s"] for p in ps)
            lines.append(
                f"Start-up {'with' if sharded else 'without'} shards (once per start: "
                "identify, subscriptions, the DHT's tables and provider records, shard "
                f"peers found; medians): quiet after {quiet:.0f} s, "
                f"{statistics.median(p.r['settle_bytes'] for p in ps) / 1e3:,.0f} KB per node.")
    per_object = {sharded: min(1e3 * p.month_end_mb / p.held for p in (ps or points))
                  for sharded, ps in ((False, off), (True, on))}
    idle = {sharded: statistics.median(p.idle_bps for p in (ps or points))
            for sharded, ps in ((False, off), (True, on))}
    peers = {sharded: statistics.median(p.peers if p.peers is not None else p.peers_default
                                        for p in (ps or points))
             for sharded, ps in ((False, off), (True, on))}
    lines += [
        "", f"**Extrapolated** with SPEC §11.6's {SPEC_K} creators per donor and month (objects "
        "held from the placement arithmetic, `objects_per_node`; receipts are not in the "
        "simulation and not counted), each setting's fit and fixed costs; idle traffic is "
        f"the runs' at rest ({idle[False]:.1f} B/s without shards, {idle[True]:.1f} with) "
        f"and Yamux's pings on {peers[False]:.0f} connections without shards (as measured) "
        f"and {connections(True, peers[True]):.0f} with (the cap, node/upkeep.py: a node's "
        "shards then have ≥ 90 members each). The month end is also taken in proportion to "
        "the objects held, at the cheapest cost per object held of the setting's runs "
        f"({per_object[False]:.1f} KB without shards, {per_object[True]:.1f} KB with): two "
        "runs cannot fix the fit's slope, and a slope below that is not physical (each "
        "object held crosses the wire several times).", "",
        "| participants N | shard bits | objects held per node | month-end traffic (MB): "
        "fit, in proportion | traffic per node and month (MB): fit, in proportion | "
        "month-end CPU per node (s) | CPU, month average (% core) | stored per node (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in (10**3, 10**4, 10**5, 10**6):
        for bits in (0, spec_bits(n)):
            h = objects_per_node(n, bits, SPEC_K)
            (mb, cpu, st) = fits[bool(bits)]
            me_mb, me_cpu = mb[0] + mb[1] * h, cpu[0] + cpu[1] * h
            icpu, _, rkb = fixed[bool(bits)][:3]
            ibps = idle[bool(bits)] + PING_BPS * connections(bool(bits), peers[bool(bits)])
            dmb, dcpu = upkeep(fixed[bool(bits)], n, bits)
            grow = growth[bool(bits)][0](n)
            rest = ibps * MONTH_S / 1e6 + rkb * MONTH_S / PERIODIC_S / 1e3 + dmb * grow
            prop_mb = per_object[bool(bits)] * h / 1e3
            core = 100 * (me_cpu + icpu * MONTH_S + dcpu * grow) / MONTH_S
            lines.append(f"| {n:,} | {bits} | {h:,.0f} | {me_mb:,.1f}, {prop_mb:,.1f} | "
                         f"{me_mb + rest:,.1f}, {prop_mb + rest:,.1f} | "
                         f"{me_cpu:,.1f} | {core:.3f} | {st[0] + st[1] * h:,.1f} |")
    for sharded in (False, True):
        ps = [p for p in points if bool(p.bits) == sharded]
        if len({p.n for p in ps}) < 2:
            continue
        a, b = fit([(p.n, p.month_mb()) for p in ps])
        c, d = fit([(p.n, p.month_end_cpu) for p in ps])
        e, f = fit([(p.n, p.held) for p in ps])
        lines += ["", f"Straight line through the runs {'with' if sharded else 'without'} "
                  f"shards: traffic per node and month = {a:.2f} + {b:.4f}·N MB; month-end "
                  f"CPU per node (idle deducted) = {c:.2f} + {d:.4f}·N s; objects held = "
                  f"{e:.0f} + {f:.2f}·N."]
    return lines
