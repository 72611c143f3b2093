"""Rill's GossipSub message gate on py-libp2p 0.8.1: ``RillPubsub.push_msg``.

py-libp2p answers every message with a topic validator that says valid or invalid
only, drops a bad envelope signature before any scoring, and lets any exception of a
validator kill the Pubsub service (docs/NETWORK.md, traps 19-21).  ``RillPubsub`` keeps
the library's blacklist checks, seen-cache check and publish-score gate, then asks
ONE gate callback for an :class:`~rill.node.gate.Outcome` and acts on it:

* ACCEPT: mark the message ID seen, first-delivery scoring, the self-``from`` check,
  deliver to subscriptions, forward (what py-libp2p does after a successful
  validation);
* IGNORE: mark the message ID seen (see :func:`_may_mark_seen`), nothing else;
* REJECT: penalise the forwarder (``on_invalid_message`` per subscribed topic, as for a
  failed validator); not delivered, not forwarded, not marked seen (a forged envelope
  must not poison the seen cache for the real author's message ID).

The envelope signature check is handed to the gate as ``envelope_ok()``, so a bad
envelope signature is a REJECT and is scored.  Any exception raised while judging
becomes a REJECT with reason "internal error: ...", logged at WARNING once per object
ID; nothing escapes into the Pubsub service.  Topic validators are not used.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import INetStream
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.validators import signature_validator

from .gate import ACCEPT, BAD_ENVELOPE, IGNORE, REJECT, Outcome, Verdict, object_id, signer_of

log = logging.getLogger("rill.node.pubsub")

#: ``gate(forwarder, msg, envelope_ok) -> Verdict``
GateFn = Callable[[ID, rpc_pb2.Message, Callable[[], bool]], Verdict]
#: ``on_verdict(forwarder, msg, verdict)``: told every final verdict after the scoring
#: (for counters, logs, blacklisting).
VerdictFn = Callable[[ID, rpc_pb2.Message, Verdict], None]

#: Object IDs whose internal error was logged; cleared when full.
LOGGED_MAX = 4096
#: Message IDs accepted lately, with the topics each was forwarded on (oldest out).
FORWARDED_MAX = 50_000
#: The identity-multihash prefix of an Ed25519 peer ID (protobuf PublicKey, type 1).
_ED25519_PEER_ID = b"\x00\x24\x08\x01\x12\x20"


def peer_key(peer_id: bytes) -> bytes | None:
    """The 32-byte Ed25519 key inside a peer ID (no protobuf parse), or None."""
    if len(peer_id) == 38 and peer_id.startswith(_ED25519_PEER_ID):
        return peer_id[6:]
    return None


def envelope_only(forwarder: ID, msg: rpc_pb2.Message,
                  envelope_ok: Callable[[], bool]) -> Verdict:
    """The gate until one is set: py-libp2p's behaviour (envelope check), now scored."""
    return Verdict(ACCEPT, "") if envelope_ok() else Verdict(REJECT, BAD_ENVELOPE)


