"""The dashboard's forms: what the CLI does, from the browser.

Set the budget (0 pauses), subscribe and unsubscribe, settle an ended month after a
preview and a confirmation, record payments (a recorded reference is changed only
when asked to), sign receipts for incoming claims, and verify creators' sites (the
same fetch as ``rill creator verify``).

Every POST goes through the dashboard's defences (:mod:`rill.node.dashboard`: the Host
and Origin checks before any handler, then the CSRF token of :meth:`Dashboard._form`).
Every handler answers a refusal page with the reason: a rule of the wallet, bad input,
or an unexpected exception (logged, never a traceback).  Wallet calls run in the
daemon's worker thread (``daemon.db``).
"""

from __future__ import annotations

import hashlib
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..protocol import keys
from ..protocol.currency import known_currency, parse_amount
from ..protocol.errors import LocalError, RillError
from ..protocol.messages import parse_object_id
from ..protocol.months import month_end, month_of, parse_month, previous_month
from ..protocol.network import outside_window
from ..protocol.things import origin_of
from ..wallet.errors import Refused, WalletError
from . import sites
from .dashboard_view import money, names_of
from .settling import preview_settle

if TYPE_CHECKING:
    from ..wallet.wallet import Wallet
    from .dashboard import Dashboard

log = logging.getLogger("rill.node.dashboard")

#: How far back the settlements page looks for ended months still to settle.
SETTLE_LOOKBACK = 12

Body = Callable[[dict[str, str]], Awaitable[Response]]


