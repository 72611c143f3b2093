"""The wallet's SQLite database: schema, connection settings, transactions.

One file per home, in WAL mode with ``synchronous=FULL``: a transaction that
returned has reached the disk.  Several processes may use it at once; writers
take the write lock up front (``BEGIN IMMEDIATE``) so that reading the chain's
head and appending to it are one atomic step.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from .errors import Corrupt, DiskFull

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 15000

SCHEMA = """
CREATE TABLE log (                  -- the donor's own signed click log
    seq     INTEGER PRIMARY KEY,
    id      BLOB NOT NULL UNIQUE,   -- object ID of the entry
    time    INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    target  TEXT,
    raw     BLOB NOT NULL
);
CREATE INDEX log_time ON log(time);
CREATE INDEX log_target ON log(target, time);

CREATE TABLE objects (              -- every other verified object we hold
    n        INTEGER PRIMARY KEY AUTOINCREMENT,  -- receive order: the sync cursor
    id       BLOB NOT NULL UNIQUE,
    type     TEXT NOT NULL,
    signer   BLOB NOT NULL,
    month    TEXT,
    raw      BLOB NOT NULL,
    received INTEGER NOT NULL,
    private  INTEGER NOT NULL DEFAULT 0, -- 1: never served to peers (opened claims)
    keep     INTEGER NOT NULL DEFAULT 0  -- protection class: 2 ours, 1 related, 0 other
);
CREATE INDEX objects_type_signer ON objects(type, signer);
CREATE INDEX objects_month ON objects(month);
CREATE INDEX objects_keep_signer ON objects(keep, signer);

CREATE TABLE subjects (             -- whom an object concerns (for sync and pruning)
    object  BLOB NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    subject BLOB NOT NULL,
    n       INTEGER NOT NULL,       -- the object's receive order
    PRIMARY KEY (subject, n, object)
) WITHOUT ROWID;
CREATE INDEX subjects_object ON subjects(object);

CREATE TABLE settled (              -- our own settlements, one per month
    month      TEXT PRIMARY KEY,
    settlement BLOB NOT NULL UNIQUE
);

CREATE TABLE obligations (          -- claims, outgoing (we owe) or incoming (owed to us)
    claim      BLOB PRIMARY KEY,
    direction  TEXT NOT NULL CHECK (direction IN ('out', 'in')),
    month      TEXT NOT NULL,
    donor      BLOB NOT NULL,
    creator    BLOB NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    currency   TEXT NOT NULL,
    settlement BLOB NOT NULL,
    sealed     BLOB,
    state      TEXT NOT NULL CHECK (state IN ('owed', 'paid', 'receipted')),
    reference  TEXT,
    paid_at    INTEGER,
    receipt    BLOB
);
CREATE INDEX obligations_creator ON obligations(direction, creator, state);

-- receipted is final: nothing moves an obligation back
CREATE TRIGGER receipted_is_final BEFORE UPDATE OF state ON obligations
WHEN OLD.state = 'receipted' AND NEW.state != 'receipted'
BEGIN SELECT RAISE(ABORT, 'a receipted obligation cannot change state'); END;

CREATE TABLE equivocators (         -- donors proven to have signed two settlements
    donor BLOB NOT NULL,
    month TEXT NOT NULL,
    proof BLOB NOT NULL,            -- the one proof kept for this donor and month
    PRIMARY KEY (donor, month)
);

CREATE TABLE sites (                -- creators' key documents as fetched from their sites
    origin      TEXT PRIMARY KEY,
    creator     BLOB,               -- NULL when the last check failed
    document    BLOB,               -- the key document's object ID
    checked_at  INTEGER NOT NULL,
    expires     INTEGER NOT NULL,   -- re-check after this time
    reason      TEXT                -- why the last check failed
);

CREATE TABLE meta (key TEXT PRIMARY KEY, value);
""" + """
CREATE TABLE signers (              -- when each signer's first object was stored
    key        BLOB PRIMARY KEY,
    first_seen INTEGER NOT NULL     -- the objects.n of its first object (receive order)
) WITHOUT ROWID;
CREATE INDEX signers_first_seen ON signers(first_seen);

