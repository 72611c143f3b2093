"""The ``rill`` command line's conventions, shared by every command (README, "Conventions").

* Output: human text as rich tables (:func:`table`, :func:`kv_table`), JSON with ``--json``
  (:func:`emit_json`).  Times are shown as ISO 8601 in UTC (:func:`iso`), object IDs
  shortened to 16 hex digits (:func:`short_id`, accepted back as a prefix), keys as
  ``Name (z6Mkh5…a1b2)`` with the name from a verified key document (:func:`who`).
* Errors: :func:`fail` prints ``rill: error: ...`` on stderr, or with ``--json``
  ``{"error": ..., "code": ...}`` on stdout; exit status 1.  Usage errors exit 2 and are
  JSON too when ``--json`` is on the command line (:class:`RillGroup`).
* Input: every time accepts ISO 8601 (UTC without a zone) or Unix seconds
  (:func:`parse_time`, :data:`TIME`, ``RILL_NOW``); ``--home`` and ``--json`` are
  accepted before the subcommand as well as after it (:func:`home_option`,
  :func:`json_option`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

# -- JSON mode and errors -------------------------------------------------------------

#: ``--json`` seen on the command line of the running invocation (set by RillGroup.main:
#: a usage error is reported before any command's parameters exist).
_argv_json = False


def _words_before_dashdash(argv: Sequence[str]) -> list[str]:
    out = []
    for a in argv:
        if a == "--":
            break
        out.append(a)
    return out


def json_mode() -> bool:
    """True when the running command prints JSON (``--json`` anywhere before ``--``)."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("as_json"):
            return True
        ctx = ctx.parent
    return _argv_json


def emit_json(value: Any) -> None:
    """JSON on stdout; a list is written one element per line (fast and readable)."""
    if isinstance(value, list):
        encode = json.JSONEncoder(ensure_ascii=False).encode  # one encoder: 5x faster
        body = ",\n".join("  " + encode(item) for item in value)
        click.echo("[\n" + body + "\n]" if value else "[]")
    else:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def error_json(message: str, code: str) -> None:
    click.echo(json.dumps({"error": message, "code": code}, ensure_ascii=False))


def fail(message: str, code: str = "error") -> None:
    """Report a refusal and exit 1: text on stderr, or ``{"error", "code"}`` with --json."""
    if json_mode():
        error_json(message, code)
    else:
        click.echo(f"rill: error: {message}", err=True)
    sys.exit(EXIT_FAIL)


class RillGroup(click.Group):
    """The top-level group: with ``--json`` on the command line, click's own errors (usage,
    unknown option, bad parameter) are printed as ``{"error", "code": "usage"}`` on stdout,
    with the same exit status (2)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        global _argv_json
        argv = list(sys.argv[1:] if args is None else args)
        _argv_json = "--json" in _words_before_dashdash(argv)
        if not _argv_json or not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(argv, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            error_json(exc.format_message(), "usage")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            error_json(exc.format_message(), "error")
            sys.exit(exc.exit_code)
        except click.Abort:
            error_json("aborted", "aborted")
            sys.exit(EXIT_FAIL)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


# -- global options: before or after the subcommand ------------------------------------


def _inherited(ctx: click.Context, name: str) -> Any:
    parent = ctx.parent
    while parent is not None:
        value = parent.params.get(name)
        if value not in (None, False):
            return value
        parent = parent.parent
    return None


def _inherit(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Option callback: a value not given here comes from an enclosing group's option."""
    if value in (None, False):
        inherited = _inherited(ctx, param.name or "")
        if inherited is not None:
            return inherited
    return value


def json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, callback=_inherit,
                        help="Print JSON on stdout (errors too: {\"error\", \"code\"}).")(fn)


def home_option(fn: Any) -> Any:
    return click.option(
        "--home", "home", type=click.Path(file_okay=False), default=None, callback=_inherit,
        help="Home directory (default: $RILL_HOME, else the user data directory).")(fn)


def root_options(fn: Any) -> Any:
    """``--home`` and ``--json`` on the top-level group (``rill --home X init``)."""
    fn = click.option("--json", "as_json", is_flag=True,
                      help="Print JSON on stdout (as if given to the subcommand).")(fn)
    return click.option("--home", "home", type=click.Path(file_okay=False),
                        envvar="RILL_HOME", default=None, show_envvar=True,
                        help="Home directory (as if given to the subcommand).")(fn)


# -- times --------------------------------------------------------------------------------

def parse_time(text: str) -> int:
    """A time typed by a person: Unix seconds (digits) or ISO 8601 (UTC without a zone).

    Raises :class:`click.BadParameter` (a usage error) for anything else."""
    from .protocol.errors import LocalError
    from .protocol.months import parse_time as parse

    try:
        return parse(str(text))
    except LocalError as exc:
        raise click.BadParameter(str(exc)) from None


