"""An outside attacker for Rill daemons, built directly on py-libp2p 0.8.1.

It has its own libp2p host, Pubsub/GossipSub and streams; it uses ``rill.protocol``
(through tests/forge.py) only to build and sign Rill objects and never imports
``rill.node``.
Everything here talks to real ``rill node run`` processes over real TCP.

What it can do (one :class:`Attacker` = one libp2p identity, one connection per target):

* join the gossip network like any peer (``connect``, ``subscribe``, ``received``);
* inject raw GossipSub RPCs on a dedicated ``/meshsub/1.1.0`` stream it opens to a
  target (the target's Pubsub reads every inbound meshsub stream), so it controls each
  message's ``from``, ``seqno``, key and signature: ``publish`` (its own key),
  ``publish_as`` (N throwaway libp2p keys through this ONE connection),
  ``flood`` / ``flood_bad_signatures`` (paced, with corrupted envelope signatures);
* ``slowloris``: open many ``/rill/sync/1.0.0`` streams and send nothing;
* act as a sync server: ``sync="empty"`` (honest, nothing to give), ``"hostile"``
  (always answers ``more = 1``), or ``None`` (no handler: a gossip-only peer);
* ``sync_request``: ask a daemon for objects like an honest client.

:func:`sybils` starts several identities at once (a soak test's "4 Sybil identities
per honest node"); tests/attackcost.py measures what attacks cost each side.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import nacl.signing
import trio
from forge import object_id
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import X25519PrivateKey
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed

from rill.protocol import messages as m
from rill.protocol.network import (
    SYNC_PROTOCOL,
    TOPIC_OF,
    TOPICS,
    SyncRequest,
    SyncResponse,
    frame,
)

log = logging.getLogger("rill.tests.attacker")

SETTLEMENTS, RECEIPTS, KEYS, EQUIVOCATIONS = (
    "rill/1/settlements", "rill/1/receipts", "rill/1/keys", "rill/1/equivocations")
PUBSUB_SIGNING_PREFIX = b"libp2p-pubsub:"


# -- identities -------------------------------------------------------------------------

def keypair(seed: bytes | None = None) -> KeyPair:
    """A libp2p Ed25519 key pair (fresh unless ``seed`` is given)."""
    priv = Ed25519PrivateKey(nacl.signing.SigningKey(seed or os.urandom(32)))
    return KeyPair(priv, priv.get_public_key())


def peer_id_of_seed(seed: bytes) -> ID:
    return ID.from_pubkey(keypair(seed).public_key)


class Signer:
    """A libp2p identity that signs pubsub messages (``from`` = its peer ID)."""

    def __init__(self, kp: KeyPair | None = None) -> None:
        self.kp = kp or keypair()
        self.peer_id = ID.from_pubkey(self.kp.public_key)
        self.from_id = self.peer_id.to_bytes()
        self._key = self.kp.public_key.serialize()
        self._seq = int.from_bytes(os.urandom(4), "big") << 24

    def message(self, topic: str, data: bytes, *, corrupt: bool = False) -> rpc_pb2.Message:
        """A StrictSign message as py-libp2p's ``publish`` builds it; ``corrupt`` flips
        one bit of the envelope signature (everything else stays valid)."""
        self._seq += 1
        msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=self.from_id,
                              seqno=self._seq.to_bytes(8, "big"))
        sig = self.kp.private_key.sign(PUBSUB_SIGNING_PREFIX + msg.SerializeToString())
        if corrupt:
            sig = sig[:10] + bytes([sig[10] ^ 0x01]) + sig[11:]
        msg.key = self._key
        msg.signature = sig
        return msg


def throwaway_signers(n: int) -> list[Signer]:
    return [Signer() for _ in range(n)]


# -- the attacker -----------------------------------------------------------------------

@dataclass
class Received:
    at: float
    topic: str
    from_id: bytes
    data: bytes


@dataclass
class FloodStats:
    sent: int = 0
    write_errors: int = 0
    elapsed: float = 0.0
    attacker_cpu_s: float = 0.0


@dataclass
class SyncServed:
    pages: int = 0
    times: list[float] = field(default_factory=list)


def _make_host(kp: KeyPair) -> IHost:
    noise = X25519PrivateKey.from_bytes(os.urandom(32))
    host = new_host(
        key_pair=kp,
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(kp, noise_privkey=noise)},
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},  # type: ignore[dict-item]
        connection_config=ConnectionConfig(min_connections=0, low_watermark=0,
                                           auto_connect_interval=3600),
    )

    async def _off() -> None:  # the AutoConnector re-dials forever (LIBP2P_NOTES trap 13)
        return None

    host.get_network().auto_connector.start = _off  # type: ignore[attr-defined]
    return host


class _AskedFor(dict):  # type: ignore[type-arg]
    """The host's protocol-handler table, remembering every protocol a peer proposed
    on a stream it opened to us (multistream-select checks ``proto in handlers``), so
    we can see a daemon try ``/rill/sync/1.0.0`` even when we have no handler."""

    def __init__(self, handlers: dict[Any, Any], log: list[tuple[float, str]]) -> None:
        super().__init__(handlers)
        self.asked = log

    def __contains__(self, protocol: object) -> bool:
        self.asked.append((time.monotonic(), str(protocol)))
        return super().__contains__(protocol)


def _quiet_libp2p() -> None:
    lg = logging.getLogger("libp2p")
    if not lg.handlers:
        lg.addHandler(logging.NullHandler())
    lg.setLevel(logging.CRITICAL)


class Attacker:
    """One libp2p identity attacking Rill daemons (see the module doc).

    Use ``async with Attacker.running(...) as a:``; ``sync`` picks the sync server it
    runs: ``"empty"`` (default: answers honestly that it has nothing), ``"hostile"``
    (``more = 1`` forever, objects from ``hostile_objects(page)``), ``None`` (no
    ``/rill/sync/1.0.0`` handler at all).  ``silent``: a peer that joins the meshes
    (it subscribes and grafts) but carries nothing: what it receives is only recorded
    in ``received``, never forwarded nor announced (an eclipse-minded Sybil)."""

    def __init__(self, seed: bytes | None = None, *, sync: str | None = "empty",
                 hostile_objects: Callable[[int], list[bytes]] | None = None,
                 silent: bool = False) -> None:
        self.signer = Signer(keypair(seed))
        self.silent = silent
        self.peer_id = self.signer.peer_id
        self.sync_mode = sync
        self.hostile_objects = hostile_objects or (lambda page: [])
        self.served = SyncServed()
        self.received: list[Received] = []
        #: (time, protocol) of every stream protocol peers proposed to us
        self.asked: list[tuple[float, str]] = []
        self.first_seen: dict[bytes, float] = {}
        self.host: IHost | None = None
        self.pubsub: Pubsub | None = None
        self.gossipsub: GossipSub | None = None
        self._raw: dict[ID, INetStream] = {}
        self._raw_locks: dict[ID, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None

    # -- life cycle ---------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def running(cls, seed: bytes | None = None, *, subscribe: bool = True,
                      **kw: Any) -> AsyncIterator[Attacker]:
        _quiet_libp2p()
        self = cls(seed, **kw)
        host = _make_host(self.signer.kp)
        gs = GossipSub(protocols=[PROTOCOL_ID_V11], degree=6, degree_low=4, degree_high=12,
                       heartbeat_initial_delay=0.1, heartbeat_interval=1,
                       spam_protection_enabled=False, adaptive_gossip_enabled=False)
        ps = Pubsub(host, gs, strict_signing=True,
                    msg_id_constructor=lambda msg: hashlib.sha256(msg.from_id
                                                                  + msg.data).digest())
        self.host, self.pubsub, self.gossipsub = host, ps, gs
        if self.silent:
            ps.push_msg = self._record  # type: ignore[method-assign]
        mux = host.get_mux()
        mux.handlers = _AskedFor(mux.handlers, self.asked)  # type: ignore[assignment]
        if self.sync_mode == "empty":
            host.set_stream_handler(TProtocol(SYNC_PROTOCOL), self._serve_empty)
        elif self.sync_mode == "hostile":
            host.set_stream_handler(TProtocol(SYNC_PROTOCOL), self._serve_hostile)
        elif self.sync_mode is not None:
            raise ValueError(f"unknown sync mode {self.sync_mode!r}")
        try:
            async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]), \
                    background_trio_service(ps), background_trio_service(gs), \
                    trio.open_nursery() as nursery:
                await ps.wait_until_ready()
                self._nursery = nursery
                if subscribe:
                    for topic in TOPICS:
                        nursery.start_soon(self._drain, topic, await ps.subscribe(topic))
                try:
                    yield self
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # py-libp2p nests a nursery per service:
            raise _leaf(group) from None     # show the one error that matters
        finally:
            with trio.CancelScope(shield=True):
                await host.close()
            ps.seen_messages.stop()

    async def _record(self, forwarder: ID, msg: rpc_pb2.Message) -> None:
        """A silent peer's ``push_msg``: note what arrived (no signature check) and
        neither deliver, forward nor announce it (nothing enters the message cache)."""
        now = time.monotonic()
        topic = msg.topicIDs[0] if msg.topicIDs else ""
        self.received.append(Received(now, topic, msg.from_id, msg.data))
        self.first_seen.setdefault(object_id(msg.data), now)

    async def _drain(self, topic: str, sub: Any) -> None:
        while True:
            msg = await sub.get()
            now = time.monotonic()
            self.received.append(Received(now, topic, msg.from_id, msg.data))
            self.first_seen.setdefault(object_id(msg.data), now)

    # -- joining ------------------------------------------------------------------------

    async def connect(self, addr: str, timeout: float = 20.0) -> ID:
        """Dial a daemon and wait until both sides are gossip peers (its hello arrived)."""
        assert self.host is not None and self.pubsub is not None
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        with trio.fail_after(timeout):
            await self.host.connect(info)
            while not all(info.peer_id in self.pubsub.peer_topics.get(t, ())
                          for t in TOPICS):
                await trio.sleep(0.05)
        return info.peer_id

    async def wait_mesh(self, target: ID, topics: Sequence[str] = tuple(TOPICS),
                        timeout: float = 10.0) -> None:
        """Wait until ``target`` grafted us (and we it) on ``topics``."""
        assert self.gossipsub is not None
        with trio.fail_after(timeout):
            while not all(target in self.gossipsub.mesh.get(t, ()) for t in topics):
                await trio.sleep(0.05)

    def gossip_peer(self, target: ID) -> bool:
        """False once the target tore down its pubsub stream to us (it cut us off)."""
        assert self.pubsub is not None
        return target in self.pubsub.peers

    # -- raw injection ------------------------------------------------------------------

    async def _stream(self, target: ID) -> INetStream:
        assert self.host is not None
        if target not in self._raw:
            self._raw[target] = await self.host.new_stream(target, [PROTOCOL_ID_V11])
            self._raw_locks[target] = trio.Lock()
        return self._raw[target]

    async def send(self, target: ID, msgs: Sequence[rpc_pb2.Message]) -> bool:
        """Write one RPC carrying ``msgs`` on our own meshsub stream to ``target``.
        False when the stream is gone (the target reset it)."""
        stream = await self._stream(target)
        data = encode_varint_prefixed(rpc_pb2.RPC(publish=list(msgs)).SerializeToString())
        async with self._raw_locks[target]:
            try:
                await stream.write(data)
                return True
            except Exception as exc:
                log.debug("write to %s failed: %s", target, exc)
                return False

    async def publish(self, target: ID, data: bytes, topic: str | None = None) -> bool:
        """Publish ``data`` under our own key to ``target`` (the topic its type needs; a type
        no topic carries, a plain claim say, goes where it would belong)."""
        topic = topic or TOPIC_OF.get(m.peek_type(data) or "", "rill/1/settlements")
        return await self.send(target, [self.signer.message(topic, data)])

    async def publish_as(self, target: ID, data: bytes, signers: Sequence[Signer],
                         topic: str | None = None, per_rpc: int = 20,
                         rate: float | None = None) -> FloodStats:
        """The same payload under each of ``signers`` (throwaway keys: ``from`` = their
        peer IDs, valid envelope signatures), all through our one connection."""
        cpu0 = time.process_time()
        topic = topic or TOPIC_OF[m.peek_type(data) or ""]
        msgs = [s.message(topic, data) for s in signers]
        stats = await self.flood({target: msgs}, rate=rate, per_rpc=per_rpc)
        stats.attacker_cpu_s = time.process_time() - cpu0  # signing included
        return stats

    async def flood(self, plan: dict[ID, list[rpc_pb2.Message]], *, rate: float | None,
                    per_rpc: int = 1) -> FloodStats:
        """Send prepared messages, interleaving targets, at ``rate`` messages per second
        in total (None: as fast as the streams take them)."""
        stats = FloodStats()
        cpu0, t0 = time.process_time(), trio.current_time()
        queues = {t: list(msgs) for t, msgs in plan.items()}
        step = per_rpc / rate if rate else 0.0
        due = t0
        while any(queues.values()):
            for target, q in queues.items():
                if not q:
                    continue
                batch, queues[target] = q[:per_rpc], q[per_rpc:]
                if await self.send(target, batch):
                    stats.sent += len(batch)
                else:
                    stats.write_errors += len(batch)
                if step:
                    due += step
                    await trio.sleep_until(max(due, trio.current_time()))
                else:
                    await trio.sleep(0)
        stats.elapsed = trio.current_time() - t0
        stats.attacker_cpu_s = time.process_time() - cpu0
        return stats

    async def flood_bad_signatures(self, targets: Sequence[ID], payloads: Sequence[bytes],
                                   count: int, rate: float, topic: str = SETTLEMENTS
                                   ) -> FloodStats:
        """``count`` messages in all, spread over ``targets``, each with a corrupted
        envelope signature (payloads cycled), at ``rate`` per second in total."""
        cpu0 = time.process_time()
        plan: dict[ID, list[rpc_pb2.Message]] = {t: [] for t in targets}
        for i in range(count):
            plan[targets[i % len(targets)]].append(
                self.signer.message(topic, payloads[i % len(payloads)], corrupt=True))
        stats = await self.flood(plan, rate=rate)
        stats.attacker_cpu_s = time.process_time() - cpu0  # signing included
        return stats

    # -- streams ------------------------------------------------------------------------

    async def slowloris(self, target: ID, n: int) -> list[INetStream]:
        """Try to open ``n`` sync streams to ``target`` and send nothing on them; return
        those that opened (a defender may refuse or reset the rest)."""
        assert self.host is not None
        streams = []
        for _ in range(n):
            try:
                with trio.fail_after(5):
                    streams.append(await self.host.new_stream(target,
                                                              [TProtocol(SYNC_PROTOCOL)]))
            except (Exception, trio.TooSlowError):
                continue
        return streams

    @staticmethod
    async def wait_closed(streams: Sequence[INetStream], timeout: float
                          ) -> list[float | None]:
        """Seconds until the remote closed or reset each stream (None: still open)."""
        t0 = trio.current_time()
        closed: list[float | None] = [None] * len(streams)

        async def watch(i: int, s: INetStream) -> None:
            try:
                while await s.read(1024):
                    pass
            except Exception as exc:
                log.debug("slow stream %d ended: %s", i, exc)
            closed[i] = trio.current_time() - t0

        with trio.move_on_after(timeout):
            async with trio.open_nursery() as n:
                for i, s in enumerate(streams):
                    n.start_soon(watch, i, s)
        return closed

    async def sync_request(self, target: ID, subject: bytes, after: int = 0,
                           limit: int = 1000, timeout: float = 10.0) -> SyncResponse:
        """One honest sync request (SPEC §11.3)."""
        assert self.host is not None
        with trio.fail_after(timeout):
            stream = await self.host.new_stream(target, [TProtocol(SYNC_PROTOCOL)])
            await stream.write(frame(SyncRequest(subject, after, limit).encode()))
            n = int.from_bytes(await _read_exactly(stream, 4), "big")
            resp = SyncResponse.decode(await _read_exactly(stream, n))
            await stream.close()
            return resp

    async def _serve_empty(self, stream: INetStream) -> None:
        await self._serve(stream, hostile=False)

    async def _serve_hostile(self, stream: INetStream) -> None:
        await self._serve(stream, hostile=True)

    async def _serve(self, stream: INetStream, hostile: bool) -> None:
        try:
            n = int.from_bytes(await _read_exactly(stream, 4), "big")
            req = SyncRequest.decode(await _read_exactly(stream, n))
            if hostile:
                self.served.pages += 1
                self.served.times.append(time.monotonic())
                resp = SyncResponse(tuple(self.hostile_objects(self.served.pages)),
                                    req.after + 1, True)
            else:
                resp = SyncResponse((), req.after, False)
            await stream.write(frame(resp.encode()))
            await stream.close()
        except Exception as exc:  # never let a handler's exception reach the swarm
            log.debug("sync stream failed: %s", exc)
            try:
                await stream.reset()
            except Exception as exc2:
                log.debug("reset failed: %s", exc2)

    # -- observation --------------------------------------------------------------------

    def asked_for(self, protocol: str = SYNC_PROTOCOL) -> int:
        """How many streams peers tried to open to us with ``protocol``."""
        return sum(1 for _, p in self.asked if p == protocol)

    def seen_from(self, peer: ID, data: bytes) -> list[Received]:
        """Messages carrying ``data`` whose libp2p ``from`` is ``peer``."""
        fid = peer.to_bytes()
        return [r for r in self.received if r.from_id == fid and r.data == data]


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside nested exception groups that is not a cancellation."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, trio.Cancelled)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


async def _read_exactly(stream: INetStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


@asynccontextmanager
async def sybils(n: int, **kw: Any) -> AsyncIterator[list[Attacker]]:
    """``n`` attackers with fresh identities, running together."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Attacker.running(**kw)) for _ in range(n)]


__all__ = ["Attacker", "FloodStats", "Signer", "sybils", "throwaway_signers"]