class RillPubsub(Pubsub):
    def __init__(self, *args: Any, gate: GateFn | None = None,
                 on_verdict: VerdictFn | None = None,
                 blocked: Callable[[ID], bool] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate: GateFn = gate or envelope_only
        self.on_verdict = on_verdict
        #: peers blocked by the node's owner (``rill peers block``): messages they send
        #: and their pubsub streams are dropped, until they are unblocked
        self.blocked: Callable[[ID], bool] = blocked or (lambda _peer: False)
        self.blocked_dropped = 0
        self._logged: set[bytes] = set()
        #: one RPC at a time on each outbound stream (see ``write_msg``)
        self._write_locks: weakref.WeakKeyDictionary[INetStream, trio.Lock] = (
            weakref.WeakKeyDictionary())
        #: inbound pubsub streams reset because what came on them broke the reader
        self.broken_streams = 0
        #: message ID -> the topics we forwarded it on: in a sharded network one object
        #: travels on several topics under one message ID (SPEC §11.6)
        self._forwarded_on: OrderedDict[bytes, set[str]] = OrderedDict()
        self.forwarded_on_another_topic = 0
        #: set by a sharded node: objects may travel on several topics (else one each,
        #: and none of this costs a hash)
        self.multi_topic = False

    def set_gate(self, gate: GateFn, on_verdict: VerdictFn | None = None) -> None:
        self.gate = gate
        self.on_verdict = on_verdict

    def set_topic_validator(self, topic: str, validator: Any, is_async_validator: bool
                            ) -> None:
        raise NotImplementedError("RillPubsub judges messages with its gate: use set_gate")

    # -- blacklist: really cut off ---------------------------------------------------------
    # py-libp2p 0.8.1 resets only our outbound pubsub stream to a blacklisted peer and
    # keeps reading its inbound one: each further message still costs its transport, an
    # RPC parse and a task (~0.5 ms of CPU).  Close the connection and refuse the peer's
    # new pubsub streams.

    def add_to_blacklist(self, peer_id: ID) -> None:
        super().add_to_blacklist(peer_id)
        self.manager.run_task(self._disconnect, peer_id)

    async def _teardown_if_connected(self, peer_id: ID) -> None:
        """py-libp2p's teardown of a blacklisted peer, without its race: it awaits the
        stream's reset, then ``del self.peers[peer_id]``; meanwhile the connection may
        close (our ``_disconnect``, or the peer leaving) and the dead-peer handler
        remove the peer first.  The KeyError then escaped a Pubsub service task and took
        the daemon down (seen in the Sybil soak when a flooder was blacklisted)."""
        stream = self.peers.get(peer_id)
        if stream is not None:
            try:
                await stream.reset()
            except Exception as exc:  # a stream already gone
                log.debug("resetting %s's pubsub stream: %r", peer_id, exc)
            if self.peers.get(peer_id) is stream:
                del self.peers[peer_id]
        self._forget_all_subscriptions(peer_id)

    async def _disconnect(self, peer_id: ID) -> None:
        try:
            await self.host.disconnect(peer_id)
        except Exception as exc:  # a connection already gone
            log.debug("disconnecting blacklisted %s: %r", peer_id, exc)

    async def stream_handler(self, stream: Any) -> None:
        peer = stream.muxed_conn.peer_id
        if self.is_peer_blacklisted(peer) or self.blocked(peer):
            try:
                await stream.reset()
            except Exception as exc:
                log.debug("resetting a blacklisted peer's stream: %r", exc)
            return
        try:
            await super().stream_handler(stream)
        except Exception as exc:  # a peer's bytes: the trust boundary
            # py-libp2p lets an RPC that does not parse (protobuf DecodeError) and any
            # error while handling one escape into the swarm, which stops the host: one
            # bad frame from any peer took the daemon down (the Sybil soak hit it when a
            # neighbour's interleaved writes reached it, see write_msg).  Drop the
            # stream as py-libp2p does for an RPC over the size limit.
            self.broken_streams += 1
            log.warning("the pubsub stream of %s broke (%r): reset", peer, exc)
            try:
                await stream.reset()
            except Exception as exc2:
                log.debug("resetting %s's broken stream: %r", peer, exc2)
            self._handle_dead_peer(peer)

    def get_hello_packet(self) -> rpc_pb2.RPC:
        """The subscriptions a new stream opens with, without the sender's signed peer
        record: py-libp2p 0.8.1 puts that record (~210 bytes with one address, more with
        several) in every GossipSub RPC it sends, a field no other implementation has:
        more than the GRAFT, IHAVE or IDONTWANT it travels with, ~10% of a published
        object.  The receiver has the sender's addresses from identify already, and
        py-libp2p takes an RPC without the field as it is.  Every RPC this node sends
        goes without it (:meth:`write_msg`, :meth:`_build_announce_rpc`)."""
        packet = super().get_hello_packet()
        packet.ClearField("senderRecord")
        return packet

    def _build_announce_rpc(self, topic_id: str, subscribe: bool
                            ) -> tuple[rpc_pb2.RPC, rpc_pb2.RPC.SubOpts]:
        packet, subopt = super()._build_announce_rpc(topic_id, subscribe)
        packet.ClearField("senderRecord")
        return packet, subopt

    async def write_msg(self, stream: INetStream, rpc_msg: rpc_pb2.RPC) -> bool:
        """One RPC at a time per stream, and a stream reset when a write fails midway.

        py-libp2p 0.8.1 writes to a peer's stream from its sending loop and, at the same
        time, from GossipSub's flush of pending messages and its replay of recent ones
        to a new peer.  Yamux sends a write in frames of at most 64 KiB, and of what the
        peer's window allows, taking its lock per frame: two concurrent writes
        interleave their frames and the peer reads garbage.  A write that times out
        waiting for the window (5 s) leaves half an RPC on the stream, and py-libp2p
        writes the next one after it.  Both happen under load (a flooded neighbour
        reads slowly)."""
        rpc_msg.ClearField("senderRecord")  # see :meth:`get_hello_packet`
        lock = self._write_locks.get(stream)
        if lock is None:
            lock = self._write_locks[stream] = trio.Lock()
        async with lock:
            try:
                return bool(await super().write_msg(stream, rpc_msg))
            except BaseException:
                with trio.CancelScope(shield=True):
                    try:
                        await stream.reset()
                    except Exception as exc:
                        log.debug("resetting a stream after a failed write: %r", exc)
                raise

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """Judge one message (ours or a peer's) and act on the verdict; never raises."""
        try:
            if self._another_topic(msg_forwarder, msg):
                self.forwarded_on_another_topic += 1
                await self.router.publish(msg_forwarder, msg)
                return
        except Exception as exc:  # never into the Pubsub service
            self._log_once(msg, "forwarding a message from %s on another topic failed: %r",
                           msg_forwarder, exc)
            return
        try:
            judged = self._judge(msg_forwarder, msg)
        except Exception as exc:  # the trust boundary (trap 19)
            judged = self._internal_error(msg_forwarder, msg, exc), False
        if judged is None:
            return
        try:
            await self._act(msg_forwarder, msg, *judged)
        except Exception as exc:  # never into the Pubsub service
            self._log_once(msg, "acting on the verdict for a message from %s failed: %r",
                           msg_forwarder, exc)

    # -- one object on several topics ----------------------------------------------------

    def _another_topic(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """Whether a peer's message is one we accepted and forwarded on another topic,
        now on a topic we are subscribed to and have not forwarded it on: a settlement
        goes to several shard topics under one message ID (SHA-256(from || data)), and a
        node in two of those shards must forward it in both, or members of the second
        one that hear it only through this node miss it.  Forwarded only (delivered and
        judged once), and only with a valid envelope signature (it covers the topic)."""
        if not self.multi_topic or forwarder == self.my_id or len(msg.topicIDs) != 1:
            return False
        topic = msg.topicIDs[0]
        done = self._forwarded_on.get(self.get_message_id(msg))
        if done is None or topic in done or topic not in self.topic_ids:
            return False
        if (self.is_peer_blacklisted(forwarder) or self.blocked(forwarder)
                or self.is_peer_blacklisted(ID(msg.from_id))):
            return False
        if self.strict_signing and not signature_validator(msg):
            # a forged copy of a known message: invalid, scored like any (trap 20)
            scorer = getattr(self.router, "scorer", None)
            if scorer is not None:
                scorer.on_invalid_message(forwarder, topic)
            return False
        done.add(topic)
        return True

    def _note_forwarded(self, msg: rpc_pb2.Message) -> None:
        if not self.multi_topic:
            return
        mid = self.get_message_id(msg)
        done = self._forwarded_on.get(mid)
        if done is None:
            done = self._forwarded_on[mid] = set()
            if len(self._forwarded_on) > FORWARDED_MAX:
                self._forwarded_on.popitem(last=False)
        done.update(msg.topicIDs)

    # -- judging -------------------------------------------------------------------------

    def _judge(self, forwarder: ID, msg: rpc_pb2.Message) -> tuple[Verdict, bool] | None:
        """The verdict, and whether an IGNORE may mark the message ID seen; None: dropped
        before the gate (blacklisted, seen, below the publish score)."""
        if self.is_peer_blacklisted(forwarder) or self.is_peer_blacklisted(ID(msg.from_id)):
            return None
        if forwarder != self.my_id and self.blocked(forwarder):
            # what a blocked peer sends (its connection is being closed).  Objects it
            # published that others forward are judged like any other: a block is about
            # connections, and dropping them would lose them for good where a forwarder
            # sent them while the block was being lifted (a heal is never atomic)
            self.blocked_dropped += 1
            return None
        if self._is_msg_seen(msg) and forwarder != self.my_id:
            # our own republish (rill.node.monthend) goes out again: its schedule paces
            # it, and under an accelerated clock it comes within the 120 s seen cache
            return None
        scorer = getattr(self.router, "scorer", None)
        if scorer is not None and not scorer.allow_publish(forwarder, list(msg.topicIDs)):
            log.debug("dropped a message from %s: below the publish threshold", forwarder)
            return None
        checked: list[bool] = []

        def envelope_ok() -> bool:
            if not self.strict_signing:
                return True
            if not checked:
                try:
                    checked.append(bool(signature_validator(msg)))
                except Exception as exc:  # a malformed key is a bad envelope
                    log.debug("envelope check failed: %r", exc)
                    checked.append(False)
            return checked[0]

        verdict = self.gate(forwarder, msg, envelope_ok)
        if not isinstance(verdict, Verdict) or not isinstance(verdict.outcome, Outcome):
            raise TypeError(f"the gate returned {verdict!r}, not a Verdict")
        return verdict, verdict.outcome is IGNORE and _may_mark_seen(msg, checked)

    def _internal_error(self, forwarder: ID, msg: rpc_pb2.Message, exc: Exception) -> Verdict:
        self._log_once(msg, "gate failed on a message from %s (rejected): %r", forwarder, exc)
        return Verdict(REJECT, f"internal error: {exc!r}")

    def _log_once(self, msg: rpc_pb2.Message, fmt: str, *args: Any) -> None:
        try:
            oid = object_id(msg.data)
        except Exception:  # msg.data is always bytes in practice
            oid = b""
        if oid in self._logged:
            return
        if len(self._logged) >= LOGGED_MAX:
            self._logged.clear()
        self._logged.add(oid)
        log.warning(fmt + " [object %s]", *args, oid.hex()[:16])

    # -- acting --------------------------------------------------------------------------

    async def _act(self, forwarder: ID, msg: rpc_pb2.Message, verdict: Verdict,
                   mark_ignored: bool) -> None:
        outcome = verdict.outcome
        scorer = getattr(self.router, "scorer", None)
        own = forwarder == self.my_id
        if outcome is REJECT:
            log.debug("rejected a message from %s: %s", forwarder, verdict.reason)
            if scorer is not None and not own:
                for topic in msg.topicIDs:
                    if topic in self.topic_ids:  # only topics we score (no attacker keys)
                        scorer.on_invalid_message(forwarder, topic)
        elif outcome is IGNORE:
            if mark_ignored:
                self._mark_msg_seen(msg)
        else:  # ACCEPT: as py-libp2p after a successful validation
            self._mark_msg_seen(msg)
            if scorer is not None:
                for topic in msg.topicIDs:
                    scorer.on_first_delivery(forwarder, topic)
        self._tell(forwarder, msg, verdict)  # after scoring: it may blacklist at once
        if outcome is not ACCEPT:
            return
        if ID(msg.from_id) == self.my_id and not own:
            log.debug("dropping a message claiming to be from us, forwarded by %s", forwarder)
            return
        self.notify_subscriptions(msg)
        self._note_forwarded(msg)
        await self.router.publish(forwarder, msg)

    def _tell(self, forwarder: ID, msg: rpc_pb2.Message, verdict: Verdict) -> None:
        if self.on_verdict is not None:
            try:
                self.on_verdict(forwarder, msg, verdict)
            except Exception as exc:  # counters must not stop gossip
                self._log_once(msg, "on_verdict failed: %r", exc)


def _may_mark_seen(msg: rpc_pb2.Message, checked: list[bool]) -> bool:
    """Whether an IGNOREd message's ID may go into the seen cache.

    The ID is SHA-256(from || data) and an IGNORE is decided before the envelope
    signature is checked.  If the message claims to come from the object's signer, a
    forged copy marked seen would make the author's real (re)publish look seen, and
    py-libp2p's seen cache is refreshed on every lookup, so the forger could keep it so.
    Such messages are marked only when their envelope signature verified.
    """
    if checked:
        return checked[0]
    return peer_key(msg.from_id) != signer_of(msg.data)
