"""Months a node slept through until they left the gossip window (a mixin of
:class:`rill.node.daemon.Daemon`; SPEC §11.2 "Clocks", §13 "Old months travel by hand").

A donor's node settles each ended month one grace period after it ended, and on waking
every ended month with a budget that it has not settled yet.  Settlements are made in
month order (the wallet refuses a month once a later one is settled), so a month that
left the acceptance window (the current month and the 3 before it) while the node was
off is settled too, first -- else it could never be -- but here only: every other node
would refuse it as ``outside-window``, so it is not published.  The node logs each such
month once (WARNING) with what to do, and ``rill node status`` (``status`` →
``held_back``) lists every settlement made outside the window whose claims are not all
receipted yet: those reach their creators only as files the user hands over.
"""

from __future__ import annotations

import logging
from typing import Any

from ..protocol.counting import count_month
from ..protocol.months import month_end, month_of, months_back, next_month

log = logging.getLogger("rill.node")

#: How many months before the window's oldest are looked at.
LOOKBACK = 12

ADVICE = ("`rill settle --month {month} --out DIR` writes its settlement and each "
          "creator's sealed claim: send each creator its files (they run `rill "
          "import-object`), pay as usual (`rill due`), and take in the receipts they send "
          "back with `rill import-object`")


def missed_months(wallet: Any, oldest: str, lookback: int = LOOKBACK) -> list[str]:
    """In a worker thread: the ended months before ``oldest`` (the window's first) that
    have a budget and something to pay for and are not settled, oldest first."""
    settled = set(wallet.settled_months())
    later = max(settled, default="")
    out = []
    mo = months_back(oldest, lookback)
    while mo < oldest:
        if mo not in settled and mo > later:
            view = count_month(wallet.entries(before=month_end(mo)), mo)
            if view.budget and view.known:
                out.append(mo)
        mo = next_month(mo)
    return out


def held_back(wallet: Any, now: int, window_months: int,
              lookback: int = LOOKBACK) -> list[dict[str, Any]]:
    """In a worker thread: our settlements signed when their month was already outside
    the window (they never travelled) whose claims are not all receipted, oldest first."""
    out = []
    floor = months_back(month_of(now), window_months + lookback)
    for month, received in wallet.db.execute(
            "SELECT s.month, o.received FROM settled s JOIN objects o ON o.id = s.settlement "
            "ORDER BY s.month").fetchall():
        if month < floor or month >= months_back(month_of(received), window_months):
            continue
        n, amount, currency = wallet.db.execute(
            "SELECT count(*), sum(amount), max(currency) FROM obligations WHERE "
            "direction = 'out' AND month = ? AND state != 'receipted'", (month,)).fetchone()
        if n:
            out.append({"month": month, "claims": n, "amount": amount, "currency": currency,
                        "advice": ADVICE.format(month=month)})
    return out


class Sleepers:
    _looked_for: tuple[str, int] | None = None

    async def _months_outside(self, oldest: str, settled: int) -> list[str]:
        """The months to settle here only before the window's (looked for once per window
        and number of settled months)."""
        if self._looked_for == (oldest, settled):
            return []
        self._looked_for = (oldest, settled)
        return list(await self.db(missed_months, self.wallet, oldest))  # type: ignore[attr-defined]

    def _settled_outside(self, month: str, oldest: str, claims: int) -> None:
        log.warning("%s settled here only (%d claim(s)): it left the gossip window (from %s) "
                    "while this node was off, so the network would refuse it and it is not "
                    "published. To have it paid: %s.", month, claims, oldest,
                    ADVICE.format(month=month))
