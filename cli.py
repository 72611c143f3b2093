"""The ``rill`` command line: parse, call, print.  Every command has ``--json``.

The conventions every command follows (tables, ISO 8601 times, short IDs and names,
``--json`` errors, global options, exit codes) live in :mod:`rill.clikit`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from . import __version__, clikit
from .clikit import EXIT_FAIL, EXIT_OK, TIME, home_option, iso, json_option, short_id, who

_emit_json = clikit.emit_json
_fail = clikit.fail
_now = clikit.now
_parse_time = clikit.parse_time
_read_files = clikit.read_files
_table = clikit.table


@click.group(cls=clikit.RillGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rill")
@clikit.root_options
def main(home: str | None, as_json: bool) -> None:
    """Rill: peer-to-peer, zero-fee, provable micro-donations.

    --home and --json may come before the command (rill --home DIR status) or after it.
    Times are shown in UTC (ISO 8601) and accepted as ISO 8601 or Unix seconds.
    """
    clikit.set_names_loader(_names_of_home)


def _names_of_home() -> dict[str, str]:
    """did -> display name from the key documents stored in the home in use."""
    from .wallet import lookup
    from .wallet.home import Home

    ctx = click.get_current_context(silent=True)
    path = _home_path(ctx.params.get("home") if ctx is not None else None)
    if not Home(path).exists():
        return {}
    with _open(path) as w:
        return lookup.names_by_did(w.db, w.identity, w.config.name)


#: Below this many bytes of input, `rill verify` does not start worker processes.
PARALLEL_MIN_BYTES = 256 * 1024


def _verify_inputs(inputs: list[tuple[str, bytes]], now: int, jobs: int) -> list[Any]:
    """Verify every object of every file, in order; big batches on ``jobs`` processes.

    Armoured files are cut at block boundaries so that decoding the text is spread
    over the workers too; workers send back verdicts without objects (pickling them
    costs as much as decoding), and the objects cross-checks need are rebuilt here.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from .protocol.armour import looks_armoured
    from .protocol.verify import reattach, split_armoured, verify_part

    parallel = jobs > 1 and sum(len(d) for _, d in inputs) >= PARALLEL_MIN_BYTES
    parts: list[tuple[int, str, bytes]] = []
    for i, (name, data) in enumerate(inputs):
        slices = (split_armoured(data, jobs * 4) if parallel and looks_armoured(data)
                  else [data])
        parts += [(i, name, piece) for piece in slices]
    if parallel:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            results = list(pool.map(verify_part, [p[1] for p in parts], [p[2] for p in parts],
                                    [now] * len(parts)))
    else:
        results = [verify_part(name, piece, now) for _, name, piece in parts]
    per_file: dict[int, list[Any]] = {}
    for (i, _, _), pairs in zip(parts, results, strict=True):
        per_file.setdefault(i, []).extend(pairs)
    pairs_all = []
    for i, (name, _) in enumerate(inputs):
        pairs = per_file.get(i, [])
        for k, (v, _) in enumerate(pairs):  # number objects across the file's slices
            if v.source.startswith(name) and (len(pairs) > 1 or v.source != name):
                v.source = name if len(pairs) == 1 else f"{name}#{k + 1}"
        pairs_all += pairs
    reattach(pairs_all)
    return [v for v, _ in pairs_all]


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--at", "at", type=TIME, default=None, metavar="TIME",
              help="Check time rules as of this time (ISO 8601 or Unix seconds).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="Worker processes for large batches (default: one per core).")
@json_option
def verify(files: Sequence[str], at: int | None, jobs: int | None, as_json: bool) -> None:
    """Verify signed Rill objects (binary CBOR, armoured text, or a creator's rill.json).

    Objects given together are also checked against each other: claims against
    their settlement, receipts against their claim and the creator's key document.
    A rill.json key file is checked on its own (signature, document, JSON members);
    the sites it lists are reported, not fetched: `rill creator verify ORIGIN` checks
    that a site serves it.  Each file is reported; a bad one does not stop the others.
    Exit status: 0 all valid, 1 any invalid, 2 usage error (e.g. an unreadable file).
    """
    from .protocol.verify import cross_check

    inputs = _read_files(files)
    now = _now() if at is None else at
    verdicts = _verify_inputs(inputs, now, jobs or os.cpu_count() or 1)
    cross_check(verdicts)
    if as_json:
        _emit_json([v.as_json() for v in verdicts])
    else:
        for v in verdicts:
            mark = "ok " if v.valid else "BAD"
            what = v.type or "?"
            extra = f"  (checked against {', '.join(v.checks)})" if v.checks else ""
            click.echo(f"{mark} {v.source}: {what} {v.id or ''}{extra}")
            if not v.valid:
                click.echo(f"    {v.reason}")
            elif v.key is not None:
                k = v.key
                click.echo(f"    {k['name']} ({v.signer}), valid from {iso(k['valid_from'])}")
                for o in k["origins"]:
                    click.echo(f"    lists the site {o} (not fetched: `rill creator verify "
                               f"{o}` checks that it serves this document)")
                for p in k["payto"]:
                    click.echo(f"    pays to {p}")
        bad = sum(not v.valid for v in verdicts)
        click.echo(f"{len(verdicts) - bad} valid, {bad} invalid", err=True)
    sys.exit(EXIT_OK if all(v.valid for v in verdicts) else EXIT_FAIL)


# --------------------------------------------------------------------------------------
# Wallet commands.  Each opens the home, calls rill.wallet, prints.


def _home_path(home: str | None) -> str:
    from .wallet.home import default_home

    return home if home is not None else str(default_home())


