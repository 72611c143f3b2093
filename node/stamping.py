"""The month's proof of work, computed during the month (a mixin of
:class:`rill.node.daemon.Daemon`).

A settlement's work stamp is bound to the donor and the month, not to the content (SPEC
§5.3), so it can be found long before the month ends.  Found at settling time it cost
every donor's node about 2**20 SHA-256 attempts (1-3 s of a core) in the very minute its
gossip is busiest; in the scale simulation, where a process holds 25-100 daemons, those
hashing threads held the interpreter's lock for minutes and stream opens timed out.

Here the stamp is found in a worker thread once the month has a budget, after the
previous month's own end (settling, then the sync one grace period later), and at least
START_DELAY_S after the daemon started (its connections come first) unless
:meth:`Stamping.wake_stamp` asks for it now (a budget set from the dashboard).  One stamp
at a time per process.  :func:`rill.protocol.work.find_work` keeps it (cached), so the
wallet's ``settle`` finds it at once; a daemon restarted in the month finds it again.
"""

from __future__ import annotations

import logging
import time

import trio
from trio.lowlevel import RunVar

from ..protocol.errors import RillError
from ..protocol.months import month_of, month_start
from ..protocol.work import find_work
from ..wallet.errors import WalletError
from ..wallet.wallet import Wallet

log = logging.getLogger("rill.node")

#: How long after its start a daemon waits before hashing (real seconds), and how often it
#: looks again for a month to stamp (a budget set with the CLI, a new month).
START_DELAY_S = 60.0
RECHECK_S = 600.0

_LIMIT: RunVar[trio.CapacityLimiter] = RunVar("rill_stamp_limit")


def _one_at_a_time() -> trio.CapacityLimiter:
    try:
        return _LIMIT.get()
    except LookupError:
        limiter = trio.CapacityLimiter(1)
        _LIMIT.set(limiter)
        return limiter


def stamp_job(w: Wallet, month: str) -> tuple[bytes, str, int] | None:
    """In a DB thread: (signer, month, bits) of the stamp to find ahead for ``month``, or
    None (no budget: nothing to settle; else :meth:`Wallet.pending_stamp`)."""
    if w.budget(month) is None:
        return None
    return w.pending_stamp(month)


class Stamping:
    def _init_stamping(self) -> None:
        self._stamp_wake = trio.Event()
        #: (signer, month, bits) of each stamp found
        self._stamp_jobs: set[tuple[bytes, str, int]] = set()

    @property
    def stamped(self) -> set[str]:
        """The months whose stamp this daemon found."""
        return {month for _, month, _ in self._stamp_jobs}

    def wake_stamp(self) -> None:
        """Look for a month to stamp now (a budget was just set)."""
        self._stamp_wake.set()

    async def _stamp_ahead(self) -> None:
        with trio.move_on_after(START_DELAY_S):
            await self._stamp_wake.wait()
        while True:
            self._stamp_wake = trio.Event()
            month = month_of(self.clock.now())
            # after the previous month's end is done: settled, then synced
            if self.clock.now() >= month_start(month) + 2 * self.config.grace:
                try:
                    await self._stamp(month)
                except Exception as exc:  # only ahead of time: settling finds it anyway
                    log.warning("could not find the proof of work of %s ahead: %r", month,
                                exc)
            with trio.move_on_after(RECHECK_S):
                await self._stamp_wake.wait()

    async def _stamp(self, month: str) -> None:
        try:
            job = await self.db(stamp_job, self.wallet, month)
        except (WalletError, RillError) as exc:  # found at settling time instead
            log.warning("cannot tell the proof of work of %s yet: %s", month, exc)
            return
        if job is None or job in self._stamp_jobs:
            return
        t = time.perf_counter()
        # abandoned on cancel: a stopping daemon does not wait for it (the thread ends
        # within seconds, its result cached)
        await trio.to_thread.run_sync(find_work, *job, limiter=_one_at_a_time(),
                                      abandon_on_cancel=True)
        self._stamp_jobs.add(job)
        log.info("found the proof of work of %s in %.1f s", month, time.perf_counter() - t)
