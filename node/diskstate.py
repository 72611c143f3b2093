"""What the daemon knows about the disk holding its home (``rill node status``, "disk").

When a write finds the disk full the daemon keeps running: gossip and sync objects it
cannot store are dropped and counted (sync fetches again those that concern us once
there is room), housekeeping and site checks are retried later.  The state ends with
the next write that succeeds."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..wallet import store


@dataclass
class DiskState:
    home: Path
    #: Unix time (real, not the node's clock) of the first failed write; None: not full
    full_since: int | None = None
    #: objects not stored since ``full_since``
    not_stored: int = 0
    #: objects not stored since the daemon started
    not_stored_total: int = 0
    #: the last full period that ended: (since, until, objects not stored)
    last_full: tuple[int, int, int] | None = None
    #: the last disk-full message (where, bytes free)
    reason: str = ""

    def failed(self, reason: str, objects: int = 0) -> bool:
        """A write found the disk full; ``objects`` were dropped.  True if newly full."""
        self.not_stored += objects
        self.not_stored_total += objects
        self.reason = reason
        if self.full_since is not None:
            return False
        self.full_since = int(time.time())
        return True

    def wrote(self) -> tuple[int, int] | None:
        """A write succeeded.  If that ends a full period: (since, objects not stored)."""
        if self.full_since is None:
            return None
        ended = (self.full_since, self.not_stored)
        self.last_full = (self.full_since, int(time.time()), self.not_stored)
        self.full_since, self.not_stored = None, 0
        return ended

    def free(self) -> int | None:
        return store.free_bytes(self.home)

    def as_json(self) -> dict[str, Any]:
        last = self.last_full
        return {"full": self.full_since is not None, "full_since": self.full_since,
                "not_stored": self.not_stored, "not_stored_total": self.not_stored_total,
                "free_bytes": self.free(), "reason": self.reason if self.full_since else "",
                "last_full": None if last is None else
                {"since": last[0], "until": last[1], "not_stored": last[2]}}