def wallet_command(fn: Any) -> Any:
    """Turn wallet and protocol errors into a refusal (exit status 1, JSON with --json)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import sqlite3

        from .protocol.errors import RillError
        from .wallet import store
        from .wallet.errors import WalletError

        try:
            return fn(*args, **kwargs)
        except BaseExceptionGroup as group:  # from a trio nursery (settle's site checks)
            leaf = _leaf(group)
            if not isinstance(leaf, WalletError | RillError | sqlite3.OperationalError
                              | OSError):
                raise
            exc = leaf
        except (WalletError, RillError, sqlite3.OperationalError, OSError) as caught:
            exc = caught
        home = _home_path(kwargs.get("home"))
        if store.is_disk_full(exc, home) and not isinstance(exc, WalletError):
            where = exc.filename if isinstance(exc, OSError) and exc.filename else home
            exc = store.disk_full(os.path.dirname(os.path.abspath(where))
                                  if where != home else home)
        if isinstance(exc, WalletError | RillError):
            _fail(str(exc), exc.code)
        if isinstance(exc, sqlite3.OperationalError):  # e.g. locked beyond the busy timeout
            _fail(f"the home's database is busy or unreadable ({exc}); try again", "busy")
        assert isinstance(exc, OSError)
        _fail(f"{exc.filename or ''}: {exc.strerror}" if exc.strerror else str(exc), "os")

    return wrapper


def _open(home: str | None) -> Any:
    from .wallet.wallet import Wallet

    return Wallet.open(_home_path(home))


def _did_arg(text: str | None) -> bytes | None:
    from .protocol.keys import key_from_did

    return None if text is None else key_from_did(text)


def _claim_arg(w: Any, text: str) -> bytes:
    """A claim ID, or a unique prefix of it (8 hex digits or more)."""
    from .wallet.lookup import resolve_claim

    return resolve_claim(w.db, text)


def _month_arg(text: str | None) -> str | None:
    from .protocol.months import parse_month

    return None if text is None else parse_month(text)


def _current_month() -> str:
    from .protocol.months import month_of

    return month_of(_now())


def _money(amount: int | None, currency: str | None) -> str:
    from .wallet.wallet import format_amount_safe

    if amount is None or currency is None:
        return "-"
    return format_amount_safe(amount, currency)


@main.command()
@click.option("--name", default=None, help="Your display name (default: your login name).")
@click.option("--seed-file", type=click.File("r"), default=None,
              help="Restore an identity from a file holding its 32-byte seed in hex.")
@home_option
@json_option
@wallet_command
def init(name: str | None, seed_file: Any, home: str | None, as_json: bool) -> None:
    """Create a home with a new identity (refuses to overwrite one)."""
    import shlex

    from .wallet.errors import HomeError
    from .wallet.home import Home, check_name, user_name
    from .wallet.wallet import Wallet

    path = _home_path(home)
    if Home(path).exists():
        old = Home(path).config().name
        named = f'named "{old}"' if old else "without a name"
        rename = f"rill id --name {shlex.quote(name)}" if name else "rill id --name NAME"
        raise HomeError(f"{path} already has an identity ({named}); init never replaces "
                        f"one. To change its name: {rename}. For a second identity, use "
                        "another home: rill init --home DIR", code="exists")
    if name is None:
        name = user_name()
    elif (why := check_name(name)) is not None:
        raise click.BadParameter(why, param_hint="--name")
    if seed_file is not None:
        try:
            seed = bytes.fromhex(seed_file.read().strip())
        except ValueError:
            seed = b""
        if len(seed) != 32:
            _fail("the seed file must hold 64 hex digits")
    else:
        seed = os.urandom(32)
    with Wallet.create(path, name, seed) as w:
        if as_json:
            _emit_json({"id": w.did, "home": path, "name": name})
        else:
            click.echo(f"Created {path}\nYour identity: {w.did}\nYour name: {name or '-'}"
                       " (change it with: rill id --name NAME)")


@main.command("id")
@click.option("--name", "new_name", default=None, metavar="NAME",
              help="Set or change your display name (config.toml `name`).")
@home_option
@json_option
@wallet_command
def id_(new_name: str | None, home: str | None, as_json: bool) -> None:
    """Print this home's identity (did:key) and display name; --name NAME changes it."""
    from .wallet.lookup import set_name

    with _open(home) as w:
        did = w.did
        if new_name is not None:
            set_name(w.home, new_name)
        name = w.config.name
    if as_json:
        _emit_json({"id": did, "name": name or None})
    else:
        click.echo(f"{name} ({did})" if name else did)
        if new_name is not None:
            click.echo(f"Display name set to {name!r}. Key documents you published keep the "
                       "old name until you sign a new one (rill creator init).", err=True)
        elif not name:
            click.echo("No display name yet: set one with  rill id --name NAME", err=True)


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


def _url_arg(text: str) -> str:
    """Bare host names typed by people get https:// (example.org/x is not a URI scheme)."""
    head = text.strip().split("/", 1)[0]
    if "://" not in text and ":" not in head.split(".", 1)[0] and "." in head:
        return "https://" + text.strip()
    return text


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


