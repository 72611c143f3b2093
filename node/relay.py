"""The relay store: other people's objects a node carries for the network, and how much
of them it keeps (SPEC §13 "Storage").

Blocking SQLite on the wallet's connection: the daemon calls these in its worker thread.
Protection classes are set by the wallet when it stores an object (rill.wallet.inbox):
2 concerns us (never evicted, not counted against the cap), 1 related keys and
equivocation proofs, 0 everything else.  The cap bounds classes 0 and 1 together, and
holds after every call of :func:`enforce_cap`:

* class 0 goes first, then class 1;
* within a class, the signers first seen most recently go first (all of the newest
  signer's objects, newest received first, then the next signer): a flood of fresh
  identities can only push out itself, never the long-standing objects of others.

Each class-0 signer also holds at most :func:`quota` bytes (checked when storing).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..wallet import store
from ..wallet.wallet import Wallet

#: The smallest per-signer quota, whatever the cap.
MIN_QUOTA = 16 * 1024
#: A class-0 signer may hold this fraction of the cap.
QUOTA_SHARE = 64


def quota(cap: int) -> int:
    """Bytes of class-0 objects one signer may hold under a cap of ``cap`` bytes."""
    return max(MIN_QUOTA, cap // QUOTA_SHARE)


@dataclass(frozen=True)
class Totals:
    own: int
    related: int
    other: int

    @property
    def relay(self) -> int:
        return self.related + self.other


def totals(w: Wallet) -> Totals:
    b = dict(w.db.execute("SELECT keep, bytes FROM store_bytes").fetchall())
    return Totals(b.get(2, 0), b.get(1, 0), b.get(0, 0))


def enforce_cap(w: Wallet, cap: int) -> list[bytes]:
    """Evict until classes 0 and 1 together hold at most ``cap`` bytes; return the IDs of
    the evicted objects (in eviction order).  One transaction."""
    gone: list[bytes] = []
    with store.transaction(w.db):
        over = totals(w).relay - cap
        if over <= 0:
            return gone
        for keep in (0, 1):
            for signer in _newest_signers(w):
                rows = w.db.execute(
                    "SELECT id, length(raw) FROM objects WHERE keep = ? AND signer = ? "
                    "ORDER BY n DESC", (keep, signer)).fetchall()
                for oid, size in rows:
                    w.db.execute("DELETE FROM objects WHERE id = ?", (oid,))
                    gone.append(oid)
                    over -= size
                    if over <= 0:
                        break
                if not w.db.execute("SELECT 1 FROM objects WHERE signer = ?",
                                    (signer,)).fetchone():
                    w.db.execute("DELETE FROM signers WHERE key = ?", (signer,))
                if over <= 0:
                    return gone
    return gone


def _newest_signers(w: Wallet, page: int = 256) -> Iterator[bytes]:
    """Signers, first seen most recently first (read a page at a time: eviction usually
    stops within the first page)."""
    last = None
    while True:
        if last is None:
            rows = w.db.execute("SELECT key, first_seen FROM signers ORDER BY first_seen DESC "
                                "LIMIT ?", (page,)).fetchall()
        else:
            rows = w.db.execute("SELECT key, first_seen FROM signers WHERE first_seen < ? "
                                "ORDER BY first_seen DESC LIMIT ?", (last, page)).fetchall()
        if not rows:
            return
        for key, first_seen in rows:
            yield bytes(key)
            last = first_seen


def prune_window(w: Wallet, oldest_month: str) -> list[bytes]:
    """Forget other people's objects (classes 0 and 1) for months before ``oldest_month``.
    Objects that concern us are kept whatever their age."""
    with store.transaction(w.db):
        rows = w.db.execute("SELECT id FROM objects WHERE keep < 2 AND month IS NOT NULL AND "
                            "month < ?", (oldest_month,)).fetchall()
        w.db.executemany("DELETE FROM objects WHERE id = ?", rows)
        w.db.execute("DELETE FROM signers WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE "
                     "o.signer = signers.key)")
    return [r[0] for r in rows]


def objects_for(w: Wallet, subject: bytes, after: int, limit: int, max_bytes: int,
                ids: bool = False) -> tuple[list[bytes], int, bool]:
    """Public objects concerning ``subject`` received after cursor ``after`` (SPEC §11.3).

    Returns (raw objects, or with ``ids`` their IDs; next cursor; more to come).  At most
    ``limit`` objects and about ``max_bytes`` bytes (always at least one object when any
    is left).
    """
    out: list[bytes] = []
    size, cursor, more = 0, after, False
    column = "o.id" if ids else "o.raw"
    for n, raw in w.db.execute(
            f"SELECT o.n, {column} FROM subjects s JOIN objects o ON o.id = s.object "
            "WHERE s.subject = ? AND s.n > ? AND o.private = 0 AND o.type != 'claim' "
            "ORDER BY s.n LIMIT ?",
            (subject, after, limit + 1)):
        if len(out) == limit or (out and size + len(raw) > max_bytes):
            more = True
            break
        out.append(bytes(raw))
        size += len(raw)
        cursor = n
    return out, cursor, more


def held_ids(w: Wallet) -> set[bytes]:
    """IDs of every stored object (the gossip gate's duplicate check)."""
    return {bytes(r[0]) for r in w.db.execute("SELECT id FROM objects")}