class Actions:
    """The form handlers of one :class:`~rill.node.dashboard.Dashboard`."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash
        self.d = dash.daemon

    def routes(self) -> list[Route]:
        return [
            Route("/budget", self.budget, methods=["POST"]),
            Route("/subscribe", self.subscribe, methods=["POST"]),
            Route("/unsubscribe", self.unsubscribe, methods=["POST"]),
            Route("/settle", self.settle_page, methods=["GET"]),
            Route("/settle", self.settle, methods=["POST"]),
            Route("/pay", self.pay, methods=["POST"]),
            Route("/receipt", self.receipt, methods=["POST"]),
            Route("/sites", self.sites_page, methods=["GET"]),
            Route("/sites", self.verify, methods=["POST"]),
        ]

    async def _post(self, request: Request, back: str, body: Body) -> Response:
        """Check the form's token, run ``body``; every failure becomes a refusal page."""
        try:
            form = await self.dash._form(request)
            if isinstance(form, Response):
                return form
            return await body(form)
        except (RillError, WalletError) as exc:
            return self.dash.refusal(request, str(exc), back=back)
        except HTTPException as exc:  # a form Starlette could not parse
            return self.dash.refusal(request, f"The form could not be read: {exc.detail}",
                                     status=exc.status_code, back=back)
        except Exception as exc:
            log.warning("the dashboard failed on POST %s: %s: %s", request.url.path,
                        type(exc).__name__, exc)
            return self.dash.failure(request, exc)

    async def _page(self, request: Request, back: str,
                    body: Callable[[], Awaitable[Response]]) -> Response:
        try:
            return await body()
        except (RillError, WalletError) as exc:
            return self.dash.refusal(request, str(exc), back=back)
        except Exception as exc:
            log.warning("the dashboard failed on GET %s: %s: %s", request.url.path,
                        type(exc).__name__, exc)
            return self.dash.failure(request, exc)

    # -- budget and subscriptions --------------------------------------------------------

    async def budget(self, request: Request) -> Response:
        async def body(form: dict[str, str]) -> Response:
            cur = known_currency(form.get("currency", ""))
            minor = parse_amount(form.get("amount", ""), cur)
            now = self.d.clock.now()
            await self.d.db(self.d.wallet.set_budget, minor, cur, now)
            self.d.wake_stamp()  # the month's proof of work, found now (node/stamping.py)
            text = money(minor, cur)
            if minor == 0:
                return self.dash.back("/", f"Budget set to {text}: paused. Nothing is paid "
                                      "for a month whose budget is 0; your flattrs are still "
                                      "recorded.")
            return self.dash.back("/", f"Budget set to {text} per month from "
                                  f"{month_of(now)} on.")
        return await self._post(request, "/", body)

    async def subscribe(self, request: Request) -> Response:
        async def body(form: dict[str, str]) -> Response:
            months_text = form.get("months", "").strip()
            months = None
            if months_text:
                if not (months_text.isascii() and months_text.isdigit()
                        and len(months_text) <= 4 and 1 <= int(months_text) <= 1200):
                    raise LocalError("months must be a whole number from 1 to 1200 (or empty:"
                                     " until cancelled)")
                months = int(months_text)
            creator_text = form.get("creator", "").strip()
            creator = keys.key_from_did(creator_text) if creator_text else None
            target = url_input(form.get("target", ""))
            e = await self.d.db(self.d.wallet.subscribe, target, self.d.clock.now(),
                                months, creator)
            span = f"for {months} month(s)" if months else "until cancelled"
            return self.dash.back("/", f"Subscribed to {e.body.target} {span}.")
        return await self._post(request, "/", body)

    async def unsubscribe(self, request: Request) -> Response:
        async def body(form: dict[str, str]) -> Response:
            e = await self.d.db(self.d.wallet.unsubscribe, url_input(form.get("target", "")),
                                self.d.clock.now())
            return self.dash.back("/", f"Unsubscribed from {e.body.target}.")
        return await self._post(request, "/", body)

    # -- settling ------------------------------------------------------------------------

    async def settle_page(self, request: Request) -> Response:
        """The preview of settling a month: who is paid what, what is left out and why;
        the confirmation form if it can be settled."""
        async def body() -> Response:
            month = parse_month(request.query_params.get("month", ""))
            preview = await settle_preview(self.dash, month, fetch=True)
            names = await self.d.db(names_of, self.d.wallet,
                                    [p["creator"] for p in preview["payments"]])
            return self.dash.render(request, "settle.html", v=preview, month=month,
                                    names=names, fingerprint=fingerprint(preview))
        return await self._page(request, "/settlements", body)

    async def settle(self, request: Request) -> Response:
        async def body(form: dict[str, str]) -> Response:
            month = parse_month(form.get("month", ""))
            if form.get("confirm") != "yes":
                raise Refused("tick the box to confirm: a settlement cannot be undone")
            preview = await settle_preview(self.dash, month, fetch=False)
            if preview["problem"]:
                raise Refused(preview["problem"])
            if form.get("expect", "") != fingerprint(preview):
                raise Refused(f"what settling {month} would pay changed since the preview "
                              "(a site was verified or a flattr arrived): look at the preview "
                              "again", code="changed")
            d = self.d
            result, new = await d.db(d.wallet.settle, month, d.clock.now())
            for raw in (result.settlement.raw, *(s.raw for s in result.sealed)):
                await d._publish_quietly(raw)
            d._republish[result.settlement.id] = (0, d.clock.now() + d.config.republish[0])
            what = "Settled" if new else "Already settled"
            return self.dash.back("/settlements", f"{what} {month}: {len(result.claims)} "
                                  "claim(s) to pay, listed under Payments.")
        return await self._post(request, "/settlements", body)

    # -- payments and receipts -----------------------------------------------------------

    async def pay(self, request: Request) -> Response:
        async def body(form: dict[str, str]) -> Response:
            ids = [parse_object_id(c.strip()) for c in form.get("claims", "").split(",")
                   if c.strip()]
            if not ids:
                raise LocalError("no claim named")
            replace = form.get("replace") == "yes"
            rows = await self.d.db(record_payment, self.d.wallet, ids,
                                   form.get("reference", ""), self.d.clock.now(), replace)
            return self.dash.back("/claims", f"Marked {len(rows)} claim(s) as paid "
                                  f"(reference {rows[0].reference}).")
        return await self._post(request, "/claims", body)

    async def receipt(self, request: Request) -> Response:
        async def body(form: dict[str, str]) -> Response:
            d = self.d
            cid = parse_object_id(form.get("claim", "").strip())
            amount_text = form.get("amount", "").strip()
            amount = None
            if amount_text:
                o = await d.db(d.wallet.obligation, cid)
                amount = parse_amount(amount_text, o.currency)
            r = await d.db(d.wallet.sign_receipt, cid, d.clock.now(),
                           form.get("reference", ""), amount)
            oldest = outside_window(r.body.month, d.clock.now())
            if oldest is not None:  # SPEC §13: it cannot travel; the creator hands it over
                return self.dash.back("/creator", (
                    f"Receipt signed, but NOT published: the claim is for {r.body.month}, "
                    f"outside the gossip window (from {oldest}), so the donor's node will "
                    "not learn of it. Hand the receipt file to the donor: `rill receipt "
                    f"{cid.hex()[:16]} --out receipt.rill` writes it (the same receipt); "
                    "the donor runs `rill import-object receipt.rill`."))
            await d._control({"cmd": "publish-new"})
            return self.dash.back("/creator", "Receipt signed and published.")
        return await self._post(request, "/creator", body)

    # -- creators' sites -----------------------------------------------------------------

    async def sites_page(self, request: Request) -> Response:
        async def body() -> Response:
            d = self.d
            pending = await d.db(pending_sites, d.wallet, d.clock.now())
            checked = None
            origin = request.query_params.get("origin")
            if origin:
                checked = await d.db(site_record, d.wallet, sites.origin_of_input(origin))
            names = await d.db(names_of, d.wallet, [checked["creator"]] if checked else [])
            return self.dash.render(request, "sites.html", pending=pending,
                                    checked=checked, names=names)
        return await self._page(request, "/", body)

    async def verify(self, request: Request) -> Response:
        async def body(form: dict[str, str]) -> Response:
            d = self.d
            origin = sites.origin_of_input(form.get("target", ""))
            allow_http = form.get("allow_http") == "yes" or d.config.allow_http
            verdict = await sites.fetch(origin, allow_http=allow_http, now=d.clock.now())
            await d.db(d.wallet.record_site, origin, verdict.document, verdict.reason,
                       d.clock.now())
            if verdict.valid and verdict.document is not None:
                await d._adopt_listings(verdict.document.signer)  # listings that waited
                text = f"{origin} is verified: {verdict.document.body.name}."
            else:
                text = f"{origin} is NOT verified: {verdict.reason}"
            response = self.dash.back("/sites", text)
            response.headers["location"] += "&origin=" + urllib.parse.quote(origin, safe="")
            return response
        return await self._post(request, "/sites", body)


