"""The creator's side of the wallet: receipts, income (promised vs paid), and the
creators' sites whose verified key documents attribute the things on them."""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from typing import Any

import nacl.signing

from ..protocol import checks, keys
from ..protocol import messages as m
from ..protocol.counting import count_month
from ..protocol.errors import LocalError, RemoteError
from ..protocol.months import month_end
from ..protocol.things import origin_of
from . import store
from .errors import Refused
from .inbox import OWN, Inbox
from .results import Obligation


class CreatorSide(Inbox):
    """Mixin of :class:`rill.wallet.wallet.Wallet`: what a creator does and sees."""

    db: sqlite3.Connection
    key: nacl.signing.SigningKey
    identity: bytes

    def obligation(self, claim_id: bytes) -> Obligation:  # provided by Wallet
        raise NotImplementedError

    def entries(self, before: int | None = None) -> Any:  # provided by Wallet
        raise NotImplementedError

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
            self.add_relation(o.donor, "paid-us", now)
            self.db.execute("UPDATE obligations SET state = 'receipted', receipt = ?, "
                            "reference = ? WHERE claim = ?", (receipt.id, body.reference,
                                                               claim_id))
        return receipt

    def earnings(self, month: str | None = None) -> list[dict[str, Any]]:
        """Per month and currency: what was claimed, what is only promised (owed) and what
        was paid (receipted), supporters (donors who paid) apart from promisers (donors
        whose claims are still owed), the newcomers of each kind, and top things.

        A claim is a donor's IOU that costs a stranger little to sign; only a receipt
        (the creator's own acknowledgement) makes a donor a supporter.
        """
        rows = self.db.execute(
            "SELECT month, currency, donor, amount, state, claim, receipt FROM obligations "
            "WHERE direction = 'in' ORDER BY month, claim").fetchall()
        first_paid: dict[bytes, str] = {}
        first_seen: dict[bytes, str] = {}
        for mo, _cur, donor, _amount, state, _cid, _rid in rows:
            first_seen.setdefault(donor, mo)
            if state == "receipted":
                first_paid.setdefault(donor, mo)
        per: dict[tuple[str, str], dict[str, Any]] = {}
        paid_things: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        owed_things: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for mo, cur, donor, amount, state, cid, rid in rows:
            if month is not None and mo != month:
                continue
            e = per.setdefault((mo, cur), {
                "month": mo, "currency": cur, "total": 0, "promised": 0, "receipted": 0,
                "paid": 0, "claims": 0, "supporters": set(), "promisers": set()})
            e["total"] += amount
            e["claims"] += 1
            things = self._object(cid, m.Claim).body.things
            if state == "receipted":
                e["receipted"] += amount
                e["paid"] += self._object(rid, m.Receipt).body.amount if rid else amount
                e["supporters"].add(donor)
                paid_things[(mo, cur)].update(things)
            else:
                e["promised"] += amount
                e["promisers"].add(donor)
                owed_things[(mo, cur)].update(things)
        out = []
        for k, e in sorted(per.items()):
            mo = e["month"]
            promisers = e["promisers"] - e["supporters"]
            out.append({
                **e, "supporters": len(e["supporters"]), "promisers": len(promisers),
                "new_supporters": sorted(keys.did_from_key(d) for d in e["supporters"]
                                         if first_paid.get(d) == mo),
                "new_promisers": sorted(keys.did_from_key(d) for d in promisers
                                        if first_seen.get(d) == mo and d not in first_paid),
                "top_things": [{"thing": t, "supporters": n}
                               for t, n in paid_things[k].most_common(10)],
                "top_promised_things": [{"thing": t, "promisers": n}
                                        for t, n in owed_things[k].most_common(10)]})
        return out

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
                self._store(document, now, keep=OWN)
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
        """Origins of the month's things whose check is missing or expired.

        Every thing with an origin, named in the log or not: a verified site's key wins
        over the creator a click names (SPEC §6.2 step 5), so settling needs to know."""
        origins = set()
        for thing in count_month(self.entries(before=month_end(month)), month).things:
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
