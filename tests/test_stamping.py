"""The month's proof of work found during the month (node/stamping.py): once the month
has a budget, in a worker thread, so settling at month end hashes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from helpers import signing_key
from nodes import eventually, make_home, network

from rill.node.stamping import stamp_job
from rill.protocol.months import month_end, month_start
from rill.protocol.work import NETWORK_WORK_BITS, find_work, work_bits
from rill.wallet.wallet import Wallet

MONTH = "2026-10"
MID = month_start(MONTH) + 10 * 86400


def test_a_stamp_is_asked_only_for_a_month_with_a_budget_not_yet_settled(
        tmp_path: Path) -> None:
    w = Wallet.open(make_home(tmp_path, "a"))
    try:
        assert stamp_job(w, MONTH) is None  # no budget
        w.set_budget(500, "EUR", MID)
        job = stamp_job(w, MONTH)
        assert job == (w.identity, MONTH, NETWORK_WORK_BITS)
        cfg = tmp_path / "a" / "config.toml"
        asked = cfg.read_text()
        cfg.write_text(asked.replace("work_bits = 20", "work_bits = 0"))
        assert stamp_job(w, MONTH) is None  # no work asked
        cfg.write_text(asked)
        w.click("https://example.org/a", MID + 1, creator=signing_key("c").verify_key.encode())
        w.settle(MONTH, month_end(MONTH) + 1)
        assert stamp_job(w, MONTH) is None  # settled
    finally:
        w.close()


async def test_the_daemon_finds_the_stamp_ahead_and_settling_only_looks_it_up(
        tmp_path: Path) -> None:
    async with network(tmp_path, MID) as net:
        make_home(tmp_path, "a")
        w = net.wallet("a")
        try:
            w.set_budget(500, "EUR", MID)
        finally:
            w.close()
        find_work.cache_clear()
        d = await net.start("a")
        assert not d.stamped  # nothing hashed in the daemon's first minute...
        d.wake_stamp()  # ...unless a budget was just set
        await eventually(lambda: MONTH in d.stamped, 60, what="the stamp found")
        info = find_work.cache_info()
        assert info.misses == 1
        result, new = await d.db(d.wallet.settle, MONTH, month_end(MONTH) + 61)
        assert new
        after = find_work.cache_info()
        assert after.misses == 1 and after.hits > info.hits  # looked up, not hashed again
        s = result.settlement.body
        assert work_bits(d.identity, MONTH, s.work) >= NETWORK_WORK_BITS


async def test_a_failure_finding_the_stamp_ahead_never_stops_the_daemon(
        tmp_path: Path, monkeypatch: Any) -> None:
    from rill.node import stamping
    calls: list[str] = []

    def broken(w: Wallet, month: str) -> None:
        calls.append(month)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(stamping, "stamp_job", broken)
    async with network(tmp_path, MID) as net:
        d = await net.start("a")
        d.wake_stamp()
        await eventually(lambda: calls, 10, what="the stamp looked for")
        d.wake_stamp()  # and again: the task is still there
        await eventually(lambda: len(calls) == 2, 10, what="the stamp looked for again")
        assert d.p2p is not None and not d.stamped
