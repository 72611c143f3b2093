"""Calendar months in UTC, as Rill uses them (``YYYY-MM``).  Pure arithmetic."""

from __future__ import annotations

import calendar
import functools
import re
import time

from .errors import LocalError, SchemaError

_MONTH_RE = re.compile(r"\A(\d{4})-(0[1-9]|1[0-2])\Z")
MIN_YEAR = 2000
MAX_YEAR = 9999


def check_month(value: object, name: str = "month") -> str:
    """Wire rule: text ``YYYY-MM`` with 2000 <= YYYY <= 9999."""
    if type(value) is not str or not _MONTH_RE.match(value):
        raise SchemaError(f"{name}: expected text 'YYYY-MM'", code="bad-month")
    if not MIN_YEAR <= int(value[:4]) <= MAX_YEAR:
        raise SchemaError(f"{name}: year out of range {MIN_YEAR}..{MAX_YEAR}", code="bad-month")
    return value


def parse_month(text: str) -> str:
    """User input ``YYYY-MM``; raise :class:`LocalError`."""
    try:
        return check_month(text.strip())
    except SchemaError:
        raise LocalError(f"bad month {text!r}: expected YYYY-MM", code="bad-month") from None


def month_start(month: str) -> int:
    """Unix time of the first second of ``month`` (UTC)."""
    y, m = int(month[:4]), int(month[5:7])
    return calendar.timegm((y, m, 1, 0, 0, 0))


def next_month(month: str) -> str:
    y, m = int(month[:4]), int(month[5:7])
    y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return f"{y:04d}-{m:02d}"


def previous_month(month: str) -> str:
    y, m = int(month[:4]), int(month[5:7])
    y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return f"{y:04d}-{m:02d}"


@functools.lru_cache(maxsize=1024)
def month_end(month: str) -> int:
    """Unix time of the first second after ``month`` (exclusive end)."""
    return month_start(next_month(month))


def month_of(unix_time: int) -> str:
    """The UTC month containing ``unix_time``."""
    tm = time.gmtime(unix_time)  # a conversion, not a clock read
    return f"{tm.tm_year:04d}-{tm.tm_mon:02d}"
