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

IHAVE: py-libp2p 0.8.1 asks every peer that advertises a message it has not seen for it
(IWANT), so a message advertised by three peers before the first copy arrives comes
three times (~2 KB each).  Here a message ID asked for is not asked for again, of
anyone, for IWANT_FOLLOWUP_S (go-libp2p's promise time: a peer that does not deliver
within it is asked no more, and the next advertiser is asked instead).
"""

from __future__ import annotations

import random
import statistics
from collections import OrderedDict, defaultdict
from collections.abc import Sequence

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub

#: Opportunistic grafting: once every this many heartbeats, when the median score of a
#: topic's mesh is below the threshold (honest peers score 0 here: only the penalties
#: of SPEC §11.2's scoring are weighted), up to this many peers scoring above the median.
OPPORTUNISTIC_GRAFT_TICKS = 60
OPPORTUNISTIC_GRAFT_THRESHOLD = 1.0
OPPORTUNISTIC_GRAFT_PEERS = 2
#: A message ID asked for (IWANT) is asked for again, of anyone, only this long after.
IWANT_FOLLOWUP_S = 3.0
#: Message IDs remembered as asked for (oldest forgotten first): a heartbeat's IHAVEs
#: name at most a few thousand.
ASKED_MAX = 20_000
#: A message ID is SHA-256(from || data) (SPEC §11.5): an IHAVE naming anything else is
#: not asked about (nor remembered: the memory above holds 32-byte IDs only).
MESSAGE_ID_BYTES = 32


class RillGossipSub(GossipSub):
    _ticks = 0
    #: IWANTs not sent: the message ID was asked of another peer within IWANT_FOLLOWUP_S
    iwant_spared = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._asked: OrderedDict[bytes, float] = OrderedDict()

    async def emit_iwant(self, msg_ids: Sequence[bytes], to_peer: ID) -> None:
        """py-libp2p's, for the IDs not asked of anyone within IWANT_FOLLOWUP_S (its
        ``handle_ihave``, the one caller, has checked the rate limit and the seen cache)."""
        now = trio.current_time()
        wanted: list[bytes] = []
        for mid in msg_ids:
            if len(mid) != MESSAGE_ID_BYTES:  # no Rill message has it: a stranger's bytes
                continue
            asked = self._asked.get(mid)
            if asked is not None and now - asked < IWANT_FOLLOWUP_S:
                self.iwant_spared += 1
                continue
            self._asked[mid] = now
            self._asked.move_to_end(mid)
            wanted.append(mid)
        while len(self._asked) > ASKED_MAX:
            self._asked.popitem(last=False)
        if wanted:
            await super().emit_iwant(wanted, to_peer)

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
