"""`rill` commands of creators: receipts, earnings, key documents on their sites, the
button; and the demo.  Registered on :data:`rill.cli.main`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from . import clikit
from .cli import (
    _claim_arg,
    _did_arg,
    _emit_json,
    _fail,
    _home_path,
    _money,
    _month_arg,
    _notify_daemon,
    _now,
    _open,
    _table,
    _url_arg,
    main,
    wallet_command,
)
from .clikit import EXIT_FAIL, EXIT_OK, home_option, json_option


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
        now = _now()
        r = w.sign_receipt(cid, now, reference, minor)
    _notify_daemon(home)
    text = armour(r.raw, r.type)
    warning = _receipt_window_warning(r.body.month, now, out)
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
                    "armour": text if out is None else None, "warning": warning})
        return
    if warning is not None:
        click.echo(f"warning: {warning['message']}", err=True)
    if out is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"Receipt {r.id_hex} written to {out}")


def _receipt_window_warning(month: str, now: int, out: str | None) -> dict[str, str] | None:
    """A receipt for a month outside the gossip window never leaves this node (SPEC
    §11.2, §13): the creator must hand the file to the donor.  None when it travels."""
    from .protocol.network import outside_window

    oldest = outside_window(month, now)
    if oldest is None:
        return None
    where = f"the file {out}" if out is not None else "this receipt (or write it to a " \
        "file: run the same command again with --out FILE, it gives the same receipt)"
    return {"code": "outside-window",
            "message": f"the claim is for {month}, outside the gossip window (from "
                       f"{oldest}): this receipt will not travel by gossip or sync, so the "
                       f"donor's node will not learn of it. Hand {where} to the donor, who "
                       "runs `rill import-object FILE`."}


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
