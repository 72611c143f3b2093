"""GossipSub v1.1 as py-libp2p 0.8.1 ships it, with two mesh rules mended (docs/NETWORK.md).

When its heartbeat trims a mesh above D_high, py-libp2p 0.8.1 sends PRUNE without noting a
back-off for the pruned peer on its own side, so the next heartbeat below D_low may GRAFT
that same peer again.  The pruned peer recorded when it was pruned (the "GRAFT flood"
check of its ``handle_prune``) and takes that GRAFT, seconds later, for a flood: it
answers PRUNE and lowers the grafter's score.  Between honest peers whose meshes change
often (connections coming and going) this ping-pong repeated thousands of times an hour,
each time a few control messages and a behaviour penalty.  The GossipSub v1.1 spec (and
go-libp2p) have the pruner back off too: here a heartbeat's PRUNE notes the same
``prune_back_off`` its peer applies, so neither side grafts the other before it ends.

Opportunistic grafting (a defence against a mesh filled with poor peers) ran at every
heartbeat in py-libp2p 0.8.1 and grafted up to 2 peers scoring at least about half the
mesh's median: among idle honest peers (all scoring alike) at nearly every heartbeat,
each graft pushing a mesh over D_high and a prune in turn, every control message a
~250-byte RPC (py-libp2p attaches its signed peer record to each).  Here it follows
GossipSub v1.1 (go-libp2p): once every 60 heartbeats, only when the mesh's median score
is below OPPORTUNISTIC_GRAFT_THRESHOLD, and only peers scoring above that median.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict

from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub

#: Opportunistic grafting: once every this many heartbeats, when the median score of a
#: topic's mesh is below the threshold (honest peers score 0 here: only the penalties
#: of SPEC §11.2's scoring are weighted), up to this many peers scoring above the median.
OPPORTUNISTIC_GRAFT_TICKS = 60
OPPORTUNISTIC_GRAFT_THRESHOLD = 1.0
OPPORTUNISTIC_GRAFT_PEERS = 2


class RillGossipSub(GossipSub):
    _ticks = 0

    def mesh_heartbeat(self) -> tuple[defaultdict[ID, list[str]], defaultdict[ID, list[str]]]:
        self._ticks += 1
        graft, prune = super().mesh_heartbeat()
        for peer, topics in prune.items():
            for topic in topics:
                self._add_back_off(peer, topic, False)  # the peer backs off as long
        return graft, prune

    def _perform_opportunistic_grafting(self, topic: str,
                                        peers_to_graft: defaultdict[ID, list[str]]) -> int:
        scorer, pubsub = self.scorer, self.pubsub
        if self._ticks % OPPORTUNISTIC_GRAFT_TICKS or scorer is None or pubsub is None:
            return 0
        mesh = self.mesh.get(topic, set())
        if not mesh:
            return 0
        median = statistics.median(scorer.score(p, [topic]) for p in mesh)
        if median >= OPPORTUNISTIC_GRAFT_THRESHOLD:
            return 0
        candidates = [p for p in pubsub.peer_topics.get(topic, ())
                      if p not in mesh and p not in self.direct_peers
                      and not self._check_back_off(p, topic)
                      and scorer.score(p, [topic]) > median]
        chosen = random.sample(candidates, min(OPPORTUNISTIC_GRAFT_PEERS, len(candidates)))
        for peer in chosen:
            mesh.add(peer)
            self._notify_mesh_peer_added(peer, topic)
            peers_to_graft[peer].append(topic)
            scorer.on_join_mesh(peer, topic)
        return len(chosen)
