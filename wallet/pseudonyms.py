"""Giving anonymously: the months a donor settles under a pseudonym (SPEC §2.4, §13).

The wallet keeps the link the public cannot see: which month's pseudonym is its own
(table ``anonymous``), so that the pseudonym's claims are its obligations, receipts to
the pseudonym land here, and the pseudonym's objects are kept as the donor's own.

A month is anonymous towards every creator, or (``only``) towards the creators named:
the month is then still settled under the pseudonym, and the claim to every *other*
creator carries a disclosure addressed to that creator, so it alone learns the link.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from dataclasses import dataclass
from typing import Any

import nacl.signing

from ..protocol import keys
from ..protocol import messages as m
from ..protocol.disclosure import make_disclosure, pseudonym_key
from ..protocol.errors import LocalError, RemoteError
from ..protocol.months import check_month
from ..protocol.settle import HEAD_DOMAIN, settlement_secret
from . import store
from .errors import Corrupt, NotFound, Refused

TABLE = """
CREATE TABLE IF NOT EXISTS anonymous (  -- months settled under the month's pseudonym
    month     TEXT PRIMARY KEY,
    pseudonym BLOB NOT NULL UNIQUE,     -- its public key (derived, kept for lookups)
    only      TEXT,                     -- NULL: from every creator; else hex keys, spaced
    since     INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class AnonymousMonth:
    month: str
    pseudonym: bytes
    only: tuple[bytes, ...] | None  # None: anonymous towards every creator

    def hides_from(self, creator: bytes) -> bool:
        return self.only is None or creator in self.only

    def to_json(self) -> dict[str, Any]:
        return {"month": self.month, "pseudonym": keys.did_from_key(self.pseudonym),
                "towards": "all" if self.only is None
                else [keys.did_from_key(c) for c in self.only]}


DISCLOSED = """
CREATE TABLE IF NOT EXISTS disclosed (  -- pseudonyms of donors that disclosed to us
    pseudonym BLOB PRIMARY KEY,
    identity  BLOB NOT NULL,
    month     TEXT NOT NULL
)
"""


def ensure_table(db: sqlite3.Connection) -> None:
    """Create this module's tables in a home made before them (a read when they exist:
    opening a home on a full disk must not need room)."""
    have = {name for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
        "('anonymous', 'disclosed')")}
    if have != {"anonymous", "disclosed"}:
        with store.transaction(db):
            db.execute(TABLE)
            db.execute(DISCLOSED)


