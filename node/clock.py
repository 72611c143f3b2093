"""Clocks for the daemon.  The node never calls time.time() outside this module.

* :class:`WallClock` -- real time.
* :class:`ManualClock` -- time moves only when told (``set``/``advance``); sleepers
  wake as soon as their deadline is reached.  Tests run a month in milliseconds.
* :class:`FastClock` -- real time sped up ``rate`` times from a chosen start
  (``rill node run --clock fast:START:RATE``), for demos and multi-process tests.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import trio

from ..protocol.months import month_end, parse_time

#: The last second a node can live in: the end of the last month the protocol knows
#: (SPEC §5, months up to 9999-12).
LATEST = month_end("9999-12") - 1


class Clock(Protocol):
    def now(self) -> int: ...

    async def sleep_until(self, t: int) -> None: ...

    def describe(self) -> str: ...


class WallClock:
    #: Re-check the wall clock at least this often (it may jump: NTP, suspend).
    MAX_NAP = 60.0

    def now(self) -> int:
        return int(time.time())

    async def sleep_until(self, t: int) -> None:
        while (left := t - time.time()) > 0:
            await trio.sleep(min(left, self.MAX_NAP))

    def describe(self) -> str:
        return "wall"


class ManualClock:
    def __init__(self, start: int) -> None:
        self._now = start
        self._changed = trio.Event()

    def now(self) -> int:
        return self._now

    def set(self, t: int) -> None:
        if type(t) is not int or not 0 <= t <= LATEST:
            raise ValueError(f"a manual clock runs from 0 to {LATEST} (the last month Rill "
                             "can settle), not " + repr(t))
        if t < self._now:
            raise ValueError("a manual clock does not go back")
        self._now = t
        self._changed.set()
        self._changed = trio.Event()

    def advance(self, seconds: int) -> None:
        self.set(self._now + seconds)

    async def sleep_until(self, t: int) -> None:
        while self._now < t:
            await self._changed.wait()

    def describe(self) -> str:
        return "manual"


class FastClock:
    def __init__(self, start: int, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.start, self.rate = start, rate
        self._t0 = time.monotonic()

    def now(self) -> int:
        return self.start + int((time.monotonic() - self._t0) * self.rate)

    async def sleep_until(self, t: int) -> None:
        while (left := t - self.now()) > 0:
            await trio.sleep(max(0.001, left / self.rate))

    def describe(self) -> str:
        return f"fast (x{self.rate:g} from {_iso(self.start)})"


def _iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def parse_clock(spec: str) -> Clock:
    """``wall``, ``manual:START`` or ``fast:START:RATE``; START is Unix seconds or ISO 8601
    (``manual:2026-10-01T00:00:00Z``)."""
    kind, _, rest = spec.partition(":")
    bad = ValueError(f"bad clock {spec!r}: use wall, manual:START or fast:START:RATE "
                     "(START: Unix seconds or ISO 8601)")
    try:
        if spec == "wall":
            return WallClock()
        if kind == "manual" and rest:
            start = parse_time(rest)
            if 0 <= start <= LATEST:
                return ManualClock(start)
        if kind == "fast" and ":" in rest:
            first, _, rate_text = rest.rpartition(":")
            start, rate = parse_time(first), float(rate_text)
            if math.isfinite(rate) and 0 <= start <= LATEST and rate > 0:
                return FastClock(start, rate)
    except ValueError:
        raise bad from None
    raise bad
