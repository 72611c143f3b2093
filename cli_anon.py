"""`rill anonymous` and `rill disclose`: giving a month under a pseudonym, and proving
the link to someone of the donor's choosing.  Registered on :data:`rill.cli.main`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from . import clikit
from .cli import (
    _current_month,
    _did_arg,
    _emit_json,
    _fail,
    _month_arg,
    _now,
    _open,
    _table,
    main,
    wallet_command,
)
from .clikit import home_option, json_option


def _rows(w: Any) -> list[dict[str, Any]]:
    settled = set(w.settled_months())
    return [dict(a.to_json(), settled=a.month in settled)
            for a in w.anonymous_months().values()]


def _show(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("Every month is given under your own identity (`rill anonymous on "
                   "--month YYYY-MM` gives one anonymously).")
        return
    _table("Months given anonymously", ["month", "pseudonym", "anonymous towards", "settled"],
           [[r["month"], r["pseudonym"],
             "every creator" if r["towards"] == "all" else ", ".join(
                 clikit.short_key(d) for d in r["towards"]),
             "yes" if r["settled"] else "no"] for r in rows])


@main.group(invoke_without_command=True)
@home_option
@json_option
@click.pass_context
@wallet_command
def anonymous(ctx: click.Context, home: str | None, as_json: bool) -> None:
    """Months given anonymously (under a pseudonym of the month); `on`/`off` choose."""
    if ctx.invoked_subcommand is not None:
        return
    with _open(home) as w:
        rows = _rows(w)
    _show(rows, as_json)


@anonymous.command("on")
@click.option("--month", default=None, metavar="YYYY-MM",
              help="The month to give anonymously (default: this month).")
@click.option("--from", "hide_from", multiple=True, metavar="DID",
              help="Anonymous towards this creator only (repeatable); every other creator "
                   "of the month is told who you are, privately, in its claim.")
@home_option
@json_option
@wallet_command
def anonymous_on(month: str | None, hide_from: Sequence[str], home: str | None,
                 as_json: bool) -> None:
    """Settle MONTH under its pseudonym: neither the public nor the creators can link it to
    you or to your other months (see README, "Giving anonymously")."""
    mo = _month_arg(month) or _current_month()
    only = tuple(k for k in (_did_arg(d) for d in hide_from) if k is not None) or None
    with _open(home) as w:
        a = w.set_anonymous(mo, True, _now(), only)
        rows = [r for r in _rows(w) if r["month"] == mo]
    if as_json:
        _emit_json(rows[0])
        return
    assert a is not None
    towards = "every creator" if a.only is None else f"{len(a.only)} creator(s)"
    click.echo(f"{mo} will be settled anonymously (towards {towards}) under the pseudonym "
               f"{rows[0]['pseudonym']}.")


@anonymous.command("off")
@click.option("--month", default=None, metavar="YYYY-MM",
              help="The month to give under your identity again (default: this month).")
@home_option
@json_option
@wallet_command
def anonymous_off(month: str | None, home: str | None, as_json: bool) -> None:
    """Settle MONTH under your own identity again (only before it is settled)."""
    mo = _month_arg(month) or _current_month()
    with _open(home) as w:
        w.set_anonymous(mo, False, _now())
    if as_json:
        _emit_json({"month": mo, "anonymous": False})
        return
    click.echo(f"{mo} will be settled under your own identity.")


@main.command()
@click.option("--month", required=True, metavar="YYYY-MM")
@click.option("--to", "to", default=None, metavar="DID",
              help="The recipient the disclosure is addressed to.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the armoured disclosure here (default: stdout).")
@home_option
@json_option
@wallet_command
def disclose(month: str, to: str | None, out: str | None, home: str | None,
             as_json: bool) -> None:
    """Sign a disclosure: proof that MONTH's pseudonym is you (signed by both keys).

    Nothing is published: hand the file to whom you choose; `rill verify FILE` checks it."""
    from .protocol.armour import armour
    from .protocol.keys import did_from_key

    mo = _month_arg(month)
    assert mo is not None
    with _open(home) as w:
        d = w.disclose(mo, _did_arg(to))
        identity = w.did
    text = armour(d.raw, d.type)
    if out is not None:
        try:
            clikit.write_atomic(out, text.encode())
        except OSError as exc:
            _fail(f"{out}: {exc.strerror or exc}", "os")
    if as_json:
        _emit_json({"id": d.id_hex, "month": mo, "identity": identity,
                    "pseudonym": did_from_key(d.body.pseudonym),
                    "to": None if d.body.to is None else did_from_key(d.body.to),
                    "armour": text, "file": out})
        return
    if out is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"Wrote the disclosure {d.id_hex} to {out}", err=True)
