"""The equal-share rule and the public checks of a settlement (SPEC.md §6, §7).

Budget ``B`` over ``n`` things: every thing gets ``B // n``; the ``B % n``
leftover units go one each to the first things in *split order*: lines
sorted by creator key bytes, and within a line its things sorted by UTF-8
bytes.  A line's amount is therefore a function of ``B``, ``n``, the number
of things before it and its own number of things -- anyone can recompute it
from the settlement alone.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from . import cbor
from .errors import LocalError, RuleError

if TYPE_CHECKING:
    from .messages import Settlement

COMMIT_DOMAIN = b"rill/1/things\n"
SALT_DOMAIN = b"rill/1/salt\n"


def line_amounts(budget: int, counts: Sequence[int]) -> list[int]:
    """Amounts of consecutive lines holding ``counts`` things each, in split order."""
    n = sum(counts)
    if n == 0:
        return [0] * len(counts)
    q, r = divmod(budget, n)
    out = []
    before = 0
    for k in counts:
        out.append(k * q + min(k, max(0, r - before)))
        before += k
    return out


def thing_shares(budget: int, n: int, before: int, count: int) -> list[int]:
    """Shares of the ``count`` things at split positions ``before .. before+count-1``."""
    if n == 0:
        return [0] * count
    q, r = divmod(budget, n)
    return [q + (1 if before + i < r else 0) for i in range(count)]


def commit_things(salt: bytes, things: Sequence[str]) -> bytes:
    """Commitment to one creator's things: SHA-256(domain || salt || cbor(things))."""
    return hashlib.sha256(COMMIT_DOMAIN + salt + cbor.encode(list(things))).digest()


def derive_salt(secret: bytes, month: str, creator: bytes) -> bytes:
    """RECOMMENDED salt: HMAC-SHA256(secret, domain || month || creator).

    Deterministic, so settling a month twice gives identical bytes, and
    unpredictable to anyone without the donor's secret.
    """
    return hmac.new(secret, SALT_DOMAIN + month.encode("ascii") + creator,
                    hashlib.sha256).digest()


def check_split(settlement: Settlement) -> None:
    """Everything anyone can check from a settlement alone; raise :class:`RuleError`."""
    s = settlement
    counted = sum(line.things for line in s.lines)
    if counted != s.things:
        raise RuleError(f"settlement: lines hold {counted} things, header says {s.things}",
                        code="bad-split")
    if s.things == 0:
        return  # nothing owed; lines is then empty too (every line has >= 1 thing)
    expected = line_amounts(s.budget, [line.things for line in s.lines])
    for i, (line, want) in enumerate(zip(s.lines, expected, strict=True)):
        if line.amount != want:
            raise RuleError(
                f"settlement.lines[{i}]: amount {line.amount} is not the equal share {want} "
                f"({line.things} of {s.things} things of {s.budget})",
                code="bad-split",
            )
    # Implied by the above, stated for the reader: the amounts sum to the budget.
    total = sum(line.amount for line in s.lines)
    if total != s.budget:  # pragma: no cover - impossible if every line matched
        raise RuleError(f"settlement: amounts sum to {total}, budget is {s.budget}",
                        code="bad-split")


def group_things(things: Mapping[str, bytes]) -> list[tuple[bytes, list[str]]]:
    """Group ``thing -> creator`` into split order: [(creator, sorted things)]."""
    by_creator: dict[bytes, list[str]] = {}
    for thing, creator in things.items():
        by_creator.setdefault(creator, []).append(thing)
    if not all(isinstance(c, bytes) and len(c) == 32 for c in by_creator):
        raise LocalError("every creator must be a 32-byte key")
    return [(c, sorted(ts, key=lambda t: t.encode("utf-8"))) for c, ts in
            sorted(by_creator.items())]
