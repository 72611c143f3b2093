"""Settling without surprises: check the month's creator sites, then say what a
settlement would pay and leave out, before anything is signed.

The same site check the daemon runs in the background (:func:`check_sites`: the httpx
fetch of node/sites.py, its verdict recorded with ``Wallet.record_site``) runs here on
demand, so a click whose creator's key is being served counts, and a verified site's key
wins over a creator a click named (SPEC §6.2 step 5).  Used by ``rill settle``, the
daemon (node/monthend.py) and the dashboard.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from ..wallet.wallet import Wallet
from . import sites

log = logging.getLogger("rill.node")
T = TypeVar("T")

#: ``await db(fn, *args)`` runs a blocking wallet call (the daemon's ``Daemon.db``).
DbRunner = Callable[..., Awaitable[Any]]
#: ``progress(done, total, check)`` after each site check (``check`` as in the result).
SiteProgress = Callable[[int, int, dict[str, Any]], None]

#: Sites fetched at once.
PARALLEL_CHECKS = 4


async def _direct(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


async def check_sites(wallet: Wallet, origins: list[str], now: int, *,
                      allow_http: bool = False, db: DbRunner | None = None,
                      progress: SiteProgress | None = None,
                      clock: Callable[[], int] | None = None) -> list[dict[str, Any]]:
    """Fetch each origin's key document and record the verdict in the wallet.

    Returns one ``{origin, valid, creator, name, reason}`` per origin (in ``origins``
    order).  ``clock`` (default: the fixed ``now``) gives the time of each fetch and
    record (the daemon passes its clock)."""
    run = db or _direct
    when = clock or (lambda: now)
    results: dict[str, dict[str, Any]] = {}
    limiter = trio.CapacityLimiter(PARALLEL_CHECKS)

    async def check(origin: str) -> None:
        async with limiter:
            verdict = await sites.fetch(origin, allow_http=allow_http, now=when())
        await run(wallet.record_site, origin, verdict.document, verdict.reason, when())
        if verdict.valid and verdict.document is not None:
            log.info("site %s verified: %s", origin, verdict.document.signer_did)
        else:
            log.info("site %s not verified: %s", origin, verdict.reason)
        j = verdict.as_json()
        results[origin] = {k: j[k] for k in ("origin", "valid", "creator", "name", "reason")}
        if progress is not None:
            progress(len(results), len(origins), results[origin])

    async with trio.open_nursery() as n:
        for origin in origins:
            n.start_soon(check, origin)
    return [results[o] for o in origins]


async def preview_settle(wallet: Wallet, month: str, now: int, allow_http: bool = False, *,
                         db: DbRunner | None = None, progress: SiteProgress | None = None
                         ) -> dict[str, Any]:
    """Check the month's due creator sites, then return what settling it would do.

    Sites due are those of the month's things never checked or whose check expired
    (``Wallet.sites_to_check``); a month already settled is not checked again.  Plain
    HTTP is accepted for loopback hosts, and for others only with ``allow_http``.
    ``db`` runs the blocking wallet calls (the daemon passes ``Daemon.db`` so they are
    serialised with its others; default: called directly); ``progress`` is called after
    each site check.

    Returns :meth:`rill.wallet.wallet.Wallet.settle_preview` (``month``, ``budget``,
    ``currency``, ``ended``, ``ends``, ``settled``, ``problem``, ``paid``, ``creators``,
    ``left_out``, ``counted``, ``total``: see there) plus ``checked``: the site checks
    just made, ``{origin, valid, creator, name, reason}`` each.  Nothing is signed.
    """
    run = db or _direct
    checked: list[dict[str, Any]] = []
    if month not in await run(wallet.settled_months):
        origins = await run(wallet.sites_to_check, month, now)
        checked = await check_sites(wallet, origins, now, allow_http=allow_http, db=run,
                                    progress=progress)
    preview: dict[str, Any] = await run(wallet.settle_preview, month, now)
    preview["checked"] = checked
    return preview
