"""The catalogue: searching the listings this node holds (SQLite FTS5), who supports whom,
the gossip gate's relation check for listings, and the creator's own listings kept alive
on the network (SPEC §5.8, §11.2).

What the wallet stores (rill.wallet.listings) is already bounded and checked; here:

* :func:`search` and :func:`show` -- listings with their creator's name, whether the
  thing's site was verified for that creator, and its supporters.  A listing whose site
  is verified for *another* key is never shown as that site's thing (search leaves it
  out; show says whose site it is);
* :func:`most_supported` -- creators by the number of distinct donors whose settlements
  held here have a line for them, in one month (settlement lines are public, §5.3);
* :func:`relate_listing` -- the gate's cheap check before any signature (see SPEC §11.2);
* :class:`CatalogueNode` -- a daemon mixin: publishes this node's own listings on start
  and re-signs them once a month so they stay inside the acceptance window.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import sqlite3
import urllib.parse
from collections import OrderedDict
from typing import Any

from ..protocol import keys
from ..protocol import messages as m
from ..protocol.errors import RemoteError, RillError
from ..protocol.listing import newer
from ..protocol.months import month_of, previous_month
from ..protocol.preview import Preview
from ..protocol.things import origin_of
from ..wallet import listings
from ..wallet.errors import WalletError
from ..wallet.wallet import Wallet

log = logging.getLogger("rill.node")

#: An update of a listing is forwarded only this long after the one it replaces arrived.
MIN_UPDATE_INTERVAL_S = 600
#: The reason of an IGNORE for a listing whose signer's key document is not held (or
#: does not name the site): the node keeps it aside until a key document comes.
UNLISTED = "unlisted-origin: no key document of its signer here names the thing's site"
#: Listings kept aside waiting for their signer's key document: in all, per signer.
MAX_ASIDE = 2000
MAX_ASIDE_PER_SIGNER = 32
MAX_RESULTS = 200
DASHBOARD_PORT = 4742
TOPIC = "rill/1/catalogue"


def _iso(t: int) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: every word must appear, as a word or the start of
    one; FTS5 operators typed by the user are taken as plain words."""
    words = [w for w in text.split() if w.strip()]
    return " ".join('"' + w.replace('"', '""') + '"*' for w in words)


def supporters(db: sqlite3.Connection, month: str, creators: list[bytes] | None = None
               ) -> dict[bytes, int]:
    """Distinct donors per creator among the settlements held for ``month`` (proven
    equivocators left out)."""
    sql = ("SELECT s.subject, count(DISTINCT o.signer) FROM objects o "
           "JOIN subjects s ON s.object = o.id WHERE o.type = 'settlement' AND o.month = ? "
           "AND s.subject != o.signer AND o.signer NOT IN "
           "(SELECT donor FROM equivocators WHERE month = ?)")
    args: list[Any] = [month, month]
    if creators is not None and not creators:
        return {}
    if creators is not None and len(creators) <= 500:
        sql += f" AND s.subject IN ({','.join('?' * len(creators))})"
        args += creators
    sql += " GROUP BY s.subject"
    out = {bytes(k): n for k, n in db.execute(sql, args)}
    if creators is not None and len(creators) > 500:  # beyond SQLite's bound parameters
        wanted = set(creators)
        out = {k: n for k, n in out.items() if k in wanted}
    return out


def support_month(now: int) -> str:
    """The month whose settlements count as "this month's" support: the last one ended
    (settlements exist only for ended months)."""
    return previous_month(month_of(now))


def button_href(thing: str, creator: str, port: int = DASHBOARD_PORT) -> str:
    query = urllib.parse.urlencode({"url": thing, "creator": creator})
    return f"http://127.0.0.1:{port}/flattr?{query}"


def _row(w: Wallet, r: sqlite3.Row | tuple[Any, ...], support: dict[bytes, int]
         ) -> dict[str, Any]:
    signer, thing, oid, time, withdrawn, title, kind, desc, tags, lang = r
    signer = bytes(signer)
    a = w.attribution(thing, signer)
    state = "verified" if a["matches"] else ("conflict" if a["matches"] is False
                                             else "unverified")
    did = keys.did_from_key(signer)
    return {"id": bytes(oid).hex(), "thing": thing, "origin": a["origin"], "title": title,
            "kind": kind, "description": desc or "", "tags": tags.split() if tags else [],
            "lang": lang, "time": _iso(time), "withdrawn": bool(withdrawn),
            "creator": did, "name": w.creator_name(signer),
            "site": state, "site_creator": a["creator"], "site_name": a["name"],
            "supporters": support.get(signer, 0),
            "flattr": f"/flattr?{urllib.parse.urlencode({'url': thing, 'creator': did})}"}


