"""Calendar months in UTC, as Rill uses them (``YYYY-MM``).  Pure integer arithmetic.

A *month* on the wire (SPEC §5) is text ``YYYY-MM`` of ASCII digits with
2000 <= YYYY <= 9999 and 01 <= MM <= 12.  Every function here is total on that
domain and computes with integers only (the proleptic Gregorian calendar through
days-from-civil), so no calendar or datetime range limit applies:
``month_end("9999-12") == 253402300800``.

The arithmetic also accepts the text of months outside the wire range
(``YYYY`` of four or more ASCII digits: ``"1999-12"``, ``"10000-01"``), which is
what ``previous_month("2000-01")``, ``next_month("9999-12")`` or
``month_of(t)`` for a ``t`` past the year 9999 produce.  Such text is never a
valid month: callers compare months with :func:`month_index`, never as strings,
and check wire values with :func:`check_month`.
"""

from __future__ import annotations

import functools
import re

from .errors import LocalError, SchemaError

MIN_YEAR = 2000
MAX_YEAR = 9999
#: Largest time the protocol carries (SPEC §5: time, 0 <= t <= 2**53 - 1).
MAX_TIME = 2**53 - 1
_DAY = 86400

# [0-9], not \d: \d also matches other scripts' digits ("２０２６-10").
_MONTH_RE = re.compile(r"\A(2[0-9]{3}|[3-9][0-9]{3})-(0[1-9]|1[0-2])\Z")
# Any month text the arithmetic accepts (wire months and the ones around them).
_ANY_MONTH_RE = re.compile(r"\A([0-9]{4,})-(0[1-9]|1[0-2])\Z")


def check_month(value: object, name: str = "month") -> str:
    """Wire rule: text ``YYYY-MM``, ASCII digits, 2000 <= YYYY <= 9999, 01 <= MM <= 12.

    Any other value, whatever its type, is ``bad-month``.
    """
    if type(value) is not str or _MONTH_RE.match(value) is None:
        raise SchemaError(f"{name}: expected text 'YYYY-MM' (ASCII digits, years "
                          f"{MIN_YEAR}..{MAX_YEAR})", code="bad-month")
    return value


def is_month(value: object) -> bool:
    """True when ``value`` is a valid wire month."""
    return type(value) is str and _MONTH_RE.match(value) is not None


def parse_month(text: str) -> str:
    """User input ``YYYY-MM``; raise :class:`LocalError`."""
    try:
        return check_month(text.strip())
    except SchemaError:
        raise LocalError(f"bad month {text!r}: expected YYYY-MM (years {MIN_YEAR}.."
                         f"{MAX_YEAR})", code="bad-month") from None


@functools.lru_cache(maxsize=4096)
def month_index(month: str) -> int:
    """``12 * year + (month - 1)``: months as consecutive integers (compare these, not
    the text).  Raises :class:`LocalError` for text that is not ``YYYY-MM``."""
    match = _ANY_MONTH_RE.match(month) if type(month) is str else None
    if match is None:
        raise LocalError(f"not a month: {month!r}", code="bad-month")
    return int(match[1]) * 12 + int(match[2]) - 1


def month_from_index(index: int) -> str:
    """Inverse of :func:`month_index` (for ``index >= 0``)."""
    if index < 0:
        raise LocalError(f"no month before the year 0 ({index})", code="bad-month")
    y, m = divmod(index, 12)
    return f"{y:04d}-{m + 1:02d}"


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of the proleptic Gregorian date y-m-d (any integer year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400  # [0, 399]
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1  # [0, 365]
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy  # [0, 146096]
    return era * 146097 + doe - 719468


def civil_from_days(z: int) -> tuple[int, int, int]:
    """Inverse of :func:`days_from_civil`: (year, month, day)."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097  # [0, 146096]
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365  # [0, 399]
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)  # [0, 365]
    mp = (5 * doy + 2) // 153  # [0, 11]
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def _start_of_index(index: int) -> int:
    y, m = divmod(index, 12)
    return days_from_civil(y, m + 1, 1) * _DAY


def month_start(month: str) -> int:
    """Unix time of the first second of ``month`` (UTC)."""
    return _start_of_index(month_index(month))


@functools.lru_cache(maxsize=1024)
def month_end(month: str) -> int:
    """Unix time of the first second after ``month`` (exclusive end)."""
    return _start_of_index(month_index(month) + 1)


def next_month(month: str) -> str:
    """The month after ``month`` (``"9999-12"`` gives ``"10000-01"``, not a wire month)."""
    return month_from_index(month_index(month) + 1)


def previous_month(month: str) -> str:
    """The month before ``month`` (``"2000-01"`` gives ``"1999-12"``, not a wire month)."""
    return month_from_index(month_index(month) - 1)


def months_back(month: str, n: int) -> str:
    """The month ``n`` months before ``month`` (``n`` may be 0)."""
    return month_from_index(month_index(month) - n)


def months_between(first: str, month: str) -> int:
    """Number of months from ``first`` to ``month`` (0 when equal; negative if before)."""
    return month_index(month) - month_index(first)


def month_of(unix_time: int) -> str:
    """The UTC month containing ``unix_time`` (total for 0 <= t <= 2**53 - 1).

    For a time from the year 10000 on, the text has more than four year digits and is
    not a valid wire month.
    """
    if not 0 <= unix_time <= MAX_TIME:
        raise LocalError(f"time {unix_time} outside 0..2**53-1", code="bad-time")
    y, m, _ = civil_from_days(unix_time // _DAY)
    return f"{y:04d}-{m:02d}"


_UNIX_RE = re.compile(r"\A[0-9]{1,20}\Z")


def parse_time(text: str) -> int:
    """A time typed by a person: Unix seconds (ASCII digits) or ISO 8601 (``Z`` or an offset;
    UTC when no zone is given).  Raises :class:`LocalError` (``bad-time``) otherwise.

    A conversion of text, not a clock read: the result may lie anywhere."""
    import datetime

    s = text.strip()
    if _UNIX_RE.match(s):
        return int(s)
    try:
        t = datetime.datetime.fromisoformat(s[:-1] + "+00:00" if s[-1:] in "Zz" and s else s)
    except ValueError:
        raise LocalError(f"not a time: {text!r} (give ISO 8601, e.g. 2026-10-01T12:00:00Z, "
                         "or Unix seconds)", code="bad-time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return int(t.timestamp())
