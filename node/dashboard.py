"""The local dashboard, served by the daemon on 127.0.0.1 (default port 4742).

A small Starlette app under Hypercorn's trio worker.  It is a local web surface,
so it defends itself against the web:

* Host header must name this dashboard (127.0.0.1/localhost/[::1] and its port):
  DNS-rebinding pages are answered 421 and never see data;
* state changes only by POST, with an Origin of this dashboard and a per-run CSRF
  token (cookie ``SameSite=Strict`` + form field, compared in constant time);
* no CORS headers at all, ``frame-ancestors 'none'``, a strict CSP;
* clicks are rate-limited.

Every refusal and every unexpected failure is answered with an HTML page that gives
the reason (never a traceback).  The forms that change the wallet (budget,
subscriptions, settling, payments, receipts, site checks) are in
:mod:`rill.node.dashboard_actions`.
"""

from __future__ import annotations

import datetime
import hmac
import html
import logging
import secrets
import urllib.parse
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..protocol import keys
from ..protocol.errors import RillError
from ..protocol.months import month_of, parse_month
from ..protocol.things import normalise_thing
from ..wallet.errors import WalletError
from ..wallet.statements import creator_stats, thing_chart
from .dashboard_view import (
    BARE_PAGE,
    FAVICON,
    money,
    names_of,
    plain_amount,
    qr_data_uri,
    short_id,
    who,
)
from .dashboard_view import chart as income_chart

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("rill.node.dashboard")

DEFAULT_PORT = 4742
HERE = Path(__file__).parent
CLICKS_PER_MINUTE = 20
CSRF_COOKIE = "rill_csrf"
#: The creator page charts this many things (the most flattred), 12 months each.
THING_CHARTS = 12

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