CREATE TABLE relations (            -- keys we stand in a relation with (protection class 1)
    key    BLOB PRIMARY KEY,
    reason TEXT NOT NULL,           -- paid-by-us, paid-us, our-creators-donor, peer
    since  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE newcomers (            -- donors who never paid us, by month they first named us
    month TEXT NOT NULL,
    donor BLOB NOT NULL,
    PRIMARY KEY (month, donor)
) WITHOUT ROWID;

CREATE TABLE store_bytes (          -- bytes held per protection class (kept by triggers)
    keep  INTEGER PRIMARY KEY,
    bytes INTEGER NOT NULL
);
INSERT INTO store_bytes (keep, bytes) VALUES (0, 0), (1, 0), (2, 0);

CREATE TRIGGER store_bytes_insert AFTER INSERT ON objects BEGIN
    UPDATE store_bytes SET bytes = bytes + length(NEW.raw) WHERE keep = NEW.keep;
END;
CREATE TRIGGER store_bytes_delete AFTER DELETE ON objects BEGIN
    UPDATE store_bytes SET bytes = bytes - length(OLD.raw) WHERE keep = OLD.keep;
END;
CREATE TRIGGER store_bytes_keep AFTER UPDATE OF keep ON objects WHEN OLD.keep != NEW.keep
BEGIN
    UPDATE store_bytes SET bytes = bytes - length(OLD.raw) WHERE keep = OLD.keep;
    UPDATE store_bytes SET bytes = bytes + length(NEW.raw) WHERE keep = NEW.keep;
END;
"""

#: Schema 1 -> 2: protection classes, signers, relations, byte totals; one equivocation
#: proof per donor and month.
MIGRATE_1_2 = """
ALTER TABLE objects ADD COLUMN keep INTEGER NOT NULL DEFAULT 0;
CREATE INDEX objects_keep_signer ON objects(keep, signer);
CREATE TABLE equivocators_2 (
    donor BLOB NOT NULL,
    month TEXT NOT NULL,
    proof BLOB NOT NULL,
    PRIMARY KEY (donor, month)
);
INSERT INTO equivocators_2 SELECT donor, month, proof FROM equivocators;
DROP TABLE equivocators;
ALTER TABLE equivocators_2 RENAME TO equivocators;
""" + SCHEMA.split("CREATE TABLE meta (key TEXT PRIMARY KEY, value);", 1)[1] + """
INSERT OR IGNORE INTO signers (key, first_seen) SELECT signer, min(n) FROM objects GROUP BY signer;
INSERT OR IGNORE INTO relations (key, reason, since)
    SELECT DISTINCT creator, 'paid-by-us', 0 FROM obligations WHERE direction = 'out';
INSERT OR IGNORE INTO relations (key, reason, since)
    SELECT DISTINCT donor, 'paid-us', 0 FROM obligations
    WHERE direction = 'in' AND state = 'receipted';
INSERT OR IGNORE INTO newcomers (month, donor)
    SELECT DISTINCT month, donor FROM obligations WHERE direction = 'in'
    AND donor NOT IN (SELECT key FROM relations WHERE reason = 'paid-us');
UPDATE store_bytes SET bytes = (SELECT coalesce(sum(length(raw)), 0) FROM objects)
    WHERE keep = 0;
INSERT OR REPLACE INTO meta (key, value) VALUES ('reclassify', 1);
"""


def connect(path: Path) -> sqlite3.Connection:
    """Open (and if new, create) the database with Rill's settings.

    Raises :class:`DiskFull` when the disk holding it has no room (opening needs a few
    KiB for the WAL index), :class:`Corrupt` for a database that cannot be read."""
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                             check_same_thread=False)
    except sqlite3.Error as exc:
        if is_disk_full(exc, Path(path).parent):
            raise disk_full(Path(path).parent) from None
        raise Corrupt(f"cannot open {path}: {exc}") from None
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            with transaction(db):
                if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                    for statement in _statements(SCHEMA):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version == 1:
            with transaction(db):
                if db.execute("PRAGMA user_version").fetchone()[0] == 1:
                    for statement in _statements(MIGRATE_1_2):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise Corrupt(f"{path}: database schema {version} is newer than this Rill "
                          f"({SCHEMA_VERSION}); upgrade Rill")
    except DiskFull:
        db.close()
        raise
    except sqlite3.DatabaseError as exc:
        db.close()
        if is_disk_full(exc, Path(path).parent):
            raise disk_full(Path(path).parent) from None
        raise Corrupt(f"{path}: {exc}") from None
    return db


def _statements(script: str) -> list[str]:
    """Split the schema into statements (triggers contain ';' inside BEGIN..END)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--") and not buf.strip():
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return [s for s in out if s]


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """One transaction: committed when the block ends, rolled back on any exception.

    A full disk (SQLite's "database or disk is full", at any statement or at the commit)
    rolls everything back and raises :class:`DiskFull`: nothing of the block is kept.
    SQLite may have rolled back already by itself; then there is nothing left to undo."""
    try:
        db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    except sqlite3.OperationalError as exc:
        _raise_if_disk_full(db, exc)
        raise
    try:
        yield db
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the first error is the one to report
                db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            _raise_if_disk_full(db, exc)
        raise


# -- a full disk -------------------------------------------------------------------------

#: SQLite reports a write that found no room as SQLITE_FULL, but a WAL index (the -shm
#: file) that cannot grow -- e.g. opening a home on a full disk -- as an I/O error.  An
#: I/O error counts as a full disk when less than this much room is left.
LOW_SPACE = 1024 * 1024

_SQLITE_FULL = 13
_SQLITE_IOERR = 10
_SQLITE_CANTOPEN = 14


def free_bytes(path: Path | str) -> int | None:
    """Bytes that can still be written on the file system holding ``path`` (the nearest
    existing directory above it); None if unknown.  Root may use the blocks a file
    system reserves for it, others may not."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return None
    root = getattr(os, "geteuid", lambda: -1)() == 0
    return (st.f_bfree if root else st.f_bavail) * st.f_frsize


def is_disk_full(exc: BaseException, path: Path | str | None = None) -> bool:
    """Whether ``exc`` means the disk has no room: ENOSPC/EDQUOT from the OS, SQLITE_FULL
    from SQLite, or an SQLite I/O error while less than :data:`LOW_SPACE` is free on the
    file system holding ``path``."""
    if isinstance(exc, DiskFull):
        return True
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # not from SQLite's C library: judge by the message
        return "database or disk is full" in str(exc)
    if code & 0xFF == _SQLITE_FULL:
        return True
    if code & 0xFF in (_SQLITE_IOERR, _SQLITE_CANTOPEN) and path is not None:
        free = free_bytes(path)
        return free is not None and free < LOW_SPACE
    return False


def disk_full(path: Path | str, outcome: str = "nothing was recorded") -> DiskFull:
    """The one error a full disk gives: where, how much room is left, what happened
    (``outcome``), what to do."""
    free = free_bytes(path)
    room = "" if free is None else f" ({free} bytes free)"
    return DiskFull(f"the disk holding {path} is full{room}: {outcome}; free some space "
                    "and try again", path=str(path), free=free)


def db_dir(db: sqlite3.Connection) -> Path | None:
    """The directory of the database file ``db`` has open (the home)."""
    try:
        for _seq, name, file in db.execute("PRAGMA database_list"):
            if name == "main" and file:
                return Path(file).parent
    except sqlite3.Error:
        pass
    return None


def _raise_if_disk_full(db: sqlite3.Connection, exc: BaseException) -> None:
    where = db_dir(db)
    if is_disk_full(exc, where):
        raise disk_full(where if where is not None else "the database") from None
