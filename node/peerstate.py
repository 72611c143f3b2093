"""What a daemon knows of each peer it has met in this run."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PeerState:
    last_sync: int | None = None
    cursor: int = 0
    synced_objects: int = 0
    #: trio.current_time() when a sync + reconciliation round last asked it (node/rounds.py)
    last_round: float | None = None
    #: trio.current_time() when the peer was first seen connected in this run
    since: float = 0.0
    #: the peer does not serve /rill/sync/1.0.0 (said once, then not asked again)
    no_sync: bool = False
    #: whether the peer answers a sync by IDs (SPEC §11.3): None until it first does or
    #: refuses; False: whole objects from then on
    sync_ids: bool | None = None
    #: sync cursors of our pseudonyms' subjects (rill.node.anonpub)
    pseudonym_cursors: dict[bytes, int] = field(default_factory=dict)