def _creator_label(did: str, name: str | None) -> str:
    """``Name (z6Mkh5…a1b2)`` (a table cell shows a full did:key the same way), or the did."""
    return f"{name} ({clikit.short_key(did)})" if name else did


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
               "amount": c.body.amount, "things": len(c.body.things)} for c in res.claims]
    if as_json:
        _emit_json({"settlement": s.id_hex, "month": mo, "budget": s.body.budget,
                    "currency": s.body.currency, "new": new, "claims": claims,
                    "files": files,
                    "left_out": preview["left_out"] if preview is not None else None,
                    "checked": preview["checked"] if preview is not None else []})
        return
    click.echo(f"{'Settled' if new else 'Already settled'} {mo}: {s.id_hex}")
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
    with _open(home) as w:
        rows = w.obligations(_month_arg(month), direction)
    if as_json:
        _emit_json([o.as_json() for o in rows])
        return
    _table("Claims", ["id", "month", "direction", "counterpart", "amount", "state"],
           [[short_id(o.claim), o.month, "out" if o.direction == "out" else "in",
             _did(o.creator if o.direction == "out" else o.donor),
             _money(o.amount, o.currency),
             o.state + ("" if o.payable else " (carried forward)")] for o in rows])


@main.command()
@home_option
@json_option
@wallet_command
def due(home: str | None, as_json: bool) -> None:
    """What to pay now: owed claims summed per creator, with payto: links."""
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
        rows.append([who(p.creator), _money(p.amount, p.currency),
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


@main.command()
@click.argument("claim_id", metavar="CLAIM_ID")
@click.option("--reference", default="", help="The payment's reference on your side.")
@click.option("--amount", default=None, help="Amount received, if not the claim's amount.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the armoured receipt here (default: stdout).")
@home_option
@json_option
@wallet_command
def receipt(claim_id: str, reference: str, amount: str | None, out: str | None,
            home: str | None, as_json: bool) -> None:
    """Creator: sign a receipt for a claim owed to you (CLAIM_ID: 8+ hex digits do)."""
    from .protocol.armour import armour
    from .protocol.currency import parse_amount
    from .wallet.errors import DiskFull

    with _open(home) as w:
        cid = _claim_arg(w, claim_id)
        o = w.obligation(cid)
        minor = None if amount is None else parse_amount(amount, o.currency)
        r = w.sign_receipt(cid, _now(), reference, minor)
    _notify_daemon(home)
    text = armour(r.raw, r.type)
    if out is not None:
        try:
            clikit.write_atomic(out, text.encode())
        except (DiskFull, OSError) as exc:
            why = str(exc) if isinstance(exc, DiskFull) else f"{out}: {exc.strerror or exc}"
            _fail(f"the receipt {r.id_hex} is signed and recorded, but {why} (the same "
                  "receipt is written then)", getattr(exc, "code", "os"))
    if as_json:
        _emit_json({"receipt": r.id_hex, "claim": cid.hex(), "amount": r.body.amount,
                    "currency": r.body.currency, "file": out,
                    "armour": text if out is None else None})
    elif out is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"Receipt {r.id_hex} written to {out}")


@main.command("import-object")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@home_option
@json_option
@wallet_command
def import_object(files: Sequence[str], home: str | None, as_json: bool) -> None:
    """Take in settlements, claims, receipts, key documents received by other means.

    Files may be binary, armoured, or a creator's rill.json (its key document: then
    `rill due` knows how to pay that creator).  Each file is reported; a bad or
    truncated one does not stop the others.  Exit status 1 if any was refused.
    """
    from .protocol.errors import RemoteError
    from .protocol.messages import peek_type
    from .wallet.errors import WalletError

    items, unreadable = clikit.objects_in(files)
    # settlements first: claims are checked against them
    order = {"key": 0, "settlement": 1, "claim": 2, "sealed-claim": 2, "receipt": 3}
    items.sort(key=lambda it: order.get(peek_type(it[1]) or "", 4))
    results: list[dict[str, Any]] = [
        {"file": name, "type": None, "ok": False, "action": "refused", "detail": reason}
        for name, reason in unreadable]
    now = _now()
    with _open(home) as w:  # one transaction: a full disk keeps none of them
        verdicts = w.import_objects([raw for _, raw in items], now)
    for (name, raw), r in zip(items, verdicts, strict=True):
        if isinstance(r, RemoteError | WalletError):
            reason = r.reason if isinstance(r, RemoteError) else str(r)
            results.append({"file": name, "type": peek_type(raw), "ok": False,
                            "action": "refused", "detail": reason})
        else:
            results.append({"file": name, **r.as_json(), "ok": True})
    failed = sum(not r["ok"] for r in results)
    if as_json:
        _emit_json(results)
    else:
        for r in results:
            mark = "ok " if r["ok"] else "BAD"
            what = f"{r['type']} " if r.get("type") else ""
            detail = f": {r['detail']}" if r["detail"] else ""
            click.echo(f"{mark} {r['file']}: {what}{r['action']}{detail}")
        click.echo(f"{len(results) - failed} taken in, {failed} refused", err=True)
    sys.exit(EXIT_FAIL if failed else EXIT_OK)


@main.command()
@click.option("--month", default=None, metavar="YYYY-MM")
@home_option
@json_option
@wallet_command
def earnings(month: str | None, home: str | None, as_json: bool) -> None:
    """Creator: income per month: paid (receipted) apart from promised (owed claims),
    supporters who paid, new supporters and top things."""
    with _open(home) as w:
        rows = w.earnings(_month_arg(month))
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("No claims received yet.")
        return
    _table("Earnings", ["month", "paid", "supporters (new)", "promised, not paid yet",
                        "promisers", "top things (supporters)"],
           [[e["month"], _money(e["paid"], e["currency"]),
             f"{e['supporters']} ({len(e['new_supporters'])})",
             _money(e["promised"], e["currency"]), e["promisers"],
             "\n".join(f"{t['thing']} ({t['supporters']})" for t in e["top_things"][:5])
             or "-"] for e in rows])


@main.command()
@home_option
@json_option
@wallet_command
def check(home: str | None, as_json: bool) -> None:
    """Verify the whole click log and the stored settlements."""
    with _open(home) as w:
        rep = w.verify_log(_progress_bar("verifying click log"))
    if as_json:
        _emit_json({"ok": True, "entries": rep.size, "head": rep.head.hex(),
                    "settled": rep.settled})
    else:
        click.echo(f"Click log OK: {rep.size} entries, head {rep.head.hex()[:16]}; "
                   f"{len(rep.settled)} settled month(s).")


def _progress_bar(label: str) -> Any:
    """A callback(done, total) drawing a progress bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import Progress

    bar = Progress(transient=True)
    task = bar.add_task(label, total=None)
    bar.start()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)
        if done >= total:
            bar.stop()

    return update


@main.command("export")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--with-key", is_flag=True, help="Include the private key (keep the file safe).")
@home_option
@json_option
@wallet_command
def export_(out: str, with_key: bool, home: str | None, as_json: bool) -> None:
    """Write the whole home to one portable file (without the private key unless asked)."""
    from .wallet.portable import export_home

    with _open(home) as w:
        data = export_home(w, with_key)
        entries = w._log_size()
    clikit.write_atomic(out, data, 0o600 if with_key else 0o644)
    if as_json:
        _emit_json({"file": out, "bytes": len(data), "entries": entries, "with_key": with_key})
    else:
        click.echo(f"Exported {entries} click-log entries to {out} ({len(data)} bytes)"
                   + (", private key included" if with_key else ""))


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@home_option
@json_option
@wallet_command
def import_(file: str, home: str | None, as_json: bool) -> None:
    """Restore an export (every signature and the chain are verified before writing)."""
    from .wallet.portable import import_home

    try:
        with open(file, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise click.UsageError(f"cannot read {file}: {exc.strerror}") from None
    bar = _progress_bar("importing")
    progress = (lambda what, done, total: bar(done, total)) if bar else None
    with import_home(_home_path(home), data, _now(), progress) as w:
        rep = w.verify_log()
        conflicts = w.attribution_conflicts()
        result = {"id": w.did, "entries": rep.size, "settled": rep.settled,
                  "overridden": conflicts}
    if as_json:
        _emit_json(result)
        return
    click.echo(f"Imported {rep.size} click-log entries for {result['id']}.")
    for c in conflicts:  # signed history: kept, but not credited to the named key
        click.echo(f"  {c['thing']}: the log names {c['named']}, but {c['origin']} publishes "
                   f"the verified key of {_creator_label(c['creator'], c['name'])}: "
                   "settlement pays the verified key.", err=True)


# --------------------------------------------------------------------------------------
# The node daemon


@main.group()
def node() -> None:
    """Run and query the node daemon."""


@node.command("run")
@click.option("--listen", "listen", multiple=True, metavar="MULTIADDR",
              help="Listen address (default /ip4/0.0.0.0/tcp/4741; repeatable).")
@click.option("--bootstrap", "bootstrap", multiple=True, metavar="MULTIADDR",
              help="Peer to connect to at start, /ip4/../tcp/../p2p/.. (repeatable).")
@click.option("--mdns/--no-mdns", default=None, help="Find peers on the LAN (default off).")
@click.option("--clock", "clock_spec", default="wall", show_default=True,
              help="wall, manual:START or fast:START:RATE (tests and demos).")
@click.option("--grace", type=click.IntRange(0), default=None,
              help="Seconds after a month's end before settling it (default 3600).")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=None,
              help="Port of the local dashboard on 127.0.0.1 (default 4742; 0: off).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="Least important messages logged.")
@click.option("--log-file", type=click.Path(dir_okay=False, writable=True), default=None,
              metavar="PATH", help="Append the log to PATH instead of stderr (reopened "
              "when logrotate moves it).")
@home_option
@json_option
@wallet_command
def node_run(listen: Sequence[str], bootstrap: Sequence[str], mdns: bool | None,
             clock_spec: str, grace: int | None, dashboard_port: int | None, log_level: str,
             log_file: str | None, home: str | None, as_json: bool) -> None:
    """Run the daemon until SIGINT/SIGTERM (creates the home if it has none)."""
    import logging
    import logging.handlers
    import signal
    from pathlib import Path

    import trio

    from .node.clock import parse_clock
    from .node.daemon import Daemon, NodeConfig
    from .node.host import route_libp2p_logs
    from .wallet.home import Home, user_name
    from .wallet.wallet import Wallet

    path = _home_path(home)
    if not Home(path).exists():  # asks nothing: named after the login, renamed any time
        name = user_name()
        with Wallet.create(path, name, os.urandom(32)) as w:
            click.echo(f"Created a new home at {path}\n  identity {w.did}, named \"{name}\" "
                       "after your login; change the name with: rill id --name NAME",
                       err=True)
    try:
        clock = parse_clock(clock_spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--clock") from None
    try:
        cfg = NodeConfig.from_toml(Home(path).config().raw)
    except ValueError as exc:
        _fail(f"config.toml: {exc}")
    if listen:
        cfg.listen = list(listen)
    if bootstrap:
        cfg.bootstrap = list(bootstrap)
    if mdns is not None:
        cfg.mdns = mdns
    if grace is not None:
        cfg.grace = grace
    if dashboard_port is not None:
        cfg.dashboard_port = dashboard_port
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    if log_file is not None:
        from .node.logfile import LogFile

        try:
            handler = LogFile(log_file)
        except OSError as exc:
            _fail(f"cannot write the log file {log_file}: {exc.strerror}")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = getattr(logging, log_level.upper())
    rill_log = logging.getLogger("rill")
    rill_log.handlers[:] = [handler]
    rill_log.setLevel(level)
    rill_log.propagate = False
    route_libp2p_logs(handler, level)

    async def main_task() -> None:
        daemon = Daemon(Path(path), cfg, clock)
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                await nursery.start(daemon.run)
                status = await daemon.status()
                if as_json:
                    click.echo(json.dumps({"event": "started", **status}), nl=True)
                else:
                    click.echo(f"Rill node {status['id']}\n  peer {status['peer_id']}")
                    for a in status["addrs"]:
                        click.echo(f"  listening on {a}")
                    if status["dashboard"]:
                        click.echo(f"  dashboard   {status['dashboard']}")
                    if log_file is not None:
                        click.echo(f"  log         {os.path.abspath(log_file)}")
                sys.stdout.flush()
                async for signum in signals:
                    logging.getLogger("rill.node").info("signal %d: shutting down", signum)
                    nursery.cancel_scope.cancel()
                    break

    from .node.daemon import StartupError

    def cannot_start(why: BaseException) -> None:
        import re

        message = f"the node could not start: {why}"
        flag = re.search(r"choose another with (--[a-z-]+ \S+)", message)
        if flag and os.environ.get("MAKELEVEL"):  # under make, flags go through ARGS
            message += f'\n(with make: make run ARGS="{flag[1]}")'
        _fail(message)

    try:
        trio.run(main_task)
    except (StartupError, RuntimeError, OSError) as exc:  # port in use, a second daemon
        cannot_start(_leaf(exc))
    except BaseExceptionGroup as group:
        leaf = _leaf(group)
        if isinstance(leaf, StartupError | RuntimeError | OSError):
            cannot_start(leaf)
        raise
    if as_json:
        click.echo(json.dumps({"event": "stopped"}))


@node.command("install-service")
@click.option("--print", "print_only", is_flag=True,
              help="Only print the unit; write nothing.")
@click.option("--force", is_flag=True, help="Replace a different rill.service.")
@click.option("--listen", "listen", multiple=True, metavar="MULTIADDR",
              help="Passed to `rill node run` (repeatable).")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=None,
              help="Passed to `rill node run`.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="Passed to `rill node run`.")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Passed to `rill node run` (default: the journal).")
@home_option
@json_option
def node_install_service(print_only: bool, force: bool, listen: Sequence[str],
                         dashboard_port: int | None, log_level: str | None,
                         log_file: str | None, home: str | None, as_json: bool) -> None:
    """Write a systemd user unit that runs this node, and say how to start it.

    The unit, rill.service, goes to $XDG_CONFIG_HOME/systemd/user/ (by default
    ~/.config/systemd/user/) and runs `rill node run --home HOME`. Then:

    \b
      systemctl --user daemon-reload && systemctl --user enable --now rill
      loginctl enable-linger     # keep it running when you log out
    """
    import shutil
    from pathlib import Path

    from .node import service

    run_args = [a for addr in listen for a in ("--listen", addr)]
    if dashboard_port is not None:
        run_args += ["--dashboard-port", str(dashboard_port)]
    if log_level is not None:
        run_args += ["--log-level", log_level]
    if log_file is not None:
        run_args += ["--log-file", os.path.abspath(log_file)]
    home_dir = Path(_home_path(home)).expanduser().absolute()
    if print_only:
        text = service.render_unit(home_dir, run_args)
        if as_json:
            _emit_json({"path": str(service.unit_dir() / service.UNIT_NAME), "unit": text,
                        "written": False})
        else:
            click.echo(text, nl=False)
        return
    try:
        path, text, written = service.install(home_dir, run_args, force)
    except FileExistsError as exc:
        _fail(f"{exc.args[0]} exists and differs; --force replaces it "
              "(--print shows the new one)")
    except OSError as exc:
        _fail(f"cannot write the unit: {exc}")
    steps = service.next_steps(path)
    if as_json:
        _emit_json({"path": str(path), "unit": text, "written": written,
                    "steps": [cmd for _, cmd in steps]})
        return
    click.echo(f"{'Wrote' if written else 'Unchanged:'} {path}  (node on {home_dir})")
    for why, cmd in steps:
        click.echo(f"To {why}:\n  {cmd}")
    if shutil.which("systemctl") is None:
        click.echo("(systemctl is not on PATH here: this system may not run systemd)",
                   err=True)


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _control(home: str | None, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
    from pathlib import Path

    from .node import control

    try:
        return control.call(Path(_home_path(home)) / control.SOCKET_NAME, cmd, timeout,
                            **args)
    except ConnectionError as exc:
        _fail(str(exc), "node")
    except OSError as exc:
        _fail(f"cannot reach the node: {exc}", "node")


@node.command("status")
@home_option
@json_option
def node_status(home: str | None, as_json: bool) -> None:
    """The running daemon's identity, addresses, peers, mesh and counters."""
    s = _control(home, "status")
    if as_json:
        _emit_json(s)
        return
    st = s["store"]
    clikit.kv_table("Rill node", [
        ("identity", who(s["id"])),
        ("id", s["id"]),
        ("peer id", s["peer_id"]),
        ("dial me at", "\n".join(s.get("dialable") or s["addrs"]) or "-"),
        ("listening on", "\n".join(s["addrs"]) or "-"),
        ("clock", f"{s['clock']}, now {iso(s.get('now'))}"),
        ("peers", s["peers"] if not s.get("blocked") else
         f"{s['peers']} ({s['blocked']} blocked: rill peers blocked)"),
        ("mesh peers", "\n".join(f"{t.removeprefix('rill/1/')}: {n}"
                                  for t, n in sorted(s["mesh"].items())) or "-"),
        ("settled months", ", ".join(s["settled"]) or "-"),
        ("store", f"{clikit.human_bytes(st['own_bytes'])} of yours, "
                  f"{clikit.human_bytes(st['relay_bytes'])} of others "
                  f"(cap {clikit.human_bytes(st['cap_bytes'])})"),
        ("disk", _disk_row(s.get("disk"))),
        ("counters", "\n".join(f"{k}: {v}" for k, v in sorted(s["counters"].items())) or "-"),
        ("dashboard", s.get("dashboard") or "off"),
    ])


def _disk_row(d: dict[str, Any] | None) -> str:
    """``rill node status``'s disk row: room left, or full since when and what was lost."""
    if not d:
        return "-"
    free = clikit.human_bytes(d["free_bytes"]) if d["free_bytes"] is not None else "?"
    if d["full"]:
        return (f"FULL since {iso(d['full_since'])}: {d['not_stored']} object(s) not stored "
                f"({free} free; free some space: the node carries on by itself)")
    text = f"ok, {free} free"
    last = d.get("last_full")
    if last:
        text += (f"\nwas full {iso(last['since'])} to {iso(last['until'])}: "
                 f"{last['not_stored']} object(s) not stored (sync fetches again those that "
                 "concern you)")
    return text


@node.command("clock")
@click.argument("when", metavar="TIME", type=TIME)
@home_option
@json_option
def node_clock(when: int, home: str | None, as_json: bool) -> None:
    """Move a daemon's manual clock (started with --clock manual:START) forward.

    TIME is ISO 8601 (UTC without a zone) or Unix seconds."""
    now = _control(home, "clock", set=when)
    if as_json:
        _emit_json({"now": now})
    else:
        click.echo(f"clock set to {iso(now)}")


@node.command("sync")
@home_option
@json_option
def node_sync(home: str | None, as_json: bool) -> None:
    """Pull from every connected peer now; print how many new objects each gave."""
    result = _control(home, "sync", timeout=120)
    if as_json:
        _emit_json(result)
    elif not result:
        click.echo("No connected peers to sync with.")
    else:
        _table("Synced", ["peer", "new objects"], [[p, n] for p, n in result.items()])


def _notify_daemon(home: str | None) -> None:
    """Best effort: a running daemon publishes what the CLI just signed right away."""
    import contextlib
    from pathlib import Path

    from .node import control

    # no daemon running: it publishes at its next start
    with contextlib.suppress(ConnectionError, OSError, ValueError):
        control.call(Path(_home_path(home)) / control.SOCKET_NAME, "publish-new", timeout=5)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@home_option
@json_option
def publish(files: Sequence[str], home: str | None, as_json: bool) -> None:
    """Gossip objects (settlements, claims, receipts, key documents) through the daemon.

    Each file is reported; a bad one does not stop the others (exit 1 if any failed)."""
    from pathlib import Path

    from .node import control

    items, unreadable = clikit.objects_in(files)
    sock = Path(_home_path(home)) / control.SOCKET_NAME
    if not sock.exists():
        _fail("no node is running on this home (start one with `rill node run`)", "node")
    results = [{"file": name, "ok": False, "id": None, "detail": reason}
               for name, reason in unreadable]
    for name, raw in items:
        try:
            ids = control.call(sock, "publish", 60, objects=[raw.hex()])
            results.append({"file": name, "ok": True, "id": ids[0], "detail": ""})
        except (ConnectionError, OSError, ValueError) as exc:
            results.append({"file": name, "ok": False, "id": None, "detail": str(exc)})
    failed = sum(not r["ok"] for r in results)
    if as_json:
        _emit_json({"published": [r["id"] for r in results if r["ok"]], "files": results})
    else:
        for r in results:
            if r["ok"]:
                click.echo(f"ok  {r['file']}: published {r['id']}")
            else:
                click.echo(f"BAD {r['file']}: {r['detail']}")
    sys.exit(EXIT_FAIL if failed else EXIT_OK)


@main.group(invoke_without_command=True)
@home_option
@json_option
@click.pass_context
def peers(ctx: click.Context, home: str | None, as_json: bool) -> None:
    """The running daemon's peers: addresses, scores, topics, last sync.

    `rill peers block PEER` blocks a peer, `rill peers unblock PEER` lifts it, `rill peers
    blocked` lists the blocklist (config.toml [network] blocked)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _control(home, "peers")
    if as_json:
        _emit_json(rows)
        return
    _table("Peers", ["peer", "identity", "score", "topics", "last sync (UTC)", "addresses"],
           [[p["peer_id"], p.get("id") or "-",
             f"{p['score']:.1f}" + (" (blacklisted)" if p["blacklisted"] else ""),
             len(p["topics"]), iso(p["last_sync"]) if p["last_sync"] else "never",
             "\n".join(p["addrs"])] for p in rows])


def _tell_node(home: str | None, cmd: str, **args: Any) -> tuple[str, Any]:
    """Ask a running daemon, if any: ("applied", result), ("not running", None) or
    ("refused", reason)."""
    from pathlib import Path

    from .node import control

    sock = Path(_home_path(home)) / control.SOCKET_NAME
    try:
        return "applied", control.call(sock, cmd, 15, **args)
    except ConnectionError as exc:
        if not sock.exists() or "no node is running" in str(exc):
            return "not running", None
        return "refused", str(exc)
    except (OSError, ValueError) as exc:
        return "refused", f"cannot reach the node: {exc}"


def _peer_arg(text: str) -> str:
    from .protocol.keys import parse_peer

    return parse_peer(text)  # LocalError (code bad-peer): a refusal via wallet_command


def _peer_identity(peer_id: str) -> str | None:
    """The did:key behind an Ed25519 peer ID (a Rill node's identity), or None."""
    import base58

    from .protocol.keys import did_from_key

    raw = base58.b58decode(peer_id)
    return did_from_key(raw[6:]) if raw[:6] == b"\x00\x24\x08\x01\x12\x20" else None


def _block_change(home: str | None, peer: str, block: bool, as_json: bool) -> None:
    from .wallet.home import Home

    h = Home(_home_path(home))
    if not h.exists():
        _fail(f"no Rill home at {h.path}: run `rill init` first", "no-home")
    if block and peer == _own_peer_id(h):
        _fail("that is this node's own peer ID", "bad-peer")
    changed = h.block(peer) if block else h.unblock(peer)
    node, result = _tell_node(home, "block" if block else "unblock", peer=peer)
    out = {"peer_id": peer, "id": _peer_identity(peer), "blocked": block, "changed": changed,
           "node": node, "disconnected": bool(result and result.get("disconnected")),
           "dialling": bool(result and result.get("dialling"))}
    if node == "refused":
        _fail(f"config.toml was changed, but the running node refused: {result}", "node")
    if as_json:
        _emit_json(out)
        return
    word = "Blocked" if block else "Unblocked"
    if not changed:
        word = "Already blocked:" if block else "Not blocked:"
    click.echo(f"{word} {peer}" + (f" ({who(out['id'])})" if out["id"] else ""))
    if node == "not running":
        click.echo("No node is running on this home: it applies when the node starts.")
    elif block:
        click.echo("The running node disconnected it." if out["disconnected"] else
                   "The running node applies it now (it was not connected).")
    elif out["dialling"]:
        click.echo("The running node is dialling it again.")


def _own_peer_id(h: Any) -> str:
    from .protocol.keys import peer_id_from_key, public_key

    return peer_id_from_key(public_key(h.signing_key()))


@peers.command("block")
@click.argument("peer", metavar="PEER_ID")
@home_option
@json_option
@wallet_command
def peers_block(peer: str, home: str | None, as_json: bool) -> None:
    """Never talk to a peer: its connections are closed, it is not dialled nor let in,
    its gossip is ignored and nothing is synced with it.

    PEER_ID is a libp2p peer ID (12D3KooW..., as `rill peers` shows) or a Rill identity
    (did:key:...).  Written to config.toml ([network] blocked); a running node applies it
    at once."""
    _block_change(home, _peer_arg(peer), True, as_json)


@peers.command("unblock")
@click.argument("peer", metavar="PEER_ID")
@home_option
@json_option
@wallet_command
def peers_unblock(peer: str, home: str | None, as_json: bool) -> None:
    """Lift a block: a running node dials the peer again if it knows an address of it."""
    _block_change(home, _peer_arg(peer), False, as_json)


@peers.command("blocked")
@home_option
@json_option
@wallet_command
def peers_blocked(home: str | None, as_json: bool) -> None:
    """The blocklist (config.toml [network] blocked), and whether the running node
    applies each entry."""
    from .wallet.home import Home

    h = Home(_home_path(home))
    blocked = h.config().blocked
    node, live = _tell_node(home, "blocked")
    rows = [{"peer_id": p, "id": _peer_identity(p),
             "in_force": (p in live) if node == "applied" else None} for p in blocked]
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("No peer is blocked.")
        return
    state = {True: "yes", False: "no (restart the node)", None: "no node running"}
    _table("Blocked peers", ["peer", "identity", "in force"],
           [[r["peer_id"], r["id"] or "-", state[r["in_force"]]] for r in rows])


# --------------------------------------------------------------------------------------
# Creators: key documents on their own sites, verification, the button


@main.group()
def creator() -> None:
    """Publish your key on your site, verify other creators' sites, make buttons."""


@creator.command("init")
@click.option("--site", "sites", multiple=True, required=True, metavar="ORIGIN",
              help="A web origin you publish on, e.g. https://example.org (repeatable).")
@click.option("--payto", "paytos", multiple=True, metavar="URI",
              help="A payment address as a payto: URI (RFC 8905), in order of preference.")
@click.option("--name", default=None, help="Display name (default: the home's name).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON to this file (default: stdout).")
@click.option("--previous-key-file", type=click.File("r"), default=None,
              help="Rotation: the old identity's seed (hex); it co-signs the new document.")
@home_option
@json_option
@wallet_command
def creator_init(sites: Sequence[str], paytos: Sequence[str], name: str | None,
                 out: str | None, previous_key_file: Any, home: str | None,
                 as_json: bool) -> None:
    """Sign your key document, to publish at https://ORIGIN/.well-known/rill.json."""
    import nacl.signing

    from .protocol import messages as m
    from .protocol import sitekeys
    from .protocol.keys import public_key
    from .protocol.payto import parse_payto
    from .protocol.things import normalise_origin

    origins = sorted({normalise_origin(s) for s in sites}, key=lambda o: o.encode())
    payto = list(dict.fromkeys(parse_payto(p) for p in paytos))
    previous = None
    if previous_key_file is not None:
        try:
            previous = nacl.signing.SigningKey(bytes.fromhex(previous_key_file.read().strip()))
        except ValueError:
            _fail("the previous key file must hold a 32-byte seed in hex")
    with _open(home) as w:
        label = (name or w.config.name or "").strip() or w.did[-12:]
        body = m.KeyDocument(label, tuple(origins), tuple(payto), _now(),
                             public_key(previous) if previous else None)
        doc = m.sign(body, w.key, previous_key=previous)
        w.import_object(doc.raw, _now())
    text = sitekeys.render(doc)
    if out is not None:
        clikit.write_atomic(out, text.encode())
    elif not as_json:
        click.echo(text, nl=False)
    where = ", ".join(f"{o}{sitekeys.WELL_KNOWN_PATH}" for o in origins)
    click.echo(f"Publish {'the file ' + out if out else 'this JSON'} at {where} "
               f"(Content-Type: application/json). Then anyone can check it with:\n"
               f"  rill creator verify {origins[0]}", err=True)
    if as_json:
        _emit_json({"creator": doc.signer_did, "origins": origins, "payto": payto,
                    "document": doc.id_hex, "file": out,
                    "json": text if out is None else None})


@creator.command("verify")
@click.argument("target", metavar="URL_OR_ORIGIN")
@click.option("--allow-http", is_flag=True,
              help="Accept plain HTTP for a non-loopback host (not recommended).")
@home_option
@json_option
def creator_verify(target: str, allow_http: bool, home: str | None, as_json: bool) -> None:
    """Fetch a site's /.well-known/rill.json and check it speaks for that site."""
    from .node.sites import fetch_blocking, origin_of_input
    from .protocol.errors import LocalError
    from .wallet.home import Home

    try:
        origin = origin_of_input(target)
    except LocalError as exc:
        raise click.BadParameter(str(exc), param_hint="URL_OR_ORIGIN") from None
    verdict = fetch_blocking(origin, allow_http, _now())
    path = _home_path(home)
    if Home(path).exists():  # remember the verdict: clicks on this site resolve to it
        with _open(home) as w:
            w.record_site(origin, verdict.document, verdict.reason, _now())
    if as_json:
        _emit_json(verdict.as_json())
    elif verdict.valid and verdict.document is not None:
        d = verdict.document
        click.echo(f"{origin} is {d.body.name}: {d.signer_did}")
        for p in d.body.payto:
            click.echo(f"  pays to {p}")
    else:
        click.echo(f"{origin}: NOT verified: {verdict.reason}", err=True)
    sys.exit(EXIT_OK if verdict.valid else EXIT_FAIL)


BUTTON = """<!-- Rill button for {thing} -->
<a class="rill-button" href="{href}" rel="nofollow noopener" title="Support this with Rill"
   style="display:inline-flex;align-items:center;gap:.4em;padding:.35em .8em;border-radius:1em;
          background:#0b6e6e;color:#fff;font:600 14px/1.2 system-ui,sans-serif;
          text-decoration:none">
  <span aria-hidden="true">&#x1F4A7;</span> Flattr with Rill</a>
<script>
/* optional: open the confirmation in a small window instead of leaving the page */
document.currentScript.previousElementSibling.addEventListener("click", function (e) {{
  var w = window.open(this.href, "rill", "width=520,height=640");
  if (w) {{ e.preventDefault(); }}
}});
</script>
"""


@creator.command("button")
@click.argument("url")
@click.option("--creator", "creator_id", default=None, metavar="ID",
              help="The creator (default: this home's identity).")
@click.option("--port", type=click.IntRange(1, 65535), default=4742, show_default=True,
              help="The port readers' dashboards listen on (the default for everyone).")
@home_option
@json_option
@wallet_command
def creator_button(url: str, creator_id: str | None, port: int, home: str | None,
                   as_json: bool) -> None:
    """Print an HTML button for a thing; it opens the reader's own node to confirm."""
    import html
    import urllib.parse

    from .protocol.things import check_new_thing, normalise_thing

    thing = check_new_thing(normalise_thing(_url_arg(url)))
    if creator_id is None:
        with _open(home) as w:
            creator_id = w.did
    _did_arg(creator_id)
    query = urllib.parse.urlencode({"url": thing, "creator": creator_id})
    href = f"http://127.0.0.1:{port}/flattr?{query}"
    snippet = BUTTON.format(thing=html.escape(thing), href=html.escape(href))
    if as_json:
        _emit_json({"thing": thing, "creator": creator_id, "href": href, "html": snippet})
    else:
        click.echo(snippet, nl=False)


@main.command()
@click.option("--donors", type=click.IntRange(1, 8), default=3, show_default=True)
@click.option("--creators", type=click.IntRange(1, 5), default=3, show_default=True)
@click.option("--dir", "path", type=click.Path(file_okay=False), default=None,
              help="Where the homes go (default: a temporary folder, removed at the end).")
@click.option("--keep", is_flag=True, help="Keep the temporary folder.")
@click.option("--no-wait", is_flag=True, help="Stop at once instead of keeping dashboards open.")
@json_option
def demo(donors: int, creators: int, path: str | None, keep: bool, no_wait: bool,
         as_json: bool) -> None:
    """A local network on 127.0.0.1: donors, creators with sites, a month in a minute."""
    from .node import demo as demo_mod

    def announce(result: dict[str, Any]) -> None:
        if as_json:
            _emit_json(result)
            sys.stdout.flush()

    try:
        demo_mod.run(donors, creators, path, keep, wait=not no_wait, quiet=as_json,
                     announce=announce)
    except RuntimeError as exc:
        _fail(str(exc))

if __name__ == "__main__":
    main()
