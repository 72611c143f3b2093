"""`rill catalogue`: announce and withdraw your things, search what the node holds
(SPEC §5.8).  Registered on :data:`rill.cli.main`."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import click

from . import clikit
from .cli import (
    _emit_json,
    _fail,
    _home_path,
    _now,
    _open,
    _table,
    _url_arg,
    main,
    wallet_command,
)
from .clikit import home_option, json_option
from .protocol.listing import LISTING_KINDS


@main.group()
def catalogue() -> None:
    """List your things so others can find them; search the things listed."""


def _thing(text: str) -> str:
    from .protocol.errors import RillError
    from .protocol.things import normalise_thing, origin_of

    try:
        thing = normalise_thing(_url_arg(text))
        if origin_of(thing) is None:
            raise click.BadParameter("only a web page (http or https) can be listed: its "
                                     "site's key document is what vouches for you",
                                     param_hint="THING")
    except RillError as exc:
        raise click.BadParameter(str(exc), param_hint="THING") from None
    return thing


def _tags(values: Sequence[str]) -> tuple[str, ...]:
    from .protocol.listing import MAX_TAGS, tag_problem

    tags = sorted({t.strip().lower() for t in values if t.strip()}, key=lambda t: t.encode())
    for t in tags:
        problem = tag_problem(t)
        if problem is not None:
            raise click.BadParameter(f"{t!r}: {problem}", param_hint="--tag")
    if len(tags) > MAX_TAGS:
        raise click.BadParameter(f"at most {MAX_TAGS} tags", param_hint="--tag")
    return tuple(tags)


def _publish(home: str | None, raws: list[bytes]) -> bool:
    """Give signed objects to the running daemon to gossip, in order; False when none
    runs (it publishes the node's listings at its next start)."""
    from pathlib import Path

    from .node import control

    with contextlib.suppress(ConnectionError, OSError, ValueError):
        control.call(Path(_home_path(home)) / control.SOCKET_NAME, "publish", 60,
                     objects=[raw.hex() for raw in raws])
        return True
    return False


def _sign(home: str | None, body_of: Any) -> tuple[Any, Any, list[bytes]]:
    """Sign the listing ``body_of(time)`` with a time after any listing of the thing held
    (so it replaces it), take it in; return (listing, import result, what to publish:
    our key document, which other nodes need to take the listing, then the listing)."""
    from .node.catalogue import MIN_UPDATE_INTERVAL_S
    from .protocol import messages as m
    from .wallet import listings

    with _open(home) as w:
        probe = body_of(0)
        old = listings.held(w.db, w.identity, probe.thing)
        now = _now()
        if old is not None and now - old[1] < MIN_UPDATE_INTERVAL_S:
            _fail(f"you signed a listing of {probe.thing} less than 10 minutes ago; other "
                  "nodes take one update per thing per 10 minutes: try again in "
                  f"{MIN_UPDATE_INTERVAL_S - (now - old[1])} s", "too-soon")
        t = max(now, old[1] + 1) if old is not None else now
        obj = m.sign(body_of(t), w.key)
        result = w.import_object(obj.raw, now)
        doc = w.key_document(w.identity)
    return obj, result, ([doc.raw] if doc is not None else []) + [obj.raw]


@catalogue.command("announce")
@click.argument("thing")
@click.option("--title", required=True, help="The thing's title (up to 200 bytes).")
@click.option("--kind", required=True, type=click.Choice(LISTING_KINDS),
              help="What it is.")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="A one-word tag, lower case (repeatable, up to 10).")
@click.option("--description", default=None, help="A short description (up to 1,000 bytes).")
@click.option("--lang", default=None, metavar="TAG",
              help="Its language, e.g. en or pt-BR.")