# -- what the handlers compute (in the worker thread unless async) -----------------------

def url_input(text: str) -> str:
    """What a person typed as a thing or a creator: bare host names get https://."""
    text = text.strip()
    head = text.split("/", 1)[0]
    if "://" not in text and ":" not in head.split(".", 1)[0] and "." in head:
        return "https://" + text
    return text


def record_payment(wallet: Wallet, ids: list[bytes], reference: str, now: int,
                   replace: bool) -> list[Any]:
    """Mark claims paid; a claim already paid with another reference keeps it unless
    ``replace`` (the dashboard's 'replace' box)."""
    try:
        return wallet.pay(ids, reference, now, force=replace)
    except Refused as exc:
        if exc.code != "already-paid":
            raise
        raise Refused(str(exc).replace("give --force", "tick 'replace the recorded "
                                       "reference'"), code="reference-recorded") from None


def settle_candidates(wallet: Wallet, now: int) -> list[dict[str, Any]]:
    """Ended months after the last settled one that have a budget, oldest first."""
    settled = wallet.settled_months()
    last = settled[-1] if settled else None
    out = []
    month = previous_month(month_of(now))
    for _ in range(SETTLE_LOOKBACK):
        if last is not None and month <= last:
            break
        budget = wallet.budget(month)
        if budget is not None:
            out.append({"month": month, "amount": budget[0], "currency": budget[1]})
        month = previous_month(month)
    return out[::-1]


def pending_sites(wallet: Wallet, now: int) -> list[dict[str, Any]]:
    """The sites of things with an unknown creator, this month and last month if it is
    not settled yet, with what is known of each site (never checked, or why it did not
    verify)."""
    current = month_of(now)
    settled = set(wallet.settled_months())
    by_origin: dict[str, list[str]] = {}
    for month in (previous_month(current), current):
        if month in settled:
            continue
        for row in wallet.projection(month)["things"]:
            if row["pending"]:
                by_origin.setdefault(origin_of(row["thing"]) or "", []).append(row["thing"])
    out = []
    for origin, things in sorted(by_origin.items()):
        site = wallet.site(origin) if origin else None
        out.append({"origin": origin, "things": things, "site": site})
    return out


def site_record(wallet: Wallet, origin: str) -> dict[str, Any] | None:
    """What the wallet holds of a site: its record and the key document's name, payto."""
    site = wallet.site(origin)
    if site is None:
        return None
    doc = wallet.key_document(keys.key_from_did(site["creator"])) if site["creator"] else None
    return {**site, "name": doc.body.name if doc else None,
            "payto": list(doc.body.payto) if doc else []}


# -- the settle preview ------------------------------------------------------------------


async def settle_preview(dash: Dashboard, month: str, fetch: bool) -> dict[str, Any]:
    """What settling ``month`` now would do (:func:`rill.node.settling.preview_settle`, the
    same preview as `rill settle`), in the shape settle.html reads:

    ``month``, ``budget``, ``currency``, ``settled`` (the settlement ID if already
    settled), ``problem`` (why it cannot be settled now, or None), ``payments`` (per
    creator: ``creator`` did, ``amount``, ``things``), ``total``, and ``left_out`` (per
    thing: ``thing``, ``reason``).  With ``fetch``, the month's sites due a check are
    fetched first; without, only what the home knows is used."""
    d = dash.daemon
    now = d.clock.now()
    if fetch and now >= month_end(month):
        p = await preview_settle(d.wallet, month, now, d.config.allow_http, db=d.db)
    else:
        p = await d.db(d.wallet.settle_preview, month, now)
    things: dict[str, list[str]] = {}
    for row in p["paid"]:
        things.setdefault(row["creator"], []).append(row["thing"])
    payments = sorted(({"creator": c["creator"], "amount": c["amount"] or 0,
                        "things": things.get(c["creator"], [])} for c in p["creators"]),
                      key=lambda r: (-r["amount"], r["creator"]))
    problem = p["problem"]["message"] if p["problem"] else None
    if p["settled"]:
        problem = f"{month} is already settled."
    elif problem is None and not payments:
        problem = (f"None of the things of {month} has a known creator: settling now would "
                   "pay nobody.")
    return {"month": month, "budget": p["budget"], "currency": p["currency"],
            "settled": p["settled"], "problem": problem, "payments": payments,
            "total": sum(r["amount"] for r in payments),
            "left_out": [{"thing": r["thing"], "reason": r["reason"]} for r in p["left_out"]]}


def fingerprint(preview: dict[str, Any]) -> str:
    """A short digest of what a settlement would pay (the confirmation must match it)."""
    text = repr((preview["month"], preview["budget"], preview["currency"],
                 [(r["creator"], r["amount"], sorted(r["things"]))
                  for r in preview["payments"]]))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
