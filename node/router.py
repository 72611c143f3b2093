"""GossipSub v1.1 as py-libp2p 0.8.1 ships it, with one mesh rule mended (docs/NETWORK.md).

When its heartbeat trims a mesh above D_high, py-libp2p 0.8.1 sends PRUNE without noting a
back-off for the pruned peer on its own side, so the next heartbeat below D_low may GRAFT
that same peer again.  The pruned peer recorded when it was pruned (the "GRAFT flood"
check of its ``handle_prune``) and takes that GRAFT, seconds later, for a flood: it
answers PRUNE and lowers the grafter's score.  Between honest peers whose meshes change
often (connections coming and going) this ping-pong repeated thousands of times an hour,
each time a few control messages and a behaviour penalty.  The GossipSub v1.1 spec (and
go-libp2p) have the pruner back off too: here a heartbeat's PRUNE notes the same
``prune_back_off`` its peer applies, so neither side grafts the other before it ends.
"""

from __future__ import annotations

from collections import defaultdict

from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub


class RillGossipSub(GossipSub):
    def mesh_heartbeat(self) -> tuple[defaultdict[ID, list[str]], defaultdict[ID, list[str]]]:
        graft, prune = super().mesh_heartbeat()
        for peer, topics in prune.items():
            for topic in topics:
                self._add_back_off(peer, topic, False)  # the peer backs off as long
        return graft, prune
