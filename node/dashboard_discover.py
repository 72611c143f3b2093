"""The dashboard's Discover page: search the catalogue this node holds, filter by kind
and tag, and the creators most supported in the last settled month (rill.node.catalogue).

Read-only (GET): nothing here changes the wallet; each result links to the button's
confirmation page (/flattr), where a click is recorded only when confirmed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..protocol.errors import RillError
from ..protocol.listing import LISTING_KINDS
from . import catalogue

if TYPE_CHECKING:
    from .dashboard import Dashboard

MAX_QUERY = 200


class Discover:
    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def routes(self) -> list[Route]:
        return [Route("/discover", self.page, methods=["GET"])]

    async def page(self, request: Request) -> Response:
        d = self.dash.daemon
        params = request.query_params
        query = params.get("q", "").strip()[:MAX_QUERY]
        kind = params.get("kind") or None
        if kind not in (None, *LISTING_KINDS):
            kind = None
        tag = (params.get("tag") or "").strip()[:32] or None
        now = d.clock.now()
        found: dict[str, Any] | None = None
        problem = None
        try:
            found = await d.db(catalogue.search, d.wallet, query, now, kind=kind, tag=tag,
                               limit=50)
        except RillError as exc:
            problem = str(exc)
        top = await d.db(catalogue.most_supported, d.wallet, now, 8)
        tags = await d.db(_popular_tags, d.wallet.db)
        return self.dash.render(request, "discover.html", q=query, kind=kind, tag=tag,
                                kinds=LISTING_KINDS, found=found, problem=problem, top=top,
                                tags=tags, searched=bool(query or kind or tag))


def _popular_tags(db: Any, limit: int = 12) -> list[str]:
    """The tags of most live listings held (for the filter's suggestions)."""
    counts: dict[str, int] = {}
    for (tags,) in db.execute("SELECT tags FROM listings WHERE withdrawn = 0 AND tags != '' "
                              "LIMIT 5000"):
        for t in tags.split():
            counts[t] = counts.get(t, 0) + 1
    return sorted(counts, key=lambda t: (-counts[t], t))[:limit]
