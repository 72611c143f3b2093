"""Which valid objects a node forwards and keeps: the relation checks of the gossip gate
(SPEC §11.2 "Admission") and the buffer of claims that arrived before their settlement.

Only a settlement costs its author a proof of work (SPEC §5.3); every other object a
stranger can sign for free.  So a node forwards an object only when it hangs off
something it already holds, and IGNOREs it otherwise (neither forwarded nor penalised):

* a claim or sealed claim needs its settlement (same donor, a line for its creator);
  the first cover per settlement line wins;
* a receipt needs a claim or sealed claim from its donor to its signer for its month
  (in a sharded network, or the donor's settlement with a line for its signer);
* a key document needs its signer to be a creator named in a settlement held here, a
  creator whose site we verified, or a relation;
* a settlement is not forwarded once its donor's month is proven equivocating, nor a
  third one for a donor's month;
* an equivocation proof is forwarded only if no proof of that donor's month is held
  (the first one wins);
* a listing needs a key document of its signer naming the thing's origin, and must be
  news within its signer's bounds (rill.node.catalogue.relate_listing).

Objects that concern this node (signed by it or naming it) are always taken.

Reads use their own read-only SQLite connection (WAL: never blocked by the writer),
point lookups on indexed columns, run in the trio thread like the other gate checks.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..protocol import messages as m
from ..protocol.preview import Preview
from .catalogue import relate_listing

ACCEPT, IGNORE, REJECT = "accept", "ignore", "reject"
#: The reason of an IGNORE for a claim whose settlement is not held (the node keeps it
#: aside until the settlement comes).
ORPHAN = "its settlement is not held here (kept until it comes)"

#: Claims waiting for their settlement: at most this many in all, and per settlement at
#: most the largest number of lines a settlement may have (two objects per line).
MAX_ORPHANS = 10_000
MAX_ORPHANS_PER_SETTLEMENT = 2 * m.Settlement.MAX_LINES


class Admission:
    def __init__(self, db_path: Path, identity: bytes,
                 now: Callable[[], int] | None = None, sharded: bool = False) -> None:
        self.identity = identity
        self.now = now
        #: a sharded network (SPEC §11.6): a receipt may also hang off the settlement line
        self.sharded = sharded
        self.db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True,
                                  check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA query_only = ON")
        #: settlement ID -> raw claims and sealed claims that arrived before it
        self.orphans: OrderedDict[bytes, list[bytes]] = OrderedDict()
        self.orphan_count = 0

    def close(self) -> None:
        self.db.close()

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        return self.db.execute(sql, args).fetchone()

    # -- the gate's relation check ------------------------------------------------------

    def relate(self, p: Preview) -> tuple[str, str]:
        """(ACCEPT | IGNORE | REJECT, reason) for a previewed message.  Nothing in it is
        authenticated yet: decide only on what it says, and trust none of it."""
        if self.identity in p.subjects:
            return ACCEPT, "concerns us"
        if p.type == "settlement":
            return self._settlement(p)
        if p.type in ("claim", "sealed-claim"):
            return self._claim(p)
        if p.type == "receipt":
            if self._one("SELECT 1 FROM objects o JOIN subjects s ON s.object = o.id WHERE "
                         "o.type IN ('sealed-claim', 'claim') AND o.signer = ? AND o.month = ? "
                         "AND s.subject = ? LIMIT 1", (p.donor, p.month, p.signer)):
                return ACCEPT, "receipt for a claim held here"
            if self.sharded and self._one(
                    "SELECT 1 FROM objects o JOIN subjects s ON s.object = o.id WHERE "
                    "o.type = 'settlement' AND o.signer = ? AND o.month = ? AND "
                    "s.subject = ? LIMIT 1", (p.donor, p.month, p.signer)):
                # the donor's shard holds its settlement, not the sealed claims (§11.6)
                return ACCEPT, "receipt for a settlement line held here"
            return IGNORE, "receipt for a claim not held here"
        if p.type == "key":
            if self._one("SELECT 1 FROM subjects s JOIN objects o ON o.id = s.object WHERE "
                         "s.subject = ? AND o.type = 'settlement' AND o.signer != ? UNION ALL "
                         "SELECT 1 FROM sites WHERE creator = ? UNION ALL "
                         "SELECT 1 FROM relations WHERE key = ? LIMIT 1",
                         (p.signer, p.signer, p.signer, p.signer)):
                return ACCEPT, "key of a known creator"
            return IGNORE, "key document of a creator nobody here pays"
        if p.type == "listing":
            return relate_listing(self.db, p, self.now() if self.now else None)
        if p.type == "equivocation":
            assert p.donor is not None and p.month is not None
            if self._proven(p.donor, p.month):
                return IGNORE, "this donor and month are proven already"
            return ACCEPT, "new equivocation"
        return IGNORE, f"{p.type} is not gossiped"

    def _proven(self, donor: bytes, month: str) -> bool:
        return self._one("SELECT 1 FROM equivocators WHERE donor = ? AND month = ?",
                         (donor, month)) is not None

    def _settlement(self, p: Preview) -> tuple[str, str]:
        assert p.month is not None
        if self._proven(p.signer, p.month):
            return IGNORE, "the donor's month is proven equivocating already"
        held = self.db.execute("SELECT count(*) FROM objects WHERE type = 'settlement' AND "
                               "signer = ? AND month = ? AND id != ?",
                               (p.signer, p.month, p.id)).fetchone()[0]
        if held >= 2:
            return IGNORE, "two settlements of this donor's month are held already"
        return ACCEPT, "settlement"

    def _claim(self, p: Preview) -> tuple[str, str]:
        row = self._one("SELECT signer, month FROM objects WHERE id = ? AND "
                        "type = 'settlement'", (p.settlement,))
        if row is None:
            return IGNORE, ORPHAN
        if bytes(row[0]) != p.signer or row[1] != p.month or not self._one(
                "SELECT 1 FROM subjects WHERE object = ? AND subject = ?",
                (p.settlement, p.creator)):
            return REJECT, "does not match its settlement"
        if self._one("SELECT 1 FROM objects o JOIN subjects s ON s.object = o.id WHERE "
                     "o.type = ? AND o.signer = ? AND o.month = ? AND s.subject = ? AND "
                     "o.id != ? LIMIT 1",
                     (p.type, p.signer, p.month, p.creator, p.id)):
            return IGNORE, "another one for this settlement line is held already"
        return ACCEPT, "matches its settlement"

    # -- claims that came before their settlement ----------------------------------------

    def hold_orphan(self, settlement: bytes, raw: bytes) -> bool:
        """Keep a (valid) claim whose settlement is not here yet; False if full."""
        waiting = self.orphans.get(settlement)
        if waiting is None:
            if self.orphan_count >= MAX_ORPHANS:
                old, dropped = self.orphans.popitem(last=False)
                self.orphan_count -= len(dropped)
                del old
            waiting = self.orphans[settlement] = []
        if len(waiting) >= MAX_ORPHANS_PER_SETTLEMENT or raw in waiting:
            return False
        waiting.append(raw)
        self.orphan_count += 1
        return True

    def adopt(self, settlement: bytes) -> list[bytes]:
        """The claims that were waiting for ``settlement`` (now held)."""
        waiting = self.orphans.pop(settlement, [])
        self.orphan_count -= len(waiting)
        return waiting
