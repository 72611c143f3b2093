"""The ``rill`` command line: parse, call, print.  Every command has ``--json``.

The conventions every command follows (tables, ISO 8601 times, short IDs and names,
``--json`` errors, global options, exit codes) live in :mod:`rill.clikit`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from . import __version__, clikit
from .clikit import EXIT_FAIL, EXIT_OK, TIME, home_option, iso, json_option

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
                for problem in v.problems[1:]:  # a statement's other failing rows
                    click.echo(f"    {problem}")
            elif v.key is not None:
                k = v.key
                click.echo(f"    {k['name']} ({v.signer}), valid from {iso(k['valid_from'])}")
                for o in k["origins"]:
                    click.echo(f"    lists the site {o} (not fetched: `rill creator verify "
                               f"{o}` checks that it serves this document)")
                for p in k["payto"]:
                    click.echo(f"    pays to {p}")
            elif v.link is not None:
                d = v.link
                to = f", addressed to {d['to']}" if d["to"] else ""
                click.echo(f"    {d['pseudonym']} is the {d['month']} pseudonym of "
                           f"{d['identity']} (signed by both keys{to})")
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


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _creator_label(did: str, name: str | None) -> str:
    """``Name (z6Mkh5…a1b2)`` (a table cell shows a full did:key the same way), or the did."""
    return f"{name} ({clikit.short_key(did)})" if name else did


def _notify_daemon(home: str | None) -> None:
    """Best effort: a running daemon publishes what the CLI just signed right away."""
    import contextlib
    from pathlib import Path

    from .node import control

    # no daemon running: it publishes at its next start
    with contextlib.suppress(ConnectionError, OSError, ValueError):
        control.call(Path(_home_path(home)) / control.SOCKET_NAME, "publish-new", timeout=5)


def _url_arg(text: str) -> str:
    """Bare host names typed by people get https:// (example.org/x is not a URI scheme)."""
    head = text.strip().split("/", 1)[0]
    if "://" not in text and ":" not in head.split(".", 1)[0] and "." in head:
        return "https://" + text.strip()
    return text


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
    _notify_daemon(home)  # a running node's events (rill events, [hooks]) see them now
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


# the other commands register themselves on `main` when imported (cli_network adds
# `peers add` to cli_node's `peers` group)
from . import (  # noqa: E402, F401
    cli_anon,
    cli_catalogue,
    cli_creator,
    cli_events,
    cli_money,
    cli_network,
    cli_node,
    cli_statements,
)

if __name__ == "__main__":
    main()
