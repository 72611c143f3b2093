"""Partition and heal with the peer blocklist (issue 14, item 4): `rill node run` daemons on
127.0.0.1 split in two groups by `rill peers block` across a month end, then healed by
`rill peers unblock` (scenario in tests/partition.py)."""

from __future__ import annotations

from pathlib import Path

import partition
import pytest


def test_two_by_two_split_across_month_end_then_heal(tmp_path: Path) -> None:
    """4 daemons, 2/2: each side settles and holds only its side's objects; within 60 s of
    the heal every node holds the same settlements and sealed claims (by ID), every
    creator every claim to it, and nothing was taken for an equivocation.  The split
    outlasts GossipSub's replay window (6 s), so the heal rests on sync and republish."""
    figures = partition.run(tmp_path, 2, note=print)
    print("partition 2/2:", figures)
    assert figures["objects"] == 2 * (1 + 2)  # 2 donors: a settlement + 2 sealed claims
    assert "blocked" in figures["refusal"], figures["refusal"]


@pytest.mark.soak
def test_five_by_five_split_across_month_end_then_heal(tmp_path: Path) -> None:
    """The issue's size: 10 daemons, 5/5 (3 donors and 2 creators a side), split for
    longer than GossipSub's seen cache remembers (121 real seconds)."""
    figures = partition.run(tmp_path, 5, split_real_s=partition.SEEN_TTL_S, note=print)
    print("partition 5/5:", figures)
    assert figures["objects"] == 6 * (1 + 4)
