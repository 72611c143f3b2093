"""Sybil soak (issue 10, open network): 4 Sybil identities per honest node flood valid
and invalid objects while a month ends.

`make soak` (or ``pytest -q -m soak tests/test_sybil_soak.py -s``).  Demands:

* >= 99 % of the honest claims reach their creator within 10 s of the donor's
  settlement (the donor daemon's ``settled`` log line, logged right before it
  publishes the settlement and its sealed claims), measured per claim;
* 0 honest objects evicted: every third-party object stored before the flood is still
  held by every node that held it;
* the cap held: ``relay_bytes <= cap_bytes`` on every node at every sample (1 s), and
  every node evicted something (else the cap was not under pressure);
* every daemon alive at the end, no traceback in any log, exit 0 on SIGTERM;
* the Sybils that sent invalid messages, replays or objects hanging off nothing are
  cut off (SPEC §11.2: rejected, or ignored past the budget), the valid ones are not.

Set-up: ``N`` honest ``rill node run`` processes on 127.0.0.1 (a ring plus two chords),
``[network] work_bits = 8`` and ``[node] disk_cap_mb = 1``.  Every node is a donor
(clicks through October by CLI processes beside the daemons) and a creator: each donor
owes each other node, ``N * (N - 1)`` honest claims.  Before the flood an honest peer
publishes third-party objects: settlements of September with sealed claims, a receipt
per donor signed by its creator (`rill receipt`), the creators' key documents.

Then ``4 * N`` Sybils (tests/attacker.py, silent: they join the meshes but forward
nothing), each connected to its node and to the node across the ring, four roles:

* ``valid``: fresh donors, settlements carrying the work (40 filler lines) and two
  sealed claims to honest creators: September before the month ends, October after;
* ``dangling``: receipts and key documents of fresh keys, hanging off nothing;
* ``replay``: honest objects under a throwaway libp2p key each, each once as it comes
  (the third-party ones, then the month's honest settlements and sealed claims it
  receives), then, ``REPLAY_AGAIN_AFTER`` s after the donors settled, all again;
* ``invalid``: bad envelope signatures, garbage, objects on the wrong topic.

The daemons' clocks tick with real time during the flood (set through the control
socket every 0.25 s), so the gate's budgets refill as they would: October ends
``MONTH_END_AT`` s into the flood, the donors settle one grace period (60 s) later.
The junk roles of node i start ``i * STAGGER`` s into the flood, so that junk keeps
coming while the month ends.  Rates: the ``RILL_SYBIL_*`` variables below.

The default valid rate (0.3 donors/s per valid Sybil, ~10 valid objects/s in all) keeps
a 2-core machine that hosts all eleven daemons and the Sybils below saturation: each
daemon spends about 8 ms of CPU per valid object it takes in and forwards, so with
``RILL_SYBIL_VALID_RATE=1.0`` the machine runs at ~97 % and honest claims wait in the
daemons' queues (or are dropped by py-libp2p's 32-message outbound queues) behind the
spam: that run measures the machine's capacity more than the gate.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
from attackcost import proc_cpu_s
from attacknet import AttackNet
from forge import forge_settlement, rill_key
from sybilsoak import (
    ROLES,
    DonorPool,
    Sybil,
    dangling,
    forged_batches,
    invalid_messages,
    junk_batches,
    replays,
    valid_donors,
)
from sybilwatch import (
    HonestObjects,
    ObligationPoll,
    arrival,
    ask,
    blocking,
    connect_sybils,
    cpu_busy,
    cut_offs,
    first_seen,
    honest_claims,
    honest_clicks,
    percentile,
    rejections,
    set_clocks,
    settled_at,
    third_party_objects,
)

from rill.protocol.months import month_end, month_start

pytestmark = pytest.mark.soak

N = int(os.environ.get("RILL_SYBIL_NODES", "11"))
#: donors per second per valid Sybil (each: a settlement and 2 sealed claims)
VALID_RATE = float(os.environ.get("RILL_SYBIL_VALID_RATE", "0.3"))
#: messages per second per junk Sybil, by role
JUNK_RATE = {"dangling": float(os.environ.get("RILL_SYBIL_DANGLING_RATE", "40")),
             "replay": float(os.environ.get("RILL_SYBIL_REPLAY_RATE", "40")),
             "invalid": float(os.environ.get("RILL_SYBIL_INVALID_RATE", "100"))}
STAGGER = 6.5            # s between the junk roles of node i and node i+1
MONTH_END_AT = 10        # s into the flood when October ends on the daemons' clocks
GRACE = 60               # the daemons' --grace (tests/procnet.py)
AFTER_SETTLED = 30.0     # s the flood goes on after the last honest settlement
REPLAY_AGAIN_AFTER = 15.0  # s after it the replayers send everything a second time
FILLER = 40              # extra settlement lines of a valid Sybil donor
DEADLINE = 10.0          # s: an honest claim must reach its creator within this
CAP = 1024 * 1024        # [node] disk_cap_mb = 1

PREV, MONTH = "2026-09", "2026-10"
OCT, END = month_start(MONTH), month_end(MONTH)
FLOOD_CLOCK = END - MONTH_END_AT  # the daemons' clocks when the flood starts
SETUP_CLOCK = FLOOD_CLOCK - 60    # ... and before (frozen during the set-up)
#: the flood stops before the daemons' own sync one grace period after settling
FLOOD_MAX = MONTH_END_AT + 2 * GRACE - 10


class Expect:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, ok: object, message: str) -> bool:
        if not ok:
            self.failures.append(message)
        return bool(ok)


def say(text: str) -> None:
    print(text, flush=True)


def chords(names: list[str]) -> list[tuple[str, str]]:
    """Two chords across the ring."""
    n = len(names)
    return [(names[0], names[n // 2]), (names[n // 4], names[(3 * n) // 4])]


# -- the test ----------------------------------------------------------------------------------

async def test_sybil_soak(tmp_path: Path) -> None:
    rnd = random.Random(20261031)
    expect = Expect()
    net = AttackNet(tmp_path, N, SETUP_CLOCK, work_bits=8, disk_cap_mb=1)
    say(f"\nsybil soak: {N} honest daemons, {4 * N} Sybils; output in {tmp_path}")
    t_setup = time.monotonic()
    try:
        await blocking(net.start)
        for a, b in chords(net.names):
            await blocking(net.ctl, a, "connect", timeout=30, addr=net.nodes[b].addr)
        await blocking(honest_clicks, net, OCT)
        pre_held, pre_ids, pre_raws = await third_party_objects(net, rnd, PREV, SETUP_CLOCK)
        say(f"set-up: {N} daemons, {N * (N - 1)} honest clicks, {len(pre_ids)} third-party "
            f"objects held by every node ({time.monotonic() - t_setup:.0f} s)")
        honest_keys = {net.identity(n) for n in net.names}
        creators = sorted(honest_keys)

        t_forge = time.monotonic()
        per_sybil = {PREV: int(VALID_RATE * MONTH_END_AT) + 1,
                     MONTH: int(VALID_RATE * (FLOOD_MAX - MONTH_END_AT)) + 5}
        forged = [{mo: valid_donors(k, mo, creators, 2, FILLER, rnd)
                   for mo, k in per_sybil.items()} for _ in net.names]
        sizes = [len(d.settlement) + sum(map(len, d.sealed.values()))
                 for f in forged for ds in f.values() for d in ds]
        pools = [DonorPool(f, PREV) for f in forged]
        junk = [dangling(int(JUNK_RATE["dangling"] * FLOOD_MAX), PREV, SETUP_CLOCK)
                for _ in net.names]
        bad = [[forge_settlement(rill_key(), PREV, []).settlement for _ in range(10)]
               for _ in net.names]
        say(f"payloads forged in {time.monotonic() - t_forge:.1f} s ({len(sizes)} valid "
            f"donors, {statistics.mean(sizes):,.0f} B each with its sealed claims)")

        async with AsyncExitStack() as stack:
            sybils = await connect_sybils(net, stack)
            say(f"{len(sybils)} Sybils connected "
                f"({sum(len(s.targets) for s in sybils)} connections)")
            before = await blocking(net.counters)
            pids = {n: net.pid(n) for n in net.names}
            cpu0 = {n: proc_cpu_s(p) for n, p in pids.items()}
            me0, busy0 = time.process_time(), cpu_busy()
            poll = ObligationPoll({n: net.nodes[n].home for n in net.names}, MONTH)
            stop = trio.Event()
            samples: dict[str, list[dict[str, int]]] = {n: [] for n in net.names}
            moments: dict[str, float] = {}
            t0, wall0 = trio.current_time(), time.time()

            async def ticker() -> None:
                """The daemons' clocks follow real time from FLOOD_CLOCK (all set at once:
                a daemon slow to answer does not hold the others back)."""
                last = 0
                while True:
                    now = FLOOD_CLOCK + int(trio.current_time() - t0)
                    if now != last:
                        async with trio.open_nursery() as tick:
                            for n in net.names:
                                tick.start_soon(blocking, set_clocks, net, now, [n])
                        last = now
                        if now >= END and "month ended" not in moments:
                            moments["month ended"] = trio.current_time() - t0
                            for p in pools:
                                p.month = MONTH
                    await trio.sleep(0.25)

            async def monitor() -> None:
                while True:
                    for n in net.names:
                        asked = FLOOD_CLOCK + int(trio.current_time() - t0)
                        try:
                            st = await blocking(net.status, n)
                            samples[n].append({
                                **st["store"], "peers": st["peers"],
                                "t": trio.current_time() - t0, "lag": asked - st["now"]})
                        except (OSError, AssertionError, ValueError) as exc:
                            say(f"  status of {n} failed: {exc}")
                    await trio.sleep(1.0)

            async def poller() -> None:
                while True:
                    await blocking(poll.poll, time.time())
                    await trio.sleep(0.1)

            def settled_count() -> int:
                return sum(1 for n in net.names if settled_at(
                    net.nodes[n].log.read_text(errors="replace"), MONTH))

            def start_role(nursery: trio.Nursery, i: int, s: Sybil) -> None:
                signer = s.attacker.signer
                batches: Iterator[Any]
                if s.role == "valid":
                    batches, rate = forged_batches(pools[i].next, signer), 3 * VALID_RATE
                elif s.role == "dangling":
                    batches, rate = junk_batches(junk[i], signer), JUNK_RATE["dangling"]
                elif s.role == "replay":
                    batches = replays(
                        HonestObjects(s.attacker.received, honest_keys, pre_raws),
                        lambda: trio.current_time() - t0 > moments.get("all settled", 1e9)
                        + REPLAY_AGAIN_AFTER)
                    rate = JUNK_RATE["replay"]
                else:
                    rate = JUNK_RATE["invalid"]
                    batches = iter([[msg] for msg in invalid_messages(
                        signer, bad[i], junk[i][:20], int(rate * FLOOD_MAX))])
                start = 0.0 if s.role == "valid" else i * STAGGER
                if rate > 0:  # a rate of 0: the Sybil stays connected and silent
                    nursery.start_soon(s.paced, batches, rate, t0, start, stop)

            async with trio.open_nursery() as nursery:
                for task in (ticker, monitor, poller):
                    nursery.start_soon(task)
                for s in sybils:
                    start_role(nursery, net.names.index(s.home), s)
                await trio.sleep_until(t0 + MONTH_END_AT + GRACE)
                with trio.move_on_after(FLOOD_MAX - MONTH_END_AT - GRACE):
                    while await blocking(settled_count) < N:
                        await trio.sleep(0.5)
                moments["all settled"] = trio.current_time() - t0
                await trio.sleep_until(min(t0 + FLOOD_MAX,
                                           trio.current_time() + AFTER_SETTLED))
                stop.set()
                nursery.cancel_scope.cancel()
            flood_s = trio.current_time() - t0
            busy1, me_cpu = cpu_busy(), time.process_time() - me0
            cpu = {n: proc_cpu_s(p) - cpu0[n] for n, p in pids.items()}
            say(f"flood over after {flood_s:.0f} s; "
                f"{ {k: round(v, 1) for k, v in moments.items()} }")
            await blocking(net.wait_stable, net.names, ("received", "stored"), 3.0, 30)
            after = await blocking(net.counters)
            peers = {n: {r["peer_id"]: r for r in await blocking(ask, net, n, "peers", [])}
                     for n in net.names}
            stores = {n: (await blocking(ask, net, n, "status", {})).get("store", {})
                      for n in net.names}
            await blocking(poll.poll, time.time())

        # delivered by gossip, then with the daemons' own sync two grace periods on
        honest = await blocking(honest_claims, net, MONTH)
        by_gossip = sum(1 for c in honest.values() if first_seen(poll, c) is not None)
        await blocking(set_clocks, net, END + 2 * GRACE + 1)
        with trio.move_on_after(60):
            while not all(first_seen(poll, c) is not None for c in honest.values()):
                await trio.sleep(0.5)
                await blocking(poll.poll, time.time())
        poll.close()

        # -- measurements -----------------------------------------------------------------
        logs = {n: net.nodes[n].log.read_text(errors="replace") for n in net.names}
        published = {sid: at for n in net.names for sid, at in settled_at(logs[n], MONTH).items()}
        latency: dict[str, float | None] = {}
        for cid, c in honest.items():
            t_pub, t_got = published.get(c["settlement"]), arrival(logs[c["creator_name"]], c,
                                                                    poll)
            latency[cid] = None if t_pub is None or t_got is None else t_got - t_pub
        got = sorted(v for v in latency.values() if v is not None)
        within = sum(1 for v in got if v <= DEADLINE)
        late = {f"{honest[cid]['donor']}->{honest[cid]['creator_name']} {cid[:12]}":
                None if v is None else round(v, 2)
                for cid, v in latency.items() if v is None or v > DEADLINE}
        held_now = {n: await blocking(net.object_ids, n) for n in net.names}
        evicted = {n: sorted(o.hex()[:12] for o in pre_held[n] - held_now[n])
                   for n in net.names}
        max_relay = {n: max((s["relay_bytes"] for s in samples[n]), default=0)
                     for n in net.names}
        sent = {r: sum(s.tally.sent for s in sybils if s.role == r) for r in ROLES}
        refused = {r: sum(s.tally.refused for s in sybils if s.role == r) for r in ROLES}
        stalled = {r: sum(s.tally.stalled for s in sybils if s.role == r) for r in ROLES}
        per_second: Counter[int] = Counter()
        for s in sybils:
            per_second.update(s.tally.per_second)
        cut = cut_offs(sybils, peers)
        busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        deltas = {n: {k: after[n].get(k, 0) - before[n].get(k, 0)
                      for k in ("received", "accepted", "ignored", "rejected", "duplicates",
                                "stored", "evicted", "dropped")} for n in net.names}

        # -- summary ----------------------------------------------------------------------
        total = sum(sent.values())
        say(f"\n== Sybil soak: {N} honest daemons, {len(sybils)} Sybils (4 per node, 2 "
            f"connections each), flood {flood_s:.0f} s ==")
        say(f"Sybil messages written: {total:,} ({total / flood_s:,.0f}/s on average, peak "
            f"{max(per_second.values(), default=0):,} in one second); by role {sent}; "
            f"writes refused after a cut-off {refused}; writes stalled (connection up, "
            f"stream retried) {stalled}")
        buckets = [sum(per_second[t] for t in range(b, b + 5))
                   for b in range(0, int(flood_s) + 1, 5)]
        say(f"Sybil messages per 5 s of the flood: {buckets}")
        say(f"valid Sybil donors: {sum(p.used[PREV] for p in pools)} for {PREV}, "
            f"{sum(p.used[MONTH] for p in pools)} for {MONTH}, each a settlement and 2 "
            f"sealed claims ({statistics.mean(sizes):,.0f} B)")
        say(f"CPU during the flood: machine {100 * busy:.0f}% of {os.cpu_count()} cores; "
            f"daemons {sum(cpu.values()):.1f} CPU-s in all (per node "
            f"{ {n: round(v, 1) for n, v in cpu.items()} }); test process (Sybils, "
            f"polls) {me_cpu:.1f} CPU-s")
        if got:
            say(f"honest claims: {len(honest)}; held by their creator before the sync "
                f"{by_gossip}; within {DEADLINE:.0f} s: {within} "
                f"({100 * within / len(honest):.1f}%); latency median "
                f"{statistics.median(got):.2f} s, p99 {percentile(got, 0.99):.2f} s, max "
                f"{got[-1]:.2f} s; never: {len(honest) - len(got)}")
        peer_range = {n: (min(x["peers"] for x in v), max(x["peers"] for x in v))
                      for n, v in samples.items() if v}
        say(f"daemon clock lag behind the flood's clock (s): max "
            f"{max((x['lag'] for v in samples.values() for x in v if x['t'] > 5), default=0)};"
            " gossip "
            f"peers min/max per node {peer_range}")
        say(f"settled (s into the flood): "
            f"{sorted(round(t - wall0, 1) for t in published.values())}")
        say(f"late or missing claims: {late}")
        for n in net.names:
            say(f"  {n}: {deltas[n]} relay {stores[n].get('relay_bytes', 0):,}/"
                f"{stores[n].get('cap_bytes', 0):,} (max sampled {max_relay[n]:,}); "
                f"rejections {dict(rejections(logs[n]))}")
        say(f"Sybils per node (role@home): {json.dumps(cut)}")
        for s in sybils:
            if s.role != "valid" and s.tally.started is not None and any(
                    cut[t][f"{s.role}@{s.home}"] == "connected" for t in s.targets):
                say(f"  {s.role}@{s.home} {str(s.attacker.peer_id)[-8:]}: started "
                    f"{s.tally.started}, sent {s.tally.sent}, stalled {s.tally.stalled}, "
                    f"refused {s.tally.refused}, cut {s.tally.cut}; rows "
                    f"{[peers[t].get(str(s.attacker.peer_id)) for t in s.targets]}")

        # -- demands ----------------------------------------------------------------------
        expect(len(honest) == N * (N - 1), f"{len(honest)} honest claims, not {N * (N - 1)}")
        expect(honest and within >= 0.99 * len(honest),
               f"only {within}/{len(honest)} honest claims reached their creator within "
               f"{DEADLINE:.0f} s: {late}")
        expect(len(got) == len(honest),
               f"{len(honest) - len(got)} honest claims never arrived, even after the sync")
        expect(not any(evicted.values()), f"honest objects evicted: {evicted}")
        for n in net.names:
            expect(max_relay[n] <= CAP and stores[n].get("relay_bytes", 0) <= CAP,
                   f"{n}: relay store over its cap: max sampled {max_relay[n]:,}, now "
                   f"{stores[n]}")
            expect(deltas[n]["evicted"] > 0,
                   f"{n} evicted nothing: the cap was not under pressure (test premise)")
            expect("Traceback" not in logs[n], f"{n} logged a traceback")
        for problem in await blocking(net.alive_problems):
            expect(False, problem)
        for n, roles in cut.items():
            for key, state in roles.items():
                valid = key.startswith("valid@")
                expect(valid != state.startswith("cut"),
                       f"{n}: the Sybil {key} is {state} (want: "
                       f"{'connected' if valid else 'cut off'})")
    finally:
        codes = await blocking(net.stop)
    expect(set(codes.values()) <= {0}, f"exit codes on SIGTERM: {codes}")
    assert not expect.failures, "\n  - " + "\n  - ".join(expect.failures)
