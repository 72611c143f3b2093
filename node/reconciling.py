"""Anti-entropy by ``/rill/reconcile/1.0.0`` (SPEC §11.4): the server side and the client
side (a mixin of :class:`rill.node.daemon.Daemon`).

Sync (§11.3) brings back what concerns this node; reconciliation brings back the copies it
carries for others, which gossip delivers once and a power cut, a full disk, a partition or
a dropped message can lose.  Per month of the window: compare bucket summaries, list the
IDs of the buckets that differ, fetch what is missing, and check each object exactly as
gossip (preview, relations, full check) before storing it.

Costs, per peer and round: one summary of ~6 KiB per month; lists and objects only where
the two nodes differ.  A node that refuses or evicts an object does not ask for it again for
an hour (``unwanted``), so a peer holding objects we will not keep costs one ID list per
round, not the objects.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict

import trio
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.id import ID

from ..protocol import messages as m
from ..protocol.errors import RemoteError
from ..protocol.months import month_of, months_back
from ..protocol.network import TOPIC_OF
from ..protocol.reconcile import (
    BUCKETS,
    MAX_GET,
    MAX_IDS,
    MAX_RECONCILE_RESPONSE,
    RECONCILE_PROTOCOL,
    IdList,
    Objects,
    ReconcileRequest,
    Root,
    Roots,
    Summary,
)
from ..wallet.errors import DiskFull
from ..wallet.wallet import Wallet
from .admission import ORPHAN
from .gate import ACCEPT
from .host import request
from .sharding import Placements, shard_month_ids

log = logging.getLogger("rill.node")

#: A reconciliation with one peer fetches at most this many pages of MAX_GET objects
#: and lasts at most RECONCILE_SESSION_S.
MAX_GET_PAGES = 20
RECONCILE_SESSION_S = 120.0
#: IDs refused or evicted here are not asked for again for this long (seconds), and at
#: most this many are remembered.
UNWANTED_S = 3600
MAX_UNWANTED = 200_000
_STAGE = {"key": 0, "settlement": 1, "equivocation": 1, "claim": 2, "sealed-claim": 2,
          "receipt": 3}


# -- the store side (worker thread) ----------------------------------------------------


def month_ids(w: Wallet, month: str, shard: tuple[int, int] | None = None,
              cache: Placements | None = None) -> list[bytes]:
    """IDs of the public objects of ``month`` held (opened claims are private: never);
    with ``shard`` (bits, index), only those placed in that shard (SPEC §11.6)."""
    if shard is not None:
        return shard_month_ids(w, month, shard, Placements() if cache is None else cache)
    return [bytes(r[0]) for r in w.db.execute(
        "SELECT id FROM objects WHERE month = ? AND private = 0 "
        "AND type != 'claim'", (month,))]


def bucket_ids(w: Wallet, month: str, buckets: tuple[int, ...], limit: int = MAX_IDS,
               shard: tuple[int, int] | None = None,
               cache: Placements | None = None) -> IdList:
    """The public IDs of ``month`` in ``buckets``: whole buckets, in order, while they fit
    in ``limit`` IDs (a bucket that does not fit is left for the next request)."""
    ids: list[bytes] = []
    done: list[int] = []
    if shard is not None:
        by_bucket: dict[int, list[bytes]] = {}
        for oid in sorted(month_ids(w, month, shard, cache)):
            by_bucket.setdefault(oid[0], []).append(oid)
        for b in buckets:
            rows = by_bucket.get(b, [])
            if len(ids) + len(rows) > limit:
                break
            ids += rows
            done.append(b)
        return IdList(tuple(ids), tuple(done))
    for b in buckets:
        lo = bytes([b])
        hi = bytes([b + 1]) if b < BUCKETS - 1 else None
        sql = ("SELECT id FROM objects WHERE id >= ? AND month = ? AND private = 0 "
               "AND type != 'claim'" +
               (" AND id < ?" if hi is not None else "") + " ORDER BY id")
        args: tuple[object, ...] = (lo, month, hi) if hi is not None else (lo, month)
        rows = [bytes(r[0]) for r in w.db.execute(sql, args)]
        if len(ids) + len(rows) > limit:
            break
        ids += rows
        done.append(b)
    return IdList(tuple(ids), tuple(done))


def objects_by_id(w: Wallet, ids: tuple[bytes, ...], max_bytes: int) -> Objects:
    """The public objects among ``ids`` held here, within about ``max_bytes``."""
    out: list[bytes] = []
    size = 0
    for oid in ids:
        row = w.db.execute("SELECT raw FROM objects WHERE id = ? AND private = 0 "
                           "AND type != 'claim'",
                           (oid,)).fetchone()
        if row is None:
            continue
        raw = bytes(row[0])
        if out and size + len(raw) > max_bytes:
            break
        out.append(raw)
        size += len(raw)
    return Objects(tuple(out))


class Reconciling:
    async def _serve_reconcile(self, peer: ID, raw: bytes) -> bytes:
        if self.is_blocked(peer):
            raise ConnectionRefusedError(f"peer {peer} is blocked")
        req = ReconcileRequest.decode(raw)
        if req.op == "roots":
            roots = []
            for month in req.months:
                ids = await self.db(month_ids, self.wallet, month, req.shard, self._points)
                roots.append(Summary.of(month, ids).root)
            return Roots(tuple(roots)).encode()
        if req.op == "summary":
            assert req.month is not None
            ids = await self.db(month_ids, self.wallet, req.month, req.shard, self._points)
            return Summary.of(req.month, ids).encode()
        if req.op == "ids":
            assert req.month is not None
            lst = await self.db(bucket_ids, self.wallet, req.month, req.buckets,
                                shard=req.shard, cache=self._points)
            return lst.encode()
        objs = await self.db(objects_by_id, self.wallet, req.ids,
                             MAX_RECONCILE_RESPONSE - 1024 * 1024)
        return objs.encode()

    def _serves(self, peer: ID, protocol: str) -> bool | None:
        """Whether identify listed ``protocol`` for ``peer``: True/False, or None if it has
        not told us yet."""
        assert self.p2p is not None
        try:
            protocols = self.p2p.host.get_peerstore().get_protocols(peer)
        except Exception:  # the peerstore raises its own error for an unknown peer
            return None
        if not protocols:
            return None
        return protocol in protocols

    def _unwanted_now(self) -> OrderedDict[bytes, float]:
        """The IDs not to ask for again yet (expired ones dropped)."""
        u = self.unwanted
        now = trio.current_time()
        while u:
            until = next(iter(u.values()))
            if until > now and len(u) <= MAX_UNWANTED:
                break
            u.popitem(last=False)
        return u

    async def reconcile_with(self, peer: ID) -> int:
        """Fetch the public objects of the window's months that ``peer`` holds and this node
        lacks; return how many were stored.  Bounded in pages and time; a peer that does
        not serve the protocol is skipped."""
        assert self.p2p is not None
        if self.is_blocked(peer) or self._serves(peer, RECONCILE_PROTOCOL) is False:
            return 0
        now = self.clock.now()
        months = [months_back(month_of(now), k) for k in range(self.config.window_months + 1)]
        new = 0
        pages = 0
        #: (month, shard) where the peer holds something, with its root
        rounds: list[tuple[str, tuple[int, int] | None]] = []
        roots_of: dict[tuple[str, tuple[int, int] | None], Root] = {}
        with trio.fail_after(RECONCILE_SESSION_S):
            for shard in self.reconcile_scopes(peer):
                try:
                    roots = Roots.decode(await self._ask(peer, ReconcileRequest(
                        "roots", months=tuple(months), shard=shard)), len(months)).roots
                except StreamFailure:
                    if self._serves(peer, RECONCILE_PROTOCOL) is not True:
                        log.debug("peer %s does not serve %s", peer, RECONCILE_PROTOCOL)
                        return new
                    raise
                for month, root in zip(months, roots, strict=True):
                    if root.count:
                        rounds.append((month, shard))
                        roots_of[(month, shard)] = root
            for month, shard in rounds:
                mine = Summary.of(month, await self.db(month_ids, self.wallet, month, shard,
                                                       self._points))
                if roots_of.get((month, shard)) == mine.root:
                    continue  # the same set
                theirs = Summary.decode(await self._ask(peer, ReconcileRequest(
                    "summary", month, shard=shard)))
                if theirs.month != month:
                    raise RemoteError(f"summary for {theirs.month}, asked for {month}")
                buckets = tuple(mine.differing(theirs))
                if not buckets:
                    continue
                listed = IdList.decode(await self._ask(peer, ReconcileRequest(
                    "ids", month, buckets=buckets, shard=shard)))
                unwanted = self._unwanted_now()
                missing = [i for i in listed.ids if i not in self.held and i not in unwanted]
                while missing:
                    if pages == MAX_GET_PAGES:
                        log.info("reconcile with %s: %d pages; the rest next time", peer,
                                 pages)
                        return new
                    pages += 1
                    want, missing = tuple(missing[:MAX_GET]), missing[MAX_GET:]
                    got = await self._get(peer, want)
                    taken, full = await self._take_reconciled(peer, list(got.values()))
                    new += taken
                    if full:
                        log.info("reconcile with %s: stopped, the disk is full", peer)
                        return new
                    until = trio.current_time() + UNWANTED_S
                    cut = [oid for oid in want if oid not in got]
                    if got and cut:  # an answer cut at its size limit: ask for the rest
                        missing = cut + missing
                    for oid in (got if got else want):
                        if oid not in self.held:
                            unwanted[oid] = until
        self.counters["reconciled"] += new
        return new

    async def _get(self, peer: ID, want: tuple[bytes, ...]) -> dict[bytes, bytes]:
        """One ``get`` of at most MAX_GET IDs: the objects ``peer`` sends, by ID, without
        any it sends that were not asked for (SPEC §11.4 step 4)."""
        got = Objects.decode(await self._ask(peer, ReconcileRequest("get", ids=want)))
        asked = set(want)
        by_id = ((hashlib.sha256(o).digest(), o) for o in got.objects)
        return {oid: o for oid, o in by_id if oid in asked}

    async def _ask(self, peer: ID, req: ReconcileRequest) -> bytes:
        assert self.p2p is not None
        return await request(self.p2p.host, peer, RECONCILE_PROTOCOL, req.encode(),
                             MAX_RECONCILE_RESPONSE)

    async def _take_reconciled(self, peer: ID, objects: list[bytes]) -> tuple[int, bool]:
        """Check fetched objects exactly as gossip (preview, relations, full check) and store
        what passes, stage by stage (key documents, settlements, claims, receipts), so that
        claims meet their settlement and receipts their claim.  Returns (stored, disk
        full)."""
        new, full = 0, False
        stages: dict[int, list[bytes]] = {}
        for raw in objects:
            stages.setdefault(_STAGE.get(m.peek_type(raw) or "", 4), []).append(raw)
        for stage in sorted(stages):
            now = self.clock.now()
            good = []
            for raw in stages[stage]:
                if hashlib.sha256(raw).digest() in self.held:
                    continue
                topic = TOPIC_OF.get(m.peek_type(raw) or "", "")
                try:
                    p = self._precheck(topic, raw, now)
                    if not self.keeps(p):  # a server may list what is not of our shards
                        log.debug("reconcile from %s: not of our shards", peer)
                        continue
                    outcome, reason = self._relate(p)
                    if outcome is not ACCEPT:
                        if reason == ORPHAN and self.admission is not None and p.settlement:
                            self.admission.hold_orphan(p.settlement, raw)
                        log.debug("reconcile from %s: not taken: %s", peer, reason)
                        continue
                    self._check(topic, raw, now)
                except RemoteError as exc:
                    log.info("reconcile from %s: refused an object: %s", peer, exc.reason)
                    continue
                except Exception as exc:  # a trust boundary: a refusal, never a crash
                    log.warning("reconcile from %s: refused an object: %r", peer, exc)
                    continue
                good.append(raw)
            if not good:
                continue
            results = await self.db(self._import_batch, good, now)
            for raw, result in zip(good, results, strict=True):
                if await self._after_import(raw, result, via="reconcile"):
                    new += 1
            full = full or any(isinstance(r, DiskFull) for r in results)
            if full:
                break
        return new, full

    async def _reconcile_quietly(self, peer: ID) -> int:
        try:
            n = await self.reconcile_with(peer)
            if n:
                log.info("reconcile with %s: %d new object(s)", peer, n)
            return n
        except (Exception, trio.TooSlowError) as exc:
            log.info("reconcile with %s failed: %s", peer, exc)
            return 0
