"""libp2p wiring for a Rill node (py-libp2p 0.8.1): host, GossipSub, streams, shutdown.

Every setting here answers a measured trap (see docs/NETWORK.md; the patches of
py-libp2p itself are in node/patches.py):

* identity = the wallet's Ed25519 key; Noise only (X25519 static key), Yamux only;
* the swarm's AutoConnector is switched off (it re-dials forever in sparse networks);
* GossipSub v1.1 with a 1 s heartbeat, D = 6 (4..12), spam protection and adaptive
  gossip off (silent drops / 30 s heartbeats), peer scoring that cuts off peers that
  send invalid messages, and a blacklist so the verdict survives reconnects;
* message ID = SHA-256(from || data), so a replay under another identity cannot
  poison the validation cache of the original;
* every message goes through one gate (rill.node.pubsub.RillPubsub): ACCEPT, IGNORE or
  REJECT, bad envelope signatures scored, nothing escaping into the Pubsub service;
* a TCP port another process listens on is refused before listening (py-libp2p's
  listener sets SO_REUSEPORT and would share it silently);
* stream handlers never let an exception escape; frames are length-prefixed.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import X25519PrivateKey
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.network.config import ConnectionConfig
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.score import ScoreParams, TopicScoreParams
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from nacl.signing import SigningKey

from ..protocol.network import FRAME_HEADER, frame, frame_length
from . import patches
from .ports import free_port_near, listen_error
from .pubsub import GateFn, RillPubsub, VerdictFn
from .router import RillGossipSub

log = logging.getLogger("rill.node.host")

DEFAULT_PORT = 4741

# -- gossip and scoring settings (SPEC §11, docs/NETWORK.md) -----------------------------
HEARTBEAT_S = 1
DEGREE, DEGREE_LOW, DEGREE_HIGH = 6, 4, 12
#: P4 (invalid messages): py-libp2p 0.8.1 subtracts weight * min(count, cap), so both are
#: positive; decay 0.999 per heartbeat forgives ~10 invalid messages in about 40 minutes.
P4_WEIGHT, P4_CAP, P4_DECAY = 10.0, 1000.0, 0.999
GOSSIP_THRESHOLD = -10.0
PUBLISH_THRESHOLD = -50.0
#: A peer is cut off past the publish threshold (its later messages are dropped before
#: validation, so its score stops near -60): the graylist must be above that floor.
GRAYLIST_THRESHOLD = -55.0


patches.patch_libp2p()  # node/patches.py


def keypair_from_seed(seed: bytes) -> KeyPair:
    priv = Ed25519PrivateKey(SigningKey(seed))
    return KeyPair(priv, priv.get_public_key())


def peer_id_from_seed(seed: bytes) -> ID:
    return ID.from_pubkey(keypair_from_seed(seed).public_key)



def key_from_peer_id(peer: ID) -> bytes | None:
    """The Rill identity behind a peer ID, when it is an Ed25519 key."""
    try:
        pub = peer.extract_public_key()
    except Exception:
        return None
    if pub is None:
        return None
    raw = pub.to_bytes()
    return raw if len(raw) == 32 else None


def _noise_key(seed: bytes) -> X25519PrivateKey:
    """X25519 Noise static key, domain-separated from the identity seed."""
    return X25519PrivateKey.from_bytes(hashlib.sha256(b"rill/1/noise-static" + seed).digest())


def message_id(msg: rpc_pb2.Message) -> bytes:
    return hashlib.sha256(msg.from_id + msg.data).digest()


def score_params() -> ScoreParams:
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=P4_WEIGHT, cap=P4_CAP, decay=P4_DECAY),
        gossip_threshold=GOSSIP_THRESHOLD, publish_threshold=PUBLISH_THRESHOLD,
        graylist_threshold=GRAYLIST_THRESHOLD, accept_px_threshold=-math.inf,
    )


BlockedFn = Callable[[ID], bool]


def gate_blocked(host: IHost, blocked: BlockedFn) -> None:
    """Never connect with a blocked peer (``rill peers block``): the swarm refuses to
    dial it (bootstrap, mDNS, peer exchange, the DHT, a stream we open), and a connection
    from it is closed as soon as its Noise handshake has named it, before anything
    (identify, pubsub) sees it.  ``blocked`` is asked each time (the list changes while
    the node runs)."""
    swarm = host.get_network()
    add_conn, dial_peer = swarm.add_conn, swarm.dial_peer  # type: ignore[attr-defined]

    async def _add_conn(muxed_conn: Any, direction: str = "unknown") -> Any:
        peer = muxed_conn.peer_id
        if blocked(peer):
            log.info("closed a connection (%s) of blocked peer %s", direction, peer)
            try:
                await muxed_conn.close()
            except Exception as exc:  # already closing
                log.debug("closing a blocked peer's connection: %r", exc)
            raise SwarmException(f"peer {peer} is blocked")
        return await add_conn(muxed_conn, direction)

    async def _dial_peer(peer_id: ID) -> Any:
        if blocked(peer_id):
            raise SwarmException(f"peer {peer_id} is blocked: not dialling it")
        return await dial_peer(peer_id)

    swarm.add_conn = _add_conn  # type: ignore[attr-defined]
    swarm.dial_peer = _dial_peer  # type: ignore[attr-defined]


def make_host(seed: bytes, mdns: bool = False) -> IHost:
    kp = keypair_from_seed(seed)
    host = new_host(
        key_pair=kp,
        enable_mDNS=mdns,
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(kp, noise_privkey=_noise_key(seed))},
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},  # type: ignore[dict-item]
        connection_config=ConnectionConfig(min_connections=0, low_watermark=0,
                                           auto_connect_interval=3600,
                                           max_connections_per_peer=1),
    )
    auto = host.get_network().auto_connector  # type: ignore[attr-defined]

    async def _off() -> None:  # Swarm.run() starts it; a no-op start keeps it idle
        return None

    auto.start = _off  # type: ignore[method-assign]
    return host


def make_gossipsub() -> GossipSub:
    return RillGossipSub(
        protocols=[PROTOCOL_ID_V11], degree=DEGREE, degree_low=DEGREE_LOW,
        degree_high=DEGREE_HIGH, heartbeat_initial_delay=0.1, heartbeat_interval=HEARTBEAT_S,
        spam_protection_enabled=False, adaptive_gossip_enabled=False,
        score_params=score_params(),
    )


@dataclass
class P2P:
    host: IHost
    pubsub: RillPubsub
    gossipsub: GossipSub
    dht: KadDHT
    #: circuit relay v2 (node/natrelay.py), set by the daemon: dials relayed addresses
    nat: Any = None

    @property
    def peer_id(self) -> ID:
        return self.host.get_id()

    def addrs(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()]

    @property
    def scorer(self) -> Any:
        assert self.gossipsub.scorer is not None  # always set: make_gossipsub passes params
        return self.gossipsub.scorer

    def score(self, peer: ID, topics: list[str]) -> float:
        return float(self.scorer.score(peer, topics))

    async def connect(self, addr: str) -> ID:
        if "/p2p-circuit" in addr and self.nat is not None:  # the swarm skips these
            peer: ID = await self.nat.dial(addr)
            return peer
        info: PeerInfo = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        await self.host.connect(info)
        await self.dht.routing_table.add_peer(info.peer_id)
        return info.peer_id


class PortInUse(Exception):
    """A TCP port we were asked to listen on is taken by another process."""


def check_ports(listen: list[str]) -> None:
    """Refuse a /ip4|ip6/.../tcp/PORT address (PORT != 0) that something already listens
    on: bind and listen on a plain socket (SO_REUSEADDR, no SO_REUSEPORT) first.

    py-libp2p's TCP listener sets SO_REUSEPORT, so a second daemon on the same port binds
    without an error and the kernel splits the incoming connections between the two.
    Other bind errors are left to libp2p (the daemon reports an address it could not use).
    """
    for addr in listen:
        ma = multiaddr.Multiaddr(addr)
        names = [p.name for p in ma.protocols()]
        if len(names) < 2 or names[0] not in ("ip4", "ip6") or names[1] != "tcp":
            continue
        host, port = ma.value_for_protocol(names[0]), int(ma.value_for_protocol("tcp"))
        if port == 0:
            continue
        family = socket.AF_INET if names[0] == "ip4" else socket.AF_INET6
        exc = listen_error(family, host, port)
        if exc is None:
            continue
        if exc.errno == errno.EADDRINUSE:
            other = free_port_near(family, host, port, step=10)
            example = addr.replace(f"/tcp/{port}", f"/tcp/{other or 'PORT'}")
            raise PortInUse(f"TCP port {port} ({addr}) is already in use, perhaps by "
                            f"another node: choose another with --listen {example}")
        log.debug("port check of %s: %s (left to libp2p)", addr, exc)


@asynccontextmanager
async def running(seed: bytes, listen: list[str], mdns: bool = False,
                  gate: GateFn | None = None, on_verdict: VerdictFn | None = None,
                  blocked: BlockedFn | None = None) -> AsyncIterator[P2P]:
    """Host + RillPubsub + GossipSub + Kademlia DHT (server mode), started; everything
    closed on exit (no listener, task or thread left behind).  ``gate``: see
    :class:`rill.node.pubsub.RillPubsub` (default: the envelope check only);
    ``blocked(peer)``: peers never connected with (:func:`gate_blocked`).
    Raises :class:`PortInUse` before anything starts."""
    check_ports(listen)
    host = make_host(seed, mdns)
    if blocked is not None:
        gate_blocked(host, blocked)
    gs = make_gossipsub()
    ps = RillPubsub(host, gs, strict_signing=True, msg_id_constructor=message_id, gate=gate,
                    on_verdict=on_verdict, blocked=blocked)
    dht = KadDHT(host, DHTMode.SERVER)  # before any connection: identify advertises it
    try:
        async with host.run([multiaddr.Multiaddr(a) for a in listen]):
            async with background_trio_service(ps), background_trio_service(gs), \
                    background_trio_service(dht):
                await ps.wait_until_ready()
                yield P2P(host, ps, gs, dht)
            await close_host(host)  # leaving run() alone leaves the listener open
    finally:
        await close_host(host)
        ps.seen_messages.stop()  # joins the seen-cache sweeper thread


#: a host's close is given this long (shielded from the cancellation that stops the node)
CLOSE_S = 15.0


async def close_host(host: IHost) -> None:
    """Close every connection at once, then the host (idempotent, shielded, bounded).

    py-libp2p 0.8.1 closes a host's connections one after another, each close sleeping
    0.2 s (0.1 s in Yamux's close, 0.1 s in the connection's clean-up) for handlers to
    see the end: a node with 50 connections took 10 s to stop, a relay with hundreds
    minutes.  Closed together they take that 0.2 s once.  The whole close is bounded by
    CLOSE_S: a peer that stops reading cannot hold the node's stop (a write to it would
    wait for ever); what is left then goes with the process."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + CLOSE_S
        conns = [c for cs in list(host.get_network().connections.values())
                 for c in (cs if isinstance(cs, list) else [cs])]
        if conns:
            async with trio.open_nursery() as nursery:
                for conn in conns:
                    nursery.start_soon(_close_quietly, conn)
        await host.close()
    if scope.cancelled_caught:
        log.warning("closing the libp2p host took over %g s: left to the process's end",
                    CLOSE_S)


