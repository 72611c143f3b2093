"""`rill` commands of a donor's month: budget, clicks, subscriptions, status, settling,
claims, what is due and paying it.  Registered on :data:`rill.cli.main`."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import click

from . import clikit
from .cli import (
    _claim_arg,
    _creator_label,
    _current_month,
    _did_arg,
    _emit_json,
    _fail,
    _money,
    _month_arg,
    _now,
    _open,
    _parse_time,
    _table,
    _url_arg,
    main,
    wallet_command,
)
from .clikit import home_option, json_option, short_id, who


@main.group(invoke_without_command=True)
@home_option
@json_option
@click.pass_context
@wallet_command
def budget(ctx: click.Context, home: str | None, as_json: bool) -> None:
    """Show the monthly budget (`rill budget set AMOUNT CURRENCY` changes it)."""
    if ctx.invoked_subcommand is not None:
        return
    month = _current_month()
    with _open(home) as w:
        b = w.budget(month)
    if as_json:
        _emit_json({"month": month, "amount": b[0] if b else None,
                    "currency": b[1] if b else None})
    elif b is None:
        click.echo("No budget set. Set one with: rill budget set 5.00 EUR")
    elif b[0] == 0:
        click.echo(f"Paused: the budget is {_money(*b)} (in force for {month}); months settle "
                   "with nothing owed. Resume with: rill budget set AMOUNT CURRENCY")
    else:
        click.echo(f"{_money(*b)} per month (in force for {month})")


@budget.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("amount")
@click.argument("currency")
@home_option
@json_option
@wallet_command
def budget_set(amount: str, currency: str, home: str | None, as_json: bool) -> None:
    """Set the monthly budget from this month on, e.g. `rill budget set 5.00 EUR`.

    0 pauses giving: clicks are still recorded, and months settle with nothing owed.
    At most 1,000,000 (major units) a month: more is refused as a likely typo.
    """
    from .protocol.currency import known_currency, parse_amount

    cur = known_currency(currency)
    minor = parse_amount(amount, cur)
    with _open(home) as w:
        w.set_budget(minor, cur, _now())
    month = _current_month()
    if as_json:
        _emit_json({"month": month, "amount": minor, "currency": cur, "paused": minor == 0})
    elif minor == 0:
        click.echo(f"Budget set to {_money(minor, cur)}: giving is paused from {month} on "
                   "(clicks are still recorded; months settle with nothing owed). Resume "
                   "with: rill budget set AMOUNT CURRENCY")
    else:
        click.echo(f"Budget set to {_money(minor, cur)} per month from {month} on.")


@main.command("click")
@click.argument("url")
@click.option("--creator", default=None, metavar="ID", help="The thing's creator (did:key).")
@click.option("--at", "at", default=None, metavar="TIME",
              help="Record the click at another time (offline clicks): ISO 8601 (UTC if "
                   "no zone) or Unix seconds.")
@home_option
@json_option
@wallet_command
def click_(url: str, creator: str | None, at: str | None, home: str | None,
           as_json: bool) -> None:
    """Flattr a thing (once per month; repeat clicks add nothing)."""
    when = None if at is None else _parse_time(at)
    with _open(home) as w:
        r = w.click(_url_arg(url), _now(), creator=_did_arg(creator), at=when)
        who = w.attribution(r.thing)
    if as_json:
        _emit_json({"thing": r.thing, "month": r.month, "new": r.new,
                    "entry": r.entry.id_hex if r.entry else None,
                    "seq": r.entry.body.seq if r.entry else None,
                    "verified": who["verified"], "verified_creator": who["creator"]})
        return
    if r.new:
        click.echo(f"Flattred {r.thing} ({r.month}).")
    else:
        click.echo(f"Already flattred {r.thing} in {r.month}: one flattr per thing per month.")
    _echo_attribution(who, creator)


def _echo_attribution(who: dict[str, Any], creator: str | None) -> None:
    """One line on who gets the thing's share: its verified site's key, or not yet known."""
    if who["verified"]:
        click.echo(f"  by {_creator_label(who['creator'], who['name'])}, verified: "
                   f"{who['origin']} publishes this key.")
    elif creator is not None:
        click.echo(f"  by {creator}, unverified"
                   + (f": if {who['origin']} publishes a Rill key, that key is paid instead."
                      if who["origin"] else "."))


@main.command()
@click.argument("target", metavar="ID_OR_URL")
@click.option("--months", type=click.IntRange(1, 1200), default=None,
              help="End by itself after N months (default: until cancelled).")
@click.option("--creator", default=None, metavar="ID", help="The thing's creator (did:key).")
@home_option
@json_option
@wallet_command
def subscribe(target: str, months: int | None, creator: str | None, home: str | None,
              as_json: bool) -> None:
    """Flattr a creator (did:key) or a thing every month."""
    with _open(home) as w:
        e = w.subscribe(_url_arg(target), _now(), months=months, creator=_did_arg(creator))
        who = w.attribution(e.body.thing) if e.body.thing is not None else None
    if as_json:
        _emit_json({"target": e.body.target, "months": months, "entry": e.id_hex,
                    "verified": who["verified"] if who else None,
                    "verified_creator": who["creator"] if who else None})
    else:
        span = f"for {months} month(s)" if months else "until cancelled"
        click.echo(f"Subscribed to {e.body.target} {span}.")
        if who is not None:
            _echo_attribution(who, creator)


@main.command()
@click.argument("target", metavar="ID_OR_URL")
@home_option
@json_option
@wallet_command
def unsubscribe(target: str, home: str | None, as_json: bool) -> None:
    """Cancel a subscription (from this month on)."""
    with _open(home) as w:
        e = w.unsubscribe(_url_arg(target), _now())
    if as_json:
        _emit_json({"target": e.body.target, "entry": e.id_hex})
    else:
        click.echo(f"Unsubscribed from {e.body.target}.")


@main.command()
@home_option
@json_option
@wallet_command
def subscriptions(home: str | None, as_json: bool) -> None:
    """List active subscriptions."""
    from .protocol.keys import did_from_key

    with _open(home) as w:
        subs = w.subscriptions(_now())
    items = [{"target": t, "creator": did_from_key(s["creator"]) if s["creator"] else None,
              "since": s["since"], "until": s["until"]} for t, s in sorted(subs.items())]
    if as_json:
        _emit_json(items)
    else:
        _table("Subscriptions", ["target", "creator", "since", "until"],
               [[i["target"], i["creator"] or "-", i["since"], i["until"] or "until cancelled"]
                for i in items])


@main.command()
@click.option("--month", default=None, metavar="YYYY-MM", help="Default: this month.")
@home_option
@json_option
@wallet_command
def status(month: str | None, home: str | None, as_json: bool) -> None:
    """The month's things and each one's projected share; what is left out and why."""
    mo = _month_arg(month) or _current_month()
    with _open(home) as w:
        p = w.projection(mo)
    if as_json:
        _emit_json(p)
        return
    _table(f"{mo}: budget {_money(p['budget'], p['currency'])}, {p['counted']} thing(s) "
           f"counted, {p['pending']} left out" + (" (settled)" if p["settled"] else ""),
           ["thing", "creator", "share"],
           [[r["thing"], (r["creator"] + ("" if r.get("verified") else " (unverified)"))
             if r["creator"] else "left out (below)",
             _money(r["share"], p["currency"]) if not r["pending"] else "-"]
            for r in p["things"]])
    _print_left_out(p["left_out"], p["settled"] is not None)
    if p["anonymous"]:
        click.echo(f"{mo} is given anonymously, as the pseudonym {p['anonymous']['pseudonym']} "
                   "(`rill anonymous`).")
    if p["left_out"] and not p["settled"]:
        click.echo(f"`rill settle --month {mo} --dry-run` checks their sites now.")


def _print_left_out(rows: Sequence[dict[str, Any]], settled: bool) -> None:
    if not rows:
        return
    click.echo(f"Left out ({len(rows)} thing(s)): "
               + ("they got nothing this month." if settled else
                  "they get nothing unless their creator becomes known; the others share "
                  "the budget."))
    _table("Left out", ["thing", "why"], [[r["thing"], r["reason"]] for r in rows])


def _print_preview(p: dict[str, Any]) -> None:
    cur = p["currency"]
    state = (" (already settled)" if p["settled"] else "" if p["ended"]
             else f" (not ended: it ends {p['ends']})")
    _table(f"{p['month']}{state}: {_money(p['budget'], cur)} over {p['counted']} thing(s)",
           ["thing", "creator", "share"],
           [[r["thing"], _creator_label(r["creator"], r["name"])
             + ("" if r["verified"] else " (unverified: named by the click)")
             + (f" (the click named {r['overridden']}; its verified site wins)"
                if r["overridden"] else ""), _money(r["share"], cur)] for r in p["paid"]])
    if p["creators"]:
        _table("Claims per creator", ["creator", "things", "amount"],
               [[_creator_label(c["creator"], c["name"]), c["things"], _money(c["amount"], cur)]
                for c in p["creators"]])
    elif not p["settled"]:
        click.echo("Nobody is paid: no thing of the month has a known creator.")
    _print_left_out(p["left_out"], p["settled"] is not None)


def _site_progress(as_json: bool) -> Any:
    """Progress of the site checks on stderr: one line per site (and a count)."""
    if as_json:
        return None

    def show(done: int, total: int, check: dict[str, Any]) -> None:
        if check["valid"]:
            what = f"verified: {_creator_label(check['creator'], check['name'])}"
        else:
            what = f"not verified: {check['reason']}"
        count = f"[{done}/{total}] " if total > 1 else ""
        click.echo(f"  {count}{check['origin']} {what}", err=True)

    return show


@main.command()
@click.option("--month", required=True, metavar="YYYY-MM")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write the settlement and every claim (armoured) into this directory.")
@click.option("--yes", "-y", is_flag=True,
              help="Settle without asking (scripts; required with --json).")
@click.option("--dry-run", is_flag=True,
              help="Check the sites and show what would be paid and left out; sign nothing.")
@click.option("--allow-http", is_flag=True,
              help="Accept creator sites over plain HTTP for non-loopback hosts.")
@home_option
@json_option
@wallet_command
def settle(month: str, out: str | None, yes: bool, dry_run: bool, allow_http: bool,
           home: str | None, as_json: bool) -> None:
    """Settle an ended month: sign the settlement and one claim per creator.

    First the sites of the month's things are checked (as the node does), then what
    will be paid, to whom, and what is left out and why is shown, and you are asked to
    confirm (a settlement cannot be undone). `--yes` skips the question; `--json`
    needs `--yes` (or `--dry-run`). A month already settled shows its settlement.
    """
    import functools

    import trio

    from .node.settling import preview_settle
    from .protocol.armour import armour
    from .wallet.errors import DiskFull

    mo = _month_arg(month)
    assert mo is not None
    now = _now()
    with _open(home) as w:
        res = w.stored_settlement(mo)
        preview = None
        if res is None or dry_run:
            problem = w.settle_problem(mo, now)
            if problem is not None and not dry_run:
                _fail(problem["message"], problem["code"])  # nothing to check or show
            ahead = now - int(time.time())
            if ahead > 3600 and not as_json:
                click.echo(f"note: RILL_NOW is {ahead // 3600} h ahead of this machine's "
                           f"clock: a settlement made now cannot be undone, and {mo} takes no "
                           "more flattrs after it", err=True)
            http = allow_http or w.config.raw.get("node", {}).get("allow_http") is True
            due = w.sites_to_check(mo, now) if res is None else []
            if due and not as_json:
                click.echo(f"Checking {len(due)} creator site(s) for {mo}...", err=True)
            preview = trio.run(functools.partial(preview_settle, w, mo, now, http,
                                                 progress=_site_progress(as_json)))
        if dry_run:
            assert preview is not None
            if as_json:
                _emit_json(preview)
            else:
                _print_preview(preview)
                problem = preview["problem"]
                click.echo("Dry run: nothing signed." + (f" It cannot be settled now: "
                                                          f"{problem['message']}."
                                                          if problem else ""))
            return
        new = False
        if res is None:
            assert preview is not None
            if preview["problem"] is not None:
                _fail(preview["problem"]["message"], preview["problem"].get("code", "error"))
            if not as_json:
                _print_preview(preview)
            if not yes:
                if as_json:
                    _fail("settling cannot be undone, and --json does not ask: add --yes "
                          "(or use --dry-run to see what would be settled)", "needs-yes")
                try:
                    click.confirm(f"Settle {mo} now? The settlement is signed and cannot be "
                                  "undone", abort=True, err=True)
                except click.Abort:
                    _fail(f"not settled: {mo} is left as it is (`--yes` settles without "
                          "asking)")
            res, new = w.settle(mo, now)
    s = res.settlement
    files = []
    if out is not None:
        try:
            os.makedirs(out, exist_ok=True)
            for obj in (s, *res.claims, *res.sealed):
                path = os.path.join(out, f"{obj.type}-{obj.id_hex[:16]}.rill")
                clikit.write_atomic(path, armour(obj.raw, obj.type).encode())
                files.append(path)
        except (DiskFull, OSError) as exc:
            why = str(exc) if isinstance(exc, DiskFull) else f"{out}: {exc.strerror or exc}"
            _fail(f"{mo} is {'settled' if new else 'already settled'} ({s.id_hex}), but its "
                  f"files were not all written: {why} (run `rill settle --month {mo} --out "
                  f"{out}` again to write them)", getattr(exc, "code", "os"))
    claims = [{"id": c.id_hex, "creator": _did(c.body.creator),
               "amount": c.body.amount, "things": len(c.body.things),
               "discloses": c.body.disclosure is not None} for c in res.claims]
    anon = s.signer != w.identity
    if as_json:
        _emit_json({"settlement": s.id_hex, "month": mo, "budget": s.body.budget,
                    "currency": s.body.currency, "new": new, "claims": claims,
                    "signer": _did(s.signer), "anonymous": anon,
                    "files": files,
                    "left_out": preview["left_out"] if preview is not None else None,
                    "checked": preview["checked"] if preview is not None else []})
        return
    click.echo(f"{'Settled' if new else 'Already settled'} {mo}: {s.id_hex}"
               + (f" (anonymously, as the pseudonym {_did(s.signer)})" if anon else ""))
    _table(f"{_money(s.body.budget, s.body.currency)} over {s.body.things} thing(s)",
           ["claim", "creator", "things", "amount"],
           [[c["id"][:16], c["creator"], c["things"], _money(c["amount"], s.body.currency)]
            for c in claims])
    if files:
        click.echo(f"Wrote {len(files)} file(s) to {out}")


def _did(key: bytes) -> str:
    from .protocol.keys import did_from_key

    return did_from_key(key)


@main.command()
@click.option("--month", default=None, metavar="YYYY-MM")
@click.option("--outgoing", "direction", flag_value="out", help="Only claims you owe.")
@click.option("--incoming", "direction", flag_value="in", help="Only claims owed to you.")
@home_option
@json_option
@wallet_command
def claims(month: str | None, direction: str | None, home: str | None, as_json: bool) -> None:
    """Claims with their state: owed, paid or receipted."""
    from .wallet.pseudonyms import label

    with _open(home) as w:
        rows = w.obligations(_month_arg(month), direction)
        disclosed = w.disclosed_identities()
        identity = w.identity
    # a claim of one of our anonymous months, or from a donor that disclosed itself to us
    anon = {o.claim: o.direction == "out" and o.donor != identity for o in rows}
    who = {o.claim: disclosed.get(o.donor) for o in rows if o.direction == "in"}
    if as_json:
        _emit_json([dict(o.as_json(), anonymous=anon[o.claim],
                         disclosed=_did(who[o.claim]) if who.get(o.claim) else None)
                    for o in rows])
        return
    _table("Claims", ["id", "month", "direction", "counterpart", "amount", "state"],
           [[short_id(o.claim), o.month, "out" if o.direction == "out" else "in",
             (_did(o.creator) + (f" ({label(o.donor)})" if anon[o.claim] else ""))
             if o.direction == "out" else
             (f"{_did(who[o.claim])} (disclosed)" if who.get(o.claim) else _did(o.donor)),
             _money(o.amount, o.currency),
             o.state + ("" if o.payable else " (carried forward)")] for o in rows])


@main.command()
@home_option
@json_option
@wallet_command
def due(home: str | None, as_json: bool) -> None:
    """What to pay now: owed claims summed per creator, with payto: links."""
    from .wallet.pseudonyms import label

    with _open(home) as w:
        pays = w.due()
        minimum = w.config.min_payout
    if as_json:
        _emit_json([p.as_json() for p in pays])
        return
    if not pays:
        click.echo("Nothing owed.")
        return
    rows = []
    for p in pays:
        if not p.payable:
            how = f"carried forward: below the minimum payout ({minimum} minor units)"
        elif not p.uris:
            how = ("no key document known for this creator: import its rill.json "
                   "(rill import-object FILE) or verify its site (rill creator verify ORIGIN)")
        else:
            how = "\n".join(p.uris)
        rows.append([who(p.creator) + (f" ({label(p.pseudonym)})" if p.pseudonym else ""),
                     _money(p.amount, p.currency),
                     " ".join(short_id(c) for c in p.claims), how])
    _table("Due: pay these, then record it with  rill pay CLAIM... --reference REF",
           ["creator", "amount", "claims", "pay to"], rows)


@main.command()
@click.argument("claim_ids", nargs=-1, required=True, metavar="CLAIM_ID...")
@click.option("--reference", required=True, help="The payment rail's reference.")
@click.option("--force", is_flag=True,
              help="Replace the reference of a claim already recorded as paid.")
@home_option
@json_option
@wallet_command
def pay(claim_ids: Sequence[str], reference: str, force: bool, home: str | None,
        as_json: bool) -> None:
    """Record that you paid claims (owed -> paid).  A claim ID may be shortened to a
    unique prefix of 8 or more hex digits (as `rill claims` and `rill due` show them)."""
    with _open(home) as w:
        ids = [_claim_arg(w, c) for c in claim_ids]
        rows = w.pay(ids, reference, _now(), force=force)
    if as_json:
        _emit_json([o.as_json() for o in rows])
    else:
        _table(f"Recorded as paid (reference {reference.strip()})",
               ["claim", "creator", "amount", "state"],
               [[short_id(o.claim), who(o.creator), _money(o.amount, o.currency), o.state]
                for o in rows])
