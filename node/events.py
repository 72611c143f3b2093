"""The node's event log and hook queue, in the home's SQLite database (blocking: the
daemon calls these through its db runner; the CLI directly).

Events are found by scanning what the wallet stored, so every way an object arrives
(gossip, sync, an adopted claim, ``rill import-object`` while the node runs, the node's
own settlement) yields the same events:

* ``claim``: a new incoming obligation (table ``obligations``, direction ``in``);
* ``new_supporter``: that claim's donor key never had an incoming claim before;
* ``receipt``: one of our outgoing claims got its receipt;
* ``month_settled``: we settled a month (table ``settled``).

**No storm on first start.**  The first scan on a home only notes where the store ends
(cursors): objects stored before it give no event.  A hook gets the events recorded
after it was configured (deliveries are queued when an event is recorded).

Each event has an ID (``sha256("rill-event\\n" + kind + "\\n" + object ID)``, hex),
the same on every scan, so an event is recorded once; a receiver that may see a
delivery twice (at-least-once: a crash between sending and noting it) dedups by it.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import sqlite3
from typing import Any

from ..protocol import keys
from ..protocol import messages as m
from ..protocol.errors import RemoteError
from ..wallet import store
from ..wallet.results import format_amount_safe
from .hookconfig import HookConfig

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    id     BLOB NOT NULL UNIQUE,
    kind   TEXT NOT NULL,
    time   INTEGER NOT NULL,
    body   TEXT NOT NULL,
    read   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_unread ON events(read, seq);
CREATE TABLE IF NOT EXISTS hook_queue (
    n        INTEGER PRIMARY KEY AUTOINCREMENT,
    target   TEXT NOT NULL,
    event    INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS hook_queue_target ON hook_queue(target, n);
CREATE TABLE IF NOT EXISTS hook_stats (
    target     TEXT PRIMARY KEY,
    delivered  INTEGER NOT NULL DEFAULT 0,
    dropped    INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_ok    INTEGER
);
CREATE TABLE IF NOT EXISTS event_cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

#: Events kept in the log (oldest read ones go first).
MAX_EVENTS = 10_000
CURSORS = ("claims", "receipts", "settled")


def ensure_schema(db: sqlite3.Connection) -> None:
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'event_cursors'").fetchone():
        return
    with store.transaction(db):
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)


def event_id(kind: str, object_id: bytes) -> bytes:
    return hashlib.sha256(b"rill-event\n" + kind.encode() + b"\n" + object_id).digest()


def iso(t: int) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(kind: str, oid: bytes, now: int, me: bytes, data: dict[str, Any]
           ) -> tuple[bytes, str, str]:
    eid = event_id(kind, oid)
    body = {"id": eid.hex(), "event": kind, "time": iso(now),
            "node": keys.did_from_key(me), "data": data}
    return eid, kind, json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency,
            "amount_text": format_amount_safe(amount, currency)}


# -- scanning ------------------------------------------------------------------------------


def scan(db: sqlite3.Connection, me: bytes, now: int, hooks: HookConfig | None
         ) -> list[dict[str, Any]]:
    """Record the events of what was stored since the last scan and queue their
    deliveries; return the new events (their JSON bodies)."""
    ensure_schema(db)
    with store.transaction(db):
        cursors = dict(db.execute("SELECT name, value FROM event_cursors").fetchall())
        if len(cursors) < len(CURSORS):
            _start(db, me)
            return []
        found: list[tuple[bytes, str, str]] = []
        found += _claims(db, me, now, cursors)
        found += _receipts(db, me, now, cursors)
        found += _settled(db, me, now, cursors)
        new = []
        for eid, kind, body in found:
            cur = db.execute("INSERT OR IGNORE INTO events (id, kind, time, body) VALUES "
                             "(?,?,?,?)", (eid, kind, now, body))
            if cur.rowcount == 1:
                new.append(json.loads(body))
                if hooks is not None:
                    _enqueue(db, hooks, kind, int(cur.lastrowid or 0))
        if new:
            _trim(db)
        return new


def _start(db: sqlite3.Connection, me: bytes) -> None:
    """The first scan: events only for what is stored from now on."""
    claims = db.execute("SELECT coalesce(max(rowid), 0) FROM obligations").fetchone()[0]
    receipts = db.execute(
        "SELECT coalesce(max(o.rowid), 0) FROM obligations b JOIN objects o ON "
        "o.id = b.receipt WHERE b.direction = 'out'").fetchone()[0]
    settled = db.execute("SELECT coalesce(max(o.rowid), 0) FROM settled s JOIN objects o "
                         "ON o.id = s.settlement").fetchone()[0]
    db.executemany("INSERT OR REPLACE INTO event_cursors (name, value) VALUES (?, ?)",
                   [("claims", claims), ("receipts", receipts), ("settled", settled)])


def _set(db: sqlite3.Connection, name: str, value: int) -> None:
    db.execute("UPDATE event_cursors SET value = ? WHERE name = ?", (value, name))


def _claims(db: sqlite3.Connection, me: bytes, now: int, cursors: dict[str, int]
            ) -> list[tuple[bytes, str, str]]:
    out = []
    rows = db.execute(
        "SELECT b.rowid, b.claim, b.month, b.donor, b.amount, b.currency, b.settlement, "
        "b.sealed, o.raw FROM obligations b LEFT JOIN objects o ON o.id = b.claim "
        "WHERE b.direction = 'in' AND b.rowid > ? ORDER BY b.rowid LIMIT 1000",
        (cursors["claims"],)).fetchall()
    for rowid, claim, month, donor, amount, currency, settlement, sealed, raw in rows:
        things: list[str] = []
        if raw is not None:
            with contextlib.suppress(RemoteError):  # stored verified: only a damaged row
                things = list(m.decode(raw, m.Claim, verify_signature=False).body.things)
        did = keys.did_from_key(donor)
        data = {"claim": claim.hex(), "month": month, "donor": did, **_money(amount, currency),
                "things": things, "settlement": settlement.hex(), "sealed": sealed is not None}
        out.append(_event("claim", claim, now, me, data))
        earlier = db.execute("SELECT 1 FROM obligations WHERE direction = 'in' AND donor = ? "
                             "AND rowid < ? LIMIT 1", (donor, rowid)).fetchone()
        if earlier is None:
            out.append(_event("new_supporter", donor, now, me, {
                "donor": did, "claim": claim.hex(), "month": month,
                **_money(amount, currency)}))
        _set(db, "claims", rowid)
    return out


def _receipts(db: sqlite3.Connection, me: bytes, now: int, cursors: dict[str, int]
              ) -> list[tuple[bytes, str, str]]:
    out = []
    rows = db.execute(
        "SELECT o.rowid, o.raw, b.claim, b.month, b.creator FROM obligations b JOIN objects o "
        "ON o.id = b.receipt WHERE b.direction = 'out' AND o.rowid > ? ORDER BY o.rowid",
        (cursors["receipts"],)).fetchall()
    for rowid, raw, claim, month, creator in rows:
        _set(db, "receipts", rowid)
        try:
            r = m.decode(raw, m.Receipt, verify_signature=False)
        except RemoteError:  # stored verified: only a damaged row; skipped, not stuck on
            continue
        out.append(_event("receipt", r.id, now, me, {
            "receipt": r.id.hex(), "claim": claim.hex(), "month": month,
            "creator": keys.did_from_key(creator), **_money(r.body.amount, r.body.currency)}))
    return out


def _settled(db: sqlite3.Connection, me: bytes, now: int, cursors: dict[str, int]
             ) -> list[tuple[bytes, str, str]]:
    out = []
    rows = db.execute("SELECT o.rowid, o.raw FROM settled s JOIN objects o ON "
                      "o.id = s.settlement WHERE o.rowid > ? ORDER BY o.rowid",
                      (cursors["settled"],)).fetchall()
    for rowid, raw in rows:
        _set(db, "settled", rowid)
        try:
            s = m.decode(raw, m.Settlement, verify_signature=False)
        except RemoteError:  # stored verified: only a damaged row; skipped, not stuck on
            continue
        b = s.body
        out.append(_event("month_settled", s.id, now, me, {
            "month": b.month, "settlement": s.id.hex(), "things": b.things,
            "budget": b.budget, "currency": b.currency,
            "budget_text": format_amount_safe(b.budget, b.currency),
            "paid": sum(line.amount for line in b.lines),
            "creators": [{"creator": keys.did_from_key(line.creator), "things": line.things,
                          **_money(line.amount, b.currency)} for line in b.lines]}))
    return out


# -- the queue ----------------------------------------------------------------------------


def _enqueue(db: sqlite3.Connection, hooks: HookConfig, kind: str, seq: int) -> None:
    for t in hooks.targets.get(kind, ()):
        db.execute("INSERT INTO hook_queue (target, event) VALUES (?, ?)", (t.name, seq))
        over = db.execute("SELECT count(*) FROM hook_queue WHERE target = ?",
                          (t.name,)).fetchone()[0] - hooks.queue
        if over > 0:  # full: the oldest waiting deliveries are dropped, and counted
            db.execute("DELETE FROM hook_queue WHERE n IN (SELECT n FROM hook_queue WHERE "
                       "target = ? ORDER BY n LIMIT ?)", (t.name, over))
            _stat(db, t.name, "dropped", over)


def _stat(db: sqlite3.Connection, target: str, column: str, add: int = 1,
          error: str | None = None, ok: int | None = None) -> None:
    db.execute("INSERT OR IGNORE INTO hook_stats (target) VALUES (?)", (target,))
    db.execute(f"UPDATE hook_stats SET {column} = {column} + ?, "
               "last_error = coalesce(?, last_error), last_ok = coalesce(?, last_ok) "
               "WHERE target = ?", (add, error, ok, target))


def _trim(db: sqlite3.Connection) -> None:
    over = db.execute("SELECT count(*) FROM events").fetchone()[0] - MAX_EVENTS
    if over > 0:
        db.execute("DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq NOT IN "
                   "(SELECT event FROM hook_queue) ORDER BY read DESC, seq LIMIT ?)", (over,))


def forget_targets(db: sqlite3.Connection, keep: set[str]) -> int:
    """Drop the waiting deliveries of hooks no longer configured (counted as dropped)."""
    ensure_schema(db)
    with store.transaction(db):
        gone = db.execute("SELECT target, count(*) FROM hook_queue GROUP BY target").fetchall()
        n = 0
        for target, count in gone:
            if target not in keep:
                db.execute("DELETE FROM hook_queue WHERE target = ?", (target,))
                _stat(db, target, "dropped", count)
                n += count
        return n


def head(db: sqlite3.Connection, target: str) -> tuple[int, int, bytes] | None:
    """The oldest waiting delivery of ``target``: (queue row, attempts so far, body)."""
    row = db.execute("SELECT q.n, q.attempts, e.body FROM hook_queue q JOIN events e ON "
                     "e.seq = q.event WHERE q.target = ? ORDER BY q.n LIMIT 1",
                     (target,)).fetchone()
    return None if row is None else (row[0], row[1], row[2].encode())


def delivered(db: sqlite3.Connection, target: str, n: int, now: int) -> None:
    with store.transaction(db):
        if db.execute("DELETE FROM hook_queue WHERE n = ?", (n,)).rowcount:
            _stat(db, target, "delivered", ok=now)


def attempt_failed(db: sqlite3.Connection, target: str, n: int, error: str, give_up: bool
                   ) -> None:
    with store.transaction(db):
        if give_up:
            if db.execute("DELETE FROM hook_queue WHERE n = ?", (n,)).rowcount:
                _stat(db, target, "failed", error=error[:500])
        else:
            db.execute("UPDATE hook_queue SET attempts = attempts + 1 WHERE n = ?", (n,))
            _stat(db, target, "failed", 0, error=error[:500])


def stats(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Per hook: delivered, waiting, dropped (queue full or hook removed), failed (gave
    up after every retry), the last error and the last success."""
    ensure_schema(db)
    out: dict[str, dict[str, Any]] = {}
    for target, dl, dr, fa, err, ok in db.execute(
            "SELECT target, delivered, dropped, failed, last_error, last_ok FROM hook_stats"):
        out[target] = {"delivered": dl, "dropped": dr, "failed": fa, "last_error": err,
                       "last_ok": iso(ok) if ok else None, "waiting": 0}
    for target, waiting in db.execute("SELECT target, count(*) FROM hook_queue "
                                      "GROUP BY target"):
        out.setdefault(target, {"delivered": 0, "dropped": 0, "failed": 0,
                                "last_error": None, "last_ok": None})["waiting"] = waiting
    return dict(sorted(out.items()))


