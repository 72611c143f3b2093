"""The daemon at month end: settle each ended month one grace period later, publish,
republish unreceipted claims with backoff, and attribute clicks through the
creators' sites (a mixin of :class:`rill.node.daemon.Daemon`)."""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..protocol import keys
from ..protocol import messages as m
from ..protocol.errors import RillError
from ..protocol.months import month_end, month_of, previous_month
from ..protocol.network import months_back
from ..wallet.errors import DiskFull, WalletError
from .settling import check_sites

log = logging.getLogger("rill.node")


class MonthEnd:
    async def _month_end(self) -> None:
        """Settle every ended month that has a budget, then sleep until the next one.

        One grace period later, pull from every peer: whatever gossip missed (a peer's
        clock still in the old month, a restart) arrives by sync.
        """
        synced_after: set[str] = set()
        while True:
            now = self.clock.now()
            month = previous_month(month_of(now))
            if now >= month_end(month) + self.config.grace:
                await self._settle_due(month)
            if now >= month_end(month) + 2 * self.config.grace and month not in synced_after:
                synced_after.add(month)
                await self._sync_all()
            await self._republish_due()
            due = month_end(month_of(now)) + self.config.grace
            if now < month_end(month) + self.config.grace:
                # the month just ended: wake for its settlement, not only for its sync
                due = min(due, month_end(month) + self.config.grace)
            if month not in synced_after:
                due = min(due, month_end(month) + 2 * self.config.grace)
            if self._republish:
                due = min(due, min(t for _, t in self._republish.values()))
            with trio.move_on_after(60):  # re-check now and then (clock may be manual)
                await self.clock.sleep_until(due)

    async def resolve_pending(self, month: str) -> int:
        """Fetch the key documents of the sites of the month's things (those not checked
        lately), so their clicks count and a verified site's key wins over a creator a
        click named (SPEC §6.2 step 5); return how many sites verified."""
        origins = await self.db(self.wallet.sites_to_check, month, self.clock.now())
        results: list[dict[str, Any]] = []
        try:
            results = await check_sites(self.wallet, origins, self.clock.now(),
                                        allow_http=self.config.allow_http, db=self.db,
                                        clock=self.clock.now)
        except* DiskFull as group:  # the verdicts could not be recorded: checked again later
            self._disk_full(group.exceptions[0])
        for r in results:  # listings that waited for a verified creator's key document
            if r["valid"] and r["creator"]:
                await self._adopt_listings(keys.key_from_did(r["creator"]))
        return sum(r["valid"] for r in results)

    async def _resolver(self) -> None:
        """Attribute pending clicks in the background (and right before month end)."""
        while True:
            await self.resolve_pending(month_of(self.clock.now()))
            await trio.sleep(self.config.resolve_interval)

    async def _settle_due(self, month: str) -> None:
        settled = set(await self.db(self.wallet.settled_months))
        if month not in settled:
            await self.resolve_pending(month)
        # the window is counted from the current month (SPEC §11.2), not the ended one:
        # a month older than that would be refused by every node as outside-window
        oldest = months_back(month_of(self.clock.now()), self.config.window_months)
        # months that left the window while the node was off: settled first (settlements
        # go in month order) but kept here (node/sleepers.py)
        outside = await self._months_outside(oldest, len(settled))
        candidates = []
        m_ = month
        while m_ >= oldest and m_ not in settled:
            candidates.append(m_)
            m_ = previous_month(m_)
        for mo in [*outside, *reversed(candidates)]:
            if await self.db(self.wallet.budget, mo) is None:
                continue
            try:
                result, new = await self.db(self.wallet.settle, mo, self.clock.now())
            except (WalletError, RillError) as exc:
                if isinstance(exc, DiskFull):  # tried again at the next wake-up (<= 60 s)
                    self._disk_full(exc)
                log.error("cannot settle %s: %s", mo, exc)
                continue
            if new:
                self.hooks.poke()  # a month_settled event
                self.counters["settled"] += 1
                log.info("settled %s: %s, %d claim(s)", mo, result.settlement.id_hex,
                         len(result.claims))
            if mo < oldest:
                if new:
                    self._settled_outside(mo, oldest, len(result.claims))
                continue
            for raw in (result.settlement.raw, *(s.raw for s in result.sealed)):
                await self._publish_quietly(raw)
            self._republish[result.settlement.id] = (0, self.clock.now()
                                                     + self.config.republish[0])

    async def _republish_due(self) -> None:
        now = self.clock.now()
        pending = {sid: (month, raw, sealed) for month, raw, sealed in
                   await self.db(self.wallet.unreceipted)
                   for sid in [m.decode(raw, m.Settlement).id]}
        for sid in list(self._republish):
            if sid not in pending:
                del self._republish[sid]  # everything receipted
        for sid, (attempt, due) in list(self._republish.items()):
            if now < due:
                continue
            _month, raw, sealed = pending[sid]
            log.info("republishing %d unreceipted claim(s) of %s (attempt %d)", len(sealed),
                     sid.hex()[:16], attempt + 2)
            for r in (raw, *sealed):
                await self._publish_quietly(r)
            if attempt + 1 < len(self.config.republish):
                self._republish[sid] = (attempt + 1, now + self.config.republish[attempt + 1])
            else:
                del self._republish[sid]

