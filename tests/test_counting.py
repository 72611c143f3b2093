"""SPEC §6.2: which things count in a month, from the click log."""

from __future__ import annotations

from typing import Any

from helpers import signing_key
from hypothesis import given, settings
from hypothesis import strategies as st

from rill.protocol import keys
from rill.protocol import messages as m
from rill.protocol.counting import count_month, subscription_months
from rill.protocol.months import month_end, month_start

DONOR = signing_key("donor")
A, B = (keys.public_key(signing_key(n)) for n in ("alice", "bob"))
OCT = month_start("2026-10")
NOV = month_start("2026-11")


def log(*specs: tuple[int, str, dict[str, Any]]) -> list[m.Signed[m.ClickEntry]]:
    out: list[m.Signed[m.ClickEntry]] = []
    prev = m.ZERO_HASH
    for seq, (t, kind, data) in enumerate(specs):
        e = m.sign(m.ClickEntry(seq, prev, t, kind, **data), DONOR)
        out.append(e)
        prev = e.id
    return out


def test_clicks_budget_and_dedupe() -> None:
    entries = log(
        (OCT - 100, "budget", {"amount": 500, "currency": "EUR"}),
        (OCT + 10, "click", {"thing": "https://a.example/1"}),
        (OCT + 20, "click", {"thing": "https://a.example/1", "creator": A}),
        (OCT + 30, "click", {"thing": "https://a.example/1", "creator": B}),
        (OCT + 40, "click", {"thing": "https://b.example/"}),
        (NOV + 5, "click", {"thing": "https://c.example/", "creator": A}),
        (NOV + 6, "budget", {"amount": 900, "currency": "EUR"}),
    )
    v = count_month(entries, "2026-10")
    assert (v.budget, v.currency) == (500, "EUR")
    # the first click naming a creator wins; repeat clicks count once
    assert v.things == {"https://a.example/1": A, "https://b.example/": None}
    assert v.known == {"https://a.example/1": A}
    assert v.pending == ["https://b.example/"]
    assert v.head == entries[4].id
    w = count_month(entries, "2026-11")
    assert (w.budget, w.things) == (900, {"https://c.example/": A})
    assert count_month(entries, "2026-09").things == {}
    assert count_month(entries, "2026-09").budget == 500  # set late in September
    assert count_month(entries, "2026-08").budget is None


def test_resolver_fills_pending_things() -> None:
    entries = log((OCT, "click", {"thing": "https://b.example/"}),
                  (OCT, "click", {"thing": "https://a.example/", "creator": A}))
    asked: list[str] = []

    def resolve(t: str) -> bytes | None:
        asked.append(t)
        return B if t.startswith("https://b.") else None

    v = count_month(entries, "2026-10", resolve)
    assert v.known == {"https://a.example/": A, "https://b.example/": B}
    assert sorted(asked) == ["https://a.example/", "https://b.example/"]
    assert v.overridden == {}


def test_a_verified_site_wins_over_the_creator_the_log_names() -> None:
    """SPEC §6.2 step 5: the verified key of the thing's origin is its creator."""
    entries = log((OCT, "click", {"thing": "https://a.example/1", "creator": A}),
                  (OCT + 1, "subscribe", {"thing": "https://a.example/feed", "creator": A}),
                  (OCT + 2, "click", {"thing": "https://c.example/", "creator": A}))
    v = count_month(entries, "2026-10",
                    lambda t: B if t.startswith("https://a.example/") else None)
    assert v.known == {"https://a.example/1": B, "https://a.example/feed": B,
                       "https://c.example/": A}
    assert v.overridden == {"https://a.example/1": A, "https://a.example/feed": A}


def test_subscriptions() -> None:
    entries = log(
        (OCT + 1, "subscribe", {"creator": A, "months": 2}),
        (OCT + 2, "subscribe", {"thing": "https://b.example/feed", "creator": B}),
        (OCT + 3, "click", {"thing": keys.did_from_key(A), "creator": A}),  # dedupes
        (NOV + 1, "unsubscribe", {"thing": "https://b.example/feed"}),
    )
    did_a = keys.did_from_key(A)
    assert count_month(entries, "2026-10").things == {did_a: A, "https://b.example/feed": B}
    # unsubscribed during November: not active at November's end
    assert count_month(entries, "2026-11").things == {did_a: A}
    # the two months are over
    assert count_month(entries, "2026-12").things == {}
    assert subscription_months("2026-12", 3) == ["2026-12", "2027-01", "2027-02"]


def test_offline_click_recorded_later_counts_in_its_month() -> None:
    entries = log((NOV + 1, "click", {"thing": "https://late.example/", "creator": A}),
                  (OCT + 5, "click", {"thing": "https://early.example/", "creator": B}))
    v = count_month(entries, "2026-10")
    assert v.things == {"https://early.example/": B}
    assert v.head == entries[1].id


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(OCT, month_end("2026-10") - 1),
                          st.sampled_from(["https://a.example/", "https://b.example/x",
                                           "urn:isbn:0451450523"]),
                          st.sampled_from([A, B, None])), max_size=12), st.randoms())
def test_repeat_clicks_and_click_order_do_not_change_the_set(clicks: list[Any],
                                                            rnd: Any) -> None:
    ordered = log(*[(t, "click", {"thing": th, "creator": c}) for t, th, c in clicks])
    shuffled = list(clicks)
    rnd.shuffle(shuffled)
    other = log(*[(t, "click", {"thing": th, "creator": c}) for t, th, c in shuffled])
    a, b = count_month(ordered, "2026-10"), count_month(other, "2026-10")
    assert set(a.things) == set(b.things) == {th for _, th, _ in clicks}


def test_the_last_month_and_times_past_it() -> None:
    """Month arithmetic is total: 9999-12 counts like any month, and entries dated after
    the year 9999 (times go up to 2**53 - 1) neither crash nor count."""
    dec = month_start("9999-12")
    entries = log(
        (dec - 100, "budget", {"amount": 500, "currency": "EUR"}),
        (dec + 1, "subscribe", {"creator": A, "months": 1200}),
        (dec + 2, "click", {"thing": "https://b.example/", "creator": B}),
        (2**53 - 1, "subscribe", {"thing": "https://late.example/"}),
        (month_end("9999-12"), "click", {"thing": "https://c.example/", "creator": A}),
    )
    v = count_month(entries, "9999-12")
    assert v.things == {keys.did_from_key(A): A, "https://b.example/": B}
    assert v.head == entries[2].id
    assert subscription_months("9999-11", 3) == ["9999-11", "9999-12", "10000-01"]
    # an old subscription compared with a month far after it
    sub = log((OCT, "budget", {"amount": 5, "currency": "EUR"}),
              (OCT + 1, "subscribe", {"thing": "https://a.example/", "months": 1200}))
    assert count_month(sub, "9999-12").things == {}
    assert count_month(sub, "2126-09").things == {"https://a.example/": None}
    assert count_month(sub, "2126-10").things == {}