# -- reading ----------------------------------------------------------------------------


def listing(db: sqlite3.Connection, unread: bool = False, limit: int = 200
            ) -> list[dict[str, Any]]:
    """Events, newest first: each one's JSON body plus ``seq`` and ``read``."""
    ensure_schema(db)
    sql = "SELECT seq, body, read FROM events"
    if unread:
        sql += " WHERE read = 0"
    rows = db.execute(sql + " ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
    return [{**json.loads(body), "seq": seq, "read": bool(read)} for seq, body, read in rows]


def unread_count(db: sqlite3.Connection) -> int:
    ensure_schema(db)
    return int(db.execute("SELECT count(*) FROM events WHERE read = 0").fetchone()[0])


def mark_read(db: sqlite3.Connection, ids: list[str] | None = None) -> int:
    """Mark events read (all, or those whose ID starts with one of ``ids``)."""
    ensure_schema(db)
    with store.transaction(db):
        if ids is None:
            return db.execute("UPDATE events SET read = 1 WHERE read = 0").rowcount
        n = 0
        for prefix in ids:
            p = prefix.lower()
            if len(p) < 8 or any(c not in "0123456789abcdef" for c in p):
                raise ValueError(f"an event ID is 8 to 64 hex digits, not {prefix!r}")
            n += db.execute("UPDATE events SET read = 1 WHERE read = 0 AND "
                            "substr(hex(id), 1, ?) = ?", (len(p), p.upper())).rowcount
        return n
