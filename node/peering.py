"""The daemon's peers: bootstrap dials, new peers synced, graylisted ones blacklisted,
long-connected ones made a standing relation, and the peer table (a mixin of
:class:`rill.node.daemon.Daemon`)."""

from __future__ import annotations

import logging
from typing import Any

import trio
from libp2p.peer.id import ID

from ..protocol import keys
from ..protocol.network import TOPICS
from ..wallet import store
from ..wallet.errors import DiskFull
from .host import key_from_peer_id
from .peerstate import PeerState

log = logging.getLogger("rill.node")

#: A peer connected this long (real seconds, this run) becomes a standing relation: its
#: own objects are kept before strangers' (rill.wallet.inbox, class 1).
LONG_CONNECTED_S = 3600.0
#: New peers and graylisted ones are looked for this often: the GossipSub heartbeat's
#: period (scores decay per heartbeat).  Every 0.2 s, computing each peer's score was
#: the largest part of an idle daemon's CPU, which competes with gossip on small machines.
WATCH_PEERS_S = 1.0


class Peering:
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
