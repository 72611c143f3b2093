"""The Rill node daemon: the trio I/O shell around rill.protocol and rill.wallet.

Tasks (one nursery):

* one receive loop per gossip topic: objects the gossip gate accepted (node/gate.py:
  known objects ignored, replays penalised, a preview, relations with what is held
  (node/admission.py), then :func:`rill.protocol.network.check_gossip`) are stored
  through the wallet, within the relay store's cap (node/relay.py);
* the publisher: paces outgoing gossip and holds it until the mesh has peers;
* month end: after a month ends plus a grace period, settle it, publish the
  settlement and sealed claims, then republish unreceipted ones with backoff;
* sync: ``/rill/sync/1.0.0`` served to peers; pulled from each new peer and
  periodically ("objects concerning me after cursor C"), verified like gossip;
* peers: bootstrap dials, the Kademlia DHT, graylisted peers moved to the blacklist;
* housekeeping: publish receipts signed with ``rill receipt``, prune the relay store to
  its window and cap (rill.node.relay); after a full disk (node/diskstate.py), look for
  room again and then sync what was dropped;
* the control socket for ``rill node status`` and ``rill peers``.

SQLite runs in worker threads (``trio.to_thread``), one at a time.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ..protocol import keys
from ..protocol import messages as m
from ..protocol.errors import RemoteError
from ..protocol.months import month_of
from ..protocol.network import (
    MAX_REQUEST,
    SYNC_PROTOCOL,
    TOPIC_OF,
    check_gossip,
    months_back,
)
from ..protocol.reach import MAX_REACH_REQUEST, REACH_PROTOCOL
from ..protocol.reconcile import MAX_RECONCILE_REQUEST, RECONCILE_PROTOCOL
from ..wallet import store
from ..wallet.errors import DiskFull
from ..wallet.wallet import Wallet
from . import control, relay
from .admission import Admission
from .catalogue import CatalogueNode
from .clock import Clock, ManualClock
from .dashboard import Dashboard
from .discovery import Discovery, mdns_scoped
from .diskstate import DiskState
from .gate import Gate
from .growing import Growing
from .hookconfig import HookConfigError, parse_hooks
from .hooks import Hooks
from .host import (
    P2P,
    PortInUse,
    framed_handler,
    running,
)
from .intake import GossipIn
from .monthend import MonthEnd
from .netaddrs import dialable
from .nodeconfig import NodeConfig
from .peering import Peering
from .peerstate import PeerState
from .ports import dashboard_port_problem
from .publishing import Publishing
from .reachability import Reachability
from .reconciling import Reconciling
from .sharding import Sharding
from .sleepers import Sleepers, held_back
from .stamping import Stamping
from .syncing import Syncing
from .upkeep import Upkeep

log = logging.getLogger("rill.node")
T = TypeVar("T")

class StartupError(Exception):
    """The daemon could not start (a port in use, a second daemon on one home...)."""


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class Daemon(GossipIn, MonthEnd, Syncing, Reconciling, Peering, CatalogueNode, Sleepers,
             Discovery, Sharding, Growing, Upkeep, Publishing, Reachability, Stamping):
    """One node: the wallet of its home, a libp2p host, and the tasks above.  Its parts
    live in mixins: gossip intake (node/intake.py), month end (node/monthend.py), sync
    (node/syncing.py), anti-entropy (node/reconciling.py), peers (node/peering.py), the
    catalogue (node/catalogue.py), months slept past the window (node/sleepers.py),
    NAT, relays and finding peers (node/discovery.py, node/natrelay.py), shards and
    publishing (node/sharding.py), shard bits growing at a month boundary
    (node/growing.py), a sharded node's connections (node/upkeep.py), gossip out
    (node/publishing.py), the month's proof of work found ahead (node/stamping.py)."""

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
        self._init_shards()
        self._init_rounds()
        self._init_reach()
        self._init_stamping()
        #: IDs of every stored object (the gate's duplicate check), kept in step with the
        #: store: added when stored, removed when evicted or pruned
        self.held: set[bytes] = set()
        self._db_limiter = trio.CapacityLimiter(1)
        #: raw objects to publish on their topics, or (topic, raw) on that topic only
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[
            bytes | tuple[str, bytes]](10000)
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[bytes](10000)
        self._published: set[bytes] = set()
        #: our pseudonyms' objects waiting for their random delay, per pseudonym, in order
        self._held: dict[bytes, list[bytes]] = {}
        #: the peer IDs our pseudonyms publish under (their echoes are not "received")
        self.own_authors: set[bytes] = set()
        self._republish: dict[bytes, tuple[int, int]] = {}  # settlement -> (attempt, due)
        self.peers: dict[ID, PeerState] = {}
        #: peers never connected with (``rill peers block``, config ``[network] blocked``)
        self.blocked: set[ID] = {ID.from_base58(p) for p in config.blocked}
        self._redialling: set[ID] = set()  # bootstrap peers being dialled again
        self._bootstrap_met: set[ID] = set()  # bootstrap peers connected once
        self._bootstrap_dialling: set[str] = set()  # bootstrap addresses not yet answered
        self._nursery: trio.Nursery | None = None
        #: gossip gate outcomes of peers' messages: accepted, ignored, rejected;
        #: duplicates = the ignored ones that were known objects
        self.counters: dict[str, int] = dict.fromkeys(
            ("received", "accepted", "ignored", "rejected", "duplicates", "stored", "evicted",
             "published", "synced", "reconciled", "settled", "dropped", "not_stored"), 0)
        #: object IDs refused or evicted: not fetched again by reconciliation for a while
        self.unwanted: OrderedDict[bytes, float] = OrderedDict()
        #: the disk holding the home: full since when, objects not stored
        self.disk = DiskState(self.home)
        self._nursery: trio.Nursery | None = None
        self.gate = Gate(held=lambda oid: oid in self.held, precheck=self._gossip_precheck,
                         check=self._check, now=self.clock.now, relate=self._relate)
        self.admission: Admission | None = None
        self.marked: set[bytes] = set()
        self.p2p: P2P | None = None
        self.dashboard: Dashboard | None = None
        #: events and [hooks] notifications (node/hooks.py)
        self.hooks = Hooks(self.db, self.wallet, self.clock.now)
        self.ready = trio.Event()
        #: the DHT rendezvous: whether this node announced itself, providers last found
        self.rendezvous: dict[str, Any] = {"provided": False, "last_found": None}

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
            if control._is_live(self.socket_path):  # before the ports it holds
                raise StartupError(f"a node is already running on this home ({self.home}); "
                                   "stop it first, or give this one another --home")
            port = self.config.dashboard_port
            problem = dashboard_port_problem(port) if port else None
            if problem:  # before anything starts: one clear line, not an [Errno 98]
                raise StartupError(problem)
            try:
                parse_hooks(self.wallet.config.raw)
            except HookConfigError as exc:
                raise StartupError(f"config.toml: {exc}") from None
            self.held = await self.db(relay.held_ids, self.wallet)
            self.admission = Admission(self.wallet.home.db_path, self.identity,
                                       now=self.clock.now, sharded=bool(self.member_shards()))
            mdns = mdns_scoped(self.config.mdns, self.config.listen)
            async with running(bytes(self.wallet.key), self.config.listen,
                               mdns=mdns, gate=self._gate,
                               on_verdict=self._on_verdict,
                               blocked=self.is_blocked) as p2p:
                if self.config.listen and not p2p.addrs():  # none: behind NAT (natrelay)
                    raise StartupError(f"could not listen on {', '.join(self.config.listen)} "
                                       "(address in use or not available: see the log)")
                self.p2p = p2p
                p2p.pubsub.multi_topic = bool(self.member_shards())
                p2p.host.set_stream_handler(TProtocol(SYNC_PROTOCOL),
                                            framed_handler(self._serve_sync, MAX_REQUEST))
                p2p.host.set_stream_handler(
                    TProtocol(RECONCILE_PROTOCOL),
                    framed_handler(self._serve_reconcile, MAX_RECONCILE_REQUEST))
                p2p.host.set_stream_handler(TProtocol(REACH_PROTOCOL),
                                            framed_handler(self._serve_reach, MAX_REACH_REQUEST))
                subs = {}
                for topic in self.topics:
                    subs[topic] = await p2p.pubsub.subscribe(topic)
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await nursery.start(self.hooks.run)  # its first scan before any intake
                    await nursery.start(self._run_nat)
                    if mdns:
                        nursery.start_soon(self._mdns)
                    if self.config.rendezvous:
                        nursery.start_soon(self._rendezvous)
                    for topic, sub in subs.items():
                        nursery.start_soon(self._receive, topic, sub)
                    nursery.start_soon(self._publisher)
                    nursery.start_soon(self._store_loop)
                    nursery.start_soon(self._watch_peers)
                    nursery.start_soon(self._trim_connections)
                    nursery.start_soon(self._check_reach)
                    nursery.start_soon(self._dial_bootstrap)
                    await nursery.start(control.serve, self.socket_path, self._control)
                    if self.config.dashboard_port:
                        self.dashboard = Dashboard(self, self.config.dashboard_port)
                        try:
                            await nursery.start(self.dashboard.serve)
                        except (OSError, ExceptionGroup) as exc:  # taken since the check
                            if not isinstance(_leaf(exc), OSError):
                                raise
                            raise StartupError(dashboard_port_problem(port) or
                                               f"could not serve the dashboard on 127.0.0.1:"
                                               f"{port}: {_leaf(exc)}: choose another port "
                                               "with --dashboard-port") from None
                    await self._publish_known()
                    nursery.start_soon(self._month_end)
                    nursery.start_soon(self._housekeeping)
                    nursery.start_soon(self._periodic_sync)
                    nursery.start_soon(self._resolver)
                    nursery.start_soon(self._stamp_ahead)
                    self._restart_provide()  # node/sharding.py, restarted on a growth
                    nursery.start_soon(self._grow)
                    log.info("node %s listening on %s", p2p.peer_id,
                             ", ".join(p2p.addrs()) or "nothing (reached through a relay)")
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

    # -- housekeeping -------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            await trio.sleep(self.config.housekeeping)
            for raw in await self.db(self.wallet.receipts_signed):
                if m.decode(raw).id not in self._published:
                    await self._publish_quietly(raw)
            await self._publish_own_listings()
            try:
                await self.db(self._prune)
            except DiskFull as exc:
                self._disk_full(exc)
            if self.disk.full_since is not None:
                await self._look_for_room()

    # -- a full disk ----------------------------------------------------------------------

    def _disk_full(self, exc: DiskFull, objects: int = 0) -> None:
        """A write found the disk full: note it (``rill node status``), log it once."""
        self.counters["not_stored"] += objects
        room = "" if exc.free is None else f" ({exc.free} bytes free)"
        reason = f"the disk holding {exc.path or self.home} is full{room}"
        if self.disk.failed(reason, objects):
            log.warning("%s: the node keeps running, but objects from the network are not "
                        "stored until there is room (sync fetches again those that concern "
                        "this node); free some space", reason)

    def _disk_wrote(self) -> None:
        """A write succeeded: a full disk has room again; sync what was dropped."""
        ended = self.disk.wrote()
        if ended is None:
            return
        log.warning("the disk holding %s has room again: %d object(s) were not stored "
                    "while it was full; syncing with peers", self.home, ended[1])
        if self._nursery is not None and self.p2p is not None:
            self._nursery.start_soon(self._sync_all)

    async def _look_for_room(self) -> None:
        """While the disk is full: once there is room, a small write proves it."""
        free = self.disk.free()
        if free is not None and free < store.LOW_SPACE:
            return
        try:
            await self.db(self._probe_write)
        except DiskFull as exc:
            self.disk.reason = str(exc)
            return
        self._disk_wrote()

    def _probe_write(self) -> None:
        with store.transaction(self.wallet.db):
            self.wallet.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES "
                                   "('disk_room_checked', ?)", (int(self.clock.now()),))

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
        if cmd == "block":
            return await self.block_peer(req.get("peer"))
        if cmd == "unblock":
            return await self.unblock_peer(req.get("peer"))
        if cmd == "blocked":
            return sorted(str(p) for p in self.blocked)
        if cmd == "sync":
            assert self.p2p is not None
            return {str(p): await self.sync_with(p) for p in list(self.p2p.pubsub.peers)}
        if cmd == "add-peer":
            return await self.add_peer(req.get("addr"))
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
            self.hooks.poke()  # or stored something: its events
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
            "dialable": dialable(p2p.addrs(), str(p2p.peer_id)),
            "clock": self.clock.describe(),
            "now": self.clock.now(),
            "topics": sorted(self.topics),
            "shards": self.growth_status(),
            "peers": len(p2p.pubsub.peers),
            "blocked": len(self.blocked),
            "mesh": {t: len(p2p.gossipsub.mesh.get(t, ())) for t in self.topics},
            "settled": settled,
            "held_back": await self.db(held_back, self.wallet, self.clock.now(),
                                       self.config.window_months),
            "stored_bytes": totals.own + totals.relay,
            "store": {"own_bytes": totals.own, "relay_bytes": totals.relay,
                      "cap_bytes": self.config.disk_cap},
            "counters": dict(self.counters),
            "disk": self.disk.as_json(),
            "events": await self.hooks.status(),
            "marked_donors": sorted(keys.did_from_key(d) for d in self.marked),
            "dashboard": (f"http://127.0.0.1:{self.dashboard.port}/" if self.dashboard
                          else None),
            "reachability": ({**p2p.nat.status(), "probe": self.reach}
                             if p2p.nat is not None else None),
            "discovery": self.discovery_status(),
            "sync_rounds": self.round_status(),
        }
