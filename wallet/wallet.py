"""The wallet: a donor's click log, budget, subscriptions, settlements and obligations.

The creator's side (receipts, income, sites) is in :mod:`rill.wallet.creator`, who a
thing belongs to and the settle preview in :mod:`rill.wallet.attribution`, objects
from other people in :mod:`rill.wallet.inbox`; :class:`Wallet` combines them.

Pure money logic over one SQLite store.  No clock: every method that needs
the time takes ``now`` (Unix seconds).  No network: objects from other people
arrive through :meth:`Wallet.import_object`.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import nacl.signing

from ..protocol import checks, keys
from ..protocol import messages as m
from ..protocol.counting import LogEntry, MonthView, count_month, subscription_months
from ..protocol.currency import MINOR_UNITS, format_money, known_currency
from ..protocol.errors import LocalError, RemoteError
from ..protocol.months import month_end, month_of, month_start
from ..protocol.payto import payment_uri
from ..protocol.settle import SettlementResult, blind_head, settle
from ..protocol.shares import group_things, thing_shares
from ..protocol.things import check_new_thing, normalise_thing
from ..protocol.work import find_work
from . import listings, store
from .attribution import Attribution
from .errors import Corrupt, NotFound, Refused
from .home import Config, Home
from .inbox import OWN, subjects_of
from .pseudonyms import Pseudonyms, ensure_table
from .results import (
    ClickResult,
    ImportResult,
    LogReport,
    Obligation,
    Payment,
    format_amount_safe,
    format_amount_strict,
)

#: Tolerated clock skew when a time is given explicitly (``rill click --at``).
SKEW = 300

#: The largest monthly budget, in major units of its currency (README, "Budget"): far
#: above any monthly giving, so more is a typo (extra zeros) refused before it is signed.
MAX_BUDGET_MAJOR = 1_000_000

Progress = Callable[[int, int], None]


class Wallet(Pseudonyms, Attribution):
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
        before = home.before_create()
        home.create(name, seed)
        try:
            return cls.open(path)
        except BaseException:  # e.g. a full disk: no home half made
            home.undo_create(before)
            raise

    @classmethod
    def open(cls, path: Path | str) -> Wallet:
        home = Home(path)
        key = home.signing_key()
        home.config()  # fail early on a broken config
        db = store.connect(home.db_path)
        try:  # any failure (a full disk...) closes the database: no WAL files left behind
            ensure_table(db)
            w = cls(home, db, key)
            w.check_head()
            listings.ensure_schema(db)
            if db.execute("SELECT 1 FROM meta WHERE key = 'reclassify'").fetchone():
                w._reclassify()  # first open after a schema upgrade
        except BaseException:
            db.close()
            raise
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

    def set_name(self, name: str) -> None:
        """Change this home's display name (config.toml's ``name``)."""
        self.home.set_name(name)

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
        log_ids = {e.id for e in entries}
        for month, sid in self.db.execute("SELECT month, settlement FROM settled ORDER BY month"):
            self.check_own_settlement(self._object(sid, m.Settlement), month, log_ids)
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
        """Flattr a thing (once per month: a repeat click adds nothing).

        A ``creator`` other than the key of the thing's verified site is refused
        (``creator-mismatch``): the site's key is the thing's creator."""
        thing = _thing(url, new=True)
        self.check_creator(thing, creator)
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
        """Set the monthly budget from ``now`` on; 0 pauses giving (nothing is settled)."""
        currency = known_currency(currency)
        if type(amount) is not int or amount < 0:
            raise Refused("a budget cannot be negative", code="bad-amount")
        limit = MAX_BUDGET_MAJOR * 10 ** MINOR_UNITS[currency]
        if amount > limit:
            raise Refused(f"{format_amount_safe(amount, currency)} a month is more than the "
                          f"largest budget ({format_money(limit, currency)}); a typo?",
                          code="bad-amount")
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
        thing, who = _target(target, creator, new=True)
        if thing is not None:
            self.check_creator(thing, who)
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
        """The month's things, those on verified creator sites attributed to their keys."""
        return count_month(self.entries(before=month_end(month)), month,
                           self.site_resolver())

    def projection(self, month: str) -> dict[str, Any]:
        """The month's things with each one's (projected, if not settled) share and
        whether its creator comes from its verified site (``verified``), and the things
        left out (``left_out``: ``{thing, origin, code, reason}`` each, as in
        :meth:`settle_preview`)."""
        resolve = self.site_resolver()
        view = count_month(self.entries(before=month_end(month)), month, resolve)
        known = view.known
        rows = []
        if view.budget is not None and known:
            groups = group_things(known)
            n, before = len(known), 0
            for creator, things in groups:
                for thing, share in zip(things, thing_shares(view.budget, n, before,
                                                             len(things)), strict=True):
                    rows.append({"thing": thing, "creator": keys.did_from_key(creator),
                                 "share": share, "pending": False,
                                 "verified": resolve(thing) is not None})
                before += len(things)
        left_out = [self.left_out_reason(t) for t in view.pending]
        rows += [{"thing": t["thing"], "creator": None, "share": 0, "pending": True,
                  "reason": t["reason"]} for t in left_out]
        settled = self.db.execute("SELECT settlement FROM settled WHERE month = ?",
                                  (month,)).fetchone()
        anon = self.anonymous_month(month)
        return {"month": month, "budget": view.budget, "currency": view.currency,
                "things": rows, "counted": len(known), "pending": len(view.pending),
                "left_out": left_out, "settled": settled[0].hex() if settled else None,
                "anonymous": anon.to_json() if anon is not None else None}

    def settle(self, month: str, now: int) -> tuple[SettlementResult, bool]:
        """Settle ``month`` (after it ended, UTC); return (result, newly made).

        Idempotent: a settled month returns the stored objects, byte for byte.  The
        settlement carries the proof of work of the config's ``[network] work_bits``.
        """
        if now < month_end(month):
            raise Refused(f"{month} has not ended yet (it ends {_iso(month_end(month))})",
                          code="not-ended")
        work_bits = self.config.work_bits
        stamp = self.pending_stamp(month)
        if stamp is not None:
            # about a second of hashing (unless the daemon found it during the month:
            # cached): done before the write transaction
            find_work(*stamp)
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
                               self.site_resolver())
            if view.budget is None or view.currency is None:
                raise Refused(f"no budget was set for {month}: nothing to settle (use "
                              "`rill budget set`)", code="no-budget")
            signer, disclosures = self.month_signer(month, set(view.known.values()))
            head = view.head if signer is self.key else blind_head(signer, view.head)
            try:
                result = settle(signer, month, view.budget, view.currency, head,
                                view.known, work_bits=work_bits, disclosures=disclosures)
            except LocalError as exc:
                raise Refused(f"cannot settle {month}: {exc}", code=exc.code) from None
            self._store(result.settlement, now)
            self.db.execute("INSERT INTO settled (month, settlement) VALUES (?, ?)",
                            (month, result.settlement.id))
            for claim, sealed in zip(result.claims, result.sealed, strict=True):
                self._store(claim, now, private=True)
                self._store(sealed, now)
                self._add_obligation(claim, "out", sealed.id)
                creator = claim.body.creator
                self.add_relation(creator, "paid-by-us", now)
                # the key documents of creators we owe tell us how to pay them
                self.db.execute("UPDATE objects SET keep = ? WHERE type = 'key' AND "
                                "signer = ?", (OWN, creator))
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

    def pending_stamp(self, month: str) -> tuple[bytes, str, int] | None:
        """(signer, month, bits) of the proof of work ``month``'s settlement will carry
        (SPEC §5.3), while it is still to be found: work asked and the month not settled."""
        bits = self.config.work_bits
        if not bits or self.db.execute("SELECT 1 FROM settled WHERE month = ?",
                                       (month,)).fetchone() is not None:
            return None
        signer, _ = self.month_signer(month, set())
        return keys.public_key(signer), month, bits

    def settled_months(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT month FROM settled ORDER BY month")]

    # -- what the node publishes for us --------------------------------------------------

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
        """Receipts this wallet signed as a creator (the node publishes them).

        Only those made here by :meth:`sign_receipt`: a receipt signed with our key that
        merely arrived (from another device, or an echo of our own) is not ours to gossip
        again."""
        return [raw for (raw,) in self.db.execute(
            "SELECT o.raw FROM obligations b JOIN objects o ON o.id = b.receipt "
            "WHERE b.direction = 'in' AND o.signer = ?", (self.identity,))]

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
        # one group per creator, currency and signing key: an anonymous month's claims
        # are paid apart from the identity's and from other months' pseudonyms
        groups: dict[tuple[bytes, str, bytes], list[tuple[bytes, int]]] = defaultdict(list)
        for claim, creator, amount, currency, donor in self.db.execute(
                "SELECT claim, creator, amount, currency, donor FROM obligations "
                "WHERE direction = 'out' AND state = 'owed' ORDER BY month, claim"):
            groups[(creator, currency, donor)].append((claim, amount))
        out = []
        for (creator, currency, donor), items in sorted(groups.items()):
            total = sum(a for _, a in items)
            ids = tuple(c for c, _ in items)
            doc = self.key_document(creator)
            uris: tuple[str, ...] = ()
            if doc is not None:
                text = format_amount_strict(total, currency)
                uris = tuple(payment_uri(p, text, currency, ",".join(c.hex() for c in ids))
                             for p in doc.body.payto)
            out.append(Payment(creator, currency, total, ids, total >= minimum and total > 0,
                               uris, doc.body.name if doc else None,
                               None if donor == self.identity else donor))
        return out

    def pay(self, claim_ids: Iterable[bytes], reference: str, now: int, force: bool = False
            ) -> list[Obligation]:
        """Record that outgoing claims were paid (with the rail's reference).

        Recording the same reference again changes nothing; another reference for a claim
        already recorded as paid is refused (``already-paid``) unless ``force``."""
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
                if o.state == "paid" and o.reference != reference and not force:
                    raise Refused(f"claim {cid.hex()[:16]} is already recorded as paid with "
                                  f"reference {o.reference!r}; give --force to replace it",
                                  code="already-paid")
                if o.state == "paid" and o.reference == reference:
                    continue  # the same payment recorded again: keep its time
                self.db.execute("UPDATE obligations SET state = 'paid', reference = ?, "
                                "paid_at = ? WHERE claim = ?", (reference, now, cid))
        return [self.obligation(c) for c in ids]

def _target(text: str, creator: bytes | None, new: bool = False
            ) -> tuple[str | None, bytes | None]:
    """A subscription target: a did:key (a creator) or a URL/URI (a thing)."""
    text = text.strip()
    if text.startswith("did:key:"):
        who = keys.key_from_did(text)
        if creator is not None and creator != who:
            raise LocalError("--creator differs from the creator subscribed to")
        return None, who
    return _thing(text, new), creator


def _thing(text: str, new: bool = False) -> str:
    """The normalised thing; ``new``: it is about to be clicked or subscribed to, so its
    scheme must be one SPEC §6.1.6 allows (no ``javascript:``, ``data:``, ``file:``)."""
    try:
        thing = normalise_thing(text)
    except LocalError as exc:
        raise LocalError(f"{text!r} is not a valid URL or URI: {exc}", code=exc.code) from None
    return check_new_thing(thing) if new else thing


def _iso(t: int) -> str:
    """A Unix time as ISO 8601 UTC text (a conversion, not a clock read)."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["ClickResult", "ImportResult", "Obligation", "Payment", "Wallet",
           "format_amount_safe", "subjects_of"]
