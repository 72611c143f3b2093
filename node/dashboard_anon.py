"""The dashboard's form for giving a month anonymously (README "Giving anonymously").

POST /anonymous with ``month`` and ``mode``: ``identity`` (settle under your own key),
``all`` (under the month's pseudonym, towards every creator) or ``some`` (under the
pseudonym, anonymous only towards the creators listed in ``hide_from``, did:keys
separated by spaces, commas or new lines; every other creator is told privately).
Same defences as every form (rill.node.dashboard_actions: token, refusal pages).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..protocol import keys
from ..protocol.errors import LocalError
from ..protocol.months import parse_month
from .dashboard_actions import Actions

if TYPE_CHECKING:
    from ..wallet.wallet import Wallet

#: How many creators one month may be hidden from by name (a form field, not a list of
#: everyone: "every creator" is the other choice).
MAX_HIDE_FROM = 100


class AnonymousActions(Actions):
    """The anonymous-month form of one :class:`~rill.node.dashboard.Dashboard`."""

    def routes(self) -> list[Route]:
        return [Route("/anonymous", self.anonymous, methods=["POST"])]

    async def anonymous(self, request: Request) -> Response:
        async def body(form: dict[str, str]) -> Response:
            month = parse_month(form.get("month", ""))
            mode = form.get("mode", "")
            if mode not in ("identity", "all", "some"):
                raise LocalError("choose how to give the month: under your identity, "
                                 "anonymously, or anonymously towards some creators")
            only = None
            if mode == "some":
                words = [w for w in re.split(r"[\s,]+", form.get("hide_from", "")) if w]
                if not words:
                    raise LocalError("name at least one creator (did:key) to be anonymous "
                                     "towards, or choose 'every creator'")
                if len(words) > MAX_HIDE_FROM:
                    raise LocalError(f"at most {MAX_HIDE_FROM} creators; choose 'every "
                                     "creator' instead")
                only = tuple(keys.key_from_did(w) for w in words)
            now = self.d.clock.now()
            a = await self.d.db(self.d.wallet.set_anonymous, month, mode != "identity", now,
                                only)
            if a is None:
                return self.dash.back("/settlements", f"{month} will be settled under your "
                                      "own identity.")
            towards = ("every creator" if a.only is None
                       else f"{len(a.only)} creator(s); the others are told it is you")
            return self.dash.back("/settlements", f"{month} will be settled anonymously "
                                  f"(towards {towards}), as the pseudonym "
                                  f"{keys.did_from_key(a.pseudonym)}.")
        return await self._post(request, "/settlements", body)


def anonymous_rows(wallet: Wallet) -> list[dict[str, Any]]:
    """The months given anonymously, for the settlements page."""
    settled = set(wallet.settled_months())
    return [dict(a.to_json(), settled=a.month in settled)
            for a in wallet.anonymous_months().values()]
