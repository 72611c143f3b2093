"""The ``rill`` command line: parse, call, print.  Every command has ``--json``."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from . import __version__

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def _emit_json(value: Any) -> None:
    """JSON on stdout; a list is written one element per line (fast and readable)."""
    if isinstance(value, list):
        body = ",\n".join("  " + json.dumps(item, ensure_ascii=False) for item in value)
        click.echo("[\n" + body + "\n]" if value else "[]")
    else:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rill")
def main() -> None:
    """Rill: peer-to-peer, zero-fee, provable micro-donations."""


#: Below this many objects, `rill verify` uses no worker threads.
PARALLEL_MIN = 1000


def _verify_parallel(items: list[Any], now: int | None, jobs: int) -> list[Any]:
    """Verify ``items`` on ``jobs`` threads, keeping their order.

    libsodium runs without the GIL (cffi releases it), so signature checks,
    the bulk of the work, proceed on every core.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .protocol.verify import verify_items

    size = max(1, -(-len(items) // (jobs * 8)))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = pool.map(verify_items, chunks, [now] * len(chunks))
        return [v for chunk in results for v in chunk]


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--at", "at", type=int, default=None, metavar="UNIX_TIME",
              help="Check time rules as of this time instead of now.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None,
              help="Worker threads for large batches (default: one per core).")
@json_option
def verify(files: Sequence[str], at: int | None, jobs: int | None, as_json: bool) -> None:
    """Verify signed Rill objects (binary CBOR or armoured text).

    Objects given together are also checked against each other: claims against
    their settlement, receipts against their claim and the creator's key document.
    Exit status: 0 all valid, 1 any invalid, 2 usage error.
    """
    from .protocol.verify import Verdict, cross_check, expand, verify_items

    inputs = []
    for name in files:
        try:
            with open(name, "rb") as fh:
                inputs.append((name, fh.read()))
        except OSError as exc:
            raise click.UsageError(f"cannot read {name}: {exc.strerror}") from None
    now = int(time.time()) if at is None else at
    expanded = expand(inputs)
    items = [x for x in expanded if not isinstance(x, Verdict)]
    jobs = jobs or os.cpu_count() or 1
    if jobs > 1 and len(items) >= PARALLEL_MIN:
        done = iter(_verify_parallel(items, now, jobs))
    else:
        done = iter(verify_items(items, now))
    verdicts = [x if isinstance(x, Verdict) else next(done) for x in expanded]
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
        bad = sum(not v.valid for v in verdicts)
        click.echo(f"{len(verdicts) - bad} valid, {bad} invalid", err=True)
    sys.exit(EXIT_OK if all(v.valid for v in verdicts) else EXIT_FAIL)

if __name__ == "__main__":
    main()
