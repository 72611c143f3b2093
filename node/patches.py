"""Small patches of py-libp2p 0.8.1 (docs/NETWORK.md, tests/test_node_libp2p_patches.py):
each keeps the library's behaviour and only removes repeated work or needless traffic.
Applied once, when rill.node.host is imported."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.identity.identify import identify as libp2p_identify
from libp2p.identity.identify_push import identify_push as libp2p_identify_push
from libp2p.kad_dht import common as libp2p_kad_common
from libp2p.kad_dht import kad_dht as libp2p_kad_dht
from libp2p.kad_dht import peer_routing as libp2p_peer_routing
from libp2p.kad_dht import provider_store as libp2p_provider_store
from libp2p.kad_dht import routing_table as libp2p_routing_table
from libp2p.kad_dht.pb.kademlia_pb2 import Message as KadMessage
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.peer.peerstore import PeerStoreError
from libp2p.pubsub import gossipsub as libp2p_gossipsub
from libp2p.pubsub import pubsub as libp2p_pubsub
from libp2p.pubsub import utils as libp2p_pubsub_utils
from libp2p.pubsub.pb import rpc_pb2
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from . import framing, keepalive

log = logging.getLogger("rill.node")


async def _yamux_window_update(self: YamuxStream, *, bytes_read: int = 0) -> None:
    """go-yamux's receive-window rule: credit the peer only once at least half the
    window has been consumed (GrowTo, with py-libp2p's auto-tuning kept).

    py-libp2p 0.8.1 also credits on every read below that threshold ("partial slack",
    "release on read"): pubsub reads each RPC as one read per varint byte plus one for
    the body, so every gossip message received sent 2 WINDOW_UPDATE frames back (each a
    Noise frame and a socket write) and the peer had to decrypt and process them.
    """
    del bytes_read  # the window arithmetic already accounts for what was read
    total = 0
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta > 0 and delta >= self._grow_threshold():
            total = self._grow_to_delta(buffered)
            total += self._apply_autotune_epoch(buffered)
    if total > 0:
        await self.send_window_update(total, skip_lock=True)


#: A signed peer record already verified and stored for a peer is taken as is again for
#: this long (its addresses' TTL is 2 h; py-libp2p refreshes it on every RPC).
SPR_REUSE_S = 60.0
_consume_signed_record = libp2p_pubsub_utils.maybe_consume_signed_record


def _consume_signed_record_once(msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
    """py-libp2p 0.8.1 attaches the sender's signed peer record to *every* pubsub RPC
    and the receiver verifies it (an Ed25519 check, protobuf and multiaddr parsing, a
    peerstore rewrite) each time, twice for control messages.  The same bytes from the
    same peer give the same verdict: skip the repeat for SPR_REUSE_S seconds."""
    if not msg.HasField("senderRecord"):
        return True
    record = msg.senderRecord
    store = host.get_peerstore()
    cache: dict[ID, tuple[bytes, float]] | None = getattr(store, "_rill_spr_seen", None)
    if cache is None:
        cache = {}
        store._rill_spr_seen = cache  # type: ignore[attr-defined]
    now = time.monotonic()
    seen = cache.get(peer_id)
    if seen is not None and seen[0] == record and now - seen[1] < SPR_REUSE_S:
        return True
    ok = _consume_signed_record(msg, host, peer_id)
    if ok:
        if len(cache) >= 4096:
            cache.clear()
        cache[peer_id] = (record, now)
    else:
        cache.pop(peer_id, None)
    return ok


#: py-libp2p 0.8.1's DHT refreshes its routing table every 10 minutes: a lookup of the
#: node's own ID and one of a random ID per non-empty bucket, each contacting peers the
#: node is often no longer connected to (a sharded node closes them: node/upkeep.py).
#: Measured in the scale simulation at N = 50 (docs/SCALE.md): 1.2-2.6 MB and ~2 CPU-s per
#: node per refresh, against a target of 50 MB a month for everything.  Here a refresh
#: looks up the node's own ID only (:func:`_refresh_own_neighbourhood`), once at start and
#: then daily: the routing table also learns from every DHT request the node receives
#: (a newcomer's own start-up lookup reaches the nodes nearest to it) and from the
#: node's own lookups (shard providers, the rendezvous, its provides every 24 h).
DHT_REFRESH_S = 86400


async def _refresh_own_neighbourhood(self: libp2p_peer_routing.PeerRouting) -> None:
    """A routing-table refresh that looks up the node's own ID only.

    py-libp2p 0.8.1 also looks up a random ID in every non-empty bucket: about
    log2(N / 20) + 1 lookups of up to 20 peers each, most of them dialled anew (a DHT
    lookup's answers name peers, not connections).  The lookup of the node's own ID
    keeps the buckets nearest to it right, which is where other nodes look for the
    provider records it holds; the far buckets fill from the peers that query it (every
    DHT request adds its sender) and from the node's own lookups (shard providers, the
    rendezvous, its provides every 24 h), and a peer that fails a request is dropped."""
    for peer in await self.find_closest_peers_network(self.host.get_id().to_bytes()):
        try:
            addrs = self.host.get_peerstore().addrs(peer)
        except PeerStoreError:
            continue
        if addrs:
            await self.routing_table.add_peer(PeerInfo(peer, addrs))


async def _republish_nothing(self: libp2p_provider_store.ProviderStore) -> None:
    """py-libp2p 0.8.1 republishes every key the node ever provided, 22 h after the
    last republish it made itself, from the DHT's maintenance loop: a key the daemon
    provides on its own schedule (its shards' every 24 h, node/sharding.py; the
    rendezvous, node/discovery.py) was provided once more at the loop's next turn (the
    library never counted the daemon's own provide), and a shard the node has left
    (node/growing.py) went on being announced for the life of the process."""


def _closer_peers_plain(self: libp2p_kad_dht.KadDHT, response: Any,
                        closest_peers: Sequence[ID], exclude_peer_id: ID | None = None
                        ) -> None:
    """A DHT answer's closer peers with their IDs and addresses, as Kademlia's wire
    format has them, without py-libp2p 0.8.1's extra field: each peer's signed peer
    record (~200 bytes, where the ID and addresses take ~60), which every receiver then
    verifies (an Ed25519 check and a peerstore rewrite per peer).  A lookup's answers
    carry up to 20 peers each; in the scale simulation these records made most of a
    routing-table refresh's DHT bytes.  A receiver without them takes the addresses, as
    every other libp2p implementation does (the sender's own record still comes once
    per message, in ``senderRecord``)."""
    store = self.host.get_peerstore()
    for peer in closest_peers:
        if exclude_peer_id is not None and peer == exclude_peer_id:
            continue
        entry = response.closerPeers.add()
        entry.id = peer.to_bytes()
        entry.connection = libp2p_kad_dht.get_connection_type(self.host, peer)
        try:
            addrs = store.addrs(peer)
        except PeerStoreError:  # a peer we hold no address of: its ID alone
            continue
        entry.addrs.extend(addr.to_bytes() for addr in addrs)


_serialize_kad = KadMessage.SerializeToString


def _kad_without_records(self: KadMessage, **kw: Any) -> bytes:
    """A DHT message as it goes on the wire, without signed peer records.

    py-libp2p 0.8.1 adds ``senderRecord`` (its own extension of Kademlia's format, ~210
    bytes with one address, more with several) to every DHT request and answer it sends,
    and the receiver verifies it (an Ed25519 check and a peerstore rewrite); a provide's
    ~60 messages carried ~13 KB of it, ~10% of the lookup.  It also gives each peer it
    names a ``signedRecord`` (another extension): its own in every ADD_PROVIDER (to each
    of the ~20 peers a provide reaches) and every provider's it holds in a GET_PROVIDERS
    answer (a shard's key has up to 20 providers: ~4 KB an answer).  The receiver knows
    the sender's addresses from identify and each named peer's from the entry's
    ``addrs``, as every other implementation's does; py-libp2p takes messages without
    these fields as they are (a provider is then kept with the addresses it gave).  The
    fields are only ever set for sending (the library serializes a DHT message for the
    wire alone)."""
    if self.HasField("senderRecord"):
        self.ClearField("senderRecord")
    for entry in (*self.closerPeers, *self.providerPeers):
        if entry.HasField("signedRecord"):
            entry.ClearField("signedRecord")
    return bytes(_serialize_kad(self, **kw))


_mk_identify = libp2p_identify._mk_identify_protobuf


def _identify_without_record(host: IHost, observed_multiaddr: Any) -> Any:
    """Identify (and identify push) as py-libp2p 0.8.1 builds it, without
    ``signedPeerRecord``: 213 of its 383 bytes with one listen address, sent by both
    ends of every new connection (~16% of the 2.7 KB a connection costs to set up, and
    a DHT lookup sets up ~20), and verified by the receiver.  The field is optional in
    the identify specification; the listen addresses stay (``listenAddrs``), and
    nothing here reads the certified address book it fills: the node gossips with
    peer exchange off, and DHT answers name peers by address (above)."""
    msg = _mk_identify(host, observed_multiaddr)
    msg.ClearField("signedPeerRecord")
    return msg


#: Every this many seconds the routing table checks peers it has not heard from for
#: STALE_PEER_THRESHOLD (1 h), at most STALE_PER_ROUND of them (py-libp2p 0.8.1's pace).
STALE_CHECK_S = 300.0
STALE_PER_ROUND = 5


async def check_stale_connected(self: libp2p_routing_table.RoutingTable) -> int:
    """One round of the routing table's check of stale peers, over live connections only:
    a stale peer the node is connected to is pinged (kept if it answers, dropped if not);
    one it is not connected to is left to the lookups (py-libp2p drops a peer that fails
    a DHT request from the table).  Returns how many were pinged."""
    connected = self.host.get_network().connections
    stale = [peer for bucket in self.buckets
             for peer in bucket.get_stale_peers(stale_threshold_seconds=libp2p_kad_common
                                                .STALE_PEER_THRESHOLD)
             if peer in connected][:STALE_PER_ROUND]
    for peer in stale:
        bucket = self.find_bucket(peer)
        if await bucket._ping_peer(peer):
            bucket.refresh_peer_last_seen(peer)
        else:
            bucket.remove_peer(peer)
    return len(stale)


async def _stale_peers_connected_only(self: libp2p_routing_table.RoutingTable) -> None:
    """The routing table's periodic check of stale peers, over live connections only.

    py-libp2p 0.8.1 pings up to 5 peers not heard from for an hour every 5 minutes,
    dialling each it is not connected to.  A sharded node closes the connections outside
    its shards a minute after they open (node/upkeep.py), so on a network that has run
    for an hour nearly every routing-table peer is stale and unconnected: 60 new
    connections an hour (Noise, identify, GossipSub's hello, each ~7 KB in the scale
    simulation), about 10 MB a day per node for pings, more than everything else a node
    does in a month.  Here only connected stale peers are pinged (a ping on an open
    connection costs ~100 bytes); a dead unconnected one fails the next lookup that asks
    it, and the lookup drops it."""
    while True:
        await trio.sleep(STALE_CHECK_S)
        try:
            await check_stale_connected(self)
        except Exception as exc:  # a ping that failed oddly: the next round
            log.debug("checking stale routing-table peers: %r", exc)


def patch_libp2p() -> None:
    """Apply the patches above (idempotent)."""
    keepalive.install()
    framing.install()
    libp2p_kad_dht.ROUTING_TABLE_REFRESH_INTERVAL = DHT_REFRESH_S
    YamuxStream._auto_tune_and_send_window_update = _yamux_window_update  # type: ignore
    libp2p_pubsub.maybe_consume_signed_record = _consume_signed_record_once
    libp2p_gossipsub.maybe_consume_signed_record = _consume_signed_record_once
    libp2p_kad_dht.KadDHT._add_closer_peers_to_response = _closer_peers_plain  # type: ignore
    KadMessage.SerializeToString = _kad_without_records  # type: ignore[method-assign,assignment]
    libp2p_identify._mk_identify_protobuf = _identify_without_record
    libp2p_identify_push._mk_identify_protobuf = _identify_without_record
    libp2p_peer_routing.PeerRouting.refresh_routing_table = (  # type: ignore[method-assign]
        _refresh_own_neighbourhood)
    libp2p_provider_store.ProviderStore._republish_provider_records = (  # type: ignore
        _republish_nothing)
    libp2p_routing_table.RoutingTable._periodic_peer_refresh = (  # type: ignore
        _stale_peers_connected_only)

