"""Catch-up by ``/rill/sync/1.0.0`` (SPEC §11.3): the server side, and the client side
with its bounds (pages, time, progress) and peers that do not serve it (a mixin of
:class:`rill.node.daemon.Daemon`)."""

from __future__ import annotations

import hashlib
import logging
import random
from typing import Any

import trio
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.id import ID

from ..protocol import messages as m
from ..protocol.errors import RemoteError, SchemaError
from ..protocol.network import (
    MAX_RESPONSE,
    MAX_SYNC_OBJECTS,
    SYNC_PROTOCOL,
    TOPIC_OF,
    SyncRequest,
    SyncResponse,
    check_gossip,
)
from ..protocol.reconcile import MAX_GET, RECONCILE_PROTOCOL
from ..protocol.shard import shard_topic
from ..wallet.errors import DiskFull
from . import relay
from .anonpub import sync_pseudonyms
from .host import request
from .peerstate import PeerState
from .rounds import RoundPacer, pick_peers

log = logging.getLogger("rill.node")

#: A sync session with one peer asks for at most this many pages (1,000 objects each) and
#: lasts at most SYNC_SESSION_S: a peer that always answers "more" cannot keep us busy.
MAX_SYNC_PAGES = 20
SYNC_SESSION_S = 120.0


class Syncing:
    async def _serve_sync(self, peer: ID, raw: bytes) -> bytes:
        if self.is_blocked(peer):  # its connection is being closed
            raise ConnectionRefusedError(f"peer {peer} is blocked")
        req = SyncRequest.decode(raw)
        objs, cursor, more = await self.db(relay.objects_for, self.wallet, req.subject,
                                           req.after, min(req.limit, MAX_SYNC_OBJECTS),
                                           MAX_RESPONSE, req.ids)
        return SyncResponse(tuple(objs), cursor, more, req.ids).encode()

    def _serves_sync(self, peer: ID) -> bool | None:
        """What identify told us: True/False, or None if it has not told us yet."""
        return self._serves(peer, SYNC_PROTOCOL)

    async def sync_with(self, peer: ID) -> int:
        """Pull the objects concerning us that ``peer`` holds; return how many were new.

        Bounded: at most MAX_SYNC_PAGES pages and SYNC_SESSION_S seconds per session,
        and it stops as soon as a page makes no progress (the cursor does not move).
        A peer that does not serve the protocol is noted once and not asked again.
        """
        assert self.p2p is not None
        if self.is_blocked(peer):
            return 0
        state = self.peers.setdefault(peer, PeerState())
        if state.no_sync:
            return 0
        if self._serves_sync(peer) is False:
            state.no_sync = True
            log.info("peer %s does not serve %s: not syncing with it", peer, SYNC_PROTOCOL)
            return 0
        new = 0
        #: the cursor of the first page holding an object refused as ``future``: the next
        #: session asks again from there (our clock is behind the peer's; SPEC §11.3)
        retry: int | None = None
        with trio.fail_after(SYNC_SESSION_S):
            for page in range(MAX_SYNC_PAGES):
                ids = self._sync_by_ids(peer, state)
                req = SyncRequest(self.identity, state.cursor, MAX_SYNC_OBJECTS, ids)
                try:
                    raw = await request(self.p2p.host, peer, SYNC_PROTOCOL, req.encode(),
                                        MAX_RESPONSE + 1024 * 1024)
                except StreamFailure:
                    if self._serves_sync(peer) is not True:
                        state.no_sync = True
                        log.info("peer %s does not serve %s: not syncing with it", peer,
                                 SYNC_PROTOCOL)
                        return new
                    raise
                except Exception as exc:
                    if not (ids and state.sync_ids is None):
                        raise
                    # the first request by IDs failed (a server older than them resets
                    # the stream): whole objects from now on
                    state.sync_ids = False
                    log.info("sync with %s by IDs failed (%r): asking for objects", peer,
                             exc)
                    continue
                resp = SyncResponse.decode(raw)
                if resp.ids != ids:
                    raise SchemaError("sync response: objects and IDs mixed up")
                if ids:
                    state.sync_ids = True
                    objects = await self._fetch_missing(peer, resp.objects)
                else:
                    objects = resp.objects
                taken, full, future = await self._take_synced(peer, objects)
                new += taken
                if future and retry is None:
                    retry = state.cursor
                if full:  # the cursor stays: the page is asked for again once there is room
                    log.info("sync with %s: stopped, the disk is full", peer)
                    break
                progressed = resp.next > state.cursor
                state.cursor = max(state.cursor, resp.next)
                if not resp.more or not resp.objects:
                    break
                if not progressed:
                    log.info("sync with %s: the cursor does not move; stopping", peer)
                    break
                if page == MAX_SYNC_PAGES - 1:
                    log.info("sync with %s: %d pages and it says more; the rest next time",
                             peer, MAX_SYNC_PAGES)
        with trio.fail_after(SYNC_SESSION_S):
            new += await sync_pseudonyms(self, peer, state)
        if retry is not None:
            # Objects from a clock ahead of ours (a month that has not ended here yet):
            # without this the cursor passed them and this peer never offered them again
            # (found by tests/test_clocks.py: a claim to a node 10 minutes behind was lost
            # for good when a sync ran before its clock reached the month end).
            state.cursor = min(state.cursor, retry)
        state.last_sync = self.clock.now()
        state.synced_objects += new
        self.counters["synced"] += new
        return new

    def _sync_by_ids(self, peer: ID, state: PeerState) -> bool:
        """Ask ``peer`` for IDs first (SPEC §11.3 "By IDs"): unless it refused that
        before, and only when it serves reconciliation, whose ``get`` fetches the
        objects."""
        return (state.sync_ids is not False
                and self._serves(peer, RECONCILE_PROTOCOL) is True)

    async def _fetch_missing(self, peer: ID, ids: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """The objects of a page of IDs that this node does not hold, fetched by
        reconciliation's ``get`` (asked again for the rest while an answer, cut at its
        size limit, brings some); anything not asked for is dropped.  (Not filtered by
        what reconciliation refused lately: an object refused as ``future`` must come
        back by sync once our clock has passed the month end, SPEC §11.3.)"""
        missing = [i for i in dict.fromkeys(ids) if i not in self.held]
        skipped = len(ids) - len(missing)
        out: list[bytes] = []
        for _ in range(MAX_SYNC_PAGES):
            if not missing:
                break
            fresh = await self._get(peer, tuple(missing[:MAX_GET]))
            if not fresh:  # the server no longer holds them
                break
            out += fresh.values()
            missing = [i for i in missing if i not in fresh]
        self.counters["sync_ids_skipped"] = (self.counters.get("sync_ids_skipped", 0)
                                             + skipped)
        return tuple(out)

    async def _take_synced(self, peer: ID, objects: tuple[bytes, ...]
                           ) -> tuple[int, bool, int]:
        """Check a sync page like gossip, then store what passed in one batch.  Objects
        already held are skipped before any check (a page often repeats what gossip
        brought).  Returns (objects new, whether some could not be stored for a full
        disk, how many were refused as ``future``)."""
        now = self.clock.now()
        good = []
        future = 0
        for obj in _sync_order(objects):
            if hashlib.sha256(obj).digest() in self.held:
                continue
            try:
                type_ = m.peek_type(obj)
                check_gossip(TOPIC_OF.get(type_ or "", ""), obj, now,
                             self.config.window_months, self.work_bits)
            except RemoteError as exc:
                log.info("sync from %s: refused an object: %s", peer, exc.reason)
                future += exc.code == "future"
                continue
            good.append(obj)
        if not good:
            return 0, False, future
        results = await self.db(self._import_batch, good, now)
        new = 0
        for raw, result in zip(good, results, strict=True):
            if await self._after_import(raw, result, via="sync"):
                new += 1
        return new, any(isinstance(r, DiskFull) for r in results), future

    async def _sync_quietly(self, peer: ID) -> int:
        """Sync with ``peer`` (what concerns us), then reconcile (every public object of
        the window): each failure is logged, never raised.  Returns the objects stored."""
        n = 0
        try:
            n = await self.sync_with(peer)
            if n:
                log.info("sync with %s: %d new object(s)", peer, n)
        except (Exception, trio.TooSlowError) as exc:
            log.info("sync with %s failed: %s", peer, exc)
        if self.config.reconcile:
            n += await self._reconcile_quietly(peer)
        return n

    # -- rounds (node/rounds.py) ----------------------------------------------------------

    def _init_rounds(self) -> None:
        self.rounds = RoundPacer(self.config.sync_interval, self.config.sync_interval_max)
        self._round_wake = trio.Event()
        self._rng = random.Random()

    def _round_reset(self) -> None:
        """Something may be missing (a new peer, month end, room on a full disk): the next
        periodic round comes at most one base interval from now."""
        if self.rounds.reset(trio.current_time()):
            self._round_wake.set()

    def round_status(self) -> dict[str, Any]:
        """For ``rill node status``: the periodic rounds' pace (node/rounds.py)."""
        r = self.rounds
        return {"peers_per_round": self.config.sync_peers, "interval_s": r.interval,
                "next_in_s": round(max(0.0, r.due - trio.current_time()), 1) if r.due else None,
                "rounds": r.rounds, "quiet": r.quiet}

    async def _periodic_sync(self) -> None:
        pacer = self.rounds
        pacer.start(trio.current_time())
        while True:
            while trio.current_time() < pacer.due:
                self._round_wake = trio.Event()
                with trio.move_on_at(pacer.due):
                    await self._round_wake.wait()
            await self._periodic_round()

    def _round_peers(self) -> list[ID]:
        """The peers of the next periodic round (node/rounds.py ``pick_peers``)."""
        assert self.p2p is not None
        peers = [p for p in self.p2p.pubsub.peers if not self.is_blocked(p)]
        last = {p: s.last_round for p in peers
                if (s := self.peers.get(p)) is not None and s.last_round is not None}
        shards_of: dict[ID, frozenset[int]] = {}
        if self.shard_bits:
            topics = self.p2p.pubsub.peer_topics
            for p in peers:
                shards_of[p] = frozenset(
                    i for i in self.shards
                    if p in topics.get(shard_topic(self.shard_bits, i), ()))
        return pick_peers(peers, self.config.sync_peers, last, shards_of, self._rng)

    async def _periodic_round(self) -> int:
        """One periodic round: sync and reconcile with at most ``sync_peers`` peers (least
        recently asked first), then pace the next round by what it found.  Returns the
        objects stored.  (:meth:`_sync_all` is the full round: every peer, now.)"""
        peers = self._round_peers()
        now = trio.current_time()
        for p in peers:
            self.peers.setdefault(p, PeerState()).last_round = now
        found = [0]

        async def one(peer: ID) -> None:
            found[0] += await self._sync_quietly(peer)

        async with trio.open_nursery() as n:
            for peer in peers:
                n.start_soon(one, peer)
        self.rounds.after_round(found[0], trio.current_time())
        if found[0]:
            log.info("periodic round with %d peer(s): %d new object(s)", len(peers),
                     found[0])
        return found[0]

    async def _sync_all(self) -> int:
        """The full round: sync and reconcile with every peer now (month end, room on a
        full disk); the periodic rounds go back to their base interval.  Returns the
        objects stored."""
        assert self.p2p is not None
        self._round_reset()
        found = [0]

        async def one(peer: ID) -> None:
            found[0] += await self._sync_quietly(peer)

        now = trio.current_time()
        async with trio.open_nursery() as n:
            for peer in list(self.p2p.pubsub.peers):
                self.peers.setdefault(peer, PeerState()).last_round = now
                n.start_soon(one, peer)
        return found[0]


def _sync_order(objects: tuple[bytes, ...]) -> list[bytes]:
    """Settlements before the claims checked against them, receipts last."""
    order = {"key": 0, "settlement": 1, "claim": 2, "sealed-claim": 2, "receipt": 3}
    return sorted(objects, key=lambda raw: order.get(m.peek_type(raw) or "", 4))
