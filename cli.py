"""The ``rill`` command line: parse, call, print.  Every command has ``--json``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from . import __version__

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rill")
def main() -> None:
    """Rill: peer-to-peer, zero-fee, provable micro-donations."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--at", "at", type=int, default=None, metavar="UNIX_TIME",
              help="Check time rules as of this time instead of now.")
@json_option
def verify(files: Sequence[str], at: int | None, as_json: bool) -> None:
    """Verify signed Rill objects (binary CBOR or armoured text).

    Objects given together are also checked against each other: claims against
    their settlement, receipts against their claim and the creator's key document.
    Exit status: 0 all valid, 1 any invalid, 2 usage error.
    """
    from .protocol.verify import verify_files

    inputs = []
    for name in files:
        try:
            with open(name, "rb") as fh:
                inputs.append((name, fh.read()))
        except OSError as exc:
            raise click.UsageError(f"cannot read {name}: {exc.strerror}") from None
    verdicts = verify_files(inputs, int(time.time()) if at is None else at)
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
