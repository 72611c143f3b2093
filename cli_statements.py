"""`rill statement`, `rill giving` and `rill creator stats`: a creator's signed monthly
statement and accounting exports, the donor's own records, a creator's statistics.
Registered on :data:`rill.cli.main` (and the ``creator`` group)."""

from __future__ import annotations

import json
from typing import Any

import click

from . import clikit
from .cli import _emit_json, _fail, _money, _month_arg, _now, _open, _table, main, wallet_command
from .cli_creator import creator
from .clikit import home_option, json_option

FORMATS = ("armour", "raw", "csv", "json")


def _previous_month() -> str:
    from .protocol.months import month_of, previous_month

    return previous_month(month_of(_now()))


def _write(out: str | None, data: bytes, what: str) -> None:
    from .wallet.errors import DiskFull

    if out is None:
        return
    try:
        clikit.write_atomic(out, data)
    except (DiskFull, OSError) as exc:
        why = str(exc) if isinstance(exc, DiskFull) else f"{out}: {exc.strerror or exc}"
        _fail(f"{what} not written: {why}", getattr(exc, "code", "os"))


def statement_document(rows: list[dict[str, Any]], statements: list[Any]) -> dict[str, Any]:
    """The JSON export of a month: its rows, totals and the signed statements' IDs."""
    totals = [t.to_map() for s in statements for t in s.body.totals]
    return {"month": statements[0].body.month if statements else None,
            "creator": statements[0].signer_did if statements else None,
            "statements": [s.id_hex for s in statements], "rows": rows, "totals": totals}


@main.command()
@click.option("--month", default=None, metavar="YYYY-MM",
              help="The month (default: the previous month).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="armour",
              show_default=True,
              help="armour/raw: the signed statement; csv/json: its rows for accounting.")
@click.option("--with-claims", is_flag=True,
              help="armour: add the claims and receipts listed, so that `rill verify FILE` "
                   "checks the statement against them (the claims name your things).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write here (default: stdout).")
@home_option
@json_option
@wallet_command
def statement(month: str | None, fmt: str, with_claims: bool, out: str | None,
              home: str | None, as_json: bool) -> None:
    """Creator: sign your income statement for a month (every claim owed to you, its
    donor, amount and state, totals per currency), or export it as CSV or JSON."""
    from .protocol.armour import armour
    from .wallet import exports
    from .wallet import statements as st

    mo = _month_arg(month) or _previous_month()
    if with_claims and fmt != "armour":
        _fail("--with-claims needs --format armour (one file holding several objects)",
              "usage")
    with _open(home) as w:
        signed = st.sign_statements(w, mo, _now())
        rows = st.statement_rows(w, mo)
        evidence = st.statement_evidence(w, mo) if with_claims else []
    if fmt == "raw":
        if len(signed) > 1:
            _fail(f"{mo} has {len(rows)} claims: its statement is in {len(signed)} parts, "
                  "and a raw file holds one object; use --format armour", "usage")
        data = signed[0].raw
    elif fmt == "armour":
        data = "\n".join(armour(o.raw, o.type) for o in (*signed, *evidence)).encode()
    elif fmt == "csv":
        data = exports.to_csv(rows, st.STATEMENT_COLUMNS).encode()
    else:
        data = (json.dumps(statement_document(rows, signed), indent=2) + "\n").encode()
    _write(out, data, f"the statement of {mo} is signed but")
    totals = [t.to_map() for s in signed for t in s.body.totals]
    if as_json:
        content = None
        if out is None:
            content = data.hex() if fmt == "raw" else data.decode()
        _emit_json({"month": mo, "statements": [s.id_hex for s in signed], "format": fmt,
                    "claims": len(rows), "totals": totals, "file": out,
                    "objects": len(signed) + len(evidence), "content": content})
    elif out is None:
        if fmt == "raw":
            click.get_binary_stream("stdout").write(data)
        else:
            click.echo(data.decode(), nl=False)
    else:
        sums = ", ".join(f"{_money(t['amount'], t['currency'])} ({t['claims']} claims)"
                         for t in totals) or "no claims"
        click.echo(f"Statement of {mo} ({sums}) written to {out} as {fmt}")


@main.command()
@click.option("--year", type=click.IntRange(2000, 9999), default=None,
              help="The year (default: this year).")
@click.option("--format", "fmt", type=click.Choice(("table", "csv", "json")),
              default="table", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write here (default: stdout).")
@home_option
@json_option
@wallet_command
def giving(year: int | None, fmt: str, out: str | None, home: str | None,
           as_json: bool) -> None:
    """Donor: your giving of a year for your records: month, creator, claim, amount,
    state, payment reference and receipt of every claim you signed."""
    from .protocol.months import month_of
    from .wallet import exports
    from .wallet import statements as st

    y = year if year is not None else int(month_of(_now())[:4])
    with _open(home) as w:
        rows = st.giving(w, y)
    if fmt == "csv":
        data = exports.to_csv(rows, st.GIVING_COLUMNS).encode()
    elif fmt == "json":
        data = (json.dumps({"year": y, "rows": rows}, indent=2) + "\n").encode()
    else:
        data = b""
    _write(out, data, "the giving records were")
    if as_json:
        _emit_json({"year": y, "rows": rows, "file": out,
                    "content": data.decode() if fmt == "csv" and out is None else None})
        return
    if fmt != "table":
        if out is None:
            click.echo(data.decode(), nl=False)
        else:
            click.echo(f"{len(rows)} claim(s) of {y} written to {out} as {fmt}")
        return
    if not rows:
        click.echo(f"No claims signed in {y}.")
        return
    _table(f"Giving {y}", ["month", "creator", "amount", "state", "reference", "receipt"],
           [[r["month"], r["creator"], _money(r["amount"], r["currency"]), r["state"],
             r["reference"] or "-", r["receipt"] or "-"] for r in rows])


@creator.command("stats")
@click.option("--month", default=None, metavar="YYYY-MM",
              help="One month (default: every month).")
@home_option
@json_option
@wallet_command
def creator_stats(month: str | None, home: str | None, as_json: bool) -> None:
    """Creator: flattrs received, donors and supporters, totals per month, top things,
    new supporters; each thing's flattrs over the months."""
    from .wallet import statements as st

    with _open(home) as w:
        stats = st.creator_stats(w, _month_arg(month))
    if as_json:
        _emit_json(stats)
        return
    if not stats["months"]:
        click.echo("No claims received" + (f" for {month}." if month else " yet."))
        return
    _table("Per month", ["month", "flattrs", "donors", "supporters (new)", "total",
                         "receipted", "top things (flattrs)"],
           [[e["month"], e["flattrs"], e["donors"],
             f"{e['supporters']} ({len(e['new_supporters'])})",
             _money(e["total"], e["currency"]), _money(e["receipted"], e["currency"]),
             "\n".join(f"{t['thing']} ({t['flattrs']})" for t in e["top_things"][:5])]
            for e in stats["months"]])
    _table("Per thing", ["thing", "flattrs", "amount", "months (flattrs)"],
           [[t["thing"], t["flattrs"], _money(t["amount"], t["currency"]),
             ", ".join(f"{c['month']}: {c['flattrs']}" for c in t["months"])]
            for t in stats["things"][:20]])
