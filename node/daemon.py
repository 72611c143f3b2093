"""The Rill node daemon: the trio I/O shell around rill.protocol and rill.wallet.

Tasks (one nursery):

* one receive loop per gossip topic: objects the gossip gate accepted (node/gate.py:
  known objects ignored, replays penalised, then
  :func:`rill.protocol.network.check_gossip`) are stored through the wallet;
* the publisher: paces outgoing gossip and holds it until the mesh has peers;
* month end: after a month ends plus a grace period, settle it, publish the
  settlement and sealed claims, then republish unreceipted ones with backoff;
* sync: ``/rill/sync/1.0.0`` served to peers; pulled from each new peer and
  periodically ("objects concerning me after cursor C"), verified like gossip;
* peers: bootstrap dials, the Kademlia DHT, graylisted peers moved to the blacklist;
* housekeeping: publish receipts signed with ``rill receipt``, prune the relay store to
  its window and cap (rill.node.relay);
* the control socket for ``rill node status`` and ``rill peers``.

SQLite runs in worker threads (``trio.to_thread``), one at a time.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio
from libp2p.custom_types import TProtocol
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from ..protocol import keys
from ..protocol import messages as m
from ..protocol.errors import RemoteError, RillError
from ..protocol.months import month_end, month_of, previous_month
from ..protocol.network import (
    DEFAULT_WINDOW_MONTHS,
    MAX_REQUEST,
    MAX_RESPONSE,
    MAX_SYNC_OBJECTS,
    SYNC_PROTOCOL,
    TOPIC_OF,
    TOPICS,
    SyncRequest,
    SyncResponse,
    check_gossip,
    months_back,
)
from ..protocol.preview import Preview, check_preview, preview
from ..wallet import store
from ..wallet.errors import WalletError
from ..wallet.wallet import Wallet
from . import control, relay, sites
from .admission import ORPHAN, Admission
from .clock import Clock, ManualClock
from .dashboard import Dashboard
from .gate import ACCEPT, IGNORE, KNOWN, REJECT, Gate, Outcome, Verdict
from .host import (
    P2P,
    PortInUse,
    framed_handler,
    key_from_peer_id,
    request,
    running,
)
from .pubsub import peer_key

log = logging.getLogger("rill.node")
T = TypeVar("T")

#: A sync session with one peer asks for at most this many pages (1,000 objects each) and
#: lasts at most SYNC_SESSION_S: a peer that always answers "more" cannot keep us busy.
MAX_SYNC_PAGES = 20
SYNC_SESSION_S = 120.0
#: A peer connected this long (real seconds, this run) becomes a standing relation: its
#: own objects are kept before strangers' (rill.wallet.inbox, class 1).
LONG_CONNECTED_S = 3600.0

#: New peers and graylisted ones are looked for this often: the GossipSub heartbeat's
#: period (scores decay per heartbeat).  Every 0.2 s, computing each peer's score was
#: the largest part of an idle daemon's CPU, which competes with gossip on small machines.
WATCH_PEERS_S = 1.0


@dataclass
class NodeConfig:
    listen: list[str] = field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/4741"])
    bootstrap: list[str] = field(default_factory=list)
    mdns: bool = False
    #: Settle a month this long (clock seconds) after it ended.
    grace: int = 3600
    #: Republish unreceipted claims this long (clock seconds) after each attempt.
    republish: tuple[int, ...] = (3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400)
    window_months: int = DEFAULT_WINDOW_MONTHS
    disk_cap: int = 256 * 1024 * 1024
    #: Pull from every peer this often (real seconds), besides on connect.
    sync_interval: float = 600.0
    #: Housekeeping period (real seconds): new receipts to publish, pruning.
    housekeeping: float = 5.0
    #: How often (real seconds) pending things' sites are checked in the background.
    resolve_interval: float = 900.0
    #: Accept creator sites over plain HTTP (loopback hosts always are).
    allow_http: bool = False
    #: The local dashboard's port on 127.0.0.1 (0: no dashboard).
    dashboard_port: int = 4742
    #: Proof of work asked of settlements (SPEC §11.2); None: the home's [network]
    #: work_bits, which its own settlements carry too.
    work_bits: int | None = None

    @classmethod
    def from_toml(cls, data: dict[str, Any]) -> NodeConfig:
        node = data.get("node", {})
        if not isinstance(node, dict):
            raise ValueError("[node] must be a table")
        cfg = cls()
        for name, typ in (("listen", list), ("bootstrap", list), ("mdns", bool),
                          ("grace", int), ("window_months", int),
                          ("dashboard_port", int), ("allow_http", bool)):
            if name in node:
                if not isinstance(node[name], typ):
                    raise ValueError(f"node.{name} must be a {typ.__name__}")
                setattr(cfg, name, node[name])
        if "disk_cap_mb" in node:
            if not isinstance(node["disk_cap_mb"], int) or node["disk_cap_mb"] < 1:
                raise ValueError("node.disk_cap_mb must be a positive integer")
            cfg.disk_cap = node["disk_cap_mb"] * 1024 * 1024
        return cfg


class StartupError(Exception):
    """The daemon could not start (a port in use, a second daemon on one home...)."""


@dataclass
class PeerState:
    last_sync: int | None = None
    cursor: int = 0
    synced_objects: int = 0
    #: trio.current_time() when the peer was first seen connected in this run
    since: float = 0.0
    #: the peer does not serve /rill/sync/1.0.0 (said once, then not asked again)
    no_sync: bool = False


class Daemon:
    def __init__(self, home: Path, config: NodeConfig, clock: Clock) -> None:
        self.home = Path(home)
        self.config = config
        self.clock = clock
        self.wallet = Wallet.open(self.home)
        self.wallet.relay_quota = relay.quota(config.disk_cap)
        #: bits of work asked of settlements on gossip and sync
        self.work_bits: int = (config.work_bits if config.work_bits is not None
                               else self.wallet.config.work_bits)
        self.identity = self.wallet.identity
        #: IDs of every stored object (the gate's duplicate check), kept in step with the
        #: store: added when stored, removed when evicted or pruned
        self.held: set[bytes] = set()
        self._db_limiter = trio.CapacityLimiter(1)
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[bytes](10000)
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[bytes](10000)
        self._published: set[bytes] = set()
        self._republish: dict[bytes, tuple[int, int]] = {}  # settlement -> (attempt, due)
        self.peers: dict[ID, PeerState] = {}
        #: gossip gate outcomes of peers' messages: accepted, ignored, rejected;
        #: duplicates = the ignored ones that were known objects
        self.counters: dict[str, int] = dict.fromkeys(
            ("received", "accepted", "ignored", "rejected", "duplicates", "stored", "evicted",
             "published", "synced", "settled", "dropped"), 0)
        self.gate = Gate(held=lambda oid: oid in self.held, precheck=self._precheck,
                         check=self._check, now=self.clock.now, relate=self._relate)
        self.admission: Admission | None = None
        self.marked: set[bytes] = set()
        self.p2p: P2P | None = None
        self.dashboard: Dashboard | None = None
        self.ready = trio.Event()

    # -- helpers ------------------------------------------------------------------------

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking wallet call in a worker thread (one at a time)."""
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs),
                                             limiter=self._db_limiter)

    @property
    def socket_path(self) -> Path:
        return self.home / control.SOCKET_NAME

    # -- main ---------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            self.held = await self.db(relay.held_ids, self.wallet)
            self.admission = Admission(self.wallet.home.db_path, self.identity)
            async with running(bytes(self.wallet.key), self.config.listen,
                               mdns=self.config.mdns, gate=self._gate,
                               on_verdict=self._on_verdict) as p2p:
                if not p2p.addrs():
                    raise StartupError(f"could not listen on {', '.join(self.config.listen)} "
                                       "(address in use or not available: see the log)")
                self.p2p = p2p
                p2p.host.set_stream_handler(TProtocol(SYNC_PROTOCOL),
                                            framed_handler(self._serve_sync, MAX_REQUEST))
                subs = {}
                for topic in TOPICS:
                    subs[topic] = await p2p.pubsub.subscribe(topic)
                async with trio.open_nursery() as nursery:
                    for topic, sub in subs.items():
                        nursery.start_soon(self._receive, topic, sub)
                    nursery.start_soon(self._publisher)
                    nursery.start_soon(self._store_loop)
                    nursery.start_soon(self._watch_peers)
                    nursery.start_soon(self._dial_bootstrap)
                    await nursery.start(control.serve, self.socket_path, self._control)
                    if self.config.dashboard_port:
                        self.dashboard = Dashboard(self, self.config.dashboard_port)
                        try:
                            await nursery.start(self.dashboard.serve)
                        except OSError as exc:
                            raise StartupError(f"could not serve the dashboard on 127.0.0.1:"
                                               f"{self.config.dashboard_port}: {exc.strerror}"
                                               " (use --dashboard-port)") from None
                    await self._publish_known()
                    nursery.start_soon(self._month_end)
                    nursery.start_soon(self._housekeeping)
                    nursery.start_soon(self._periodic_sync)
                    nursery.start_soon(self._resolver)
                    log.info("node %s listening on %s", p2p.peer_id, ", ".join(p2p.addrs()))
                    self.ready.set()
                    task_status.started(self)
        except PortInUse as exc:
            raise StartupError(str(exc)) from None
        finally:
            with trio.CancelScope(shield=True):
                await self.db(self.wallet.close)
            if self.admission is not None:
                self.admission.close()
                self.admission = None
            self.p2p = None

    # -- gossip in ----------------------------------------------------------------------

    def _precheck(self, topic: str, raw: bytes, now: int) -> Preview:
        """The gate's cheap checks (SPEC §11.2 step 2): the message's header, its time,
        window and work; nothing costlier than one CBOR parse."""
        p = preview(topic, raw)
        check_preview(p, now, self.config.window_months, self.work_bits)
        return p

    def _relate(self, p: Preview) -> tuple[Outcome, str]:
        """The gate's relation checks (rill.node.admission), before any signature."""
        if self.admission is None:
            return ACCEPT, ""
        outcome, reason = self.admission.relate(p)
        return _OUTCOMES[outcome], reason

    def _check(self, topic: str, raw: bytes, now: int) -> m.Signed[Any]:
        return check_gossip(topic, raw, now, self.config.window_months, self.work_bits)

    def _gate(self, forwarder: ID, msg: rpc_pb2.Message, envelope_ok: Callable[[], bool]
              ) -> Verdict:
        """RillPubsub's gate callback: the policy of node/gate.py on one libp2p message."""
        assert self.p2p is not None
        ps = self.p2p.pubsub
        return self.gate.judge(forwarder, ps.get_message_id(msg), msg.topicIDs, msg.data,
                               peer_key(msg.from_id), envelope_ok,
                               own=forwarder == ps.my_id)

    def _on_verdict(self, forwarder: ID, msg: rpc_pb2.Message, verdict: Verdict) -> None:
        """Count the verdicts on peers' messages (our own publishes are not counted)."""
        if self.p2p is None or forwarder == self.p2p.peer_id:
            if verdict.outcome is not ACCEPT:
                log.info("not publishing a message on %s: %s", list(msg.topicIDs),
                         verdict.reason)
            return
        if verdict.outcome is ACCEPT:
            self.counters["accepted"] += 1
        elif verdict.outcome is IGNORE:
            self.counters["ignored"] += 1
            if verdict.reason == KNOWN:
                self.counters["duplicates"] += 1
            elif verdict.reason == ORPHAN and self.admission is not None:
                self.admission.hold_orphan(verdict.obj.settlement, bytes(msg.data))
            log.debug("ignored a message on %s from %s: %s", list(msg.topicIDs), forwarder,
                      verdict.reason)
        else:
            self.counters["rejected"] += 1
            log.info("rejected a message on %s from %s: %s", list(msg.topicIDs), forwarder,
                     verdict.reason)
            self._blacklist_if_graylisted(forwarder)

    async def _receive(self, topic: str, sub: Any) -> None:
        """Drain a subscription at once (py-libp2p's channel holds 32 and drops the
        rest): our own publishes are skipped, the others queued for the store loop."""
        own = self.p2p.peer_id.to_bytes() if self.p2p else b""
        async for msg in sub:
            if msg.from_id == own:
                continue
            self.counters["received"] += 1
            try:
                self._inbox_send.send_nowait(msg.data)
            except trio.WouldBlock:
                self.counters["dropped"] += 1
                log.warning("inbox full: dropped a message on %s (sync will fetch it if it "
                            "concerns us)", topic)

    async def _store_loop(self) -> None:
        """Take queued gossip into the wallet, in batches (one worker-thread hop each)."""
        async for raw in self._inbox_recv:
            batch = [raw]
            while len(batch) < 64:
                try:
                    batch.append(self._inbox_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            results = await self.db(self._import_batch, batch, self.clock.now())
            for raw_, result in zip(batch, results, strict=True):
                await self._after_import(raw_, result, via="gossip")

    def _import_batch(self, raws: list[bytes], now: int) -> list[Any]:
        """In a worker thread: import verified objects (gossip that passed the gate, or
        sync pages checked like gossip), then hold the relay store to its cap.

        A refusal is an answer, not an error.  These commits skip the fsync
        (``synchronous=NORMAL``; WAL stays consistent): what a crash could lose here is
        gossip that sync fetches again.  Everything else the node writes stays FULL.
        """
        out: list[Any] = []
        db = self.wallet.db
        db.execute("PRAGMA synchronous = NORMAL")
        try:
            for raw in raws:
                try:
                    out.append(self.wallet.import_object(raw, now, signature_checked=True))
                except (RemoteError, WalletError) as exc:
                    out.append(exc)
            evicted = relay.enforce_cap(self.wallet, self.config.disk_cap)
        finally:
            db.execute("PRAGMA synchronous = FULL")
        self._forget(evicted)
        return out

    def _forget(self, ids: list[bytes]) -> None:
        """Objects that left the store (evicted or pruned); called from the worker thread
        (set updates are atomic under the GIL; the trio thread only reads ``held``)."""
        if ids:
            self.held.difference_update(ids)
            self.counters["evicted"] += len(ids)
            log.info("relay store: %d object(s) evicted or pruned", len(ids))

    async def _accept(self, raw: bytes, via: str) -> bool:
        """Store one verified object through the wallet; publish what that produces."""
        result = await self.db(self._import_one, raw, self.clock.now())
        return await self._after_import(raw, result, via)

    def _import_one(self, raw: bytes, now: int) -> Any:
        """In a worker thread: import one object (a claim adopted when its settlement
        came, an object given by the CLI), then hold the relay store to its cap, like
        every gossip batch (without it an adopted claim could leave the store over its
        cap until the next housekeeping)."""
        try:
            result: Any = self.wallet.import_object(raw, now)
        except (RemoteError, WalletError) as exc:
            result = exc
        self._forget(relay.enforce_cap(self.wallet, self.config.disk_cap))
        return result

    async def _after_import(self, raw: bytes, result: Any, via: str) -> bool:
        if isinstance(result, RemoteError | WalletError):
            log.debug("%s object not taken in: %s", via, result)
            return False
        self.held.add(hashlib.sha256(raw).digest())
        if result.action == "duplicate":
            return False
        self.counters["stored"] += 1
        log.info("%s: %s %s %s %s", via, result.type, result.id.hex()[:16], result.action,
                 result.detail)
        if result.type == "settlement" and self.admission is not None:
            await self._adopt_orphans(result.id)
        if result.action == "equivocation":
            await self._on_equivocation(result)
        elif result.type == "equivocation":
            proof = m.decode(raw, m.Equivocation)
            self.marked.add(proof.body.donor)
        return True

    async def _adopt_orphans(self, settlement: bytes) -> None:
        """Claims that came before their settlement (ignored then, kept aside): now that
        it is here, check them fully, take them in and forward them ourselves."""
        assert self.admission is not None
        for raw in self.admission.adopt(settlement):
            topic = TOPIC_OF.get(m.peek_type(raw) or "", "")
            try:
                outcome, reason = self._relate(self._precheck(topic, raw, self.clock.now()))
                if outcome is not ACCEPT:
                    raise RemoteError(reason)
                self._check(topic, raw, self.clock.now())
            except RemoteError as exc:
                log.info("a claim that waited for its settlement is refused: %s", exc)
                continue
            if await self._accept(raw, via="adopted"):
                await self._publish_quietly(raw)

    async def _on_equivocation(self, result: Any) -> None:
        proof_id = bytes.fromhex(result.detail.rsplit(" ", 1)[1])
        proof = await self.db(self.wallet._object, proof_id, m.Equivocation)
        self.marked.add(proof.body.donor)
        log.warning("equivocation by %s for %s: publishing the proof",
                    keys.did_from_key(proof.body.donor), proof.body.month)
        await self.publish(proof.raw)

    # -- gossip out ---------------------------------------------------------------------

    async def publish(self, raw: bytes) -> None:
        """Queue an object for gossip (checked first: our own invalid publishes would
        lower our own score)."""
        obj = check_gossip(TOPIC_OF[m.peek_type(raw) or ""], raw, self.clock.now(),
                           self.config.window_months, self.work_bits)
        if obj.id not in self._published and self.gate.forwarded_lately(obj.id):
            log.debug("not publishing %s: forwarded less than 20 minutes ago", obj.id_hex)
            return
        self._published.add(obj.id)
        await self._outbox_send.send(raw)

    async def _publisher(self) -> None:
        assert self.p2p is not None
        ps = self.p2p.pubsub
        async for raw in self._outbox_recv:
            topic = TOPIC_OF[m.peek_type(raw) or ""]
            while not any(True for _ in ps.peer_topics.get(topic, ())):
                await trio.sleep(0.05)  # nobody to publish to yet (trap 12)
            await ps.publish(topic, raw)
            self.counters["published"] += 1
            await trio.sleep(0.002)  # pace: the per-peer queue holds 32 (trap 3)

    async def _publish_known(self) -> None:
        """On start: what we signed and may not have reached anyone yet."""
        for _month, settlement, sealed in await self.db(self.wallet.unreceipted):
            for raw in (settlement, *sealed):
                await self._publish_quietly(raw)
        for raw in await self.db(self.wallet.receipts_signed):
            await self._publish_quietly(raw)

    async def _publish_quietly(self, raw: bytes) -> None:
        try:
            await self.publish(raw)
        except RemoteError as exc:  # e.g. outside the window by now
            log.debug("not publishing: %s", exc)

    # -- month end ----------------------------------------------------------------------

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
        """Fetch the key documents of the sites of the month's pending things (those not
        checked lately), so their clicks count; return how many sites verified."""
        origins = await self.db(self.wallet.sites_to_check, month, self.clock.now())
        verified = 0
        limiter = trio.CapacityLimiter(4)

        async def check(origin: str) -> None:
            nonlocal verified
            async with limiter:
                verdict = await sites.fetch(origin, allow_http=self.config.allow_http,
                                            now=self.clock.now())
            await self.db(self.wallet.record_site, origin, verdict.document, verdict.reason,
                          self.clock.now())
            if verdict.valid:
                verified += 1
                log.info("site %s verified: %s", origin, verdict.document.signer_did
                         if verdict.document else "")
            else:
                log.info("site %s not verified: %s", origin, verdict.reason)

        async with trio.open_nursery() as n:
            for origin in origins:
                n.start_soon(check, origin)
        return verified

    async def _resolver(self) -> None:
        """Attribute pending clicks in the background (and right before month end)."""
        while True:
            await self.resolve_pending(month_of(self.clock.now()))
            await trio.sleep(self.config.resolve_interval)

    async def _settle_due(self, month: str) -> None:
        settled = set(await self.db(self.wallet.settled_months))
        if month not in settled:
            await self.resolve_pending(month)
        oldest = months_back(month, self.config.window_months)
        candidates = []
        m_ = month
        while m_ >= oldest and m_ not in settled:
            candidates.append(m_)
            m_ = previous_month(m_)
        for mo in reversed(candidates):
            if await self.db(self.wallet.budget, mo) is None:
                continue
            try:
                result, new = await self.db(self.wallet.settle, mo, self.clock.now())
            except (WalletError, RillError) as exc:
                log.error("cannot settle %s: %s", mo, exc)
                continue
            if new:
                self.counters["settled"] += 1
                log.info("settled %s: %s, %d claim(s)", mo, result.settlement.id_hex,
                         len(result.claims))
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

    # -- sync ---------------------------------------------------------------------------

    async def _serve_sync(self, peer: ID, raw: bytes) -> bytes:
        req = SyncRequest.decode(raw)
        objs, cursor, more = await self.db(relay.objects_for, self.wallet, req.subject,
                                           req.after, min(req.limit, MAX_SYNC_OBJECTS),
                                           MAX_RESPONSE)
        return SyncResponse(tuple(objs), cursor, more).encode()

    def _serves_sync(self, peer: ID) -> bool | None:
        """What identify told us: True/False, or None if it has not told us yet."""
        assert self.p2p is not None
        try:
            protocols = self.p2p.host.get_peerstore().get_protocols(peer)
        except Exception:  # the peerstore raises its own error for an unknown peer
            return None
        if not protocols:
            return None
        return SYNC_PROTOCOL in protocols

    async def sync_with(self, peer: ID) -> int:
        """Pull the objects concerning us that ``peer`` holds; return how many were new.

        Bounded: at most MAX_SYNC_PAGES pages and SYNC_SESSION_S seconds per session,
        and it stops as soon as a page makes no progress (the cursor does not move).
        A peer that does not serve the protocol is noted once and not asked again.
        """
        assert self.p2p is not None
        state = self.peers.setdefault(peer, PeerState())
        if state.no_sync:
            return 0
        if self._serves_sync(peer) is False:
            state.no_sync = True
            log.info("peer %s does not serve %s: not syncing with it", peer, SYNC_PROTOCOL)
            return 0
        new = 0
        with trio.fail_after(SYNC_SESSION_S):
            for page in range(MAX_SYNC_PAGES):
                req = SyncRequest(self.identity, state.cursor, MAX_SYNC_OBJECTS)
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
                resp = SyncResponse.decode(raw)
                new += await self._take_synced(peer, resp.objects)
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
        state.last_sync = self.clock.now()
        state.synced_objects += new
        self.counters["synced"] += new
        return new

    async def _take_synced(self, peer: ID, objects: tuple[bytes, ...]) -> int:
        """Check a sync page like gossip, then store what passed in one batch."""
        now = self.clock.now()
        good = []
        for obj in _sync_order(objects):
            try:
                type_ = m.peek_type(obj)
                check_gossip(TOPIC_OF.get(type_ or "", ""), obj, now,
                             self.config.window_months, self.work_bits)
            except RemoteError as exc:
                log.info("sync from %s: refused an object: %s", peer, exc.reason)
                continue
            good.append(obj)
        if not good:
            return 0
        results = await self.db(self._import_batch, good, now)
        new = 0
        for raw, result in zip(good, results, strict=True):
            if await self._after_import(raw, result, via="sync"):
                new += 1
        return new

    async def _sync_quietly(self, peer: ID) -> None:
        try:
            n = await self.sync_with(peer)
            if n:
                log.info("sync with %s: %d new object(s)", peer, n)
        except (Exception, trio.TooSlowError) as exc:
            log.info("sync with %s failed: %s", peer, exc)

    async def _periodic_sync(self) -> None:
        while True:
            await trio.sleep(self.config.sync_interval)
            await self._sync_all()

    async def _sync_all(self) -> None:
        assert self.p2p is not None
        async with trio.open_nursery() as n:
            for peer in list(self.p2p.pubsub.peers):
                n.start_soon(self._sync_quietly, peer)

    # -- peers --------------------------------------------------------------------------

    async def _watch_peers(self) -> None:
        """New gossip peers get a sync; graylisted ones go to the blacklist for good."""
        assert self.p2p is not None
        p2p = self.p2p
        known: set[ID] = set()
        async with trio.open_nursery() as nursery:
            while True:
                current = set(p2p.pubsub.peers)
                now = trio.current_time()
                for peer in current - known:
                    self.peers.setdefault(peer, PeerState()).since = now
                    nursery.start_soon(self._sync_quietly, peer)
                known = current
                for peer in current:
                    state = self.peers[peer]
                    if state.since and now - state.since >= LONG_CONNECTED_S:
                        state.since = 0.0  # once per run
                        await self._relate_peer(peer)
                    self._blacklist_if_graylisted(peer)
                await trio.sleep(WATCH_PEERS_S)

    def _blacklist_if_graylisted(self, peer: ID) -> None:
        """Graylisted peers go to the blacklist for good (checked once a second, and at
        once after each message the gate rejects)."""
        p2p = self.p2p
        if (p2p is not None and p2p.scorer.is_graylisted(peer, list(TOPICS))
                and not p2p.pubsub.is_peer_blacklisted(peer)):
            log.warning("peer %s sent invalid messages: blacklisted", peer)
            p2p.pubsub.add_to_blacklist(peer)

    async def _relate_peer(self, peer: ID) -> None:
        key = key_from_peer_id(peer)
        if key is None:
            return
        if await self.db(self._add_relation, key, "peer", self.clock.now()):
            log.info("peer %s connected for an hour: its objects are kept before "
                     "strangers'", peer)

    def _add_relation(self, key: bytes, reason: str, now: int) -> bool:
        with store.transaction(self.wallet.db):
            return self.wallet.add_relation(key, reason, now)

    async def _dial_bootstrap(self) -> None:
        assert self.p2p is not None
        delay = 1.0
        pending = list(self.config.bootstrap)
        while pending:
            for addr in list(pending):
                try:
                    with trio.fail_after(15):
                        await self.p2p.connect(addr)
                    pending.remove(addr)
                    log.info("connected to bootstrap peer %s", addr)
                except (Exception, trio.TooSlowError) as exc:
                    log.info("bootstrap %s: %s (retrying)", addr, exc)
            if pending:
                await trio.sleep(delay)
                delay = min(delay * 2, 60.0)

    # -- housekeeping -------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            await trio.sleep(self.config.housekeeping)
            for raw in await self.db(self.wallet.receipts_signed):
                if m.decode(raw).id not in self._published:
                    await self._publish_quietly(raw)
            await self.db(self._prune)

    def _prune(self) -> None:
        """In a worker thread: forget other people's objects outside the window, then hold
        the relay store to its cap."""
        oldest = months_back(month_of(self.clock.now()), self.config.window_months)
        gone = relay.prune_window(self.wallet, oldest)
        gone += relay.enforce_cap(self.wallet, self.config.disk_cap)
        self._forget(gone)

    # -- control ------------------------------------------------------------------------

    async def _control(self, req: dict[str, Any]) -> Any:
        cmd = req["cmd"]
        if cmd == "status":
            return await self.status()
        if cmd == "peers":
            return self.peer_table()
        if cmd == "sync":
            assert self.p2p is not None
            return {str(p): await self.sync_with(p) for p in list(self.p2p.pubsub.peers)}
        if cmd == "connect":
            assert self.p2p is not None
            with trio.fail_after(15):
                return str(await self.p2p.connect(str(req["addr"])))
        if cmd == "publish":  # objects given by the CLI: take them in, then gossip them
            out = []
            for hexraw in req["objects"]:
                raw = bytes.fromhex(str(hexraw))
                try:
                    check_gossip(TOPIC_OF.get(m.peek_type(raw) or "", ""), raw,
                                 self.clock.now(), self.config.window_months, self.work_bits)
                except RemoteError as exc:
                    raise ValueError(f"not publishable: {exc.reason}") from None
                await self._accept(raw, via="cli")
                await self.publish(raw)
                out.append(m.decode(raw).id_hex)
            return out
        if cmd == "publish-new":  # the CLI signed something: look now
            for raw in await self.db(self.wallet.receipts_signed):
                if m.decode(raw).id not in self._published:
                    await self._publish_quietly(raw)
            return True
        if cmd == "clock":
            if not isinstance(self.clock, ManualClock):
                raise ValueError("the node's clock is not manual")
            self.clock.set(int(req["set"]))
            return self.clock.now()
        raise ValueError(f"unknown command {cmd!r}")

    async def status(self) -> dict[str, Any]:
        assert self.p2p is not None
        p2p = self.p2p
        settled = await self.db(self.wallet.settled_months)
        totals = await self.db(relay.totals, self.wallet)
        return {
            "id": keys.did_from_key(self.identity),
            "peer_id": str(p2p.peer_id),
            "addrs": p2p.addrs(),
            "clock": self.clock.describe(),
            "now": self.clock.now(),
            "topics": sorted(TOPICS),
            "peers": len(p2p.pubsub.peers),
            "mesh": {t: len(p2p.gossipsub.mesh.get(t, ())) for t in TOPICS},
            "settled": settled,
            "stored_bytes": totals.own + totals.relay,
            "store": {"own_bytes": totals.own, "relay_bytes": totals.relay,
                      "cap_bytes": self.config.disk_cap},
            "counters": dict(self.counters),
            "marked_donors": sorted(keys.did_from_key(d) for d in self.marked),
            "dashboard": (f"http://127.0.0.1:{self.dashboard.port}/" if self.dashboard
                          else None),
        }

    def peer_table(self) -> list[dict[str, Any]]:
        assert self.p2p is not None
        p2p = self.p2p
        out = []
        for peer in sorted(p2p.pubsub.peers, key=str):
            state = self.peers.get(peer, PeerState())
            key = key_from_peer_id(peer)
            out.append({
                "peer_id": str(peer),
                "id": keys.did_from_key(key) if key else None,
                "addrs": [str(a) for a in p2p.host.get_peerstore().addrs(peer)],
                "score": p2p.score(peer, list(TOPICS)),
                "topics": sorted(t for t in TOPICS if peer in p2p.pubsub.peer_topics.get(t,
                                                                                       ())),
                "blacklisted": p2p.pubsub.is_peer_blacklisted(peer),
                "last_sync": state.last_sync,
                "synced_objects": state.synced_objects,
            })
        return out


_OUTCOMES = {"accept": ACCEPT, "ignore": IGNORE, "reject": REJECT}


def _sync_order(objects: tuple[bytes, ...]) -> list[bytes]:
    """Settlements before the claims checked against them, receipts last."""
    order = {"key": 0, "settlement": 1, "claim": 2, "sealed-claim": 2, "receipt": 3}
    return sorted(objects, key=lambda raw: order.get(m.peek_type(raw) or "", 4))
