"""The daemon's gossip intake: the gate's checks (preview, relations, full check),
verdict counts, the receive loops, storing in batches, claims kept aside until their
settlement comes, and equivocation proofs (a mixin of :class:`rill.node.daemon.Daemon`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from ..protocol import keys
from ..protocol import messages as m
from ..protocol.errors import RemoteError
from ..protocol.network import TOPIC_OF, check_gossip
from ..protocol.preview import Preview, check_preview, preview
from ..wallet.errors import DiskFull, WalletError
from . import relay
from .admission import ORPHAN
from .catalogue import UNLISTED
from .gate import ACCEPT, IGNORE, KNOWN, REJECT, Outcome, Verdict
from .pubsub import peer_key

log = logging.getLogger("rill.node")

_OUTCOMES = {"accept": ACCEPT, "ignore": IGNORE, "reject": REJECT}


class GossipIn:
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
                               own=forwarder == ps.my_id,
                               by_forwarder=msg.from_id == forwarder.to_bytes())

    def _on_verdict(self, forwarder: ID, msg: rpc_pb2.Message, verdict: Verdict) -> None:
        """Count the verdicts on peers' messages (our own publishes are not counted)."""
        if self.p2p is None or forwarder == self.p2p.peer_id:
            if verdict.outcome is not ACCEPT:
                log.info("not publishing a message on %s: %s", list(msg.topicIDs),
                         verdict.reason)
            return
        self._count_topic(msg, verdict.outcome.value)
        if verdict.outcome is ACCEPT:
            self.counters["accepted"] += 1
        elif verdict.outcome is IGNORE:
            self.counters["ignored"] += 1
            if verdict.reason == KNOWN:
                self.counters["duplicates"] += 1
            elif verdict.reason == ORPHAN and self.admission is not None:
                self.admission.hold_orphan(verdict.obj.settlement, bytes(msg.data))
            elif verdict.reason == UNLISTED:
                self._hold_listing(verdict.obj, bytes(msg.data))
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
            if msg.from_id == own or msg.from_id in self.own_authors:
                continue  # our own publishes, under our peer ID or a pseudonym's
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
        (``synchronous=NORMAL``; WAL stays consistent): a power cut loses what was stored
        since the last fsync; what concerns us sync fetches again on restart, other
        people's objects only come back if gossip offers them again (measured in
        tests/test_power_loss.py).  Everything else the node writes stays FULL.
        """
        out: list[Any] = []
        db = self.wallet.db
        db.execute("PRAGMA synchronous = NORMAL")
        try:
            for raw in raws:
                try:
                    out.append(self.wallet.import_object(raw, now, signature_checked=True))
                except (RemoteError, WalletError) as exc:  # DiskFull too: dropped, counted
                    out.append(exc)
            evicted = self._enforce_cap()
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
        self._forget(self._enforce_cap())
        return result

    def _enforce_cap(self) -> list[bytes]:
        """In a worker thread: hold the relay store to its cap; on a full disk, later
        (evicting is a write too)."""
        try:
            return relay.enforce_cap(self.wallet, self.config.disk_cap)
        except DiskFull:
            return []

    async def _after_import(self, raw: bytes, result: Any, via: str) -> bool:
        if isinstance(result, DiskFull):
            self._disk_full(result, objects=1)
            return False
        if isinstance(result, RemoteError | WalletError):
            log.debug("%s object not taken in: %s", via, result)
            return False
        self.held.add(hashlib.sha256(raw).digest())
        if result.action == "duplicate":
            return False
        self._disk_wrote()
        self.hooks.poke()  # events of what was stored (node/hooks.py)
        self.counters["stored"] += 1
        log.info("%s: %s %s %s %s", via, result.type, result.id.hex()[:16], result.action,
                 result.detail)
        if result.type == "settlement" and self.admission is not None:
            await self._adopt_orphans(result.id)
        if result.type == "key":
            await self._adopt_listings(m.decode(raw, verify_signature=False).signer)
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

