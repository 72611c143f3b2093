"""The equal-share rule (SPEC.md §6): properties and worked examples."""

from __future__ import annotations

import pytest
from helpers import signing_key
from hypothesis import given, settings
from hypothesis import strategies as st

from rill.protocol import checks, keys
from rill.protocol.errors import LocalError
from rill.protocol.settle import settle
from rill.protocol.shares import line_amounts, thing_shares

DONOR = signing_key("donor")
CREATORS = [keys.public_key(signing_key(f"creator{i}")) for i in range(6)]


def test_worked_example() -> None:
    # 1001 units over 5 things: 200 each, the 1 leftover unit to the first thing
    assert line_amounts(1001, [2, 1, 2]) == [401, 200, 400]
    assert thing_shares(1001, 5, 0, 2) == [201, 200]
    assert thing_shares(1001, 5, 3, 2) == [200, 200]
    # 10 over 3: 3 each, leftover 1
    assert line_amounts(10, [1, 1, 1]) == [4, 3, 3]
    # fewer units than things: the first B things get 1 each
    assert line_amounts(2, [3, 2]) == [2, 0]
    assert line_amounts(0, [3]) == [0]
    assert line_amounts(500, []) == []


@given(st.integers(0, 2**53 - 1), st.lists(st.integers(1, 50), min_size=1, max_size=30))
def test_line_amounts_sum_exactly_and_are_equal_shares(budget: int, counts: list[int]) -> None:
    amounts = line_amounts(budget, counts)
    n = sum(counts)
    assert sum(amounts) == budget
    assert all(a >= 0 for a in amounts)
    per_thing = [s for i, k in enumerate(counts)
                 for s in thing_shares(budget, n, sum(counts[:i]), k)]
    assert sum(per_thing) == budget
    assert max(per_thing) - min(per_thing) <= 1
    assert per_thing == sorted(per_thing, reverse=True)  # leftover to the first things


thing_sets = st.dictionaries(
    st.from_regex(r"https://[a-z]{1,8}\.example/[a-z0-9]{0,6}", fullmatch=True),
    st.sampled_from(CREATORS), max_size=25)


@settings(max_examples=60, deadline=None)
@given(thing_sets, st.integers(0, 10**9), st.randoms())
def test_settlement_properties(things: dict[str, bytes], budget: int, rnd: object) -> None:
    res = settle(DONOR, "2026-10", budget, "EUR", bytes(32), things)
    s = res.settlement.body
    assert s.things == len(things)
    total = sum(line.amount for line in s.lines)
    assert total == (budget if things else 0)
    # independent of the order things were given in
    items = list(things.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    again = settle(DONOR, "2026-10", budget, "EUR", bytes(32), dict(items))
    assert again.settlement.raw == res.settlement.raw
    assert [c.raw for c in again.sealed] == [c.raw for c in res.sealed]
    # every claim matches its line, and the per-thing shares add up
    for c in res.claims:
        checks.check_claim(c, res.settlement)
        assert sum(checks.claim_thing_shares(c, res.settlement)) == c.body.amount
    assert sorted(t for c in res.claims for t in c.body.things) == sorted(things)


def test_repeat_things_do_not_change_the_split() -> None:
    # one flattr per thing per month: a mapping cannot hold a thing twice, and
    # normalisation makes equal URLs equal strings
    a = settle(DONOR, "2026-10", 999, "EUR", bytes(32), {"https://a.example/": CREATORS[0]})
    b = settle(DONOR, "2026-10", 999, "EUR", bytes(32),
               dict([("https://a.example/", CREATORS[0])] * 3))
    assert a.settlement.raw == b.settlement.raw


def test_no_things_means_nothing_owed() -> None:
    res = settle(DONOR, "2026-10", 500, "EUR", bytes(32), {})
    assert res.settlement.body.lines == ()
    assert res.claims == ()


def test_different_donors_get_different_salts() -> None:
    things = {"https://a.example/": CREATORS[0]}
    a = settle(DONOR, "2026-10", 100, "EUR", bytes(32), things)
    b = settle(signing_key("other"), "2026-10", 100, "EUR", bytes(32), things)
    assert a.claims[0].body.salt != b.claims[0].body.salt
    assert a.settlement.body.lines[0].commit != b.settlement.body.lines[0].commit


def test_invalid_inputs_are_local_errors() -> None:
    with pytest.raises(LocalError):
        settle(DONOR, "2026-13", 100, "EUR", bytes(32), {})
    with pytest.raises(LocalError):
        settle(DONOR, "2026-10", -1, "EUR", bytes(32), {})
    with pytest.raises(LocalError):
        settle(DONOR, "2026-10", 100, "eur", bytes(32), {})
    with pytest.raises(LocalError):
        settle(DONOR, "2026-10", 100, "EUR", bytes(32), {"HTTPS://A.example": CREATORS[0]})
    with pytest.raises(LocalError):
        settle(DONOR, "2026-10", 100, "EUR", bytes(32), {"https://a.example/": b"short"})