_COLUMNS = ("l.signer, l.thing, l.id, l.time, l.withdrawn, l.title, l.kind, l.description, "
            "l.tags, l.lang")


def search(w: Wallet, query: str, now: int, *, kind: str | None = None,
           tag: str | None = None, limit: int = 50) -> dict[str, Any]:
    """Live listings matching ``query`` (all of its words; empty: every listing), with
    the filters.  Best matches first (FTS5 rank), else most supported, newest."""
    db = w.db
    where = ["l.withdrawn = 0"]
    args: list[Any] = []
    q = fts_query(query)
    if q:
        sql = (f"SELECT {_COLUMNS} FROM listings_fts f JOIN listings l ON l.rowid = f.rowid "
               "WHERE listings_fts MATCH ?")
        args.append(q)
        order = "f.rank, l.time DESC"
    else:
        sql = f"SELECT {_COLUMNS} FROM listings l WHERE 1"
        order = "l.time DESC"
    if kind:
        where.append("l.kind = ?")
        args.append(kind)
    if tag:
        where.append("instr(' ' || l.tags || ' ', ' ' || ? || ' ') > 0")
        args.append(tag.strip().lower())
    sql += " AND " + " AND ".join(where) + f" ORDER BY {order} LIMIT ?"
    args.append(min(max(1, limit), MAX_RESULTS) * 2)  # room for the conflicts left out
    try:
        rows = db.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:  # an FTS5 syntax the quoting let through
        raise RillError(f"cannot search for {query!r}: {exc}", code="bad-query") from None
    month = support_month(now)
    support = supporters(db, month, list({bytes(r[0]) for r in rows}))
    out = [x for x in (_row(w, r, support) for r in rows) if x["site"] != "conflict"]
    if not q:
        out.sort(key=lambda x: -x["supporters"])  # stable: newest first among equals
    return {"query": query, "kind": kind, "tag": tag, "month": month,
            "results": out[:limit]}


def show(w: Wallet, target: str, now: int) -> list[dict[str, Any]]:
    """Every listing held for a thing (one per signer; withdrawals included), or the one
    listing with this object ID (64 hex digits)."""
    db = w.db
    if len(target) == 64 and all(c in "0123456789abcdefABCDEF" for c in target):
        rows = db.execute(f"SELECT {_COLUMNS} FROM listings l WHERE l.id = ?",
                          (bytes.fromhex(target),)).fetchall()
    else:
        rows = db.execute(f"SELECT {_COLUMNS} FROM listings l WHERE l.thing = ? "
                          "ORDER BY l.time DESC", (target,)).fetchall()
    support = supporters(db, support_month(now), list({bytes(r[0]) for r in rows}))
    return [_row(w, r, support) for r in rows]


def most_supported(w: Wallet, now: int, limit: int = 10) -> dict[str, Any]:
    """Creators with live listings here, by supporters in the last ended month; each with
    its newest listings."""
    db = w.db
    month = support_month(now)
    listed = [bytes(r[0]) for r in db.execute(
        "SELECT DISTINCT signer FROM listings WHERE withdrawn = 0")]
    support = supporters(db, month, listed)
    ranked = sorted((k for k in listed if support.get(k)), key=lambda k: -support[k])[:limit]
    out = []
    for signer in ranked:
        rows = db.execute(f"SELECT {_COLUMNS} FROM listings l WHERE l.signer = ? AND "
                          "l.withdrawn = 0 ORDER BY l.time DESC LIMIT 3", (signer,)).fetchall()
        things = [x for x in (_row(w, r, support) for r in rows) if x["site"] != "conflict"]
        if things:
            out.append({"creator": keys.did_from_key(signer), "name": w.creator_name(signer),
                        "supporters": support[signer], "things": things})
    return {"month": month, "creators": out}


# -- the gossip gate ---------------------------------------------------------------------


def relate_listing(db: sqlite3.Connection, p: Preview, now: int | None
                   ) -> tuple[str, str]:
    """("accept" | "ignore", reason) for a previewed listing, before any signature: only
    listings that this node would store and that are news go on.  A listing the full
    check will reject (a thing that is not normalised, not a web thing) goes on to it."""
    try:
        origin = origin_of(p.thing or "")
    except RillError:
        return "accept", "the full check decides"
    if origin is None:
        return "accept", "the full check decides"
    try:
        if not listings.origin_named(db, p.signer, origin):
            return "ignore", UNLISTED
        held = listings.held(db, p.signer, p.thing or "")
        if held is None:
            if listings.count(db, p.signer) >= listings.MAX_PER_SIGNER:
                return "ignore", f"listing-limit: its signer has {listings.MAX_PER_SIGNER} " \
                                 "listings here"
            return "accept", "new listing"
    except sqlite3.OperationalError:  # tables not created yet by this home's wallet
        return "ignore", "no catalogue here yet"
    assert p.time is not None
    if held[0] == p.id:  # this very listing: our own publish, or its author's republish
        return "accept", "the listing held here"
    if not newer(p.time, p.id, held[1], held[0]):
        return "ignore", "a newer listing of this thing is held"
    if now is not None and now - held[2] < MIN_UPDATE_INTERVAL_S:
        return "ignore", "this thing's listing was updated less than 10 minutes ago"
    return "accept", "newer listing"


