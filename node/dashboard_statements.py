"""The dashboard's Statements page: a creator downloads a month's signed statement
(alone, or with the claims and receipts it lists, for ``rill verify``) and its CSV.

Downloads are GETs that sign without storing anything (the same as ``rill statement``);
the dashboard's Host check keeps other sites from reading them.  A month that has not
ended, or a bad name, is answered with a refusal page giving the reason.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..protocol.armour import armour
from ..protocol.errors import RillError
from ..protocol.months import month_end, month_of, parse_month
from ..wallet import exports
from ..wallet import statements as st
from ..wallet.errors import WalletError

if TYPE_CHECKING:
    from .dashboard import Dashboard

#: ``2026-10.rill``, ``2026-10-with-claims.rill``, ``2026-10.csv``
DOWNLOAD = re.compile(r"(\d{4}-\d{2})(-with-claims)?\.(rill|csv)")


class Statements:
    """The Statements page and its downloads, for one dashboard."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash
        self.d = dash.daemon

    def routes(self) -> list[Route]:
        return [Route("/statements", self.page, methods=["GET"]),
                Route("/statements/{name}", self.download, methods=["GET"])]

    async def page(self, request: Request) -> Response:
        now = self.d.clock.now()
        months = await self.d.db(st.statement_months, self.d.wallet)
        for mo in months:
            mo["ended"] = month_end(mo["month"]) <= now
        return self.dash.render(request, "statements.html", months=months,
                                current=month_of(now))

    async def download(self, request: Request) -> Response:
        name = request.path_params.get("name", "")
        match = DOWNLOAD.fullmatch(name)
        if match is None or (match.group(2) and match.group(3) == "csv"):
            return self.dash.refusal(request, f"There is no download {name!r}: the names "
                                     "are MONTH.rill, MONTH-with-claims.rill and MONTH.csv.",
                                     status=404, title="Not found", back="/statements")
        month, with_claims, ext = match.groups()
        try:
            month = parse_month(month)
            signed = await self.d.db(st.sign_statements, self.d.wallet, month,
                                     self.d.clock.now())
            if ext == "csv":
                rows = await self.d.db(st.statement_rows, self.d.wallet, month)
                data = exports.to_csv(rows, st.STATEMENT_COLUMNS).encode()
                media = "text/csv; charset=utf-8"
            else:
                objs = list(signed)
                if with_claims:
                    objs += await self.d.db(st.statement_evidence, self.d.wallet, month)
                data = "\n".join(armour(o.raw, o.type) for o in objs).encode()
                media = "text/plain; charset=us-ascii"
        except (RillError, WalletError) as exc:
            return self.dash.refusal(request, str(exc), back="/statements")
        filename = f"rill-statement-{name}"
        return Response(data, media_type=media, headers={
            "content-disposition": f'attachment; filename="{filename}"'})
