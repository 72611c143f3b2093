"""One month of the chaos run (tests/chaos.py): budgets and clicks, the month's planned
faults, month end and settling, the heal, convergence (creators' claims, relay copies),
a power cut, payments and receipts; its row of the table."""

from __future__ import annotations

import time

import chaospower
import partition
from chaoscheck import should_hold
from chaosnet import (
    GRACE,
    REPUBLISH_S,
    Row,
    Run,
    bounce,
    clocks,
    month_objects,
    obligations,
    raws,
    set_blocked,
    start_node,
    wait_connected,
)
from clitools import js
from partition import held, wait_until

from rill.protocol.months import month_end, month_of, month_start, months_back
from rill.protocol.network import DEFAULT_WINDOW_MONTHS


def month(run: Run, mo: str, plan: list[str]) -> Row:
    row = Row(mo, faults=[])
    t_month = time.monotonic()
    start, end = month_start(mo), month_end(mo)
    # the previous month's tail (republish, payments) runs into this month's first hours
    first = max(start + 3600, run.now + 60)
    clocks(run, first)
    creators = run.creators
    for k, d in enumerate(run.donors):
        cents = run.rng.randrange(100, 2001)  # 1.00 .. 20.00 EUR
        js("budget", "set", f"{cents // 100}.{cents % 100:02d}", "EUR", home=d.proc.home,
           now=first + k)
        run.budgets[(d.did, mo)] = cents
        chosen = run.rng.sample(creators, run.rng.randint(1, len(creators)))
        for j, c in enumerate(chosen):
            for x in range(run.rng.randint(1, 3)):
                js("click", f"https://{c.name}.example/{mo}/{x}", "--creator", c.did,
                   home=d.proc.home, now=first + 3600 + 10 * j + x)
    mid = start + (end - start) // 2
    if "restart" in plan:
        victim = run.rng.choice(run.nodes)
        clocks(run, mid - 3600)
        bounce(run, victim, mid - 3600, hard=False)
        row.faults.append(f"restart:{victim.name[:3]}")
    if "kill" in plan:
        victim = run.rng.choice(run.nodes)
        clocks(run, mid)
        bounce(run, victim, mid, hard=True)
        row.faults.append(f"kill-9:{victim.name[:3]}")
    if "restart" in plan or "kill" in plan:
        wait_connected(run)
    split = "partition" in plan
    if split:
        clocks(run, mid + 3600)
        set_blocked(run, True)
        wait_until(lambda: all(not (n.peers() & {m.peer_id for m in run.nodes
                                                  if m.group != n.group})
                               for n in run.nodes), 30, "cross-group connections to close")
        row.faults.append("partition")
    # -- the month ends -----------------------------------------------------------------
    clocks(run, end + 1)
    kill_at_settle = None
    if "kill-at-settle" in plan:
        kill_at_settle = run.rng.choice(run.donors)
    clocks(run, end + GRACE + 1)
    if kill_at_settle is not None:  # its settlement is due this instant
        bounce(run, kill_at_settle, end + GRACE + 1, hard=True)
        row.faults.append(f"kill-9@settle:{kill_at_settle.name[:3]}")
    clocks(run, end + 2 * GRACE + 1)
    wait_until(lambda: all(month_objects(d, mo) for d in run.donors), 60,
               "every donor to settle", lambda: [d.name for d in run.donors
                                                 if not month_objects(d, mo)])
    t_conv = time.monotonic()
    if split:
        clocks(run, end + partition.SPLIT_S)
        set_blocked(run, False)
    wait_connected(run)
    everything = set().union(*(month_objects(d, mo) for d in run.donors))
    want = should_hold(run, {i: raw for d in run.donors
                             for i, raw in raws(d, month_objects(d, mo)).items()})
    clocks(run, end + GRACE + REPUBLISH_S - 10)
    clocks(run, end + 2 * GRACE + REPUBLISH_S + 60)
    expect = expected_incoming(run)
    wait_until(lambda: all(expect[c.did] <= {o[0] for o in obligations(c, "in")}
                           for c in creators), 90, "every creator to hold its claims",
               lambda: {c.name: len(expect[c.did] - {o[0] for o in obligations(c, "in")})
                        for c in creators})
    # relays: every node holds every settlement and sealed claim of the month (with shards:
    # those placed in its shards and those concerning it, ``should_hold``): what gossip
    # did not bring (a node down, a partition, a dropped message) reconciliation does
    # (SPEC §11.4; the clocks passed end + 2 grace: every node ran a round with every
    # peer); objects still missing 45 s later fail the month (checked with the invariants)
    def gaps() -> int:
        return sum(len(want[n.name] - held(n)) for n in run.nodes)

    deadline = time.monotonic() + 45
    while gaps() and time.monotonic() < deadline:
        time.sleep(0.2)
    row.relay_gaps = gaps()
    # and, with shards, none of the month's objects of other shards that do not concern it
    row.foreign = sum(len((held(n) & everything) - want[n.name]) for n in run.nodes)
    row.held_pct = round(100 * sum(map(len, want.values()))
                         / max(1, len(everything) * len(run.nodes)))
    row.converge_s = time.monotonic() - t_conv
    row.settlements = len(run.donors)
    row.claims = sum(1 for d in run.donors for o in obligations(d, "out") if o[1] == mo)
    if "power-cut" in plan and run.power.mounts:
        # right after the month's objects were gossiped: the gossip store commits them
        # without fsync (NORMAL), so this is when a cut loses the most
        victim = run.rng.choice([n for n in run.nodes if n.name in run.power.mounts])
        t_cut = run.now
        c = chaospower.cut(run.power, victim, lambda: start_node(run, victim, t_cut))
        run.restarts[victim.name] = run.restarts.get(victim.name, 0) + 1
        row.faults.append(c.label())
        row.power_back_s = c.back_s
        wait_connected(run)
    # -- payments and receipts ----------------------------------------------------------
    now = end + 2 * GRACE + REPUBLISH_S + 120
    clocks(run, now)
    for d in run.donors:
        owed = [o[0] for o in obligations(d, "out") if o[5] == "owed"]
        if owed and run.rng.random() < 0.6:
            pick = run.rng.sample(owed, run.rng.randint(1, len(owed)))
            d.proc.rill("pay", *pick, "--reference", f"chaos-{mo}", now=now)
            row.paid += len(pick)
    for c in creators:
        # only claims inside the gossip window: a receipt for an older claim is refused by
        # the gossip check (SPEC's window, 3 months back), so it never leaves the
        # creator's node and the donor learns of it only from the receipt file
        oldest = months_back(month_of(now), DEFAULT_WINDOW_MONTHS)
        owed = [o for o in obligations(c, "in") if o[5] == "owed" and o[1] >= oldest]
        if owed and run.rng.random() < 0.6:
            for o in run.rng.sample(owed, run.rng.randint(1, min(3, len(owed)))):
                c.proc.rill("receipt", o[0], "--reference", f"got-{mo}", now=now)
                run.receipts[o[0]] = mo
                row.receipted += 1
    donors_by_did = {d.did: d for d in run.donors}
    claim_donor = {o[0]: o[2] for c in creators for o in obligations(c, "in")}

    def receipts_home() -> list[str]:
        missing = []
        for cid in run.receipts:
            d = donors_by_did[claim_donor[cid]]
            if not any(o[0] == cid and o[5] == "receipted" for o in obligations(d, "out")):
                missing.append(cid[:8])
        return missing

    # a receipt travels by gossip; one gossip missed reaches the donor by sync, at the
    # latest after the next month end (checked then): here it is measured
    deadline = time.monotonic() + 20
    while receipts_home() and time.monotonic() < deadline:
        time.sleep(0.2)
    row.late_receipts = len(receipts_home())
    row.month_s = time.monotonic() - t_month
    return row


def expected_incoming(run: Run) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {c.did: set() for c in run.creators}
    for d in run.donors:
        for cid, _mo, _donor, creator, _a, _s in obligations(d, "out"):
            out[creator].add(cid)
    return out


__all__ = ["expected_incoming", "month"]