class Pseudonyms:
    """Mixin of :class:`rill.wallet.wallet.Wallet`: the donor's monthly pseudonyms."""

    db: sqlite3.Connection
    key: nacl.signing.SigningKey
    identity: bytes

    def anonymous_months(self) -> dict[str, AnonymousMonth]:
        out = {}
        for month, p, only in self.db.execute(
                "SELECT month, pseudonym, only FROM anonymous ORDER BY month"):
            creators = None if only is None else tuple(bytes.fromhex(h) for h in only.split())
            out[month] = AnonymousMonth(month, bytes(p), creators)
        return out

    def anonymous_month(self, month: str) -> AnonymousMonth | None:
        return self.anonymous_months().get(month)

    def own_keys(self) -> set[bytes]:
        """Our identity and the pseudonyms of our anonymous months."""
        return {self.identity} | {bytes(p) for (p,) in
                                  self.db.execute("SELECT pseudonym FROM anonymous")}

    def pseudonyms_to_sync(self) -> list[bytes]:
        """Pseudonyms of settled anonymous months with claims not yet receipted."""
        return [bytes(p) for (p,) in self.db.execute(
            "SELECT DISTINCT a.pseudonym FROM anonymous a JOIN obligations o ON "
            "o.donor = a.pseudonym WHERE o.direction = 'out' AND o.state != 'receipted' "
            "ORDER BY a.month")]

    def pseudonym_of(self, key: bytes) -> str | None:
        """The month whose pseudonym ``key`` is, if it is one of ours."""
        row = self.db.execute("SELECT month FROM anonymous WHERE pseudonym = ?",
                              (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_anonymous(self, month: str, on: bool, now: int,
                      only: tuple[bytes, ...] | None = None) -> AnonymousMonth | None:
        """Give ``month`` anonymously (towards every creator, or only those in ``only``),
        or normally again (``on=False``).  Refused once the month is settled."""
        try:
            month = check_month(month)
            for c in only or ():
                keys.admit_key(c)
        except RemoteError as exc:
            raise LocalError(str(exc), code=exc.code) from None
        if only is not None:
            only = tuple(sorted(set(only)))
            if not only:
                only = None
        with store.transaction(self.db):
            if self.db.execute("SELECT 1 FROM settled WHERE month = ?", (month,)).fetchone():
                raise Refused(f"{month} is already settled; how it was given can no longer "
                              "change", code="settled")
            if not on:
                self.db.execute("DELETE FROM anonymous WHERE month = ?", (month,))
                return None
            p = keys.public_key(pseudonym_key(self.key, month))
            text = None if only is None else " ".join(c.hex() for c in only)
            self.db.execute("INSERT INTO anonymous (month, pseudonym, only, since) VALUES "
                            "(?,?,?,?) ON CONFLICT (month) DO UPDATE SET only = excluded.only",
                            (month, p, text, now))
        return AnonymousMonth(month, p, only)

    def month_signer(self, month: str, creators: set[bytes]
                     ) -> tuple[nacl.signing.SigningKey, dict[bytes, bytes]]:
        """The key that signs ``month``'s settlement and the disclosures its claims carry
        (creator -> encoded disclosure): our identity and none, for a normal month."""
        anon = self.anonymous_month(month)
        if anon is None:
            return self.key, {}
        skey = pseudonym_key(self.key, month)
        if keys.public_key(skey) != anon.pseudonym:
            raise Corrupt(f"the pseudonym stored for {month} is not this identity's")
        disclosures = {c: make_disclosure(self.key, month, to=c).raw
                       for c in sorted(creators) if not anon.hides_from(c)}
        return skey, disclosures

    def check_own_settlement(self, s: m.Signed[m.Settlement], month: str,
                             log_ids: set[bytes]) -> None:
        """A stored settlement of ours: signed by us (or the month's pseudonym), for
        ``month``, naming a head that is in the log (blinded, under a pseudonym)."""
        anon = self.anonymous_month(month)
        signer = self.identity if anon is None else anon.pseudonym
        if s.signer != signer or s.body.month != month:
            raise Corrupt(f"stored settlement for {month} is not ours or not for {month}")
        if s.body.head == m.ZERO_HASH:
            return
        heads = log_ids
        if anon is not None:  # blind_head of every entry, the secret computed once
            secret = settlement_secret(pseudonym_key(self.key, month))
            heads = {hmac.new(secret, HEAD_DOMAIN + i, hashlib.sha256).digest()
                     for i in log_ids}
        if s.body.head not in heads:
            raise Corrupt(f"the click log lost entries: the {month} settlement covers an "
                          "entry that is no longer there")

    def take_disclosure(self, claim: m.Signed[m.Claim]) -> bytes | None:
        """Remember who a claim's pseudonym is, if the claim discloses it to us (its
        ``disclosure`` was checked when the claim was decoded).  Returns the identity."""
        if claim.body.disclosure is None:
            return None
        d = m.decode(claim.body.disclosure, m.Disclosure)
        self.db.execute("INSERT OR IGNORE INTO disclosed (pseudonym, identity, month) VALUES "
                        "(?,?,?)", (d.body.pseudonym, d.signer, d.body.month))
        return d.signer

    def disclosed_identities(self) -> dict[bytes, bytes]:
        """Pseudonym -> identity, for the donors that disclosed themselves to us."""
        return {bytes(p): bytes(i) for p, i in
                self.db.execute("SELECT pseudonym, identity FROM disclosed")}

    def disclose(self, month: str, to: bytes | None = None) -> m.Signed[m.Disclosure]:
        """The signed link between our identity and ``month``'s pseudonym (not published:
        the donor hands it to whom it chooses; ``to`` names that recipient)."""
        if self.anonymous_month(month) is None:
            raise NotFound(f"{month} is not given anonymously: there is no pseudonym to "
                           "disclose", code="not-anonymous")
        if to is not None:
            try:
                keys.admit_key(to)
            except RemoteError as exc:
                raise LocalError(str(exc), code=exc.code) from None
        disclosure: m.Signed[m.Disclosure] = make_disclosure(self.key, month, to)
        return disclosure


def label(key: bytes) -> str:
    """How a pseudonym is shown to its donor: ``anonymous (pseudonym 1a2b3c4d…)``."""
    return f"anonymous (pseudonym {key.hex()[:8]}…)"
