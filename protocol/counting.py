"""What a donor's click log says about one month (SPEC.md §6.2).

Pure: given the log's entries (already verified) and a month, compute the
budget in force, the things that count (one flattr per thing per month) and
the creator of each: the key of the thing's verified site when ``resolve`` knows
one (it wins over the log), else the one the log names.  Anyone holding a donor's
log and the same verified key documents can recompute a settlement from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

from . import keys
from .messages import ZERO_HASH, ClickEntry, Signed
from .months import month_end, month_of, month_start, months_between, next_month


class LogEntry(NamedTuple):
    """What counting needs of one click-log entry: its ID and its body's fields.

    Lighter than a :class:`~rill.protocol.messages.Signed` click entry (a stored log
    of 100,000 entries is read this way before every settlement).
    """

    id: bytes
    seq: int
    time: int
    kind: str
    thing: str | None
    creator: bytes | None
    months: int | None
    amount: int | None
    currency: str | None

    @classmethod
    def of(cls, entry: Signed[ClickEntry]) -> LogEntry:
        b = entry.body
        return cls(entry.id, b.seq, b.time, b.kind, b.thing, b.creator, b.months, b.amount,
                   b.currency)

    @property
    def target(self) -> str | None:
        """The thing, or for an entry naming only a creator, its ``did:key`` (SPEC §6.2)."""
        if self.thing is not None:
            return self.thing
        if self.creator is not None:
            return keys.did_from_key(self.creator)
        return None


@dataclass(frozen=True)
class MonthView:
    month: str
    #: Budget in force at the end of the month (minor units) and its currency;
    #: ``None`` when the log never set a budget before the month ended.
    budget: int | None
    currency: str | None
    #: Every thing that counts, mapped to its creator key, or ``None`` (pending).
    things: dict[str, bytes | None] = field(default_factory=dict)
    #: ID of the last entry, in log order, whose time falls before the month's end.
    head: bytes = ZERO_HASH
    #: Things whose creator named in the log was overridden by ``resolve`` (a verified
    #: site's key): thing -> the creator the log named.
    overridden: dict[str, bytes] = field(default_factory=dict)

    @property
    def known(self) -> dict[str, bytes]:
        """Things whose creator is known: the ones a settlement splits the budget over."""
        return {t: c for t, c in self.things.items() if c is not None}

    @property
    def pending(self) -> list[str]:
        return sorted((t for t, c in self.things.items() if c is None),
                      key=lambda t: t.encode("utf-8"))


_TIME_SEQ = itemgetter(2, 1)  # (time, seq) of a LogEntry


def count_month(
    entries: Iterable[LogEntry | Signed[ClickEntry]],
    month: str,
    resolve: Callable[[str], bytes | None] | None = None,
) -> MonthView:
    """Apply SPEC §6.2 to the log ``entries`` (in log order) for ``month``.

    ``resolve`` gives the creator of a thing from a verified key document (the
    document its origin publishes, SPEC §6.2 step 5), or ``None``.  It is asked for
    every thing, and its answer wins over a creator named in the log: a thing on a
    verified site belongs to that site's key, whatever a click or subscription said.
    Things it does not know keep the log's creator, or stay pending.
    """
    start, end = month_start(month), month_end(month)
    head = ZERO_HASH
    relevant: list[LogEntry] = []
    for x in entries:
        e = x if isinstance(x, LogEntry) else LogEntry.of(x)
        if e.time < end:
            head = e.id
            relevant.append(e)
    relevant.sort(key=_TIME_SEQ)

    budget: int | None = None
    currency: str | None = None
    clicks: dict[str, bytes | None] = {}
    subs: dict[str, tuple[bytes | None, str, int | None]] = {}
    for b in relevant:
        kind = b.kind
        if kind == "click":  # a click always names its thing: its target
            if b.time >= start and b.thing is not None and clicks.get(b.thing) is None:
                clicks[b.thing] = b.creator
            continue
        target = b.target
        if kind == "budget":
            budget, currency = b.amount, b.currency
        elif kind == "subscribe" and target is not None:
            subs[target] = (b.creator, month_of(b.time), b.months)
        elif kind == "unsubscribe" and target is not None:
            subs.pop(target, None)

    things = dict(clicks)
    for target, (creator, first, n) in subs.items():
        offset = months_between(first, month)
        if offset < 0 or (n is not None and offset >= n):
            continue
        if things.get(target) is None:
            things[target] = creator
    overridden: dict[str, bytes] = {}
    if resolve is not None:
        for t, c in things.items():
            verified = resolve(t)
            if verified is None:
                continue
            if c is not None and c != verified:
                overridden[t] = c
            things[t] = verified
    return MonthView(month, budget, currency, things, head, overridden)


def subscription_months(first: str, n: int) -> list[str]:
    """The months a subscription made in ``first`` for ``n`` months covers."""
    out = [first]
    while len(out) < n:
        out.append(next_month(out[-1]))
    return out
