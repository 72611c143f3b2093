"""`rill events` (the node's notifications: list, mark read) and `rill hooks test`.
Registered on :data:`rill.cli.main`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from .cli import _emit_json, _fail, _now, _open, _table, main, wallet_command
from .clikit import EXIT_FAIL, EXIT_OK, home_option, json_option, short_id


@main.group(invoke_without_command=True)
@click.option("--unread", is_flag=True, help="Only the events not marked read.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="At most this many, newest first.")
@home_option
@json_option
@click.pass_context
@wallet_command
def events(ctx: click.Context, unread: bool, limit: int, home: str | None,
           as_json: bool) -> None:
    """Events the node recorded: claims to you, new supporters, receipts for your claims,
    months settled (newest first).  `rill events read` marks them read."""
    if ctx.invoked_subcommand is not None:
        return
    from .node import events as ev
    from .node.hooks import summary

    with _open(home) as w:
        rows = ev.listing(w.db, unread=unread, limit=limit)
    if as_json:
        _emit_json(rows)
        return
    _table(f"Events ({sum(not r['read'] for r in rows)} unread shown)",
           ["time (UTC)", "event", "", "what", "id"],
           [[r["time"].replace("T", " ").removesuffix("Z"), r["event"],
             "" if r["read"] else "new", summary(r)[1], short_id(r["id"])] for r in rows])


@events.command("read")
@click.argument("ids", nargs=-1, metavar="[EVENT_ID]...")
@home_option
@json_option
@wallet_command
def events_read(ids: Sequence[str], home: str | None, as_json: bool) -> None:
    """Mark events read: the ones named (8+ hex digits of their ID do), or all."""
    from .node import events as ev

    with _open(home) as w:
        try:
            n = ev.mark_read(w.db, list(ids) if ids else None)
        except ValueError as exc:
            _fail(str(exc), "bad-event-id")
        left = ev.unread_count(w.db)
    if as_json:
        _emit_json({"marked": n, "unread": left})
    else:
        click.echo(f"{n} event(s) marked read, {left} unread.")


@main.group()
def hooks() -> None:
    """Notifications configured in config.toml [hooks] (README "Notifications")."""


@hooks.command("test")
@click.argument("event", type=click.Choice(["claim", "receipt", "new_supporter",
                                            "month_settled"]))
@home_option
@json_option
@wallet_command
def hooks_test(event: str, home: str | None, as_json: bool) -> None:
    """Send a sample EVENT (marked "test": true) to its hooks now: once, no queue, no
    retry.  Exit status 1 if a hook failed or none is configured for EVENT."""
    import trio

    from .node.hookconfig import HookConfigError, parse_hooks
    from .node.hooks import send_sample

    with _open(home) as w:
        try:
            cfg = parse_hooks(w.config.raw)
        except HookConfigError as exc:
            _fail(f"config.toml: {exc}", "bad-config")
        key = w.key
    results: list[dict[str, Any]] = trio.run(send_sample, cfg, event, key, _now())
    if not results:
        _fail(f"no hook is configured for {event} (config.toml [hooks.on_{event}]) and "
              "desktop notifications are off", "no-hook")
    failed = sum(not r["ok"] for r in results)
    if as_json:
        _emit_json(results)
    else:
        for r in results:
            click.echo(f"{'ok ' if r['ok'] else 'BAD'} {r['hook']}"
                       + (f": {r['error']}" if r["error"] else ""))
    sys.exit(EXIT_FAIL if failed else EXIT_OK)