# -- the node's own listings -------------------------------------------------------------


class Aside:
    """Listings that came before their signer's key document (gossip validates a message
    before the one ahead of it is stored, and a key document may come later by sync or a
    site check): kept, bounded, until a key document of the signer is stored."""

    def __init__(self) -> None:
        self.waiting: OrderedDict[bytes, list[bytes]] = OrderedDict()
        self.count = 0

    def hold(self, signer: bytes, raw: bytes) -> bool:
        held = self.waiting.get(signer)
        if held is None:
            while self.count >= MAX_ASIDE and self.waiting:
                _, dropped = self.waiting.popitem(last=False)
                self.count -= len(dropped)
            held = self.waiting[signer] = []
        if len(held) >= MAX_ASIDE_PER_SIGNER or raw in held:
            return False
        held.append(raw)
        self.count += 1
        return True

    def take(self, signer: bytes) -> list[bytes]:
        held = self.waiting.pop(signer, [])
        self.count -= len(held)
        return held


class CatalogueNode:
    """Mixin of :class:`rill.node.daemon.Daemon`."""

    wallet: Wallet
    identity: bytes
    listings_aside: Aside

    def _hold_listing(self, p: Preview, raw: bytes) -> None:
        if not hasattr(self, "listings_aside"):
            self.listings_aside = Aside()
        self.listings_aside.hold(p.signer, raw)

    async def _adopt_listings(self, signer: bytes) -> None:
        """A key document of ``signer`` was stored: check the listings that waited for
        it like gossip, take in and forward those that pass."""
        aside = getattr(self, "listings_aside", None)
        if aside is None:
            return
        for raw in aside.take(signer):
            try:
                now = self.clock.now()  # type: ignore[attr-defined]
                p = self._precheck(TOPIC, raw, now)  # type: ignore[attr-defined]
                outcome, reason = self._relate(p)  # type: ignore[attr-defined]
                if outcome.value != "accept":
                    raise RemoteError(reason)
                self._check(TOPIC, raw, now)  # type: ignore[attr-defined]
            except RemoteError as exc:
                log.info("a listing that waited for its key document is not taken: %s", exc)
                continue
            if await self._accept(raw, via="adopted"):  # type: ignore[attr-defined]
                await self._publish_quietly(raw)  # type: ignore[attr-defined]

    async def _publish_own_listings(self) -> None:
        """Publish our listings not published yet by this run; re-sign (time = now) the
        announcements from an earlier month, so that they stay in every node's window
        (SPEC §5.8)."""
        now = self.clock.now()  # type: ignore[attr-defined]
        raws = await self.db(self._refresh_own_listings, now)  # type: ignore[attr-defined]
        if raws:  # our key document first: what other nodes need to take our listings
            doc = await self.db(self.wallet.key_document, self.identity)  # type: ignore[attr-defined]
            if doc is not None:
                raws.insert(0, doc.raw)
        published: set[bytes] = self._published  # type: ignore[attr-defined]
        for raw in raws:
            if hashlib.sha256(raw).digest() not in published:  # once per object and run
                await self._publish_quietly(raw)  # type: ignore[attr-defined]

    def _refresh_own_listings(self, now: int) -> list[bytes]:
        """In a worker thread: our held listings, the stale announcements re-signed."""
        out = []
        for raw in listings.own_listings(self.wallet.db, self.identity):
            obj = m.decode(raw, m.Listing, verify_signature=False)
            b = obj.body
            if not b.withdrawn and b.month != month_of(now) and b.time < now:
                fresh = m.sign(m.Listing(b.thing, now, b.title, b.kind, b.description,
                                         b.tags, b.lang), self.wallet.key)
                try:
                    self.wallet.import_object(fresh.raw, now)
                except (RillError, WalletError) as exc:
                    log.info("listing of %s not renewed: %s", b.thing, exc)
                    out.append(raw)
                    continue
                out.append(fresh.raw)
            else:
                out.append(raw)
        return out


__all__ = [
    "MIN_UPDATE_INTERVAL_S",
    "CatalogueNode",
    "button_href",
    "fts_query",
    "most_supported",
    "relate_listing",
    "search",
    "show",
    "support_month",
    "supporters",
]
