"""A long run with invariants (issue 14, item 5; after Jepsen's checkers): `rill node run`
daemons on 127.0.0.1 with manual clocks live through many simulated months while the
runner injects real faults, and after each month a checker reads every home and asserts
what must hold whatever happened.

Roles: even-numbered nodes are donors, odd ones creators; nodes alternate between groups
``a`` and ``b`` (the two sides of a partition); each node dials the three before it.

One month (every clock moved alike, through the control socket):

1. clocks to the month's first hour; every donor sets a random budget (``rill budget
   set``) and clicks things of a random non-empty set of creators (``rill click``), on
   its home while its daemon runs;
2. faults, drawn from the month's plan: a graceful restart (SIGTERM, start on the same
   home), a kill -9 (SIGKILL, start on the same home) -- both mid-month; a kill -9 of a
   donor right as its settlement falls due (its restart must catch the month up); a
   partition (``rill peers block`` across the two groups) from mid-month until ten
   minutes past month end, so each side settles alone;
3. the month ends (clocks to end + 1 s, + grace, + 2 grace): every donor settles; heal;
   clocks past the donors' first republish (one hour): every creator gets every claim to
   it (waited for); every node holds every settlement and sealed claim of the month
   within 45 s ("gaps", an invariant: a node down while they were gossiped, or cut off
   by a partition, gets them by reconciliation, SPEC §11.4);
4. payments and receipts: some donors ``rill pay`` some owed claims, some creators
   ``rill receipt`` some claims owed to them (the daemon publishes the receipt and the
   donor's side turns to receipted);
5. the checker (``check``): for every donor and month the claims sum to that month's
   budget exactly; every claim, on both sides, is owed, paid or receipted and its state
   never went back since the previous check (owed < paid < receipted); every creator
   holds every claim made to it; every receipt a creator signed reached its donor by the
   next month end (gossip, else the sync after a month end; how many are late 20 s after
   signing is counted, "late"); every
   daemon alive (only the runner restarts them), exit code 0 for graceful stops, no
   ``Traceback`` in any log; each node's relay store within its cap.

Power cuts (tests/chaospower.py): where LazyFS is usable, ``power`` daemons keep their
database on a LazyFS mount each, and a month's plan may cut one of them (SIGKILL,
``lazyfs::clear-cache``, remount) right after the month's settlements and claims were
gossiped (step 3), when its gossip store holds the most not yet fsynced: its home must
pass ``integrity_check`` and verify, and what the cut lost that concerns it must be back
within 60 s of the restart (waited for, timed: "back s"); the checker's invariants then
hold as after any other fault.  Where LazyFS is absent the run goes on without power
cuts and says why.

The per-month table is printed and written, with every daemon's log, under
``tests/artifacts/chaos/<run>/``.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import chaospower
import partition
from clitools import fast_home, js
from partition import Node, addr, block_across, held, planned, set_clocks, wait_until
from procnet import ProcNode

from rill.protocol.keys import did_from_key, key_from_did, peer_id_from_key
from rill.protocol.months import month_end, month_of, month_start, months_back, next_month
from rill.protocol.network import DEFAULT_WINDOW_MONTHS

GRACE = partition.GRACE
REPUBLISH_S = partition.REPUBLISH_S
STATE_ORDER = {"owed": 0, "paid": 1, "receipted": 2}
ARTIFACTS = Path(__file__).parent / "artifacts" / "chaos"
FAULT_KINDS = ("restart", "kill", "kill-at-settle", "partition", "power-cut")


@dataclass
class Row:
    month: str
    faults: list[str] = field(default_factory=list)
    settlements: int = 0
    claims: int = 0
    paid: int = 0
    receipted: int = 0
    relay_gaps: int = 0
    late_receipts: int = 0
    converge_s: float = 0.0
    power_back_s: float = 0.0  # power cut: restart -> what it lost of its own back
    month_s: float = 0.0
    invariants: str = "?"


@dataclass
class Run:
    base: Path
    nodes: list[Node]
    rng: random.Random
    note: Callable[[str], None]
    budgets: dict[tuple[str, str], int] = field(default_factory=dict)  # (donor, month)
    states: dict[tuple[str, str], str] = field(default_factory=dict)   # (node, claim)
    receipts: dict[str, str] = field(default_factory=dict)  # claim -> month it was signed
    restarts: dict[str, int] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    shutdown_races: set[tuple[str, str]] = field(default_factory=set)  # (node, time)
    now: int = 0  # every daemon's clock (manual clocks never go back)
    blocked: set[tuple[str, str]] = field(default_factory=set)  # (node, peer) split apart
    power: chaospower.Power = field(default_factory=chaospower.Power)

    @property
    def donors(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "donor"]

    @property
    def creators(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "creator"]


# -- reading a home (read-only SQLite, while its daemon runs) ------------------------------

def _db(node: Node) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{node.proc.home / 'rill.db'}?mode=ro", uri=True, timeout=30)


def obligations(node: Node, direction: str) -> list[tuple[str, str, str, str, int, str]]:
    """(claim hex, month, donor did, creator did, amount, state)."""
    db = _db(node)
    try:
        return [(bytes(c).hex(), mo, did_from_key(bytes(d)), did_from_key(bytes(cr)), a, s)
                for c, mo, d, cr, a, s in db.execute(
                    "SELECT claim, month, donor, creator, amount, state FROM obligations "
                    "WHERE direction = ?", (direction,))]
    finally:
        db.close()


def month_objects(node: Node, month: str) -> set[str]:
    """Settlements and sealed claims a donor signed for ``month`` (its own, by ID)."""
    db = _db(node)
    try:
        rows = db.execute("SELECT DISTINCT settlement, sealed FROM obligations WHERE "
                          "direction = 'out' AND month = ?", (month,)).fetchall()
    finally:
        db.close()
    out: set[str] = set()
    for s, sealed in rows:
        out.add(bytes(s).hex())
        if sealed is not None:
            out.add(bytes(sealed).hex())
    return out


# -- the network ----------------------------------------------------------------------------

def build(base: Path, n: int, first: str, seed: int,
          note: Callable[[str], None]) -> Run:
    nodes: list[Node] = []
    t0 = month_start(first) + 3600
    for i in range(n):
        role = "donor" if i % 2 == 0 else "creator"
        group = "ab"[(i // 2) % 2] if n >= 4 else "ab"[i % 2]
        proc = ProcNode(base, f"n{i:02d}-{role}", t0)
        did = fast_home(proc.home, proc.name)
        nodes.append(Node(proc, group, role, did, peer_id_from_key(key_from_did(did))))
    for i, node in enumerate(nodes):
        node.dials = [nodes[j].peer_id for j in range(max(0, i - 3), i)]
    return Run(base, nodes, random.Random(seed), note)


def clocks(run: Run, t: int) -> None:
    set_clocks(run.nodes, t)
    run.now = t


def start_node(run: Run, node: Node, now: int) -> None:
    by_peer = {n.peer_id: n for n in run.nodes}
    node.proc.clock_start = now
    node.proc.start([addr(by_peer[p]) for p in node.dials])
    node.proc.wait_started(60)


def wait_connected(run: Run, timeout: float = 60) -> None:
    want = planned(run.nodes)
    blocked = run.blocked
    def missing() -> dict[str, list[str]]:
        out = {}
        for n in run.nodes:
            lack = {p for p in want[n.name] if (n.name, p) not in blocked} - n.peers()
            if lack:
                out[n.name] = sorted(names[p] for p in lack)
        return out

    names = {n.peer_id: n.name for n in run.nodes}
    wait_until(lambda: not missing(), timeout, "every planned connection to be up", missing)


def set_blocked(run: Run, on: bool) -> None:
    block_across(run.nodes, on)
    pairs = {(n.name, m.peer_id) for n in run.nodes for m in run.nodes if m.group != n.group}
    run.blocked = pairs if on else set()


def bounce(run: Run, node: Node, now: int, hard: bool) -> None:
    """Stop a daemon (SIGKILL if ``hard``, else SIGTERM and a clean exit) and start it
    again on the same home, its clock at ``now``."""
    proc = node.proc.proc
    assert proc is not None and proc.poll() is None, f"{node.name} not running"
    if hard:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        node.proc.proc = None
    else:
        code = node.proc.stop()
        assert code == 0, f"{node.name} exited {code} on SIGTERM"
    run.restarts[node.name] = run.restarts.get(node.name, 0) + 1
    start_node(run, node, now)


# -- one month ------------------------------------------------------------------------------

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
    clocks(run, end + GRACE + REPUBLISH_S - 10)
    clocks(run, end + 2 * GRACE + REPUBLISH_S + 60)
    expect = expected_incoming(run)
    wait_until(lambda: all(expect[c.did] <= {o[0] for o in obligations(c, "in")}
                           for c in creators), 90, "every creator to hold its claims",
               lambda: {c.name: len(expect[c.did] - {o[0] for o in obligations(c, "in")})
                        for c in creators})
    # relays: every node holds every settlement and sealed claim of the month: what gossip
    # did not bring (a node down, a partition, a dropped message) reconciliation does
    # (SPEC §11.4; the clocks passed end + 2 grace: every node ran a round with every
    # peer); objects still missing 45 s later fail the month (checked with the invariants)
    def gaps() -> int:
        return sum(len(everything - held(n)) for n in run.nodes)

    deadline = time.monotonic() + 45
    while gaps() and time.monotonic() < deadline:
        time.sleep(0.2)
    row.relay_gaps = gaps()
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


# -- the checker ----------------------------------------------------------------------------

#: The one traceback let through: py-libp2p's swarm logs (WARNING, with a traceback) an
#: inbound connection that arrives while the node is stopping on SIGTERM; the node still
#: exits 0 (checked).  Counted in the summary as "shutdown races".
SHUTDOWN_RACE = "[ADDCONN_FAIL] add_conn failed for peer"
RECEIPT_LOST = "receipt not at its donor after a month end"


def tracebacks(log: str) -> list[str]:
    """The log records (a timestamped line and the lines under it) holding a traceback."""
    records: list[str] = []
    for line in log.splitlines():
        if (line[:2] == "20" and line[4:5] == "-") or not records:
            records.append(line)
        else:
            records[-1] += "\n" + line
    return [r for r in records if "Traceback (most recent call last)" in r]


def check(run: Run, upto: str) -> list[str]:
    """Every invariant; the list of violations (empty: all hold)."""
    bad: list[str] = []
    # 1. every donor's claims of a settled month sum to that month's budget exactly
    for d in run.donors:
        sums: dict[str, int] = {}
        for _cid, mo, donor, _cr, amount, _s in obligations(d, "out"):
            assert donor == d.did
            sums[mo] = sums.get(mo, 0) + amount
        for (did, mo), budget in run.budgets.items():
            if did == d.did and mo <= upto and sums.get(mo) != budget:
                bad.append(f"{d.name} {mo}: claims sum {sums.get(mo)} != budget {budget}")
    # 2. states are known and never go back (both sides)
    for n in run.nodes:
        for direction in ("out", "in"):
            for cid, *_rest, state in obligations(n, direction):
                if state not in STATE_ORDER:
                    bad.append(f"{n.name} {cid[:8]}: unknown state {state}")
                    continue
                key = (n.name, cid)
                before = run.states.get(key)
                if before is not None and STATE_ORDER[state] < STATE_ORDER[before]:
                    bad.append(f"{n.name} {cid[:8]}: {before} -> {state}")
                run.states[key] = state
        # a claim a node knew must not vanish from its obligations
        have = {cid for direction in ("out", "in") for cid, *_ in obligations(n, direction)}
        for (name, cid) in run.states:
            if name == n.name and cid not in have:
                bad.append(f"{n.name} {cid[:8]}: obligation gone")
    # 3. every creator holds every claim to it, with the donor's amount
    out_claims = {o[0]: o for d in run.donors for o in obligations(d, "out")}
    for c in run.creators:
        inc = {o[0]: o for o in obligations(c, "in")}
        for cid, o in out_claims.items():
            if o[3] == c.did and cid not in inc:
                bad.append(f"{c.name} lacks claim {cid[:8]}")
            elif o[3] == c.did and inc[cid][4] != o[4]:
                bad.append(f"{c.name} {cid[:8]}: amount {inc[cid][4]} != {o[4]}")
        for cid in inc:
            if cid not in out_claims:
                bad.append(f"{c.name} holds unknown claim {cid[:8]}")
    # 4. receipts signed before this month's end reached their donors (by gossip, or by
    #    the sync every node runs after a month end)
    for cid, signed in run.receipts.items():
        if signed < upto and out_claims[cid][5] != "receipted":
            bad.append(f"{RECEIPT_LOST}: {cid[:8]} (signed in {signed})")
    # 5. no node crashed; no traceback in any log
    for n in run.nodes:
        p = n.proc.proc
        if p is None or p.poll() is not None:
            bad.append(f"{n.name} not running (exit {None if p is None else p.returncode})")
        for record in tracebacks(n.proc.log.read_text(errors="replace")):
            if SHUTDOWN_RACE in record.splitlines()[0]:
                run.shutdown_races.add((n.name, record.splitlines()[0][:23]))
            else:
                bad.append(f"{n.name}: Traceback in log: {record[:300]}")
    # 6. storage within caps
    for n in run.nodes:
        st = n.call("status")
        store = st["store"]
        if store["relay_bytes"] > store["cap_bytes"]:
            bad.append(f"{n.name}: relay store {store['relay_bytes']} > cap "
                       f"{store['cap_bytes']}")
        if st["marked_donors"]:
            bad.append(f"{n.name}: marked donors {st['marked_donors']}")
        if partition.equivocations(n):
            bad.append(f"{n.name}: equivocation objects")
    return bad


# -- plans, the table, the whole run -------------------------------------------------------

def plans(months: int, rng: random.Random, every_kind: bool) -> list[list[str]]:
    """Each month's faults.  ``every_kind``: the slice -- each kind at least once over the
    run (two months: restart + partition, then kill + kill at settle + a power cut)."""
    if every_kind:
        base = [["restart", "partition"], ["kill", "kill-at-settle", "power-cut"]]
        return [base[i % 2] for i in range(months)]
    out = []
    for i in range(months):
        p = [k for k in FAULT_KINDS if rng.random() < 0.5]
        if i % 3 == 0 and "partition" not in p:
            p.append("partition")  # a split across every third month end at least
        out.append(sorted(p, key=FAULT_KINDS.index))
    return out


def table(rows: list[Row]) -> str:
    head = (f"{'month':8} {'faults':62} {'settl':>5} {'claims':>6} {'paid':>4} {'rcpt':>4} "
            f"{'gaps':>4} {'late':>4} {'conv s':>6} {'back s':>6} {'month s':>7} invariants")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.month:8} {','.join(r.faults) or '-':62} {r.settlements:5d} "
                     f"{r.claims:6d} {r.paid:4d} {r.receipted:4d} {r.relay_gaps:4d} "
                     f"{r.late_receipts:4d} "
                     f"{r.converge_s:6.1f} "
                     f"{r.power_back_s:6.1f} "
                     f"{r.month_s:7.1f} {r.invariants}")
    return "\n".join(lines)


def run(base: Path, n: int, months: int, *, seed: int = 14, every_kind: bool = False,
        first: str = "2026-01", artifacts: Path | None = None, power: int = 0,
        note: Callable[[str], None] = print) -> tuple[list[Row], list[str]]:
    """The whole run: its rows and every invariant violation (``month: what``), the run
    going on after a month that breaks one.  The runner's own waits (settling, creators'
    claims, connections) raise AssertionError at once.  The table and logs are written
    out either way.  ``power``: how many daemons (from the third on) keep their database on
    LazyFS and can lose power (none where LazyFS is absent: ``Run.power.why_not``)."""
    r = build(base, n, first, seed, note)
    schedule = plans(months, r.rng, every_kind)
    failure: str | None = None
    r.power = chaospower.setup(base, {x.name: x.proc.home for x in r.nodes[2:]}, power)
    if r.power.why_not and power:
        note(f"power cuts left out: {r.power.why_not}")
    try:
        t0 = time.monotonic()
        r.now = month_start(first) + 3600
        for node in r.nodes:
            start_node(r, node, r.now)
        wait_connected(r, 60 + 10 * n)
        note(f"started {n} daemons in {time.monotonic() - t0:.1f} s")
        mo = first
        for i in range(months):
            row = month(r, mo, schedule[i])
            bad = check(r, mo)
            if row.relay_gaps:
                bad.append(f"{row.relay_gaps} settlement(s) and sealed claim(s) of {mo} "
                           "missing on some node after reconciliation")
            row.invariants = "ok" if not bad else f"FAIL ({len(bad)})"
            r.rows.append(row)
            note(table(r.rows[-1:]).splitlines()[-1])
            if bad:  # keep going (Jepsen-style): every month's violations are listed
                r.violations += [f"{mo}: {b}" for b in bad]
            mo = next_month(mo)
    except BaseException as exc:
        failure = failure or f"{type(exc).__name__}: {exc}"
        raise
    finally:
        codes = {}
        for node in r.nodes:
            codes[node.name] = node.proc.stop()
        r.power.unmount()
        if artifacts is not None:
            keep(r, artifacts, failure, codes)
    assert failure is None, failure
    assert set(codes.values()) == {0}, codes
    return r.rows, r.violations


def keep(r: Run, dest: Path, failure: str | None, codes: dict[str, int]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for node in r.nodes:
        if node.proc.log.exists():
            shutil.copy(node.proc.log, dest / node.proc.log.name)
    (dest / "table.txt").write_text(table(r.rows) + "\n")
    (dest / "summary.json").write_text(json.dumps({
        "nodes": len(r.nodes), "months": [vars(x) for x in r.rows], "failure": failure,
        "violations": r.violations,
        "restarts": r.restarts, "exit_codes": codes,
        "receipts": len(r.receipts),
        "power_cuts": [vars(c) for c in r.power.cuts], "power_left_out": r.power.why_not,
        "shutdown_races": sorted(r.shutdown_races)}, indent=1) + "\n")


__all__ = ["ARTIFACTS", "RECEIPT_LOST", "Row", "Run", "check", "month_start", "run", "table"]
