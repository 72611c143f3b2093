"""The daemon's peers: bootstrap dials, new peers synced, graylisted ones blacklisted,
long-connected ones made a standing relation, the owner's blocklist, and the peer table
(a mixin of :class:`rill.node.daemon.Daemon`)."""

from __future__ import annotations

import functools
import logging
from typing import Any

import multiaddr
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.peer.peerstore import PeerStoreError

from ..protocol import keys
from ..protocol.errors import LocalError
from ..wallet import store
from ..wallet.errors import DiskFull
from . import dnsaddr
from .host import key_from_peer_id
from .peerstate import PeerState
from .upkeep import KEEP_CONNECTIONS

log = logging.getLogger("rill.node")


@functools.lru_cache(maxsize=4096)
def _p2p_info(addr: str) -> PeerInfo | None:
    """A bootstrap address's peer ID and addresses, or None when it has no ``/p2p/`` part
    (dialling it says what is wrong).  Parsed once: py-multiaddr takes ~0.2 ms an address,
    and :meth:`Peering._watch_peers` looks at every bootstrap peer each second."""
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception:
        return None

#: A peer connected this long (real seconds, this run) becomes a standing relation: its
#: own objects are kept before strangers' (rill.wallet.inbox, class 1).
LONG_CONNECTED_S = 3600.0
#: New peers and graylisted ones are looked for this often: the GossipSub heartbeat's
#: period (scores decay per heartbeat).  Every 0.2 s, computing each peer's score was
#: the largest part of an idle daemon's CPU, which competes with gossip on small machines.
WATCH_PEERS_S = 1.0
#: Graylisted peers are looked for this often besides at once after each message the gate
#: rejects (a score lowered by behaviour alone: GRAFT floods, broken promises).  Every
#: second, computing every peer's score per topic was ~10% of an idle daemon's CPU.
GRAYLIST_CHECK_S = 5.0
#: After dialling an unblocked peer, how long it may take to become a gossip peer before
#: the dial counts as failed (it may still block us: both ends unblock, one after the other).
REDIAL_CONFIRM_S = 5.0


