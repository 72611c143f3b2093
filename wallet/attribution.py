"""Who a thing belongs to, and what settling a month will do, before anything is signed.

The rule (SPEC §6.2 step 5, §12.1): a thing on an origin whose key document this home
verified belongs to that document's key.  A click, subscription or button naming another
creator for it is refused (:meth:`Attribution.check_creator`, code ``creator-mismatch``);
a creator named in the log before the site was verified is overridden at settlement
(:meth:`Attribution.site_resolver` feeds :func:`~rill.protocol.counting.count_month`).

:meth:`Attribution.settle_preview` says what a settlement of a month pays, to whom, and
which things it leaves out and why.  Pure wallet: it fetches nothing (the node's
:func:`rill.node.settling.preview_settle` checks the sites first).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from ..protocol import keys
from ..protocol import messages as m
from ..protocol.counting import MonthView, count_month
from ..protocol.errors import LocalError
from ..protocol.months import month_end
from ..protocol.settle import SettlementResult
from ..protocol.shares import group_things, thing_shares
from ..protocol.things import normalise_thing, origin_of
from .creator import CreatorSide
from .errors import Corrupt, NotFound, Refused

Resolver = Callable[[str], bytes | None]


def _origin(thing: str) -> str | None:
    try:
        return origin_of(thing)
    except LocalError:
        return None


def _iso(t: int) -> str:
    """A Unix time as ISO 8601 UTC text (a conversion, not a clock read)."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Attribution(CreatorSide):
    """Mixin of :class:`rill.wallet.wallet.Wallet`: attribution and the settle preview."""

    def stored_settlement(self, month: str) -> SettlementResult | None:  # provided by Wallet
        raise NotImplementedError

    # -- who a thing belongs to ---------------------------------------------------------

    def site_resolver(self) -> Resolver:
        """``thing -> creator key`` of its verified site (or None), for count_month.

        Reads the verified sites once (settling a log of many things asks for each)."""
        rows: dict[str, bytes] = dict(self.db.execute(
            "SELECT origin, creator FROM sites WHERE creator IS NOT NULL").fetchall())
        if not rows:
            return lambda thing: None

        def resolve(thing: str) -> bytes | None:
            origin = _origin(thing)
            return None if origin is None else rows.get(origin)

        return resolve

    def creator_name(self, creator: bytes, document: bytes | None = None) -> str | None:
        """The display name from ``creator``'s key document (the given one, else the newest
        held), or None when no document is known."""
        if document is not None:
            try:
                doc = self._object(document, m.KeyDocument)
                if doc.signer == creator:
                    name: str = doc.body.name
                    return name
            except (NotFound, Corrupt):
                pass
        newest = self.key_document(creator)
        return newest.body.name if newest is not None else None

    def attribution(self, thing: str, claimed: bytes | None = None) -> dict[str, Any]:
        """What this home knows of who made ``thing``, and whether ``claimed`` agrees.

        Keys: ``thing`` (normalised), ``origin`` (None for a non-web thing),
        ``verified`` (its origin's key document was verified), ``creator`` and ``name``
        (the verified key's did:key and its document's name, else None), ``checked``
        (the origin was ever checked), ``reason`` (why the last check failed, or None),
        ``claimed`` (did:key of ``claimed`` or None), ``claimed_name`` (the name in a key
        document held for it, unverified), ``matches`` (None when nothing was claimed or
        the origin is not verified; else whether ``claimed`` is the verified key).
        """
        thing = normalise_thing(thing)
        origin = _origin(thing)
        row = None
        if origin is not None:
            row = self.db.execute("SELECT creator, document, reason FROM sites WHERE origin = ?",
                                  (origin,)).fetchone()
        verified: bytes | None = row[0] if row is not None else None
        return {
            "thing": thing, "origin": origin, "verified": verified is not None,
            "creator": keys.did_from_key(verified) if verified else None,
            "name": self.creator_name(verified, row[1]) if row and verified else None,
            "checked": row is not None, "reason": row[2] if row is not None else None,
            "claimed": keys.did_from_key(claimed) if claimed else None,
            "claimed_name": self.creator_name(claimed) if claimed else None,
            "matches": None if claimed is None or verified is None else claimed == verified,
        }

    def check_creator(self, thing: str, creator: bytes | None) -> None:
        """Refuse (``creator-mismatch``) to credit ``thing`` to ``creator`` when its site
        is verified to another key.  Nothing to check without a creator, or for a site
        not verified (settlement applies the rule once it is)."""
        if creator is None:
            return
        a = self.attribution(thing, creator)
        if a["matches"] is False:
            raise Refused(mismatch_message(a), code="creator-mismatch")

    def attribution_conflicts(self) -> list[dict[str, Any]]:
        """Clicks and subscriptions in the log that name a creator other than their site's
        verified key (made before the site was verified, or imported): settlement pays
        the verified key.  One row per (thing, named creator)."""
        resolve = self.site_resolver()
        seen: set[tuple[str, bytes]] = set()
        out = []
        for e in self.entries():
            if e.kind not in ("click", "subscribe") or e.thing is None or e.creator is None:
                continue
            verified = resolve(e.thing)
            if verified is None or verified == e.creator or (e.thing, e.creator) in seen:
                continue
            seen.add((e.thing, e.creator))
            out.append({"thing": e.thing, "origin": _origin(e.thing),
                        "named": keys.did_from_key(e.creator),
                        "creator": keys.did_from_key(verified),
                        "name": self.creator_name(verified)})
        return out

    # -- what a month leaves out ----------------------------------------------------------

    def left_out_reason(self, thing: str) -> dict[str, Any]:
        """Why a thing of a month has no creator: ``{thing, origin, code, reason}``.

        Codes: ``no-site`` (no creator named, and not a web thing: nothing to check),
        ``site-not-checked`` (its site was never checked), ``site-check-failed`` (the
        last check failed; ``reason`` says how)."""
        origin = _origin(thing)
        if origin is None:
            return {"thing": thing, "origin": None, "code": "no-site",
                    "reason": "no creator known: the click names none, and only a web "
                              "thing (http/https) has a site that can publish a Rill key"}
        row = self.db.execute("SELECT reason FROM sites WHERE origin = ?",
                              (origin,)).fetchone()
        if row is None:
            return {"thing": thing, "origin": origin, "code": "site-not-checked",
                    "reason": f"no creator known: {origin} was not checked for a Rill key "
                              "yet"}
        return {"thing": thing, "origin": origin, "code": "site-check-failed",
                "reason": f"no creator known: checking {origin} failed: "
                          f"{row[0] or 'no valid key document'}"}

    def settle_problem(self, month: str, now: int, view: MonthView | None = None
                       ) -> dict[str, str] | None:
        """Why ``month`` cannot be settled now (``{code, message}``), or None.  A month
        already settled is no problem: settling it again gives the stored objects."""
        if self.db.execute("SELECT 1 FROM settled WHERE month = ?", (month,)).fetchone():
            return None
        if now < month_end(month):
            return {"code": "not-ended",
                    "message": f"{month} has not ended yet (it ends {_iso(month_end(month))})"}
        later = self.db.execute("SELECT max(month) FROM settled").fetchone()[0]
        if later is not None and later > month:
            return {"code": "settled",
                    "message": f"{later} is already settled; {month} can no longer be settled"}
        if view is None:
            view = count_month(self.entries(before=month_end(month)), month)
        if view.budget is None:
            return {"code": "no-budget",
                    "message": f"no budget was set for {month}: nothing to settle (use "
                               "`rill budget set`)"}
        return None

    def settle_preview(self, month: str, now: int) -> dict[str, Any]:
        """What settling ``month`` at ``now`` does, from what this home knows (no fetch).

        Keys:

        - ``month``, ``budget`` (minor units, None without a budget), ``currency``;
        - ``ended`` (the month is over at ``now``), ``ends`` (ISO 8601 UTC);
        - ``settled``: ID (hex) of the stored settlement, or None;
        - ``problem``: None, or ``{code, message}`` saying why it cannot be settled now
          (``not-ended``, ``settled`` (a later month is), ``no-budget``);
        - ``paid``: one row per thing that gets a share, in split order:
          ``{thing, creator (did:key), name (from its key document, or None), share
          (minor units; None without a budget), verified (the creator comes from the
          thing's verified site), overridden (did:key the log named instead, or None)}``;
        - ``creators``: per creator in split order ``{creator, name, things, amount}``;
        - ``left_out``: things that get nothing, ``{thing, origin, code, reason}``
          (:meth:`left_out_reason`; for a settled month, code ``not-in-settlement``);
        - ``counted``, ``total``: how many things share the budget and the sum paid.
        """
        stored = self.stored_settlement(month)
        resolve = self.site_resolver()
        view = count_month(self.entries(before=month_end(month)), month, resolve)
        out: dict[str, Any] = {
            "month": month, "budget": view.budget, "currency": view.currency,
            "ended": now >= month_end(month), "ends": _iso(month_end(month)),
            "settled": stored.settlement.id_hex if stored else None,
            "problem": self.settle_problem(month, now, view),
        }
        names: dict[bytes, str | None] = {}

        def name(key: bytes) -> str | None:
            if key not in names:
                names[key] = self.creator_name(key)
            return names[key]

        paid: list[dict[str, Any]] = []
        creators: list[dict[str, Any]] = []
        left: list[dict[str, Any]]
        if stored is not None:
            body = stored.settlement.body
            out["budget"], out["currency"] = body.budget, body.currency
            before = 0
            in_settlement: set[str] = set()
            for claim in stored.claims:
                c = claim.body
                things = list(c.things)
                shares = thing_shares(body.budget, body.things, before, len(things))
                before += len(things)
                in_settlement.update(things)
                did = keys.did_from_key(c.creator)
                creators.append({"creator": did, "name": name(c.creator),
                                 "things": len(things), "amount": c.amount})
                paid += [{"thing": t, "creator": did, "name": name(c.creator), "share": s,
                          "verified": resolve(t) == c.creator, "overridden": None}
                         for t, s in zip(things, shares, strict=True)]
            left = [{"thing": t, "origin": _origin(t), "code": "not-in-settlement",
                     "reason": f"not in the settlement: no creator was known when {month} "
                               "was settled"}
                    for t in sorted(view.things, key=str.encode) if t not in in_settlement]
        else:
            known = view.known
            n, before = len(known), 0
            for creator, things in group_things(known):
                projected: list[int | None] = (
                    list(thing_shares(view.budget, n, before, len(things)))
                    if view.budget is not None else [None] * len(things))
                before += len(things)
                did = keys.did_from_key(creator)
                creators.append({"creator": did, "name": name(creator), "things": len(things),
                                 "amount": None if view.budget is None
                                 else sum(s or 0 for s in projected)})
                for t, s in zip(things, projected, strict=True):
                    named = view.overridden.get(t)
                    paid.append({"thing": t, "creator": did, "name": name(creator), "share": s,
                                 "verified": resolve(t) is not None,
                                 "overridden": keys.did_from_key(named) if named else None})
            left = [self.left_out_reason(t) for t in view.pending]
        out.update(paid=paid, creators=creators, left_out=left, counted=len(paid),
                   total=sum(r["share"] or 0 for r in paid))
        return out


def mismatch_message(a: dict[str, Any]) -> str:
    """The refusal of a creator that is not the verified one (``a``: an attribution)."""
    who = f"{a['name']} ({a['creator']})" if a["name"] else a["creator"]
    return (f"{a['origin']} publishes the verified Rill key of {who}: {a['thing']} is "
            f"credited to that key, not to {a['claimed']}. Flattr it without --creator "
            f"(or with --creator {a['creator']}).")