async def _close_quietly(conn: Any) -> None:
    try:
        await conn.close()
    except Exception as exc:  # one connection's failure must not stop the others' close
        log.debug("closing a connection: %r", exc)


# -- streams ---------------------------------------------------------------------------

async def read_exactly(stream: INetStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


async def read_frame(stream: INetStream, limit: int) -> bytes:
    n = frame_length(await read_exactly(stream, FRAME_HEADER), limit)
    return await read_exactly(stream, n)


RequestHandler = Callable[[ID, bytes], Awaitable[bytes]]


#: A request frame must arrive within this many seconds, and the whole exchange end
#: within HANDLER_TIMEOUT_S (a client that sends nothing holds nothing for long).
REQUEST_TIMEOUT_S = 10.0
HANDLER_TIMEOUT_S = 60.0
#: Streams of one protocol served at once, per peer and in all; more are reset at once
#: (one peer holding slow streams cannot starve the others).
MAX_STREAMS_PER_PEER = 8
MAX_CONCURRENT_STREAMS = 256


def framed_handler(fn: RequestHandler, request_limit: int) -> Callable[[INetStream],
                                                                       Awaitable[None]]:
    """One request frame in, one response frame out, within time limits and a bound on
    streams served at once.  No exception ever escapes a stream handler (one would block
    the peer's new streams, or stop the swarm)."""
    active: dict[Any, int] = {}

    async def handler(stream: INetStream) -> None:
        peer = getattr(stream.muxed_conn, "peer_id", None)
        if (active.get(peer, 0) >= MAX_STREAMS_PER_PEER
                or sum(active.values()) >= MAX_CONCURRENT_STREAMS):
            log.debug("too many streams at once: resetting one from %s", peer)
            await _reset(stream)
            return
        active[peer] = active.get(peer, 0) + 1
        try:
            with trio.fail_after(HANDLER_TIMEOUT_S):
                with trio.fail_after(REQUEST_TIMEOUT_S):
                    request = await read_frame(stream, request_limit)
                await stream.write(frame(await fn(peer, request)))
                await stream.close()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await _reset(stream)
            raise
        except Exception as exc:  # TooSlowError included
            log.info("stream from %s failed: %s", getattr(stream.muxed_conn, "peer_id", "?"),
                     exc or type(exc).__name__)
            with trio.CancelScope(shield=True):
                await _reset(stream)
        finally:
            active[peer] -= 1
            if not active[peer]:
                del active[peer]

    return handler


async def _reset(stream: INetStream) -> None:
    try:
        await stream.reset()
    except Exception as exc:
        log.debug("reset failed: %s", exc)


async def request(host: IHost, peer: ID, protocol: str, payload: bytes, limit: int,
                  timeout: float = 15.0) -> bytes:
    with trio.fail_after(timeout):
        stream = await host.new_stream(peer, [TProtocol(protocol)])
        try:
            await stream.write(frame(payload))
            response = await read_frame(stream, limit)
            await stream.close()
            return response
        except BaseException:
            with trio.CancelScope(shield=True):
                await _reset(stream)
            raise


class _QuietStreamFailures(logging.Filter):
    """py-libp2p logs a 7-line ERROR whenever a peer does not speak a protocol we ask
    for (a light client without /rill/sync/1.0.0): an expected answer, which the daemon
    reports itself once per peer.  Those records go to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith(
                "Failed to open stream to peer"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger("libp2p").isEnabledFor(logging.DEBUG)
        return True


class _QuietDhtStreamEnd(logging.Filter):
    """py-libp2p 0.8.1's DHT server reads the next request after answering one and logs
    a WARNING ("Failed to read DHT message from stream: ") when the asker has closed the
    stream, which is how every DHT request ends: one line per request a node serves,
    thousands a day.  Those records (their argument a ``StreamEOF``) go to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.levelno == logging.WARNING
                and str(record.msg).startswith("Failed to read DHT message from stream")
                and isinstance(record.args, tuple) and len(record.args) == 1
                and isinstance(record.args[0], StreamEOF)):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger("libp2p").isEnabledFor(logging.DEBUG)
        return True


def route_libp2p_logs(handler: logging.Handler, level: int) -> None:
    """libp2p's logger has propagate=False and no handler: give it ours."""
    for name, kind in (("libp2p.host.basic_host", _QuietStreamFailures),
                       ("libp2p.kad_dht.kad_dht", _QuietDhtStreamEnd)):
        quiet = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in quiet.filters):
            quiet.addFilter(kind())
    lg = logging.getLogger("libp2p")
    for h in list(lg.handlers):
        lg.removeHandler(h)
    lg.addHandler(handler)
    lg.setLevel(max(level, logging.WARNING))
    lg.propagate = False
    logging.getLogger("libp2p.network.auto_connector").setLevel(max(level, logging.WARNING))