class Dashboard:
    def __init__(self, daemon: Daemon, port: int = DEFAULT_PORT) -> None:
        self.daemon = daemon
        self.port = port
        self.token = secrets.token_urlsafe(32)
        self.recent_clicks: deque[float] = deque()
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(["html"]))
        self.templates.filters["money"] = lambda a, c=None: money(a, c)
        self.templates.filters["short"] = short_id
        self.templates.filters["hex"] = lambda b: b.hex()
        self.templates.filters["date"] = lambda t: datetime.datetime.fromtimestamp(
            t, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC") if t else "–"
        self.templates.filters["amount"] = plain_amount
        self.templates.filters["did"] = keys.did_from_key
        self.templates.globals["who"] = who
        self.bound: list[str] = []
        #: (path, exception type) already logged: a failing page is logged once
        self.failures: set[tuple[str, str]] = set()

    # -- serving ------------------------------------------------------------------------

    @property
    def allowed_hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"[::1]:{self.port}"}

    @property
    def allowed_origins(self) -> set[str]:
        return {"http://" + h for h in self.allowed_hosts}

    def app(self) -> Starlette:
        from .dashboard_actions import Actions
        from .dashboard_anon import AnonymousActions
        from .dashboard_discover import Discover
        from .dashboard_statements import Statements

        routes = [
            Route("/", self.home),
            Route("/flattr", self.flattr_page, methods=["GET"]),
            Route("/flattr", self.flattr_post, methods=["POST"]),
            Route("/claims", self.claims),
            Route("/settlements", self.settlements),
            Route("/creator", self.creator),
            Route("/events", self.events_page),
            Route("/events/read", self.events_read, methods=["POST"]),
            Route("/style.css", self.style),
            Route("/favicon.ico", self.favicon),
            *Actions(self).routes(),
            *Statements(self).routes(),
            *Discover(self).routes(),
            *AnonymousActions(self).routes(),
        ]
        app = Starlette(routes=routes, exception_handlers={
            404: self.not_found, 405: self.not_allowed, HTTPException: self.http_error,
            Exception: self.server_error})
        inner = app.build_middleware_stack()
        dash = self

        async def guarded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await inner(scope, receive, send)
                return
            request = Request(scope)
            problem = dash._refuse(request)
            if problem is not None:
                log.warning("refused %s %s: %s", request.method, request.url.path, problem[1])
                response: Response = HTMLResponse(
                    BARE_PAGE.format(reason=html.escape(problem[1])), status_code=problem[0])
                dash._harden(response)
                await response(scope, receive, send)
                return
            started = False

            async def send_hardened(message: dict[str, Any]) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                    headers = [(k, v) for k, v in message.get("headers", [])
                               if not k.lower().startswith(b"access-control-")]
                    headers += [(k.encode(), v.encode()) for k, v in dash._security_headers()]
                    message = {**message, "headers": headers}
                await send(message)

            try:
                await inner(scope, receive, send_hardened)
            except Exception as exc:  # the boundary: an answered 500, logged once
                key = (request.url.path, type(exc).__name__)
                if key not in dash.failures:
                    dash.failures.add(key)
                    log.warning("the dashboard failed on %s %s: %s: %s", request.method,
                                request.url.path, type(exc).__name__, exc)
                if not started:
                    page = dash.failure(request, exc)
                    await page(scope, receive, send_hardened)

        app.build_middleware_stack = lambda: guarded  # type: ignore[method-assign]
        return app

    def _refuse(self, request: Request) -> tuple[int, str] | None:
        host = request.headers.get("host", "")
        if host not in self.allowed_hosts:
            return 421, f"This is a local Rill dashboard; it does not answer for {host!r}."
        if request.method not in ("GET", "HEAD", "POST"):
            return 405, "Method not allowed."
        if request.method == "POST":
            origin = request.headers.get("origin")
            if origin not in self.allowed_origins:
                return 403, "Cross-site request refused (Origin)."
            site = request.headers.get("sec-fetch-site")
            if site is not None and site != "same-origin":
                return 403, "Cross-site request refused (Sec-Fetch-Site)."
        return None

    def _security_headers(self) -> list[tuple[str, str]]:
        return [("content-security-policy", CSP), ("x-frame-options", "DENY"),
                ("x-content-type-options", "nosniff"), ("referrer-policy", "same-origin"),
                ("cache-control", "no-store"),
                ("cross-origin-resource-policy", "same-origin"),
                ("cross-origin-opener-policy", "same-origin")]

    def _harden(self, response: Response) -> None:
        for k, v in self._security_headers():
            response.headers[k] = v

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from hypercorn.config import Config
        from hypercorn.trio import serve

        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("rill.node.dashboard.http")
        config.graceful_timeout = 1.0

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await serve(self.app(), config, task_status=task_status)  # type: ignore[arg-type]

        async with trio.open_nursery() as n:
            self.bound = await n.start(run)
            task_status.started(self.bound)

    # -- rendering ----------------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any
               ) -> HTMLResponse:
        d = self.daemon
        ctx.setdefault("names", {})
        page = self.templates.get_template(name).render(
            token=self.token, me=keys.did_from_key(d.identity), path=request.url.path,
            unread=getattr(getattr(d, "hooks", None), "unread", 0),
            notice=request.query_params.get("notice"), **ctx)
        response = HTMLResponse(page, status_code=status)
        response.set_cookie(CSRF_COOKIE, self.token, httponly=True, samesite="strict",
                            path="/")
        return response

    def refusal(self, request: Request, reason: str, status: int = 400,
                title: str = "Not done", back: str | None = None) -> HTMLResponse:
        """An HTML page saying what was refused and why, with a way back."""
        if back is None:
            back = request.url.path if request.method == "GET" else "/"
        return self.render(request, "refused.html", status=status, title=title,
                           reason=reason, back=back)

    def failure(self, request: Request, exc: BaseException) -> Response:
        """The answer to an unexpected exception: its reason, no traceback."""
        reason = f"{type(exc).__name__}: {exc}"[:500]
        try:
            return self.refusal(request, f"The dashboard could not do this ({reason}). "
                                "The node's log has the details.", status=500,
                                title="Something went wrong")
        except Exception:  # the template itself failed: a page without it
            return HTMLResponse(BARE_PAGE.format(reason=html.escape(reason)), 500)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 400)
        return self.refusal(request, f"The request could not be handled: "
                            f"{getattr(exc, 'detail', exc)}", status=status, back="/")

    async def server_error(self, request: Request, exc: Exception) -> Response:
        return self.failure(request, exc)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.refusal(request, f"There is no page {request.url.path!r} here.",
                            status=404, title="Not found", back="/")

    async def not_allowed(self, request: Request, exc: Exception) -> Response:
        return self.refusal(request, f"{request.method} is not accepted at "
                            f"{request.url.path!r}.", status=405, title="Not allowed", back="/")

    async def _form(self, request: Request) -> dict[str, str] | Response:
        form = await request.form()
        sent = str(form.get("token", "")).encode("utf-8", "replace")
        cookie = request.cookies.get(CSRF_COOKIE, "").encode("utf-8", "replace")
        token = self.token.encode()
        if not (hmac.compare_digest(sent, token) and hmac.compare_digest(cookie, token)):
            return self.refusal(request, "Missing or wrong form token: reload the page and "
                                "send the form again.", status=403, title="Refused")
        return {k: str(v) for k, v in form.items()}

    @staticmethod
    def back(path: str, notice: str) -> RedirectResponse:
        return RedirectResponse(f"{path}?notice={urllib.parse.quote(notice)}", 303)

    # -- pages --------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        d = self.daemon
        try:
            month = parse_month(request.query_params.get("month") or month_of(d.clock.now()))
            p = await d.db(d.wallet.projection, month)
        except (RillError, WalletError) as exc:
            return self.refusal(request, str(exc), back="/")
        subs = await d.db(d.wallet.subscriptions, d.clock.now())
        names = await d.db(names_of, d.wallet, [r["creator"] for r in p["things"]] + [
            s["creator"] for s in subs.values()] + [t for t in subs if t.startswith("did:")])
        return self.render(request, "home.html", p=p, month=month, subs=subs, names=names,
                           current=month_of(d.clock.now()),
                           peers=len(d.p2p.pubsub.peers) if d.p2p else 0)

    async def flattr_page(self, request: Request) -> Response:
        return await self._confirmation(request, request.query_params.get("url", ""),
                                        request.query_params.get("creator") or None)

    async def _confirmation(self, request: Request, url: str, creator: str | None
                            ) -> Response:
        """The button's confirmation page: the thing, who made it (the name in its site's
        verified key document, or shown unverified), and the share it would get.  A
        button naming another creator than the verified one is refused (409, no form)."""
        d = self.daemon
        error = None
        thing = who = None
        try:
            thing = normalise_thing(url)
            claimed = keys.key_from_did(creator) if creator else None
            who = await d.db(d.wallet.attribution, thing, claimed)
        except (RillError, WalletError) as exc:
            error = str(exc)
        month = month_of(d.clock.now())
        p = await d.db(d.wallet.projection, month)
        already = thing is not None and any(r["thing"] == thing for r in p["things"])
        share = None
        if p["budget"] is not None and not already:
            share = p["budget"] // (p["counted"] + 1)
        refused = who is not None and who["matches"] is False
        closed = p["settled"] is not None  # e.g. settled early with a clock set ahead
        return self.render(request, "flattr.html",
                           status=400 if error else 409 if refused or closed else 200,
                           url=url, thing=thing, creator=creator, who=who, refused=refused,
                           closed=closed, error=error, p=p, month=month, already=already,
                           share=share)

    async def flattr_post(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        now = trio.current_time()
        while self.recent_clicks and now - self.recent_clicks[0] > 60:
            self.recent_clicks.popleft()
        if len(self.recent_clicks) >= CLICKS_PER_MINUTE:
            return self.refusal(request, "Too many clicks in a minute; wait a little.", 429,
                                back="/")
        self.recent_clicks.append(now)
        d = self.daemon
        try:
            creator = keys.key_from_did(form["creator"]) if form.get("creator") else None
            result = await d.db(d.wallet.click, form.get("url", ""), d.clock.now(), creator)
        except (RillError, WalletError) as exc:
            if isinstance(exc, WalletError) and exc.code in ("creator-mismatch", "settled"):
                return await self._confirmation(request, form.get("url", ""),
                                                form.get("creator") or None)
            return self.refusal(request, f"Not recorded: {exc}", back="/")
        text = (f"Flattred {result.thing}" if result.new
                else f"Already flattred {result.thing} this month")
        return self.back("/", text)

    async def claims(self, request: Request) -> Response:
        d = self.daemon
        rows = await d.db(d.wallet.obligations, None, "out")
        due = await d.db(d.wallet.due)
        names = await d.db(names_of, d.wallet, [o.creator for o in rows])
        payments = [{"p": p, "qr": qr_data_uri(p.uris[0]) if p.uris else None,
                     "creator": keys.did_from_key(p.creator)} for p in due]
        return self.render(request, "claims.html", rows=rows, payments=payments,
                           did=keys.did_from_key, names=names, identity=d.identity)

    async def settlements(self, request: Request) -> Response:
        from .dashboard_actions import settle_candidates
        from .dashboard_anon import anonymous_rows

        d = self.daemon
        months = await d.db(d.wallet.settled_months)
        rows = []
        for mo in reversed(months):
            res = await d.db(d.wallet.stored_settlement, mo)
            if res is not None:
                rows.append(res)
        names = await d.db(names_of, d.wallet, [line.creator for r in rows
                                                for line in r.settlement.body.lines])
        ready = await d.db(settle_candidates, d.wallet, d.clock.now())
        anonymous = await d.db(anonymous_rows, d.wallet)
        return self.render(request, "settlements.html", rows=rows, did=keys.did_from_key,
                           names=names, ready=ready, current=month_of(d.clock.now()),
                           anonymous=anonymous, identity=d.identity)

    async def creator(self, request: Request) -> Response:
        d = self.daemon
        incoming = await d.db(d.wallet.obligations, None, "in")
        earnings = await d.db(d.wallet.earnings)
        disclosed = await d.db(d.wallet.disclosed_identities)
        names = await d.db(names_of, d.wallet, [o.donor for o in incoming]
                           + list(disclosed.values()))
        chart = income_chart(earnings)
        latest = earnings[-1] if earnings else None
        stats = await d.db(creator_stats, d.wallet)
        figures = stats["months"][-1] if stats["months"] else None
        things = [{**t, "chart": thing_chart(t["months"][-12:])}
                  for t in stats["things"][:THING_CHARTS]]
        return self.render(request, "creator.html", incoming=incoming, earnings=earnings,
                           chart=chart, latest=latest, did=keys.did_from_key, names=names,
                           disclosed=disclosed, figures=figures, things=things)

    async def events_page(self, request: Request) -> Response:
        from . import events
        from .hooks import summary

        d = self.daemon
        d.hooks.unread = await d.db(events.unread_count, d.wallet.db)
        rows = await d.db(events.listing, d.wallet.db, False, 200)
        for r in rows:
            r["title"], r["line"] = summary(r, short_id)
        status = await d.hooks.status()
        return self.render(request, "events.html", rows=rows, hooks=status["hooks"],
                           config_error=status["config_error"], desktop=status["desktop"])

    async def events_read(self, request: Request) -> Response:
        from . import events

        form = await self._form(request)
        if isinstance(form, Response):
            return form
        d = self.daemon
        ids = [form["id"]] if form.get("id") else None
        try:
            n = await d.db(events.mark_read, d.wallet.db, ids)
        except ValueError as exc:
            return self.refusal(request, str(exc), back="/events")
        d.hooks.unread = await d.db(events.unread_count, d.wallet.db)
        return self.back("/events", f"{n} event(s) marked read")

    async def style(self, request: Request) -> Response:
        css = (HERE / "static" / "style.css").read_text()
        return Response(css, media_type="text/css")

    async def favicon(self, request: Request) -> Response:
        return Response(FAVICON, media_type="image/svg+xml")
