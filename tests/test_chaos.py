"""A long run with invariants (issue 14, item 5): `rill node run` daemons with manual
clocks live through simulated months under restarts, kill -9, power cuts (LazyFS) and
partitions, and a checker asserts the invariants after every month (the driver:
tests/chaos.py; the network: chaosnet.py; one month: chaosmonth.py; the checker:
chaoscheck.py; power cuts: chaospower.py), with shards on or off.  The table and every
daemon's log are
kept under tests/artifacts/chaos/.  Where LazyFS is absent the runs go on without power
cuts, and the test is reported skipped with the reason once everything else passed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import chaos
import pytest
from lazyfs import find_lazyfs


def test_chaos_slice_two_months_four_daemons(tmp_path: Path) -> None:
    """2 months, 4 daemons (2 donors, 2 creators), every fault kind once: a graceful
    restart and a partition across the first month end, a kill -9 mid-month, a power cut
    of a daemon whose database is on LazyFS and a kill -9 of a donor as its settlement
    falls due in the second; the invariants hold after both."""
    _, no_lazyfs = find_lazyfs()
    rows, violations = chaos.run(tmp_path, 4, 2, every_kind=True, power=1,
                                 artifacts=chaos.ARTIFACTS / "slice")
    print("\n" + chaos.table(rows))
    assert not violations, violations
    kinds = " ".join(f for r in rows for f in r.faults)
    for kind in ("restart", "kill-9:", "kill-9@settle", "partition"):
        assert kind in kinds, kinds
    assert all(r.invariants == "ok" for r in rows)
    if no_lazyfs:
        pytest.skip(f"every invariant held, but without power cuts: {no_lazyfs}")
    assert "power-cut:" in kinds, kinds


@pytest.mark.soak
def test_chaos_slice_sharded(tmp_path: Path) -> None:
    """The slice with shards on: 2 months, 6 daemons with ``[network] shard_bits = 2``,
    every fault kind once; each node must hold the month's settlements and sealed claims
    placed in its shards or concerning it, and none of the others."""
    _, no_lazyfs = find_lazyfs()
    rows, violations = chaos.run(tmp_path, 6, 2, every_kind=True, power=1, shard_bits=2,
                                 artifacts=chaos.ARTIFACTS / "slice-sharded")
    print("\n" + chaos.table(rows))
    assert not violations, violations
    assert all(r.invariants == "ok" for r in rows)
    if no_lazyfs:
        pytest.skip(f"every invariant held, but without power cuts: {no_lazyfs}")
    assert "power-cut:" in " ".join(f for r in rows for f in r.faults)


@pytest.mark.soak
def test_chaos_soak_twelve_months_ten_daemons(tmp_path: Path) -> None:
    """12 simulated months (RILL_CHAOS_MONTHS) on 10 daemons (RILL_CHAOS_NODES), random
    faults each month (RILL_CHAOS_SEED), the invariants checked after every month;
    RILL_CHAOS_SHARD_BITS=b runs every daemon with ``[network] shard_bits = b`` and checks
    the sharded invariants (SPEC §11.6)."""
    months = int(os.environ.get("RILL_CHAOS_MONTHS", "12"))
    n = int(os.environ.get("RILL_CHAOS_NODES", "10"))
    seed = int(os.environ.get("RILL_CHAOS_SEED", "14"))
    power = int(os.environ.get("RILL_CHAOS_POWER", "3"))  # daemons on LazyFS
    bits = int(os.environ.get("RILL_CHAOS_SHARD_BITS", "0"))
    _, no_lazyfs = find_lazyfs()
    dest = chaos.ARTIFACTS / time.strftime(f"soak{f'-b{bits}' if bits else ''}-%Y%m%dT%H%M%SZ",
                                           time.gmtime())
    rows, violations = chaos.run(tmp_path, n, months, seed=seed, artifacts=dest,
                                 power=power, shard_bits=bits)
    print("\n" + chaos.table(rows))
    print(f"artefacts: {dest}")
    for v in violations:
        print("violation:", v)
    assert len(rows) == months
    if violations and all(chaos.RECEIPT_LOST in v for v in violations):
        # a known, open bug: a receipt whose gossip is missed (published right after a
        # heal or restart, before the receipts mesh formed) is not recovered by the sync
        # after the next month end either; every other invariant held
        pytest.xfail(f"known bug, open: {len(violations)} x {chaos.RECEIPT_LOST}")
    assert not violations, violations
    if no_lazyfs and power:
        pytest.skip(f"every invariant held, but without power cuts: {no_lazyfs}")


def test_a_bootstrap_peer_that_restarts_is_dialled_again(tmp_path: Path) -> None:
    """Found by the chaos run: B bootstraps to A; A is killed (SIGKILL), stays down while
    one of B's dials fails, and is started again with no bootstrap of its own.  B dials
    it again within seconds (before the fix: never, so A stayed alone for good and a
    network's first node was cut off by its own restart; with the first fix alone, only
    after py-libp2p's 60 s negative cache of failed peers expired)."""
    from clitools import fast_home
    from partition import wait_until
    from procnet import ProcNode

    from rill.node import control

    a, b = ProcNode(tmp_path, "a", chaos.month_start("2026-10")), \
        ProcNode(tmp_path, "b", chaos.month_start("2026-10"))
    fast_home(a.home, "a")
    fast_home(b.home, "b")

    def peers(n: ProcNode) -> int:
        return len(control.call(n.home / control.SOCKET_NAME, "peers", 30))

    try:
        a.start([])
        a.wait_started()
        b.start([a.addr])
        b.wait_started()
        wait_until(lambda: peers(a) == 1 and peers(b) == 1, 30, "the first connection")
        assert a.proc is not None
        a.proc.kill()
        a.proc.wait(30)
        a.proc = None
        wait_until(lambda: peers(b) == 0, 30, "b to see a gone")
        # a is down long enough for a dial to fail: py-libp2p then refuses to dial it for
        # 60 s (its negative cache) unless the redial clears that
        wait_until(lambda: "redialling bootstrap peer" in b.log.read_text(), 30,
                   "a failed redial")
        a.start([])
        a.wait_started()
        took = wait_until(lambda: peers(a) == 1 and peers(b) == 1, 30,
                          "b to dial its restarted bootstrap peer again")
        print(f"reconnected {took:.1f} s after the restart")
    finally:
        codes = [a.stop(), b.stop()]
    assert codes == [0, 0]
