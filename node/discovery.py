"""Finding the network (a mixin of :class:`rill.node.daemon.Daemon`): circuit relay v2
for a node behind NAT (node/natrelay.py), mDNS on a LAN, the Rill rendezvous key in the
Kademlia DHT, and ``rill peers add`` (README "Finding the network", SPEC §11.1).

* mDNS runs only when asked (``[node] mdns``, default true) AND the node listens on a
  non-loopback address: a node on 127.0.0.1 has nobody on the LAN to meet, and
  py-libp2p's mDNS only fills the peer store, so what it finds is dialled here.
* Rendezvous: every node looks up the providers of the Rill key in the DHT and dials
  some while it has fewer than RENDEZVOUS_PEERS gossip peers; a node others can dial
  (public, or private with a relay reservation) announces itself as a provider.  On the
  internet the DHT is the public IPFS one, reached through its bootstrap nodes
  (docs/NETWORK.md); the key keeps Rill's records apart from everything else there.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
from typing import Any

import multiaddr
import trio
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.kad_dht.kad_dht import DHTMode
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from ..protocol.shard import PROVIDE_EVERY, rendezvous_provider
from . import dnsaddr, natrelay

log = logging.getLogger("rill.node.discovery")

#: The DHT provider key of the Rill network: the sha2-256 multihash (0x12 0x20 ||
#: digest) of the ASCII bytes "rill/1/network", as hex (what KadDHT.provide takes).
RENDEZVOUS_NAME = b"rill/1/network"
RENDEZVOUS_KEY = (b"\x12\x20" + hashlib.sha256(RENDEZVOUS_NAME).digest()).hex()
#: Dial providers found while the node has fewer gossip peers than this.
RENDEZVOUS_PEERS = 8
#: Providers asked for per lookup, and dialled per round at most.
RENDEZVOUS_ASK, RENDEZVOUS_DIALS = 20, 4
#: Lookups: first after FIRST_S, then doubling up to EVERY_S (real seconds).
RENDEZVOUS_FIRST_S, RENDEZVOUS_EVERY_S = 1.0, 600.0
#: A provider record is announced again this often (protocol/shard.py PROVIDE_EVERY:
#: py-libp2p keeps records 48 h; SPEC §11.1 asks for at least every 24 h).  Each
#: announcement is a DHT lookup and up to 20 ADD_PROVIDERs (~250 KB per node in the scale
#: simulation): hourly it cost more than the rest of a month's traffic.
PROVIDE_EVERY_S = float(PROVIDE_EVERY)
DIAL_TIMEOUT_S = 15.0
#: mDNS finds queued at once; more are dropped (a LAN full of announcements).
MDNS_QUEUE = 64


def mdns_scoped(wanted: bool, listen: list[str]) -> bool:
    """mDNS only when asked and listening on something other than the loopback (it
    announces the listen addresses: a loopback one is of no use to anyone on the LAN)."""
    if not wanted:
        return False
    for addr in listen:
        parts = addr.split("/")
        if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
            try:
                if not ipaddress.ip_address(parts[2]).is_loopback:
                    return True
            except ValueError:
                continue
        elif len(parts) > 2 and parts[1].startswith("dns"):
            return True
    return False


class Discovery:
    # -- circuit relay ------------------------------------------------------------------

    async def _run_nat(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        assert self.p2p is not None
        p2p = self.p2p
        private = self.config.nat.private(self.config.listen)
        async with natrelay.running(p2p.host, self.config.nat, private,
                                    self._relay_candidates) as nat:
            p2p.nat = nat
            if private:  # nobody can reach it to ask: the DHT as a client only (SPEC §11.1)
                await p2p.dht.switch_mode(DHTMode.CLIENT)
                log.info("not dialable (reachable = %s): keeping a slot on a relay peer",
                         self.config.nat.reachable)
            task_status.started(nat)
            try:
                await trio.sleep_forever()
            finally:
                p2p.nat = None

    def _relay_candidates(self) -> list[ID]:
        """Connected peers, bootstrap peers first (natrelay picks those offering hop)."""
        assert self.p2p is not None
        boot = self._bootstrap_peers()
        peers = [p for p in self.p2p.host.get_network().connections if not self.is_blocked(p)]
        return sorted(peers, key=lambda p: (p not in boot, str(p)))

    # -- mDNS ---------------------------------------------------------------------------

    async def _mdns(self) -> None:
        """Dial what mDNS finds (py-libp2p only fills the peer store).  Its callback runs
        in zeroconf's thread: finds come over to trio through a bounded channel."""
        assert self.p2p is not None
        p2p = self.p2p
        send, recv = trio.open_memory_channel[PeerInfo](MDNS_QUEUE)
        token = trio.lowlevel.current_trio_token()
        me = p2p.peer_id

        def found(info: PeerInfo) -> None:
            if info.peer_id == me:
                return
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(_offer, send, info)

        peerDiscovery.register_peer_discovered_handler(found)
        try:
            async with recv:
                async for info in recv:
                    await self._dial_found(info, "mDNS")
        finally:
            peerDiscovery.unregister_peer_discovered_handler(found)

    async def _dial_found(self, info: PeerInfo, how: str) -> bool:
        assert self.p2p is not None
        p2p = self.p2p
        peer = info.peer_id
        if (peer == p2p.peer_id or self.is_blocked(peer)
                or p2p.host.get_network().connections.get(peer)):
            return False
        addrs = [str(a) for a in info.addrs]
        direct = [a for a in addrs if not natrelay.is_circuit(a)]
        try:
            with trio.fail_after(DIAL_TIMEOUT_S):
                if direct:
                    p2p.host.get_network().unblock_peer(peer)  # its 60 s negative cache
                    await p2p.host.connect(PeerInfo(peer, [multiaddr.Multiaddr(a)
                                                           for a in direct]))
                    await p2p.dht.routing_table.add_peer(peer)
                elif addrs:  # relayed only: through the relay
                    tail = f"/p2p/{peer}"
                    await p2p.connect(addrs[0] if addrs[0].endswith(tail) else addrs[0] + tail)
                else:
                    return False
            log.info("connected to %s found by %s", peer, how)
            self.counters["discovered"] = self.counters.get("discovered", 0) + 1
            return True
        except (Exception, trio.TooSlowError) as exc:
            log.debug("dialling %s found by %s: %r", peer, how, exc)
            return False

    # -- the DHT rendezvous -------------------------------------------------------------

    def _announceable(self) -> bool:
        """Others can dial this node (it is public, or it holds a relay reservation) and
        it is one of the nodes that announce themselves at the network's shard bits
        (SPEC §11.1: every node up to 2 bits, then about 4 · 2^-b of them, so that the
        rendezvous key's DHT nodes hold 64-128 records, not one per node)."""
        p2p = self.p2p
        if p2p is None or p2p.nat is None:
            return False
        if not rendezvous_provider(self.identity, self.shard_bits):
            return False
        return (not p2p.nat.private and bool(self.config.listen)) or p2p.nat.reserved()

    async def _rendezvous(self) -> None:
        assert self.p2p is not None
        p2p = self.p2p
        delay = RENDEZVOUS_FIRST_S
        provided_at = -PROVIDE_EVERY_S
        while True:
            await trio.sleep(delay)
            delay = min(delay * 2, RENDEZVOUS_EVERY_S)
            if p2p.dht.get_routing_table_size() == 0:
                delay = RENDEZVOUS_FIRST_S * 2  # nobody to ask yet: look again soon
                continue
            try:
                now = trio.current_time()
                if self._announceable() and now - provided_at >= PROVIDE_EVERY_S:
                    with trio.fail_after(30):
                        await p2p.dht.provide(RENDEZVOUS_KEY)
                    provided_at = now
                    self.rendezvous["provided"] = True
                if len(p2p.pubsub.peers) >= RENDEZVOUS_PEERS:
                    continue
                with trio.fail_after(30):
                    found = await find_providers(p2p.dht, RENDEZVOUS_KEY, RENDEZVOUS_ASK)
                self.rendezvous["last_found"] = len(found)
                dialled = 0
                for info in found:
                    if dialled >= RENDEZVOUS_DIALS or len(p2p.pubsub.peers) >= \
                            RENDEZVOUS_PEERS:
                        break
                    if await self._dial_found(info, "the DHT rendezvous"):
                        dialled += 1
            except (Exception, trio.TooSlowError) as exc:
                log.info("DHT rendezvous: %s", exc or type(exc).__name__)

    # -- rill peers add -------------------------------------------------------------------

    async def add_peer(self, addr: Any) -> dict[str, Any]:
        """Connect to ``addr`` now and keep it as a bootstrap peer of this run (the CLI
        writes it to config.toml first): one that does not answer is dialled again with
        backoff until it does.  A bad address is a refusal (ValueError)."""
        assert self.p2p is not None
        text = check_peer_addr(addr)
        try:
            with trio.fail_after(DIAL_TIMEOUT_S):
                peer = await dnsaddr.connect(self.p2p, text, dnsaddr.servers_of(self.config))
            connected, error = True, None
            self._bootstrap_met.add(peer)  # kept connected from now on (node/peering.py)
        except (Exception, trio.TooSlowError) as exc:
            peer, connected, error = None, False, str(exc) or type(exc).__name__
        if text not in self.config.bootstrap:
            self.config.bootstrap.append(text)  # redialled when it goes (peering.py)
        if not connected and self._nursery is not None and \
                text not in self._bootstrap_dialling:
            # dialled again with backoff until it answers (a peer still starting, a
            # network not up yet), as the configured ones at start
            self._bootstrap_dialling.add(text)
            self._nursery.start_soon(self._dial_bootstrap, [text])
        return {"addr": text, "peer_id": str(peer) if peer else None,
                "connected": connected, "error": error}

    def discovery_status(self) -> dict[str, Any]:
        p2p = self.p2p
        return {"mdns": bool(p2p is not None and getattr(p2p.host, "mDNS", None)),
                "rendezvous": self.config.rendezvous,
                "rendezvous_key": RENDEZVOUS_KEY, **self.rendezvous,
                "bootstrap": list(self.config.bootstrap)}


