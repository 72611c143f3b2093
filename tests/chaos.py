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

Shards (``shard_bits`` > 0, SPEC §11.6): every daemon runs with ``[network] shard_bits``
and the invariants are the sharded ones: every creator still holds every claim to it and
every receipt still reaches its donor, but a node must hold (step 3, "gaps") only the
month's settlements and sealed claims placed in one of its shards (its key's and its
backbone shards) or concerning it, and must hold none of the others ("frgn"); "held%"
says how much of the month that is per node on average; the checker also asks every
daemon's status for the shard bits and the shards its key gives it.

The per-month table is printed and written, with every daemon's log, under
``tests/artifacts/chaos/<run>/``.

This file holds the fault schedule (``plans``), the table and the driver (``run``); the
network and the runner's moves are in tests/chaosnet.py, one month in
tests/chaosmonth.py, the checker in tests/chaoscheck.py, power cuts in
tests/chaospower.py.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import chaospower
from chaoscheck import RECEIPT_LOST, check
from chaosmonth import month
from chaosnet import Row, Run, build, start_node, wait_connected

from rill.protocol.keys import key_from_did
from rill.protocol.months import month_start, next_month
from rill.protocol.shard import node_shards

ARTIFACTS = Path(__file__).parent / "artifacts" / "chaos"
FAULT_KINDS = ("restart", "kill", "kill-at-settle", "partition", "power-cut")


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
            f"{'gaps':>4} {'frgn':>4} {'held%':>5} {'late':>4} {'conv s':>6} {'back s':>6} "
            f"{'month s':>7} invariants")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.month:8} {','.join(r.faults) or '-':62} {r.settlements:5d} "
                     f"{r.claims:6d} {r.paid:4d} {r.receipted:4d} {r.relay_gaps:4d} "
                     f"{r.foreign:4d} {r.held_pct:5d} {r.late_receipts:4d} "
                     f"{r.converge_s:6.1f} {r.power_back_s:6.1f} "
                     f"{r.month_s:7.1f} {r.invariants}")
    return "\n".join(lines)


def run(base: Path, n: int, months: int, *, seed: int = 14, every_kind: bool = False,
        first: str = "2026-01", artifacts: Path | None = None, power: int = 0,
        shard_bits: int = 0, note: Callable[[str], None] = print) -> tuple[list[Row], list[str]]:
    """The whole run: its rows and every invariant violation (``month: what``), the run
    going on after a month that breaks one.  The runner's own waits (settling, creators'
    claims, connections) raise AssertionError at once.  The table and logs are written
    out either way.  ``power``: how many daemons (from the third on) keep their database on
    LazyFS and can lose power (none where LazyFS is absent: ``Run.power.why_not``).
    ``shard_bits``: every daemon runs with ``[network] shard_bits`` (SPEC §11.6) and the
    checker asks of each node only what is placed in its shards or concerns it."""
    r = build(base, n, first, seed, note, shard_bits)
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
        if shard_bits:
            note(f"shard_bits {shard_bits}: " + ", ".join(
                f"{x.name[:3]} in {sorted(node_shards(key_from_did(x.did), shard_bits))}"
                for x in r.nodes))
        mo = first
        for i in range(months):
            row = month(r, mo, schedule[i])
            bad = check(r, mo)
            if row.relay_gaps:
                bad.append(f"{row.relay_gaps} settlement(s) and sealed claim(s) of {mo} "
                           "missing on some node after reconciliation")
            if row.foreign:
                bad.append(f"{row.foreign} settlement(s) and sealed claim(s) of {mo} held "
                           "by nodes of other shards they do not concern")
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
        "nodes": len(r.nodes), "shard_bits": r.shard_bits,
        "months": [vars(x) for x in r.rows], "failure": failure,
        "violations": r.violations,
        "restarts": r.restarts, "exit_codes": codes,
        "receipts": len(r.receipts),
        "power_cuts": [vars(c) for c in r.power.cuts], "power_left_out": r.power.why_not,
        "shutdown_races": sorted(r.shutdown_races)}, indent=1) + "\n")


__all__ = ["ARTIFACTS", "RECEIPT_LOST", "Row", "Run", "check", "month_start", "run", "table"]
