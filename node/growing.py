"""A network's shard bits growing at a month boundary (SPEC §11.6 "Growing"): the daemon
follows ``[network] shard_bits_from`` on its own clock (a mixin of
:class:`rill.node.daemon.Daemon`).

Around the first instant B of a month that raises the bits from b to b + 1:

* from B - GROW_OVERLAP the node also subscribes to its shards' topics at b + 1 and
  provides their DHT keys, so that a node whose clock runs ahead is heard;
* from B it publishes, keeps, reconciles and looks up shards at b + 1;
* until B + GROW_OVERLAP it accepts messages on the topics of either b (the gate's
  ``wrong-topic`` check, node/sharding.py), then leaves the old topics and drops the
  relay store's objects that are in none of its shards at b + 1 (:func:`prune_unplaced`).

Everything follows from the clock and the schedule: a node started during an overlap, or
after it, is at once where the others are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from ..protocol.months import month_start
from ..protocol.preview import Preview
from ..protocol.shard import GROW_OVERLAP, preview_stored
from ..wallet import store
from ..wallet.wallet import Wallet

log = logging.getLogger("rill.node")

#: The types a growth may leave outside a node's shards (equivocation proofs and
#: listings stay on global topics; objects that concern the node are of class 2).
PLACED = ("settlement", "claim", "sealed-claim", "receipt", "key")
#: meta key: the shard bits at which the relay store was last pruned of other shards
PRUNED_KEY = "shards_pruned_at_bits"


def prune_unplaced(w: Wallet, keeps: Callable[[Preview], bool], bits: int) -> list[bytes]:
    """In the worker thread: forget class-0 objects (neither ours nor related, SPEC §13)
    that ``keeps`` no longer wants, once per value of ``bits``; return their IDs."""
    row = w.db.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_KEY,)).fetchone()
    if row is not None and row[0] == bits:
        return []
    gone: list[bytes] = []
    with store.transaction(w.db):
        for oid, raw in w.db.execute(
                "SELECT id, raw FROM objects WHERE keep = 0 AND private = 0 AND type IN "
                f"({', '.join('?' * len(PLACED))})", PLACED).fetchall():
            p = preview_stored(bytes(raw))
            if p is not None and not keeps(p):
                gone.append(bytes(oid))
        w.db.executemany("DELETE FROM objects WHERE id = ?", [(oid,) for oid in gone])
        w.db.execute("DELETE FROM signers WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE "
                     "o.signer = signers.key)")
        w.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                     (PRUNED_KEY, bits))
    return gone


class Growing:
    async def _grow(self) -> None:
        """Follow the shard schedule: apply it now, then at each of its instants (checked
        at least every minute: the clock may be manual or jump)."""
        if not self.shard_schedule.changes:
            return
        first = True
        while True:
            now = self.clock.now()
            try:
                await self._apply_growth(now, first)
                first = False
            except Exception as exc:  # a subscription or the store: tried again below
                log.warning("following the shard schedule failed (trying again within a "
                            "minute): %r", exc)
            # the next instant after the one applied: the clock may have passed it while
            # this applied (then at once)
            due = self.shard_schedule.next_event(now)
            with trio.move_on_after(60):
                if due is None:
                    await trio.sleep_forever()
                await self.clock.sleep_until(due)

    async def _apply_growth(self, now: int, first: bool = False) -> None:
        """Be where the schedule says at ``now``: the bits, the topics, the provider
        records; after an overlap, prune."""
        assert self.p2p is not None and self._nursery is not None
        ps = self.p2p.pubsub
        schedule = self.shard_schedule
        bits = schedule.at(now)
        want = schedule.topics(self.identity, now, self.config.shard_backbone)
        added = [t for t in want if t not in self.topics]
        left = [t for t in self.topics if t not in want]
        if bits != self.shard_bits:
            log.info("shard bits %d -> %d: publishing at %d bits from now on",
                     self.shard_bits, bits, bits)
            self._set_bits(bits)
        sharded = any(b > 0 for b in schedule.accepted(now))
        ps.multi_topic = sharded
        if self.admission is not None:
            self.admission.sharded = sharded
        for topic in added:  # (self.topics in step: a failure is resumed, not repeated)
            sub = await ps.subscribe(topic)
            self._nursery.start_soon(self._receive, topic, sub)
            self.topics = (*self.topics, topic)
        for topic in left:  # ends its receive loop (the subscription's channel closes)
            await ps.unsubscribe(topic)
            self.topics = tuple(t for t in self.topics if t != topic)
        self.topics = want
        if added or left:
            log.info("shard topics: joined %s, left %s", added or "-", left or "-")
        if added:  # provide the new shards' keys now, not in 12 hours
            self._restart_provide()
        if (left or first) and schedule.accepted(now) == (bits,) and bits > schedule.bits:
            gone = await self.db(prune_unplaced, self.wallet, self.keeps, bits)
            self._forget(gone)
            if gone:
                log.info("shards at %d bits: %d object(s) of other shards pruned", bits,
                         len(gone))

    def _restart_provide(self) -> None:
        assert self._nursery is not None
        scope = getattr(self, "_provide_scope", None)
        if scope is not None:
            scope.cancel()
        self._provide_scope = trio.CancelScope()
        self._nursery.start_soon(self._provide_in, self._provide_scope)

    async def _provide_in(self, scope: trio.CancelScope) -> None:
        """Provide our shards' keys and look for their members, from the start: the
        looking's back-off begins again at a growth's new topics."""
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._provide_shards)
                nursery.start_soon(self._join_shards)

    def growth_status(self) -> dict[str, Any]:
        """``rill node status``'s shards: the bits in force, the shards joined, the bits
        whose topics are accepted now, the backbone shards' counts of own members
        announced, and the next scheduled change."""
        now = self.clock.now()
        pending = self.shard_schedule.pending(now)
        return {"bits": self.shard_bits, "joined": sorted(self.shards),
                "accepted_bits": list(self.shard_schedule.accepted(now)),
                "overlap_s": GROW_OVERLAP,
                # per backbone shard: its own members found announced at the last count
                # (None: the lookup failed); it is provided while under 8 (SPEC §11.6)
                "backbone_own_providers": {f"{b}/{i}": n for (b, i), n in
                                           sorted(self.own_providers.items())},
                "pending": None if pending is None else {
                    "month": pending[0], "bits": pending[1],
                    "from": month_start(pending[0])}}
