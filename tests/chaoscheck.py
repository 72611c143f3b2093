"""The chaos run's checker (tests/chaos.py): after every month it reads every home and
the control sockets and lists every invariant that does not hold."""

from __future__ import annotations

import partition
from chaosnet import Run, obligations

from rill.protocol.keys import key_from_did
from rill.protocol.shard import node_shards, object_shards, preview_stored

STATE_ORDER = {"owed": 0, "paid": 1, "receipted": 2}

#: The one traceback let through: py-libp2p's swarm logs (WARNING, with a traceback) an
#: inbound connection that arrives while the node is stopping on SIGTERM; the node still
#: exits 0 (checked).  Counted in the summary as "shutdown races".
SHUTDOWN_RACE = "[ADDCONN_FAIL] add_conn failed for peer"
RECEIPT_LOST = "receipt not at its donor after a month end"


def should_hold(run: Run, objects: dict[str, bytes]) -> dict[str, set[str]]:
    """Per node name, which of a month's settlements and sealed claims (ID hex -> bytes)
    it must hold: every one without shards; with shards (SPEC §11.6), those placed in one
    of the shards it joins (its key's and its backbone shards) and those concerning it (a
    donor's own, a settlement naming a creator, a sealed claim to it): tests/scale/sim.py's
    ``expected`` by object."""
    if not run.shard_bits:
        return {n.name: set(objects) for n in run.nodes}
    placed = {}
    for i, raw in objects.items():
        p = preview_stored(raw)
        assert p is not None, f"{i[:8]}: does not preview"
        placed[i] = (object_shards(p, run.shard_bits), p.subjects)
    out = {}
    for n in run.nodes:
        key = key_from_did(n.did)
        joined = node_shards(key, run.shard_bits)
        out[n.name] = {i for i, (shards, subjects) in placed.items()
                       if shards & joined or key in subjects}
    return out


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
        # 7. every daemon runs with the run's shard bits, in the shards its key gives it
        joined = sorted(node_shards(key_from_did(n.did), run.shard_bits)) \
            if run.shard_bits else [0]
        shards = st.get("shards", {})
        if (shards.get("bits", 0), shards.get("joined", [0])) != (run.shard_bits, joined):
            bad.append(f"{n.name}: shards {shards}, not bits {run.shard_bits} in {joined}")
    return bad


__all__ = ["RECEIPT_LOST", "SHUTDOWN_RACE", "STATE_ORDER", "check", "should_hold", "tracebacks"]