#: Peers closest to the key asked for its providers: LOOKUP_BATCH at a time, at most
#: LOOKUP_PEERS, until ``count`` are found; how long each may take.
LOOKUP_PEERS, LOOKUP_BATCH, LOOKUP_TIMEOUT_S = 8, 3, 5.0


async def find_providers(dht: Any, key_hex: str, count: int) -> list[PeerInfo]:
    """Providers of a key other than this node: those it holds plus those the peers
    closest to the key hold (asked LOOKUP_BATCH at a time until ``count`` are found, at
    most LOOKUP_PEERS).  Not ``KadDHT.find_providers``: in py-libp2p 0.8.1 it answers
    from the local store alone whenever that has any record, so a node that announced
    itself under a key (a shard's member: its own shard) or a DHT server holding one
    record never looked further and found only itself."""
    key = bytes.fromhex(key_hex)
    store = dht.provider_store
    me = dht.host.get_id()
    found: dict[ID, PeerInfo] = {p.peer_id: p for p in store.get_providers(key)
                                 if p.peer_id != me}
    closest = [p for p in await dht.peer_routing.find_closest_peers_network(key)
               if p != me][:LOOKUP_PEERS]

    async def ask(peer: ID) -> None:
        with trio.move_on_after(LOOKUP_TIMEOUT_S):
            try:
                providers, _closer = await store._get_providers_from_peer_with_closers(peer,
                                                                                      key)
            except Exception as exc:  # a peer that does not answer: the others may
                log.debug("providers from %s: %r", peer, exc)
                return
            for info in providers:
                if info.peer_id != me:
                    found.setdefault(info.peer_id, info)

    for start in range(0, len(closest), LOOKUP_BATCH):
        if len(found) >= count:
            break
        async with trio.open_nursery() as nursery:
            for peer in closest[start:start + LOOKUP_BATCH]:
                nursery.start_soon(ask, peer)
    return list(found.values())[:count]


def _offer(send: trio.MemorySendChannel[PeerInfo], info: PeerInfo) -> None:
    # a burst of finds: the rest come again with the next announcement
    with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError,
                             trio.BrokenResourceError):
        send.send_nowait(info)


def check_peer_addr(addr: Any) -> str:
    """A multiaddr that names its peer (``.../p2p/12D3KooW...``), relayed ones included,
    or ValueError."""
    if not isinstance(addr, str) or len(addr) > 1024:
        raise ValueError("give a multiaddr such as /ip4/192.0.2.7/tcp/4741/p2p/12D3KooW...")
    try:
        ma = multiaddr.Multiaddr(addr)
    except Exception as exc:
        raise ValueError(f"not a multiaddr: {addr!r} ({exc})") from None
    names = [p.name for p in ma.protocols()]
    if not names or names[-1] != "p2p":
        raise ValueError(f"{addr} does not end in /p2p/PEER_ID: the peer must be named")
    try:
        ID.from_base58(ma.value_for_protocol("p2p") if "p2p-circuit" not in names
                       else str(ma).rsplit("/p2p/", 1)[1])
    except Exception:
        raise ValueError(f"{addr}: not a valid peer ID after /p2p/") from None
    return str(ma)
