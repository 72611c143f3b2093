"""The wallet: a donor's click log, budget, subscriptions, settlements and obligations,
and a creator's incoming claims and receipts.

Pure money logic over one SQLite store.  No clock: every method that needs
the time takes ``now`` (Unix seconds).  No network: objects from other people
arrive through :meth:`Wallet.import_object`.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nacl.signing

from ..protocol import checks, keys
from ..protocol import messages as m
from ..protocol.counting import LogEntry, MonthView, count_month, subscription_months
from ..protocol.currency import format_amount, known_currency
from ..protocol.errors import LocalError, RemoteError
from ..protocol.months import month_end, month_of, month_start
from ..protocol.payto import payment_uri
from ..protocol.settle import SettlementResult, open_claim, settle
from ..protocol.shares import group_things, thing_shares
from ..protocol.things import normalise_thing, origin_of
from ..protocol.work import find_work
from . import store
from .errors import Corrupt, HomeError, NotFound, Refused
from .home import Config, Home

#: Tolerated clock skew when a time is given explicitly (``rill click --at``).
SKEW = 300

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ClickResult:
    thing: str
    month: str
    entry: m.Signed[m.ClickEntry] | None  # None: already flattred this month, nothing added

    @property
    def new(self) -> bool:
        return self.entry is not None


@dataclass(frozen=True)
class Obligation:
    claim: bytes
    direction: str
    month: str
    donor: bytes
    creator: bytes
    amount: int
    currency: str
    state: str
    reference: str | None
    paid_at: int | None
    receipt: bytes | None
    payable: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.claim.hex(), "month": self.month,
            "donor": keys.did_from_key(self.donor), "creator": keys.did_from_key(self.creator),
            "amount": self.amount, "currency": self.currency, "state": self.state,
            "direction": "outgoing" if self.direction == "out" else "incoming",
            "payable": self.payable, "reference": self.reference,
            "receipt": self.receipt.hex() if self.receipt else None,
        }


@dataclass(frozen=True)
class Payment:
    """What to pay one creator now: the sum of its owed claims, with instructions."""

    creator: bytes
    currency: str
    amount: int
    claims: tuple[bytes, ...]
    payable: bool
    uris: tuple[str, ...]
    name: str | None

    def as_json(self) -> dict[str, Any]:
        return {"creator": keys.did_from_key(self.creator), "name": self.name,
                "currency": self.currency, "amount": self.amount,
                "claims": [c.hex() for c in self.claims], "payable": self.payable,
                "payto": list(self.uris)}


@dataclass(frozen=True)
class ImportResult:
    id: bytes
    type: str
    action: str
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id.hex(), "type": self.type, "action": self.action,
                "detail": self.detail}


@dataclass
class LogReport:
    size: int
    head: bytes
    settled: list[str] = field(default_factory=list)
    entries: list[LogEntry] = field(default_factory=list, repr=False)


class Wallet:
    """One open home.  Not thread-safe: use one Wallet per thread."""

    def __init__(self, home: Home, db: sqlite3.Connection, key: nacl.signing.SigningKey) -> None:
        self.home = home
        self.db = db
        self.key = key
        self.identity = keys.public_key(key)

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path | str, name: str, seed: bytes) -> Wallet:
        home = Home(path)
        home.create(name, seed)
        return cls.open(path)

    @classmethod
    def open(cls, path: Path | str) -> Wallet:
        home = Home(path)
        key = home.signing_key()
        home.config()  # fail early on a broken config
        db = store.connect(home.db_path)
        w = cls(home, db, key)
        w.check_head()
        return w

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Wallet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def did(self) -> str:
        return keys.did_from_key(self.identity)

    @property
    def config(self) -> Config:
        return self.home.config()

    # -- the log ------------------------------------------------------------------------

    def _head(self) -> tuple[int, bytes]:
        row = self.db.execute("SELECT seq, id FROM log ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, m.ZERO_HASH) if row is None else (row[0] + 1, row[1])

    def check_head(self) -> None:
        """Cheap check on open: the newest entry is ours, well-signed and where it says."""
        row = self.db.execute("SELECT seq, id, raw FROM log ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return
        seq, rid, raw = row
        try:
            e = m.decode(raw, m.ClickEntry)
        except RemoteError as exc:
            raise Corrupt(f"click log entry {seq} does not verify: {exc.reason}") from None
        if e.signer != self.identity or e.body.seq != seq or e.id != rid:
            raise Corrupt(f"click log entry {seq} was altered (signer, seq or ID differ)")

    def verify_log(self, progress: Progress | None = None) -> LogReport:
        """Verify the whole chain; raise :class:`Corrupt` naming where it breaks.

        Hash links are checked for every entry and the signature of the head, which
        covers all earlier bytes through the links (SPEC §7.5).  Each row's indexed
        columns are compared with its signed content.  Every settlement we signed must
        name a head that is in the log (truncation below a settlement is caught).
        """
        rows = self.db.execute("SELECT seq, id, time, kind, target, raw FROM log ORDER BY seq"
                               ).fetchall()
        total = len(rows)
        entries: list[LogEntry] = []
        try:
            for row, e in zip(rows, checks.read_chain((r[5] for r in rows), self.identity),
                              strict=False):
                if row[:5] != (e.seq, e.id, e.time, e.kind, e.target):
                    raise Corrupt(f"click log row {row[0]} was altered (its columns differ "
                                  "from the signed entry)")
                entries.append(e)
                if progress and len(entries) % 5000 == 0:
                    progress(len(entries), total)
        except RemoteError as exc:
            raise Corrupt(f"click log is broken: {exc}") from None
        if entries:
            self.check_head()
        report = LogReport(len(entries), entries[-1].id if entries else m.ZERO_HASH,
                           entries=entries)
        for month, sid in self.db.execute("SELECT month, settlement FROM settled ORDER BY month"):
            s = self._object(sid, m.Settlement)
            if s.signer != self.identity or s.body.month != month:
                raise Corrupt(f"stored settlement for {month} is not ours or not for {month}")
            if s.body.head != m.ZERO_HASH and self.db.execute(
                    "SELECT 1 FROM log WHERE id = ?", (s.body.head,)).fetchone() is None:
                raise Corrupt(f"the click log lost entries: the {month} settlement covers an "
                              "entry that is no longer there")
            report.settled.append(month)
        if progress:
            progress(total, total)
        return report

    def _log_size(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM log").fetchone()[0])

    def entries(self, before: int | None = None) -> Iterator[LogEntry]:
        """Log entries in log order (optionally only those with time < ``before``).

        Read fast, trusting the store (projections, listings); settlement and export
        verify the whole chain first (:meth:`verify_log`)."""
        rows = self.db.execute("SELECT raw FROM log ORDER BY seq").fetchall()
        try:
            for e in checks.read_chain((r[0] for r in rows), self.identity):
                if before is None or e.time < before:
                    yield e
        except RemoteError as exc:
            raise Corrupt(f"click log is broken: {exc} (run `rill check`)") from None

    def _last_settled_end(self) -> int:
        row = self.db.execute("SELECT max(month) FROM settled").fetchone()
        return 0 if row[0] is None else month_end(row[0])

    def _append(self, time: int, kind: str, now: int, **data: Any) -> m.Signed[m.ClickEntry]:
        """Sign and store one entry atomically (caller holds the write transaction)."""
        if time > now + SKEW:
            raise Refused("that time is in the future", code="future")
        frozen = self._last_settled_end()
        if time < frozen:
            raise Refused(f"{month_of(time)} is already settled; nothing can be added to it",
                          code="settled")
        seq, prev = self._head()
        try:
            entry = m.sign(m.ClickEntry(seq, prev, time, kind, **data), self.key)
        except LocalError as exc:
            raise Refused(str(exc), code=exc.code) from None
        self.db.execute("INSERT INTO log (seq, id, time, kind, target, raw) VALUES (?,?,?,?,?,?)",
                        (seq, entry.id, time, kind, entry.body.target, entry.raw))
        return entry

    # -- donor actions ------------------------------------------------------------------

    def click(self, url: str, now: int, creator: bytes | None = None,
              at: int | None = None) -> ClickResult:
        """Flattr a thing (once per month: a repeat click adds nothing)."""
        thing = _thing(url)
        time = now if at is None else at
        month = month_of(time)
        with store.transaction(self.db):
            if at is not None and time > now + SKEW:
                raise Refused(f"{month} is in the future", code="future")
            rows = self.db.execute(
                "SELECT raw FROM log WHERE kind = 'click' AND target = ? AND time >= ? "
                "AND time < ?", (thing, month_start(month), month_end(month))).fetchall()
            known = [m.decode(r[0], m.ClickEntry, verify_signature=False).body for r in rows]
            if known and (creator is None or any(b.creator is not None for b in known)):
                if time < self._last_settled_end():
                    raise Refused(f"{month} is already settled", code="settled")
                return ClickResult(thing, month, None)
            entry = self._append(time, "click", now, thing=thing, creator=creator)
        return ClickResult(thing, month, entry)

    def set_budget(self, amount: int, currency: str, now: int) -> m.Signed[m.ClickEntry]:
        currency = known_currency(currency)
        with store.transaction(self.db):
            return self._append(now, "budget", now, amount=amount, currency=currency)

    def budget(self, month: str) -> tuple[int, str] | None:
        view = count_month(self._budget_entries(month_end(month)), month)
        if view.budget is None or view.currency is None:
            return None
        return view.budget, view.currency

    def _budget_entries(self, before: int) -> Iterator[m.Signed[m.ClickEntry]]:
        rows = self.db.execute(
            "SELECT raw FROM log WHERE kind = 'budget' AND time < ? ORDER BY seq", (before,))
        for (raw,) in rows:
            yield m.decode(raw, m.ClickEntry, verify_signature=False)

    def subscribe(self, target: str, now: int, months: int | None = None,
                  creator: bytes | None = None) -> m.Signed[m.ClickEntry]:
        thing, who = _target(target, creator)
        with store.transaction(self.db):
            return self._append(now, "subscribe", now, thing=thing, creator=who, months=months)

    def unsubscribe(self, target: str, now: int) -> m.Signed[m.ClickEntry]:
        thing, who = _target(target, None)
        key = thing if thing is not None else keys.did_from_key(who or b"")
        with store.transaction(self.db):
            if key not in self.subscriptions(now):
                raise NotFound(f"not subscribed to {key}")
            if thing is not None:
                return self._append(now, "unsubscribe", now, thing=thing)
            return self._append(now, "unsubscribe", now, creator=who)

    def subscriptions(self, now: int) -> dict[str, dict[str, Any]]:
        """Active subscriptions at ``now``: target -> {creator, since, months, until}."""
        subs: dict[str, dict[str, Any]] = {}
        rows = self.db.execute(
            "SELECT raw FROM log WHERE kind IN ('subscribe', 'unsubscribe') AND time <= ? "
            "ORDER BY time, seq", (now,))
        current = month_of(now)
        for (raw,) in rows:
            b = m.decode(raw, m.ClickEntry, verify_signature=False).body
            target = b.target
            assert target is not None
            if b.kind == "unsubscribe":
                subs.pop(target, None)
                continue
            first = month_of(b.time)
            until = None if b.months is None else subscription_months(first, b.months)[-1]
            subs[target] = {"creator": b.creator, "since": first, "months": b.months,
                            "until": until}
        return {t: s for t, s in subs.items() if s["until"] is None or s["until"] >= current}

    # -- months -------------------------------------------------------------------------

    def month_view(self, month: str) -> MonthView:
        """The month's things; pending ones attributed through verified creator sites."""
        return count_month(self.entries(before=month_end(month)), month,
                           self.creator_of_thing)

    def projection(self, month: str) -> dict[str, Any]:
        """The month's things with each one's (projected, if not settled) share."""
        view = self.month_view(month)
        known = view.known
        rows = []
        if view.budget is not None and known:
            groups = group_things(known)
            n, before = len(known), 0
            for creator, things in groups:
                for thing, share in zip(things, thing_shares(view.budget, n, before,
                                                             len(things)), strict=True):
                    rows.append({"thing": thing, "creator": keys.did_from_key(creator),
                                 "share": share, "pending": False})
                before += len(things)
        rows += [{"thing": t, "creator": None, "share": 0, "pending": True}
                 for t in view.pending]
        settled = self.db.execute("SELECT settlement FROM settled WHERE month = ?",
                                  (month,)).fetchone()
        return {"month": month, "budget": view.budget, "currency": view.currency,
                "things": rows, "counted": len(known), "pending": len(view.pending),
                "settled": settled[0].hex() if settled else None}

    def settle(self, month: str, now: int) -> tuple[SettlementResult, bool]:
        """Settle ``month`` (after it ended, UTC); return (result, newly made).

        Idempotent: a settled month returns the stored objects, byte for byte.  The
        settlement carries the proof of work of the config's ``[network] work_bits``.
        """
        if now < month_end(month):
            raise Refused(f"{month} has not ended yet (it ends {_iso(month_end(month))})",
                          code="not-ended")
        work_bits = self.config.work_bits
        if work_bits and self.db.execute("SELECT 1 FROM settled WHERE month = ?",
                                         (month,)).fetchone() is None:
            # about a second of hashing: done before the write transaction (and cached)
            find_work(self.identity, month, work_bits)
        with store.transaction(self.db):
            existing = self.stored_settlement(month)
            if existing is not None:
                return existing, False
            later = self.db.execute("SELECT max(month) FROM settled").fetchone()[0]
            if later is not None and later > month:
                raise Refused(f"{later} is already settled; {month} can no longer be settled",
                              code="settled")
            log = self.verify_log()
            end = month_end(month)
            view = count_month((e for e in log.entries if e.time < end), month,
                               self.creator_of_thing)
            if view.budget is None or view.currency is None:
                raise Refused(f"no budget was set for {month}: nothing to settle (use "
                              "`rill budget set`)", code="no-budget")
            try:
                result = settle(self.key, month, view.budget, view.currency, view.head,
                                view.known, work_bits=work_bits)
            except LocalError as exc:
                raise Refused(f"cannot settle {month}: {exc}", code=exc.code) from None
            self._store(result.settlement, now)
            self.db.execute("INSERT INTO settled (month, settlement) VALUES (?, ?)",
                            (month, result.settlement.id))
            for claim, sealed in zip(result.claims, result.sealed, strict=True):
                self._store(claim, now, private=True)
                self._store(sealed, now)
                self._add_obligation(claim, "out", sealed.id)
        return result, True

    def stored_settlement(self, month: str) -> SettlementResult | None:
        row = self.db.execute("SELECT settlement FROM settled WHERE month = ?",
                              (month,)).fetchone()
        if row is None:
            return None
        s = self._object(row[0], m.Settlement)
        claims = []
        sealed = []
        for (cid, sid) in self.db.execute(
                "SELECT claim, sealed FROM obligations WHERE settlement = ? AND direction = 'out'",
                (s.id,)):
            claims.append(self._object(cid, m.Claim))
            sealed.append(self._object(sid, m.SealedClaim))
        order = {line.creator: i for i, line in enumerate(s.body.lines)}
        pairs = sorted(zip(claims, sealed, strict=True), key=lambda p: order[p[0].body.creator])
        return SettlementResult(s, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    def settled_months(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT month FROM settled ORDER BY month")]

    # -- objects ------------------------------------------------------------------------

    def _store(self, obj: m.Signed[Any], now: int, private: bool = False) -> bool:
        """Store a verified object once; record whom it concerns.  True if new.

        ``private`` objects (claims in clear that were sealed on the wire, our own
        claims) are never served to peers.
        """
        month = getattr(obj.body, "month", None)
        cur = self.db.execute(
            "INSERT OR IGNORE INTO objects (id, type, signer, month, raw, received, private) "
            "VALUES (?,?,?,?,?,?,?)",
            (obj.id, obj.type, obj.signer, month, obj.raw, now, int(private)))
        if cur.rowcount != 1:
            return False
        n = cur.lastrowid
        self.db.executemany("INSERT OR IGNORE INTO subjects (object, subject, n) VALUES (?,?,?)",
                            [(obj.id, s, n) for s in subjects_of(obj)])
        return True

    def _object(self, oid: bytes, expect: Any = None) -> m.Signed[Any]:
        row = self.db.execute("SELECT raw FROM objects WHERE id = ?", (oid,)).fetchone()
        if row is None:
            raise NotFound(f"no object {oid.hex()}")
        try:
            return m.decode(row[0], expect)
        except RemoteError as exc:
            raise Corrupt(f"stored object {oid.hex()} does not verify: {exc.reason}") from None

    def _add_obligation(self, claim: m.Signed[m.Claim], direction: str,
                        sealed: bytes | None) -> None:
        c = claim.body
        self.db.execute(
            "INSERT INTO obligations (claim, direction, month, donor, creator, amount, currency,"
            " settlement, sealed, state) VALUES (?,?,?,?,?,?,?,?,?, 'owed')",
            (claim.id, direction, c.month, claim.signer, c.creator, c.amount, c.currency,
             c.settlement, sealed))

    def key_document(self, creator: bytes) -> m.Signed[m.KeyDocument] | None:
        """The newest key document we hold for ``creator``."""
        best = None
        for (raw,) in self.db.execute(
                "SELECT raw FROM objects WHERE type = 'key' AND signer = ?", (creator,)):
            doc = m.decode(raw, m.KeyDocument)
            if best is None or doc.body.valid_from > best.body.valid_from:
                best = doc
        return best

    # -- obligations --------------------------------------------------------------------

    def obligations(self, month: str | None = None, direction: str | None = None
                    ) -> list[Obligation]:
        sql = ("SELECT claim, direction, month, donor, creator, amount, currency, state, "
               "reference, paid_at, receipt FROM obligations WHERE 1=1")
        args: list[Any] = []
        if month is not None:
            sql += " AND month = ?"
            args.append(month)
        if direction is not None:
            sql += " AND direction = ?"
            args.append(direction)
        sql += " ORDER BY month, direction, creator, claim"
        rows = [Obligation(*r) for r in self.db.execute(sql, args)]
        payable = {c for p in self.due() if p.payable for c in p.claims}
        return [replace(o, payable=o.direction == "in" or o.state != "owed"
                        or o.claim in payable) for o in rows]

    def obligation(self, claim_id: bytes) -> Obligation:
        rows = [o for o in self.obligations() if o.claim == claim_id]
        if not rows:
            raise NotFound(f"no claim {claim_id.hex()}")
        return rows[0]

    def due(self) -> list[Payment]:
        """Outgoing claims still owed, grouped per creator and currency.

        A group whose total is below ``payments.min_payout`` is not payable yet:
        it carries forward and is added to the creator's next claims.
        """
        minimum = self.config.min_payout
        groups: dict[tuple[bytes, str], list[tuple[bytes, int]]] = defaultdict(list)
        for claim, creator, amount, currency in self.db.execute(
                "SELECT claim, creator, amount, currency FROM obligations "
                "WHERE direction = 'out' AND state = 'owed' ORDER BY month, claim"):
            groups[(creator, currency)].append((claim, amount))
        out = []
        for (creator, currency), items in sorted(groups.items()):
            total = sum(a for _, a in items)
            ids = tuple(c for c, _ in items)
            doc = self.key_document(creator)
            uris: tuple[str, ...] = ()
            if doc is not None:
                text = _format(total, currency)
                uris = tuple(payment_uri(p, text, currency, ",".join(c.hex() for c in ids))
                             for p in doc.body.payto)
            out.append(Payment(creator, currency, total, ids, total >= minimum and total > 0,
                               uris, doc.body.name if doc else None))
        return out

    def pay(self, claim_ids: Iterable[bytes], reference: str, now: int) -> list[Obligation]:
        """Record that outgoing claims were paid (with the rail's reference)."""
        reference = reference.strip()
        if not reference or len(reference.encode()) > 256:
            raise Refused("a payment reference of 1 to 256 bytes is required",
                          code="bad-reference")
        ids = list(dict.fromkeys(claim_ids))
        with store.transaction(self.db):
            for cid in ids:
                o = self.obligation(cid)
                if o.direction != "out":
                    raise Refused(f"claim {cid.hex()} is owed to you, not by you")
                if o.state == "receipted":
                    raise Refused(f"claim {cid.hex()} is already receipted")
                self.db.execute("UPDATE obligations SET state = 'paid', reference = ?, "
                                "paid_at = ? WHERE claim = ?", (reference, now, cid))
        return [self.obligation(c) for c in ids]

    def sign_receipt(self, claim_id: bytes, now: int, reference: str = "",
                     amount: int | None = None) -> m.Signed[m.Receipt]:
        """Creator side: acknowledge a payment for a claim owed to us."""
        with store.transaction(self.db):
            o = self.obligation(claim_id)
            if o.direction != "in":
                raise Refused(f"claim {claim_id.hex()} is not owed to you; only its creator "
                              "signs a receipt")
            if o.receipt is not None:
                return self._object(o.receipt, m.Receipt)
            body = m.Receipt(claim_id, o.donor, o.month, o.currency,
                             o.amount if amount is None else amount, reference.strip(), now)
            try:
                receipt = m.sign(body, self.key)
                checks.check_time(receipt, now)
            except (LocalError, RemoteError) as exc:
                raise Refused(f"cannot sign this receipt: {exc}") from None
            self._store(receipt, now)
            self.db.execute("UPDATE obligations SET state = 'receipted', receipt = ?, "
                            "reference = ? WHERE claim = ?", (receipt.id, body.reference,
                                                               claim_id))
        return receipt

    # -- objects from elsewhere ---------------------------------------------------------

    def import_object(self, raw: bytes, now: int, *, signature_checked: bool = False
                      ) -> ImportResult:
        """Verify and take in one object received by other means (USB stick, mail...).

        Raises :class:`RemoteError` for an invalid object and :class:`Refused` for a
        valid one that contradicts what we hold (a receipt by the wrong key...);
        either way nothing is written.  ``signature_checked``: the caller verified these
        exact bytes already (the node's gossip validator), so the signature is not
        checked twice.
        """
        obj = m.decode(raw, verify_signature=not signature_checked)
        checks.check_time(obj, now)
        with store.transaction(self.db):
            return self._route(obj, now)

    def _route(self, obj: m.Signed[Any], now: int) -> ImportResult:
        body = obj.body
        known = self.db.execute("SELECT 1 FROM objects WHERE id = ?", (obj.id,)).fetchone()
        if isinstance(body, m.ClickEntry):
            raise Refused("click-log entries travel only inside an export (`rill import`)")
        if isinstance(body, m.SealedClaim) and body.creator == self.identity:
            claim = open_claim(obj, self.key)
            self._store(obj, now)
            return self._take_claim(claim, now, obj.id)
        if isinstance(body, m.Claim) and body.creator == self.identity:
            return self._take_claim(obj, now, None)
        if isinstance(body, m.Receipt) and body.donor == self.identity:
            return self._take_receipt(obj, now)
        if isinstance(body, m.Settlement) and not known:
            proof = self._check_equivocation(obj, now)
            self._store(obj, now)
            taken = self._take_pending(obj, now)
            if proof is not None:
                return ImportResult(obj.id, obj.type, "equivocation",
                                    f"{obj.signer_did} signed two settlements for "
                                    f"{body.month}; proof {proof.id_hex}")
            return ImportResult(obj.id, obj.type, "stored",
                                f"{taken} waiting claim(s) taken in" if taken else "")
        if isinstance(body, m.Equivocation):
            self._mark(body.donor, body.month, obj)
        stored = self._store(obj, now)
        return ImportResult(obj.id, obj.type, "stored" if stored and not known else "duplicate")

    def _take_claim(self, claim: m.Signed[m.Claim], now: int, sealed: bytes | None
                    ) -> ImportResult:
        row = self.db.execute("SELECT raw FROM objects WHERE id = ?",
                              (claim.body.settlement,)).fetchone()
        if row is None:
            # keep it; it is checked and taken in when its settlement arrives
            if sealed is None:
                self._store(claim, now)
            return ImportResult(claim.id, "claim", "pending",
                                "waiting for its settlement to arrive")
        checks.check_claim(claim, m.decode(row[0], m.Settlement))
        if self.db.execute("SELECT 1 FROM obligations WHERE claim = ?",
                           (claim.id,)).fetchone():
            if sealed is not None:
                self.db.execute("UPDATE obligations SET sealed = coalesce(sealed, ?) "
                                "WHERE claim = ?", (sealed, claim.id))
            return ImportResult(claim.id, "claim", "duplicate")
        self._store(claim, now, private=sealed is not None)
        self._add_obligation(claim, "in", sealed)
        c = claim.body
        return ImportResult(claim.id, "claim", "claim-received",
                            f"{format_amount_safe(c.amount, c.currency)} for {len(c.things)} "
                            f"thing(s) from {claim.signer_did}")

    def _take_pending(self, settlement: m.Signed[m.Settlement], now: int) -> int:
        """Claims to us that arrived before their settlement: check and take them in now."""
        if all(line.creator != self.identity for line in settlement.body.lines):
            return 0
        taken = 0
        for (raw,) in self.db.execute(
                "SELECT o.raw FROM objects o JOIN subjects s ON s.object = o.id "
                "WHERE s.subject = ? AND o.type IN ('claim', 'sealed-claim') AND o.month = ? "
                "AND o.signer = ?", (self.identity, settlement.body.month, settlement.signer)
        ).fetchall():
            obj = m.decode(raw)
            if obj.body.settlement != settlement.id or obj.body.creator != self.identity:
                continue
            claim = open_claim(obj, self.key) if isinstance(obj.body, m.SealedClaim) else obj
            sealed = obj.id if isinstance(obj.body, m.SealedClaim) else None
            try:
                if self._take_claim(claim, now, sealed).action == "claim-received":
                    taken += 1
            except RemoteError:
                continue  # a claim that does not match its settlement stays out
        return taken

    def _take_receipt(self, receipt: m.Signed[m.Receipt], now: int) -> ImportResult:
        r = receipt.body
        row = self.db.execute("SELECT state, receipt FROM obligations WHERE claim = ? AND "
                              "direction = 'out'", (r.claim,)).fetchone()
        if row is None:
            raise NotFound(f"the receipt is for claim {r.claim.hex()}, which is not one of "
                           "yours")
        claim = self._object(r.claim, m.Claim)
        try:
            checks.check_receipt(receipt, claim, self.key_document(claim.body.creator))
        except RemoteError as exc:
            raise Refused(f"receipt refused: {exc}", code=exc.code) from None
        if row[1] is not None:
            return ImportResult(receipt.id, "receipt", "duplicate")
        self._store(receipt, now)
        self.db.execute("UPDATE obligations SET state = 'receipted', receipt = ? "
                        "WHERE claim = ?", (receipt.id, r.claim))
        return ImportResult(receipt.id, "receipt", "receipted",
                            f"{format_amount_safe(r.amount, r.currency)} acknowledged by "
                            f"{receipt.signer_did}")

    def _check_equivocation(self, s: m.Signed[m.Settlement], now: int
                            ) -> m.Signed[m.Equivocation] | None:
        for (raw,) in self.db.execute(
                "SELECT raw FROM objects WHERE type = 'settlement' AND signer = ? AND month = ?",
                (s.signer, s.body.month)):
            other = m.decode(raw, m.Settlement)
            if other.id != s.id:
                a, b = sorted([s, other], key=lambda x: x.id)
                proof = m.sign(m.Equivocation(a.raw, b.raw), self.key)
                self._store(proof, now)
                self._mark(s.signer, s.body.month, proof)
                return proof
        return None

    def _mark(self, donor: bytes, month: str, proof: m.Signed[m.Equivocation]) -> None:
        self.db.execute("INSERT OR IGNORE INTO equivocators (donor, month, proof) VALUES (?,?,?)",
                        (donor, month, proof.id))

    def equivocators(self) -> dict[bytes, str]:
        return {d: mo for d, mo in self.db.execute("SELECT donor, month FROM equivocators")}

    # -- creators' sites ---------------------------------------------------------------

    #: How long a site check is trusted before it is made again.
    SITE_TTL = 7 * 86400
    #: A failed check is retried after this long.
    SITE_RETRY = 3600

    def record_site(self, origin: str, document: m.Signed[m.KeyDocument] | None,
                    reason: str | None, now: int) -> None:
        """Remember the outcome of fetching ``origin``'s well-known key document.

        ``document`` is the verified document (it must list ``origin``), or None with
        the ``reason`` the check failed.  A failed re-check of a site that verified
        before keeps its creator until the old verification expires.
        """
        with store.transaction(self.db):
            if document is not None:
                if origin not in document.body.origins:
                    raise Refused(f"the document does not speak for {origin}")
                self._store(document, now)
                self.db.execute(
                    "INSERT INTO sites (origin, creator, document, checked_at, expires, reason)"
                    " VALUES (?,?,?,?,?,NULL) ON CONFLICT(origin) DO UPDATE SET "
                    "creator = excluded.creator, document = excluded.document, "
                    "checked_at = excluded.checked_at, expires = excluded.expires, "
                    "reason = NULL",
                    (origin, document.signer, document.id, now, now + self.SITE_TTL))
            else:
                self.db.execute(
                    "INSERT INTO sites (origin, creator, document, checked_at, expires, reason)"
                    " VALUES (?, NULL, NULL, ?, ?, ?) ON CONFLICT(origin) DO UPDATE SET "
                    "checked_at = excluded.checked_at, reason = excluded.reason, "
                    "creator = CASE WHEN sites.expires > excluded.checked_at "
                    "THEN sites.creator END, "
                    "expires = max(sites.expires, excluded.expires)",
                    (origin, now, now + self.SITE_RETRY, reason))

    def site(self, origin: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT creator, document, checked_at, expires, reason FROM sites"
                              " WHERE origin = ?", (origin,)).fetchone()
        if row is None:
            return None
        creator, doc, checked, expires, reason = row
        return {"origin": origin, "creator": keys.did_from_key(creator) if creator else None,
                "document": doc.hex() if doc else None, "checked_at": checked,
                "expires": expires, "reason": reason}

    def sites_to_check(self, month: str, now: int) -> list[str]:
        """Origins of the month's things that name no creator in the log (pending, or
        attributed through a site check) whose check is missing or expired."""
        origins = set()
        unnamed = count_month(self.entries(before=month_end(month)), month).pending
        for thing in unnamed:
            origin = origin_of(thing)
            if origin is not None:
                origins.add(origin)
        due = []
        for origin in sorted(origins):
            row = self.db.execute("SELECT expires FROM sites WHERE origin = ?",
                                  (origin,)).fetchone()
            if row is None or row[0] <= now:
                due.append(origin)
        return due

    def creator_of_thing(self, thing: str) -> bytes | None:
        """The creator whose verified site document lists the thing's origin."""
        origin = origin_of(thing)
        if origin is None:
            return None
        row = self.db.execute("SELECT creator FROM sites WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else row[0]

    # -- what a node serves, publishes and forgets ---------------------------------------

    def objects_for(self, subject: bytes, after: int, limit: int, max_bytes: int
                    ) -> tuple[list[bytes], int, bool]:
        """Public objects concerning ``subject`` received after cursor ``after``.

        Returns (raw objects, next cursor, more to come).  At most ``limit`` objects and
        about ``max_bytes`` bytes (always at least one object when any is left).
        """
        out: list[bytes] = []
        size, cursor, more = 0, after, False
        for n, raw in self.db.execute(
                "SELECT o.n, o.raw FROM subjects s JOIN objects o ON o.id = s.object "
                "WHERE s.subject = ? AND s.n > ? AND o.private = 0 ORDER BY s.n LIMIT ?",
                (subject, after, limit + 1)):
            if len(out) == limit or (out and size + len(raw) > max_bytes):
                more = True
                break
            out.append(raw)
            size += len(raw)
            cursor = n
        return out, cursor, more

    def has_object(self, oid: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM objects WHERE id = ?", (oid,)).fetchone() is not None

    def unreceipted(self) -> list[tuple[str, bytes, list[bytes]]]:
        """Our settlements with claims not yet receipted: (month, settlement, sealed claims)."""
        out = []
        for month, sid in self.db.execute("SELECT month, settlement FROM settled ORDER BY month"
                                          ).fetchall():
            sealed = [raw for (raw,) in self.db.execute(
                "SELECT o.raw FROM obligations b JOIN objects o ON o.id = b.sealed "
                "WHERE b.settlement = ? AND b.direction = 'out' AND b.state != 'receipted'",
                (sid,))]
            if sealed:
                out.append((month, self._object(sid).raw, sealed))
        return out

    def receipts_signed(self) -> list[bytes]:
        """Receipts we signed as a creator (the node publishes them)."""
        return [raw for (raw,) in self.db.execute(
            "SELECT raw FROM objects WHERE type = 'receipt' AND signer = ?", (self.identity,))]

    def prune(self, oldest_month: str, max_bytes: int) -> int:
        """Forget objects that do not concern us: older than ``oldest_month``, then the
        oldest received first until the public store fits in ``max_bytes``.  Returns how
        many were deleted."""
        mine = ("SELECT object FROM subjects WHERE subject = ?")
        ref = ("SELECT claim FROM obligations UNION SELECT settlement FROM obligations "
               "UNION SELECT sealed FROM obligations WHERE sealed IS NOT NULL "
               "UNION SELECT receipt FROM obligations WHERE receipt IS NOT NULL "
               "UNION SELECT settlement FROM settled UNION SELECT proof FROM equivocators")
        keep = f"id IN ({mine}) OR id IN ({ref})"
        with store.transaction(self.db):
            gone = self.db.execute(
                f"DELETE FROM objects WHERE month IS NOT NULL AND month < ? AND NOT ({keep})",
                (oldest_month, self.identity)).rowcount
            total = self.db.execute(
                f"SELECT coalesce(sum(length(raw)), 0) FROM objects WHERE NOT ({keep})",
                (self.identity,)).fetchone()[0]
            for oid, size in self.db.execute(
                    f"SELECT id, length(raw) FROM objects WHERE NOT ({keep}) ORDER BY n",
                    (self.identity,)).fetchall():
                if total <= max_bytes:
                    break
                self.db.execute("DELETE FROM objects WHERE id = ?", (oid,))
                total -= size
                gone += 1
        return gone

    def stored_bytes(self) -> int:
        return int(self.db.execute("SELECT coalesce(sum(length(raw)), 0) FROM objects"
                                   ).fetchone()[0])

    # -- creator side -------------------------------------------------------------------

    def earnings(self, month: str | None = None) -> list[dict[str, Any]]:
        """Per month and currency: total owed to us, receipted, supporters, top things."""
        seen: set[bytes] = set()
        per: dict[tuple[str, str], dict[str, Any]] = {}
        things: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for mo, cur, donor, amount, state, cid in self.db.execute(
                "SELECT month, currency, donor, amount, state, claim FROM obligations "
                "WHERE direction = 'in' ORDER BY month"):
            e = per.setdefault((mo, cur), {"month": mo, "currency": cur, "total": 0,
                                           "receipted": 0, "claims": 0, "supporters": set(),
                                           "new_supporters": set()})
            e["total"] += amount
            e["claims"] += 1
            if state == "receipted":
                e["receipted"] += amount
            e["supporters"].add(donor)
            if donor not in seen:
                e["new_supporters"].add(donor)
                seen.add(donor)
            claim = self._object(cid, m.Claim)
            things[(mo, cur)].update(claim.body.things)
        out = []
        for k, e in sorted(per.items()):
            if month is not None and e["month"] != month:
                continue
            out.append({**e, "supporters": len(e["supporters"]),
                        "new_supporters": sorted(keys.did_from_key(d)
                                                 for d in e["new_supporters"]),
                        "top_things": [{"thing": t, "supporters": n}
                                       for t, n in things[k].most_common(10)]})
        return out


def subjects_of(obj: m.Signed[Any]) -> set[bytes]:
    """The keys an object concerns: whoever may ask for it by sync."""
    b = obj.body
    out = {obj.signer}
    if isinstance(b, m.Settlement):
        out.update(line.creator for line in b.lines)
    elif isinstance(b, m.Claim | m.SealedClaim):
        out.add(b.creator)
    elif isinstance(b, m.Receipt | m.Equivocation):
        out.add(b.donor)
    return out


def _target(text: str, creator: bytes | None) -> tuple[str | None, bytes | None]:
    """A subscription target: a did:key (a creator) or a URL/URI (a thing)."""
    text = text.strip()
    if text.startswith("did:key:"):
        who = keys.key_from_did(text)
        if creator is not None and creator != who:
            raise LocalError("--creator differs from the creator subscribed to")
        return None, who
    return _thing(text), creator


def _thing(text: str) -> str:
    try:
        return normalise_thing(text)
    except LocalError as exc:
        raise LocalError(f"{text!r} is not a valid URL or URI: {exc}", code=exc.code) from None


def _iso(t: int) -> str:
    """A Unix time as ISO 8601 UTC text (a conversion, not a clock read)."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_amount_safe(amount: int, currency: str) -> str:
    try:
        return f"{format_amount(amount, currency)} {currency}"
    except LocalError:
        return f"{amount} {currency} (minor units)"


def _format(amount: int, currency: str) -> str:
    try:
        return format_amount(amount, currency)
    except LocalError:
        raise HomeError(f"unknown currency {currency}") from None


__all__ = ["ClickResult", "ImportResult", "Obligation", "Payment", "Wallet"]