@home_option
@json_option
@wallet_command
def catalogue_announce(thing: str, title: str, kind: str, tags: Sequence[str],
                       description: str | None, lang: str | None, home: str | None,
                       as_json: bool) -> None:
    """Sign a listing of one of your things (again: replace it) and publish it.

    The thing's site must be one your key document names (`rill creator init --site`)."""
    from .protocol import messages as m
    from .protocol.listing import LANG_RE

    target = _thing(thing)
    tag_tuple = _tags(tags)
    if lang is not None and LANG_RE.match(lang) is None:
        raise click.BadParameter("expected a language tag such as en or pt-BR",
                                 param_hint="--lang")
    title = title.strip()
    desc = description.strip() if description is not None else None
    obj, result, raws = _sign(home, lambda t: m.Listing(target, t, title, kind, desc or None,
                                                  tag_tuple, lang))
    _publish_and_report(home, as_json, target, obj, result, raws,
                        f"Listed {target} ({result.action}): {obj.id_hex}")


def _publish_and_report(home: str | None, as_json: bool, target: str, obj: Any, result: Any,
                        raws: Any, done: str) -> None:
    """Hand a signed listing to the running node, then say what happened."""
    published = _publish(home, raws)
    if as_json:
        _emit_json({"listing": obj.id_hex, "thing": target, "action": result.action,
                    "published": published})
    else:
        click.echo(done)
        click.echo("Published." if published else
                   "No node running: it is published when `rill node run` starts.")


@catalogue.command("withdraw")
@click.argument("thing")
@home_option
@json_option
@wallet_command
def catalogue_withdraw(thing: str, home: str | None, as_json: bool) -> None:
    """Sign the withdrawal of one of your listings and publish it."""
    from .protocol import messages as m
    from .wallet import listings

    target = _thing(thing)
    with _open(home) as w:
        if listings.held(w.db, w.identity, target) is None:
            _fail(f"you have no listing of {target}", "not-found")
    obj, result, raws = _sign(home, lambda t: m.Listing(target, t))
    _publish_and_report(home, as_json, target, obj, result, raws,
                        f"Withdrew {target}: {obj.id_hex}")


def _site(r: dict[str, Any]) -> str:
    return {"verified": "verified on site", "unverified": "site not verified",
            "conflict": f"site names {r['site_creator']}"}[r["site"]]


@catalogue.command("search")
@click.argument("query", required=False, default="")
@click.option("--kind", type=click.Choice(LISTING_KINDS), default=None)
@click.option("--tag", default=None, metavar="TAG")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@home_option
@json_option
@wallet_command
def catalogue_search(query: str, kind: str | None, tag: str | None, limit: int,
                     home: str | None, as_json: bool) -> None:
    """Search the things listed that this node holds (every word must match; no QUERY:
    everything, most supported first)."""
    from .node.catalogue import search

    with _open(home) as w:
        found = search(w, query, _now(), kind=kind, tag=tag, limit=limit)
    if as_json:
        _emit_json(found)
        return
    rows = [[r["title"], r["kind"], " ".join(r["tags"]), r["name"] or clikit.who(r["creator"]),
             _site(r), r["supporters"], r["thing"]] for r in found["results"]]
    if not rows:
        click.echo("Nothing listed matches." if query or kind or tag else
                   "No listings held yet.")
        return
    _table(f"Catalogue ({len(rows)}; supporters in {found['month']})",
           ["title", "kind", "tags", "creator", "site", "supporters", "thing"], rows)


@catalogue.command("show")
@click.argument("target", metavar="THING|ID")
@home_option
@json_option
@wallet_command
def catalogue_show(target: str, home: str | None, as_json: bool) -> None:
    """The listings held for a thing (one per signer), or one listing by its ID."""
    from .node.catalogue import show

    key = target.strip()
    if not (len(key) == 64 and all(c in "0123456789abcdefABCDEF" for c in key)):
        key = _thing(key)
    with _open(home) as w:
        rows = show(w, key, _now())
    if not rows:
        _fail(f"no listing of {target} is held here", "not-found")
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        pairs = [("thing", r["thing"]), ("listing", r["id"]), ("time", r["time"]),
                 ("creator", f"{r['name'] or '?'} ({r['creator']})"),
                 ("site", _site(r))]
        if r["withdrawn"]:
            pairs.append(("state", "withdrawn"))
        else:
            pairs += [("title", r["title"]), ("kind", r["kind"]),
                      ("tags", " ".join(r["tags"])), ("language", r["lang"] or "-"),
                      ("description", r["description"]),
                      ("supporters", r["supporters"])]
        clikit.kv_table(r["title"] or r["thing"], pairs)
