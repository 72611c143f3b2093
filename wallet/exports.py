"""CSV for accounting: RFC 4180 text that spreadsheets open safely.

Every cell is text.  A cell that a spreadsheet would read as a formula (one starting
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is prefixed with ``'``, so
a donor's or creator's name, or a payment reference, cannot run in the accountant's
spreadsheet (CSV injection).  Amounts are decimal text in major units (``1.50``), never
negative, so the guard never changes one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..protocol.currency import format_amount
from ..protocol.errors import LocalError

#: First characters that make a spreadsheet evaluate a cell.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Columns holding an amount of minor units, written as decimal text in its currency.
AMOUNT_COLUMNS = frozenset({"amount", "received", "total", "receipted"})


def safe_cell(value: Any) -> str:
    """One cell as text, guarded against formula injection."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_START):
        return "'" + text
    return text


def _amount(value: Any, currency: Any) -> Any:
    if value is None or not isinstance(currency, str):
        return value
    try:
        return format_amount(value, currency)
    except LocalError:
        return value


def to_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A header line, then one line per row (``\\r\\n`` line ends, RFC 4180 quoting)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([safe_cell(_amount(row.get(c), row.get("currency"))
                                   if c in AMOUNT_COLUMNS else row.get(c))
                         for c in columns])
    return out.getvalue()


__all__ = ["AMOUNT_COLUMNS", "FORMULA_START", "safe_cell", "to_csv"]