class Peering:
    async def _watch_peers(self) -> None:
        """New gossip peers get a sync; graylisted ones go to the blacklist for good."""
        assert self.p2p is not None
        p2p = self.p2p
        known: set[ID] = set()
        checked = -GRAYLIST_CHECK_S
        async with trio.open_nursery() as nursery:
            while True:
                current = set(p2p.pubsub.peers)
                now = trio.current_time()
                for peer in current - known:
                    if self.is_blocked(peer):  # let in before it was blocked: cut off
                        nursery.start_soon(self._disconnect_blocked, peer)
                        continue
                    state = self.peers.setdefault(peer, PeerState())
                    state.since, state.last_round = now, now
                    nursery.start_soon(self._greet, peer)  # node/upkeep.py
                if not self.shard_bits or len(current) < KEEP_CONNECTIONS:
                    # a bootstrap peer gone: dialled again (with shards, only while the
                    # node has few peers: a bootstrap peer in none of its shards may close
                    # the connection, node/upkeep.py)
                    # (once met: the first dial of each is _dial_bootstrap's, which goes
                    # on with the others when one never answers)
                    for peer in (self._bootstrap_met & self._bootstrap_peers() - current
                                 - self._redialling):
                        if not self.is_blocked(peer):
                            self._redialling.add(peer)
                            nursery.start_soon(self._keep_bootstrap, peer)
                known = current
                check = now - checked >= GRAYLIST_CHECK_S
                if check:
                    checked = now
                for peer in current:
                    state = self.peers.get(peer)
                    if state is None:
                        continue
                    if state.since and now - state.since >= LONG_CONNECTED_S:
                        state.since = 0.0  # once per run
                        await self._relate_peer(peer)
                    if check:
                        self._blacklist_if_graylisted(peer)
                await trio.sleep(WATCH_PEERS_S)

    def _blacklist_if_graylisted(self, peer: ID) -> None:
        """Graylisted peers go to the blacklist for good (checked every GRAYLIST_CHECK_S,
        and at once after each message the gate rejects)."""
        p2p = self.p2p
        if (p2p is not None and p2p.scorer.is_graylisted(peer, list(self.topics))
                and not p2p.pubsub.is_peer_blacklisted(peer)):
            log.warning("peer %s sent invalid messages: blacklisted", peer)
            p2p.pubsub.add_to_blacklist(peer)

    async def _relate_peer(self, peer: ID) -> None:
        key = key_from_peer_id(peer)
        if key is None:
            return
        try:
            related = await self.db(self._add_relation, key, "peer", self.clock.now())
        except DiskFull as exc:  # not related this run: the next run tries again
            self._disk_full(exc)
            return
        if related:
            log.info("peer %s connected for an hour: its objects are kept before "
                     "strangers'", peer)

    def _add_relation(self, key: bytes, reason: str, now: int) -> bool:
        with store.transaction(self.wallet.db):
            return self.wallet.add_relation(key, reason, now)

    async def _dial_bootstrap(self, addrs: list[str] | None = None) -> None:
        """Dial each bootstrap address (the configured ones, or ``addrs``: one `rill peers
        add` gave that did not answer) until it answers once, with backoff (1 s doubling
        to 60 s); from then on _watch_peers keeps it connected."""
        assert self.p2p is not None
        delay = 1.0
        if addrs is None:
            addrs = [a for a in self.config.bootstrap if a not in self._bootstrap_dialling]
        pending = list(addrs)
        self._bootstrap_dialling.update(pending)  # (add_peer's: already, before it starts)
        try:
            while pending:
                for addr in list(pending):
                    if self._addr_blocked(addr):  # dialled if it is unblocked
                        pending.remove(addr)
                        log.info("bootstrap %s: the peer is blocked, not dialling it", addr)
                        continue
                    try:
                        self._forget_failed_dial(addr)
                        with trio.fail_after(15):  # a DNS address is resolved first
                            peer = await dnsaddr.connect(self.p2p, addr,
                                                         dnsaddr.servers_of(self.config))
                        pending.remove(addr)
                        self._bootstrap_met.add(peer)  # from now on _watch_peers keeps it
                        log.info("connected to bootstrap peer %s", addr)
                    except (Exception, trio.TooSlowError) as exc:
                        log.info("bootstrap %s: %s (retrying)", addr, exc)
                if pending:
                    await trio.sleep(delay)
                    delay = min(delay * 2, 60.0)
        finally:
            self._bootstrap_dialling.difference_update(addrs)

    def _forget_failed_dial(self, addr: str) -> None:
        """Clear py-libp2p's negative cache for a bootstrap address's peer: it refuses to
        dial a peer whose addresses all failed in the last 60 s, so a peer that was still
        starting at our first dial would cost a minute (the chaos run found it); our
        loops back off on their own."""
        assert self.p2p is not None
        info = _p2p_info(addr)
        if info is not None:
            self.p2p.host.get_network().unblock_peer(info.peer_id)

    def _bootstrap_peers(self) -> set[ID]:
        infos = (_p2p_info(addr) for addr in self.config.bootstrap)
        return {info.peer_id for info in infos if info is not None}

    def _bootstrap_addrs(self, peer: ID) -> list[multiaddr.Multiaddr]:
        out: list[multiaddr.Multiaddr] = []
        for addr in self.config.bootstrap:
            info = _p2p_info(addr)
            if info is not None and info.peer_id == peer:
                out += list(info.addrs)
        return out

    async def _keep_bootstrap(self, peer: ID) -> None:
        """A bootstrap peer's connection closed (it restarted, crashed, slept): dial it
        again with backoff (1 s doubling to 60 s) until it is a gossip peer again or
        blocked.  Without this, a peer that only others dialled stayed alone after a
        restart (tests/chaos.py found it)."""
        assert self.p2p is not None
        delay = 1.0
        try:
            while not self.is_blocked(peer) and peer not in self.p2p.pubsub.peers:
                await trio.sleep(delay)
                delay = min(delay * 2, 60.0)
                if self.is_blocked(peer) or peer in self.p2p.pubsub.peers:
                    break
                try:
                    # py-libp2p refuses to dial a peer whose addresses all failed in the
                    # last 60 s (its negative cache): a restart taking a few seconds
                    # would cost a minute; this loop is its own backoff
                    self.p2p.host.get_network().unblock_peer(peer)
                    with trio.fail_after(15):
                        relayed = [a for a in self.config.bootstrap if "/p2p-circuit" in a
                                   and a.endswith(f"/p2p/{peer}")]
                        direct = self._bootstrap_addrs(peer)
                        named = [a for a in self.config.bootstrap if dnsaddr.is_dns(a)
                                 and a.endswith(f"/p2p/{peer}")]
                        if named:  # resolved again at each dial: DNS may change
                            await dnsaddr.connect(self.p2p, named[0],
                                                  dnsaddr.servers_of(self.config))
                        elif relayed and all("/p2p-circuit" in str(a) for a in direct):
                            await self.p2p.connect(relayed[0])  # through its relay
                        else:
                            await self.p2p.host.connect(PeerInfo(peer, direct))
                    log.info("connected again to bootstrap peer %s", peer)
                except (Exception, trio.TooSlowError) as exc:
                    log.info("redialling bootstrap peer %s: %s (retrying)", peer, exc)
        finally:
            self._redialling.discard(peer)

    # -- the owner's blocklist (rill peers block / unblock, [network] blocked) -------------

    def is_blocked(self, peer: ID) -> bool:
        return peer in self.blocked

    def _addr_blocked(self, addr: str) -> bool:
        info = _p2p_info(addr)
        return info is not None and self.is_blocked(info.peer_id)

    async def block_peer(self, text: Any) -> dict[str, Any]:
        """Block a peer at once: its connection closed, never dialled nor let in again,
        its gossip ignored, no sync with it.  ``text``: a peer ID or did:key (a bad one is
        a refusal, ValueError)."""
        peer = _peer_id(text)
        if self.p2p is not None and peer == self.p2p.peer_id:
            raise ValueError("that is this node's own peer ID")
        changed = peer not in self.blocked
        self.blocked.add(peer)
        connected = await self._disconnect_blocked(peer)
        if changed:
            log.warning("peer %s blocked%s", peer, " (disconnected)" if connected else "")
        return {"peer_id": str(peer), "blocked": True, "changed": changed,
                "disconnected": connected}

    async def _disconnect_blocked(self, peer: ID) -> bool:
        """Close every connection with ``peer``; True if there was one."""
        p2p = self.p2p
        if p2p is None:
            return False
        connected = bool(p2p.host.get_network().get_connections(peer)) \
            or peer in p2p.pubsub.peers
        if connected:
            try:
                await p2p.host.disconnect(peer)
            except Exception as exc:  # a connection already gone
                log.debug("disconnecting blocked %s: %r", peer, exc)
        try:
            p2p.dht.routing_table.remove_peer(peer)
        except Exception as exc:  # not in the table
            log.debug("removing blocked %s from the DHT table: %r", peer, exc)
        return connected

    async def unblock_peer(self, text: Any) -> dict[str, Any]:
        """Unblock a peer; dial it again (in the background) when an address of it is
        known (the peer store, or a bootstrap address)."""
        peer = _peer_id(text)
        changed = peer in self.blocked
        self.blocked.discard(peer)
        dialling = False
        if changed:
            log.warning("peer %s unblocked", peer)
            addrs = self._known_addrs(peer)
            if addrs and self._nursery is not None:
                self._nursery.start_soon(self._redial, peer, addrs)
                dialling = True
        return {"peer_id": str(peer), "blocked": False, "changed": changed,
                "dialling": dialling}

    def _known_addrs(self, peer: ID) -> list[multiaddr.Multiaddr]:
        assert self.p2p is not None
        out: list[multiaddr.Multiaddr] = []
        try:
            out += list(self.p2p.host.get_peerstore().addrs(peer))
        except Exception as exc:  # no record of it
            log.debug("no stored address of %s: %r", peer, exc)
        for addr in self.config.bootstrap:
            info = _p2p_info(addr)
            if info is not None and info.peer_id == peer:
                out += [a for a in info.addrs if a not in out]
        return out

    async def _redial(self, peer: ID, addrs: list[multiaddr.Multiaddr]) -> None:
        """A few tries: the peer may still block us for a moment (both ends unblock)."""
        assert self.p2p is not None
        delay = 1.0
        for _ in range(5):
            if self.is_blocked(peer) or peer in self.p2p.pubsub.peers:
                return
            try:
                with trio.fail_after(15):
                    await self.p2p.host.connect(PeerInfo(peer, addrs))
                # a peer that still blocks us closes the connection after the handshake:
                # connected means a gossip peer
                with trio.move_on_after(REDIAL_CONFIRM_S):
                    while peer not in self.p2p.pubsub.peers:
                        await trio.sleep(0.05)
                if peer in self.p2p.pubsub.peers:
                    await self.p2p.dht.routing_table.add_peer(peer)
                    log.info("connected again to unblocked peer %s", peer)
                    return
                log.info("unblocked peer %s closed the connection (retrying)", peer)
            except (Exception, trio.TooSlowError) as exc:
                log.info("dialling unblocked peer %s: %s (retrying)", peer, exc)
            await trio.sleep(delay)
            delay *= 2

    def peer_table(self) -> list[dict[str, Any]]:
        assert self.p2p is not None
        p2p = self.p2p
        out = []
        for peer in sorted(p2p.pubsub.peers, key=str):
            state = self.peers.get(peer, PeerState())
            key = key_from_peer_id(peer)
            try:
                addrs = [str(a) for a in p2p.host.get_peerstore().addrs(peer)]
            except PeerStoreError:  # a peer going away: still in pubsub, gone from the store
                addrs = []
            out.append({
                "peer_id": str(peer),
                "id": keys.did_from_key(key) if key else None,
                "addrs": addrs,
                "score": p2p.score(peer, list(self.topics)),
                "topics": sorted(t for t in self.topics if peer in p2p.pubsub.peer_topics.get(t,
                                                                                       ())),
                "blacklisted": p2p.pubsub.is_peer_blacklisted(peer),
                "last_sync": state.last_sync,
                "synced_objects": state.synced_objects,
            })
        return out


def _peer_id(text: Any) -> ID:
    """A peer ID or did:key from a control request, or ValueError (a refusal)."""
    try:
        return ID.from_base58(keys.parse_peer(text))
    except LocalError as exc:
        raise ValueError(str(exc)) from None
