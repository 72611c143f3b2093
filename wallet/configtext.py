"""Editing config.toml's text in place: ``[network] blocked`` replaced or added, every other
line kept (what `rill peers block` writes).  Pure text; :class:`rill.wallet.home.Home` checks
that the result parses to what it wanted."""

from __future__ import annotations

import re
from collections.abc import Callable


def set_blocked_text(text: str, blocked: tuple[str, ...],
                     quote: Callable[[str], str]) -> str:
    """config.toml's text with ``blocked = [...]`` of the ``[network]`` table replaced
    (or added), one peer per line; every other line kept.  The caller checks the result
    parses to what it wanted (a hand-written layout this does not follow is refused)."""
    return set_array_text(text, "network", "blocked", blocked, quote)


def set_array_text(text: str, table_name: str, key: str, values: tuple[str, ...],
                   quote: Callable[[str], str]) -> str:
    """config.toml's text with ``key = [...]`` of the ``[table_name]`` table replaced (or
    added), one string per line; every other line kept (the caller checks the result)."""
    body = "".join(f"  {quote(p)},\n" for p in values)
    line = f"{key} = [\n{body}]" if values else f"{key} = []"
    header = re.search(r"^[ \t]*\[" + re.escape(table_name) + r"\][ \t]*(#.*)?$", text, re.M)
    if header is None:
        sep = "" if not text or text.endswith("\n") else "\n"
        return f"{text}{sep}\n[{table_name}]\n{line}\n"
    start = header.end()
    nxt = re.search(r"^[ \t]*\[", text[start:], re.M)
    end = start + nxt.start() if nxt else len(text)
    table = text[start:end]
    found = re.search(r"^[ \t]*" + re.escape(key) + r"[ \t]*=[ \t]*", table, re.M)
    if found is None:  # right below the header (the header's line ends at ``start``)
        return text[:start] + "\n" + line + table + text[end:]
    value_end = _array_end(table, found.end())
    new_table = table[:found.start()] + line + table[value_end:]
    return text[:start] + new_table + text[end:]


def _array_end(text: str, i: int) -> int:
    """Index just past the TOML array starting at ``text[i]`` (strings and comments
    skipped); len(text) if it does not close (the caller's parse check refuses then)."""
    if i >= len(text) or text[i] != "[":
        eol = text.find("\n", i)
        return len(text) if eol < 0 else eol
    depth = 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            close = text.find(c, i + 1)
            while c == '"' and close > 0 and text[close - 1] == "\\":
                close = text.find(c, close + 1)
            i = len(text) if close < 0 else close + 1
            continue
        if c == "#":
            eol = text.find("\n", i)
            i = len(text) if eol < 0 else eol
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)
