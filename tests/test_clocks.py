"""Clocks up to ±10 minutes apart and a node asleep across month end (issue 14, item 3):
`rill node run` daemons on 127.0.0.1 with manual clocks (scenario in tests/clocks.py)."""

from __future__ import annotations

from pathlib import Path

import clocks
import partition
import pytest


def test_skewed_clocks_and_a_frozen_node_across_month_ends(tmp_path: Path) -> None:
    """4 daemons at +10, +4, -3 and -10 minutes, each a donor and a creator.  October:
    each settlement is taken at first sight exactly by the nodes less than 6 minutes
    (grace + skew) behind its donor, ignored as future by the others, who get it by the
    sync after settling; the first republish brings every sealed claim everywhere.
    November: one node is frozen (SIGSTOP) before the month ends and woken 3 days later:
    it settles November once, everyone takes its late settlement, and it gets every claim
    to it by sync.  No settlement twice, no equivocation, nothing rejected."""
    figures = clocks.run(tmp_path, [600, 240, -180, -600], sleeper=1, note=print)
    print("clocks:", figures)
    first = figures["first_sight"]
    # 600 -> 240 is 360 s behind: still taken; 240 -> -180 is 420 s: ignored
    assert first["n0p600->n1p240"] is True and first["n1p240->n2m180"] is False
    assert first["n2m180->n0p600"] is True


@pytest.mark.soak
def test_seven_skewed_clocks_and_a_node_restarted_days_later(tmp_path: Path) -> None:
    """7 daemons spread over ±10 minutes; the sleeper is stopped before November ends and
    started again on its home 4 days later.  Not a full mesh: a node gets what its
    neighbours refused at first sight from the donors' republish, once GossipSub's seen
    caches forgot the first flood (200 real seconds before each republish: with
    121 s, late duplicates had refreshed some entries and a few sealed claims stayed away)."""
    figures = clocks.run(tmp_path, [600, 420, 240, 0, -180, -360, -600], sleeper=3,
                         sleep="restart", days=4, cache_s=partition.SEEN_TTL_S + 80,
                         note=print)
    print("clocks (7, restart):", figures)
