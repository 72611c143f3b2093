"""Listings held by this home (SPEC §5.8): which one is current per signer and thing, the
bounds per signer, and the full-text index the catalogue searches.

Tables (created on open when missing; derived from ``objects``, which holds the listing
envelopes themselves):

* ``listings`` -- the current listing of each (signer, thing): an announcement or a
  withdrawal.  A listing replaced by a newer one is deleted from ``objects`` too, so a
  signer holds at most one object per thing;
* ``listings_fts`` -- an FTS5 index of the announcements' thing, title, description and
  tags, kept in step by triggers (a withdrawal, an eviction or a replacement removes the
  old row).

Rules applied to every listing taken in, whatever the path (gossip, sync, a file):

* its signer must have a key document held here that names the thing's origin
  (``unlisted-origin``);
* a signer holds at most :data:`MAX_PER_SIGNER` listings (withdrawals included, until
  they leave the window): a new thing beyond that is refused (``listing-limit``);
* a listing older than the one held for its signer and thing is not kept (a
  ``duplicate`` whose detail says ``stale``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ..protocol import messages as m
from ..protocol.listing import newer
from .errors import Refused
from .results import ImportResult

#: Listings (announcements and withdrawals) one signer may have held at once.
MAX_PER_SIGNER = 256

SCHEMA = """
CREATE TABLE IF NOT EXISTS listings (
    signer      BLOB NOT NULL,
    thing       TEXT NOT NULL,
    id          BLOB NOT NULL UNIQUE,   -- the listing's object ID (in objects)
    time        INTEGER NOT NULL,
    received    INTEGER NOT NULL,
    withdrawn   INTEGER NOT NULL,
    origin      TEXT NOT NULL,
    title       TEXT,
    kind        TEXT,
    description TEXT,
    tags        TEXT,                   -- space-separated
    lang        TEXT,
    PRIMARY KEY (signer, thing)
);
CREATE INDEX IF NOT EXISTS listings_kind ON listings(kind);
CREATE VIRTUAL TABLE IF NOT EXISTS listings_fts USING fts5(
    thing, title, description, tags, content='listings', content_rowid='rowid',
    tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS listings_fts_insert AFTER INSERT ON listings
WHEN NEW.withdrawn = 0 BEGIN
    INSERT INTO listings_fts (rowid, thing, title, description, tags)
    VALUES (NEW.rowid, NEW.thing, NEW.title, NEW.description, NEW.tags);
END;
CREATE TRIGGER IF NOT EXISTS listings_fts_delete AFTER DELETE ON listings
WHEN OLD.withdrawn = 0 BEGIN
    INSERT INTO listings_fts (listings_fts, rowid, thing, title, description, tags)
    VALUES ('delete', OLD.rowid, OLD.thing, OLD.title, OLD.description, OLD.tags);
END;
CREATE TRIGGER IF NOT EXISTS listings_object_gone AFTER DELETE ON objects
WHEN OLD.type = 'listing' BEGIN
    DELETE FROM listings WHERE id = OLD.id;
END;
"""


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create the tables if missing (idempotent; run when a home is opened)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'listings_object_gone'"
                  ).fetchone():
        return
    db.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")


def origin_named(db: sqlite3.Connection, signer: bytes, origin: str) -> bool:
    """Whether the newest key document held of ``signer`` names ``origin`` (stored key
    documents were verified when taken in: no signature check here)."""
    best = None
    for (raw,) in db.execute("SELECT raw FROM objects WHERE type = 'key' AND signer = ?",
                             (signer,)):
        doc = m.decode(raw, m.KeyDocument, verify_signature=False)
        if best is None or doc.body.valid_from > best.body.valid_from:
            best = doc
    return best is not None and origin in best.body.origins


def held(db: sqlite3.Connection, signer: bytes, thing: str) -> tuple[bytes, int, int] | None:
    """(object ID, time, received) of the listing held for ``signer`` and ``thing``."""
    row = db.execute("SELECT id, time, received FROM listings WHERE signer = ? AND thing = ?",
                     (signer, thing)).fetchone()
    return None if row is None else (bytes(row[0]), row[1], row[2])


def count(db: sqlite3.Connection, signer: bytes) -> int:
    n: int = db.execute("SELECT count(*) FROM listings WHERE signer = ?",
                        (signer,)).fetchone()[0]
    return n


def take(w: Any, obj: m.Signed[m.Listing], now: int, known: bool) -> ImportResult:
    """Take in a verified listing (inside the caller's transaction): store it, replace
    the one it supersedes, index it.  Raises :class:`Refused` (see the module doc)."""
    db: sqlite3.Connection = w.db
    b = obj.body
    if known:
        return ImportResult(obj.id, obj.type, "duplicate")
    if not origin_named(db, obj.signer, b.origin):
        raise Refused(f"no key document of {obj.signer_did} held here names {b.origin}",
                      code="unlisted-origin")
    old = held(db, obj.signer, b.thing)
    if old is not None and not newer(b.time, obj.id, old[1], old[0]):
        return ImportResult(obj.id, obj.type, "duplicate",
                            "stale: a newer listing of this thing by its signer is held")
    if old is None and count(db, obj.signer) >= MAX_PER_SIGNER:
        raise Refused(f"{obj.signer_did} already has {MAX_PER_SIGNER} listings here",
                      code="listing-limit")
    w._store(obj, now)
    if old is not None:
        db.execute("DELETE FROM objects WHERE id = ?", (old[0],))  # trigger: listings row
    db.execute("DELETE FROM listings WHERE signer = ? AND thing = ?", (obj.signer, b.thing))
    db.execute(
        "INSERT INTO listings (signer, thing, id, time, received, withdrawn, "
        "origin, title, kind, description, tags, lang) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (obj.signer, b.thing, obj.id, b.time, now, int(b.withdrawn), b.origin, b.title,
         b.kind, b.description, " ".join(b.tags or ()), b.lang))
    action = "withdrawn" if b.withdrawn else ("updated" if old else "listed")
    return ImportResult(obj.id, obj.type, action, b.thing)


def own_listings(db: sqlite3.Connection, identity: bytes) -> list[bytes]:
    """The raw listings this home signed that are held (announcements and withdrawals)."""
    return [bytes(r[0]) for r in db.execute(
        "SELECT o.raw FROM listings l JOIN objects o ON o.id = l.id WHERE l.signer = ? "
        "ORDER BY l.time", (identity,))]


__all__ = ["MAX_PER_SIGNER", "count", "ensure_schema", "held", "origin_named",
           "own_listings", "take"]