class TimeParam(click.ParamType):
    """A click parameter type for times: ISO 8601 or Unix seconds -> Unix seconds."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_time(value)
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


TIME = TimeParam()


def now() -> int:
    """The current time; ``RILL_NOW`` (ISO 8601 or Unix seconds) overrides it."""
    fake = os.environ.get("RILL_NOW")
    if fake:
        try:
            return parse_time(fake)
        except click.BadParameter:
            raise click.UsageError(f"RILL_NOW must be ISO 8601 or Unix seconds, not "
                                   f"{fake!r}") from None
    return int(time.time())


def iso(t: int | float | None) -> str:
    """A Unix time as ISO 8601 UTC (``2026-10-01T12:00:00Z``); ``-`` for None."""
    if t is None:
        return "-"
    try:
        return datetime.datetime.fromtimestamp(int(t), datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{t} (Unix seconds)"


# -- IDs, keys and names ----------------------------------------------------------------

#: Hex digits of an object ID shown in tables (a unique prefix: accepted back).
SHORT_ID = 16


def short_id(hex_id: str | bytes | None) -> str:
    if hex_id is None:
        return "-"
    h = hex_id.hex() if isinstance(hex_id, bytes) else hex_id
    return h[:SHORT_ID]


def short_key(did: str) -> str:
    """``did:key:z6Mkh5...`` -> ``z6Mkh5…a1b2`` (the multibase text, cut in the middle)."""
    core = did.removeprefix("did:key:")
    return core if len(core) <= 14 else f"{core[:6]}…{core[-4:]}"


#: did -> display name, from the verified key documents of the home in use.
_names: dict[str, str] = {}
_names_loader: Callable[[], dict[str, str]] | None = None
_names_loaded = False


def set_names(names: dict[str, str]) -> None:
    global _names_loaded
    _names.clear()
    _names.update(names)
    _names_loaded = True


def set_names_loader(loader: Callable[[], dict[str, str]]) -> None:
    """How to read the names when a table shows keys and none were read yet."""
    global _names_loader, _names_loaded
    _names_loader, _names_loaded = loader, False
    _names.clear()


def _ensure_names() -> None:
    global _names_loaded
    if not _names_loaded and _names_loader is not None:
        _names_loaded = True
        # names are a courtesy: a table is printed without them if the home is unreadable
        with contextlib.suppress(Exception):
            _names.update(_names_loader())


def who(key: str | bytes | None) -> str:
    """``Alice (z6Mkh5…a1b2)``, or the short key alone when no name is known."""
    if key is None:
        return "-"
    if isinstance(key, bytes):
        from .protocol.keys import did_from_key

        key = did_from_key(key)
    _ensure_names()
    name = _names.get(key)
    short = short_key(key)
    return f"{name} ({short})" if name else short


_DID_RE = re.compile(r"did:key:z[1-9A-HJ-NP-Za-km-z]{20,}")


def _cell(value: Any) -> str:
    """A table cell: full did:key identifiers become ``Name (short key)``."""
    if value is None:
        return ""
    text = str(value)
    if "did:key:" in text:
        text = _DID_RE.sub(lambda m: who(m.group()), text)
    return text


# -- tables ---------------------------------------------------------------------------------


def _console() -> Any:
    """A console on stdout: as wide as the terminal, or unbounded when piped (a table in a
    file or a pipe is never folded, so every cell can be read back whole)."""
    from rich.console import Console

    width = None if sys.stdout.isatty() else 10_000
    return Console(emoji=False, highlight=False, width=width)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on stdout; keys in cells are shown with their names."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(_cell(title)), title_justify="left")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:  # plain Text: no markup, no :emoji: codes (did:key: would become one)
        t.add_row(*(Text(_cell(v)) for v in row))
    _console().print(t)


def kv_table(title: str, pairs: Sequence[tuple[str, Any]]) -> None:
    """Key/value rows (``node status``): one per line, values may span lines."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(_cell(title)), title_justify="left", show_header=False)
    t.add_column("", style="bold", no_wrap=True)
    t.add_column("", overflow="fold")
    for k, v in pairs:
        t.add_row(Text(k), Text(_cell(v)))
    _console().print(t)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# -- files written ----------------------------------------------------------------------


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, flushed to disk,
    then renamed over it.  On any failure the temporary file is removed and ``path`` is
    left as it was; a full disk raises :class:`rill.wallet.errors.DiskFull`."""
    import tempfile

    from .wallet import store
    from .wallet.home import fsync_dir

    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.",
                                   suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
        fsync_dir(folder)  # the new name survives a power cut
    except OSError as exc:
        if store.is_disk_full(exc):
            raise store.disk_full(folder, f"{path} was not written") from None
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# -- files of objects ---------------------------------------------------------------------


def read_files(files: Sequence[str]) -> list[tuple[str, bytes]]:
    """(name, bytes) of each file; an unreadable one is a usage error (exit 2), found
    before anything is done."""
    out = []
    for name in files:
        try:
            with open(name, "rb") as fh:
                out.append((name, fh.read()))
        except OSError as exc:
            raise click.UsageError(f"cannot read {name}: {exc.strerror}") from None
    return out


def objects_in(files: Sequence[str]) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
    """Every object in the files (binary, armoured, or a creator's ``rill.json``):
    ((file, object bytes) pairs, (file, reason) of each file that could not be read as
    objects).  A bad file does not stop the others."""
    from .protocol.errors import RemoteError
    from .protocol.verify import split_objects

    good: list[tuple[str, bytes]] = []
    bad: list[tuple[str, str]] = []
    for name, data in read_files(files):
        try:
            parts = split_objects(data)
        except RemoteError as exc:
            bad.append((name, exc.reason))
            continue
        except Exception as exc:  # a trust boundary: a bug on one file is that file's verdict
            bad.append((name, f"internal-error: {type(exc).__name__}: {exc}"))
            continue
        good += [(name if len(parts) == 1 else f"{name}#{i + 1}", raw)
                 for i, (_, raw) in enumerate(parts)]
    return good, bad
