"""The periodic sync + reconciliation round's policy (SPEC §11.4 "The periodic round"):
which peers one round asks, and when the next round is due.  Pure: times are given
(trio.current_time()), randomness is passed in; the I/O is in node/syncing.py.

Why: a round with every peer cost ~1 KB per peer on a network that already agrees, ~39 MB
per node per month at one round per 10 minutes (docs/SCALE.md), most of a 50 MB/month
budget before any real traffic.  So a periodic round asks only a few peers, rotating
through all of them, and waits longer after each round that found nothing new.  The full
round (every peer) stays where something is likely missing: on connect to a new peer,
after month end, when a full disk has room again.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

P = TypeVar("P", bound=Hashable)


@dataclass
class RoundPacer:
    """When the next periodic round is due: ``base`` seconds after a round that found
    something new (or after :meth:`reset`), doubling after each round that found nothing
    up to ``cap``."""

    base: float
    cap: float
    interval: float = field(init=False)
    #: when the next round is due (trio.current_time() seconds)
    due: float = 0.0
    #: rounds run, and of those the ones that found nothing new in a row
    rounds: int = 0
    quiet: int = 0

    def __post_init__(self) -> None:
        self.cap = max(self.cap, self.base)
        self.interval = self.base

    def start(self, now: float) -> None:
        self.interval = self.base
        self.due = now + self.base

    def after_round(self, new: int, now: float) -> None:
        """A round ended having stored ``new`` objects: back to the base interval if it
        found any, else twice the last interval, at most ``cap``."""
        self.rounds += 1
        if new:
            self.quiet = 0
            self.interval = self.base
        else:
            self.quiet += 1
            self.interval = min(self.cap, self.interval * 2)
        self.due = now + self.interval

    def reset(self, now: float) -> bool:
        """Something may be missing (a new peer, month end, a full disk with room again):
        the interval is the base again and the next round at most ``base`` away.  Returns
        whether the next round moved earlier."""
        self.interval = self.base
        self.quiet = 0
        if self.due > now + self.base:
            self.due = now + self.base
            return True
        return False


def pick_peers(peers: Iterable[P], k: int, last_asked: Mapping[P, float],
               shards_of: Mapping[P, frozenset[int]], rng: random.Random) -> list[P]:
    """The peers one periodic round asks: at most ``k`` (``k`` <= 0: all of them).

    Least recently asked first (never asked: first of all; ties in random order), so with
    ``n`` peers every one is asked within ceil(n / k) rounds.  With shards, ``shards_of``
    gives the node's shards each peer is subscribed to: peers are taken first so that each
    of the node's shards that some peer shares is covered, then peers sharing any shard,
    then the rest."""
    order = list(peers)
    if k <= 0 or len(order) <= k:
        return order
    rng.shuffle(order)  # the tie break; sort is stable
    order.sort(key=lambda p: last_asked.get(p, float("-inf")))
    picked: list[P] = []
    covered: set[int] = set()
    for p in order:  # cover the shards
        if len(picked) == k:
            return picked
        if shards_of.get(p, frozenset()) - covered:
            picked.append(p)
            covered |= shards_of[p]
    for sharing in (True, False):  # then fill
        for p in order:
            if len(picked) == k:
                return picked
            if p not in picked and bool(shards_of.get(p)) is sharing:
                picked.append(p)
    return picked
