"""Structured fuzzing, fast slice: validly signed objects with boundary values in every
field (tests/fuzzgen.py) through every surface that takes bytes or text from elsewhere.

Property: nothing escapes but the project's own exceptions (RillError, WalletError);
the dashboard never answers 500; `rill verify` gives every file a verdict.  The long
run is tests/test_fuzz_soak.py (`make soak`).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fuzzcrash import Crash, shrink
from fuzzgen import TYPES, Gen, Sample, World, batches, files_of, samples, seeds, world
from fuzztargets import (
    ODD_CREATORS,
    ODD_TEXTS,
    ODD_URLS,
    StubDaemon,
    cli_verify,
    dashboard,
    dashboard_queries,
    gossip,
    make_home,
    sync_client,
    sync_request,
    sync_serve,
    verify,
    wallet_import,
    wallet_views,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rill.protocol import messages as m
from rill.protocol.errors import RillError
from rill.wallet.wallet import Wallet

#: Seeds are not worth shrinking (the crash report shrinks the input itself).
FAST = settings(deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fast(n: int) -> settings:
    return settings(FAST, max_examples=n)


def fail_on(crashes: list[Crash], shrink_with: Any = None, s: Sample | None = None) -> None:
    """Raise the first crash's own exception (so hypothesis tells crashes apart), with
    a shrunk input in its notes."""
    if not crashes:
        return
    c = crashes[0]
    if s is not None and shrink_with is not None:
        small = shrink(s, lambda t: any(x.key == c.key for x in shrink_with(t)))
        if small is not s and c.exc is not None:
            c.exc.add_note(f"shrunk input: {small.describe()}")
    c.raise_it()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    w = make_home(tmp_path_factory.mktemp("fuzz") / "home", world())
    yield w
    w.close()


# -- the generator itself ---------------------------------------------------------------------


@pytest.mark.parametrize("t", TYPES)
def test_unbent_objects_are_valid_and_bent_ones_mostly_not(t: str) -> None:
    """The generator reaches past the signature: with no field bent, objects decode
    (boundary values inside the rules included); with every field bent, few do."""
    verdicts: dict[float, Counter[str]] = {}
    for p in (0.0, 1.0):
        g = Gen(random.Random(7), world(), p)
        verdicts[p] = Counter()
        for _ in range(60):
            try:
                obj = m.decode(g.obj(t).raw)
                verdicts[p]["ok"] += 1
                assert obj.type == t or (t in ("claim", "sealed-claim")
                                         and obj.type == "settlement")
            except RillError as exc:
                verdicts[p][exc.code] += 1
    # (a settlement may carry the optional `work` field, unknown to older decoders)
    assert verdicts[0.0]["ok"] >= 40, verdicts[0.0]
    assert verdicts[1.0]["ok"] <= 15, verdicts[1.0]


def test_mutated_objects_are_still_validly_signed() -> None:
    """A flipped body byte is signed again: the signature is never what rejects it."""
    g = Gen(random.Random(3), world(), 0.0)
    codes: Counter[str] = Counter()
    for _ in range(150):
        s = g.mutate(g.obj("receipt"))
        try:
            m.decode(s.raw)
            codes["ok"] += 1
        except RillError as exc:
            codes[exc.code] += 1
    assert codes["bad-signature"] == 0, codes
    assert len(codes) >= 4, codes  # many different reasons, from CBOR to schema


def test_generator_covers_the_boundaries() -> None:
    """Boundary values the brief names appear in what the generator makes."""
    g = Gen(random.Random(11), world())
    seen: set[str] = set()
    for _ in range(1500):
        s = g.obj()
        if not isinstance(s.body, dict):
            continue
        b = s.body
        seen.add(f"month={b.get('month')}")
        if s.t == "settlement" and isinstance(b.get("lines"), list):
            seen.add(f"lines={len(b['lines'])}")
        for k in ("budget", "amount", "time", "valid_from"):
            seen.add(f"int={b.get(k)}")
        if s.t == "key" and isinstance(b.get("name"), str):
            seen.add(f"name-bytes={len(b['name'].encode())}")
    for want in ("month=9999-12", "month=2000-01", "month=1999-12", "month=10000-01",
                 "month=0000-00", "lines=0", f"int={2**53 - 1}", "int=0",
                 "name-bytes=128", "name-bytes=129"):
        assert want in seen, want
    assert any(v.startswith("month=\uff12") or v.startswith("month=\u0662") for v in seen)


# -- (a) gossip --------------------------------------------------------------------------------


@fast(800)
@given(samples())
def test_gossip_check_raises_only_project_errors(s: Sample) -> None:
    fail_on(gossip(s), gossip, s)


# -- (b) verify_files and `rill verify` ------------------------------------------------------------


@fast(150)
@given(batches(), seeds(), st.sampled_from([None, 0, World.NOW, 2**53 - 1, 253402300800]))
def test_verify_files_gives_every_object_a_verdict(batch: list[Sample], seed: int,
                                                    now: int | None) -> None:
    files = files_of(random.Random(seed), batch)
    fail_on(verify(files, now, "; ".join(s.describe(150) for s in batch), batch))


def test_rill_verify_gives_every_other_file_its_verdict(tmp_path: Path) -> None:
    """A directory of fuzzed files, one of which is a valid settlement for 9999-12 (the
    month that crashed every daemon): each file still gets its own verdict."""
    g = Gen(random.Random(5), world())
    batch = [s for _ in range(4) for s in g.batch()][:30]
    files = files_of(random.Random(5), batch)
    poison = Gen(random.Random(5), world(), 0.0).bundle(month="9999-12", claims=0,
                                                         max_lines=2, work=False).settlement
    assert m.decode(poison.raw).body.month == "9999-12"  # validly signed, valid object
    files.insert(len(files) // 2, ("poison-9999-12.bin", poison.raw))
    fail_on(cli_verify(tmp_path, files, World.NOW, "fuzzed batch with a 9999-12 settlement"))


# -- (c) the wallet ----------------------------------------------------------------------------


@fast(150)
@given(batches())
def test_wallet_import_raises_only_project_errors(home: Wallet, batch: list[Sample]) -> None:
    fail_on(wallet_import(home, batch))
    fail_on(wallet_views(home))


# -- (d) sync ------------------------------------------------------------------------------------


@fast(300)
@given(seeds())
def test_sync_server_answers_fuzzed_requests(home: Wallet, seed: int) -> None:
    rnd = random.Random(seed)
    w = world()
    subjects = [w.home_pub] + [bytes(k.verify_key) for k in [*w.donors, *w.creators[:4]]]
    raw, what = sync_request(rnd, subjects)
    fail_on(sync_serve(StubDaemon(home, World.NOW), raw, what))


@fast(100)
@given(st.lists(samples(), max_size=3), st.sampled_from([0, 1, 2**63, 2**64 - 1, -1, "x"]),
       st.sampled_from([0, 1, 2, -1]), st.sampled_from([0, World.NOW, 2**53 - 1]))
def test_sync_client_checks_fuzzed_responses(objs: list[Sample], nxt: Any, more: Any,
                                             now: int) -> None:
    fail_on(sync_client(objs, nxt, more, now))


# -- (e) the dashboard ---------------------------------------------------------------------------


@fast(25)
@given(seeds())
def test_dashboard_never_answers_500(home: Wallet, seed: int) -> None:
    rnd = random.Random(seed)
    months = [*World.RECENT, Gen(rnd, world()).obj("receipt").body.get("month")]
    fail_on(dashboard(StubDaemon(home, World.NOW), dashboard_queries(rnd, months)))


def test_dashboard_odd_query_values_never_answer_500(home: Wallet) -> None:
    """Every odd month, URL and creator once (the seeded test above samples them)."""
    import urllib.parse

    q = urllib.parse.quote
    paths = [f"/?month={q(t, errors='surrogatepass')}" for t in ODD_TEXTS
             if t not in ("9999-12",)]  # 9999-12: its own test below
    paths += [f"/claims?month={q(t, errors='surrogatepass')}" for t in ODD_TEXTS]
    paths += [f"/flattr?url={q(u, errors='surrogatepass')}&creator={q(c)}"
              for u in ODD_URLS for c in ODD_CREATORS[:3]]
    paths += [f"/flattr?url=https%3A%2F%2Fa.example%2F&creator={q(c)}" for c in ODD_CREATORS]
    fail_on(dashboard(StubDaemon(home, World.NOW), paths))


# -- the crashes the fuzz found, pinned with their smallest input ----------------------------


def _poison(t: str) -> Sample:
    """A validly signed object of type ``t`` for month 9999-12 (nothing else bent)."""
    g = Gen(random.Random(1), world(), 0.0)
    b = g.bundle(month="9999-12", claims=1, max_lines=1, work=False)
    while not b.claims:
        b = g.bundle(month="9999-12", claims=1, max_lines=1, work=False)
    if t == "receipt":
        return g.receipt(b.claims[0])
    return {"settlement": b.settlement, "claim": b.claims[0], "sealed-claim": b.sealed[0]}[t]


@pytest.mark.parametrize("t", ["settlement", "claim", "sealed-claim", "receipt"])
def test_month_9999_12_is_refused_not_a_crash_in_gossip(t: str) -> None:
    s = _poison(t)
    assert m.decode(s.raw).body.month == "9999-12"
    fail_on(gossip(s))


def test_month_9999_12_is_refused_not_a_crash_in_verify_and_the_wallet(home: Wallet) -> None:
    s = _poison("settlement")
    fail_on(verify([("s.bin", s.raw)], World.NOW, s.describe()))
    fail_on(wallet_import(home, [s]))


def test_dashboard_month_9999_12_is_not_a_500(home: Wallet) -> None:
    fail_on(dashboard(StubDaemon(home, World.NOW), ["/?month=9999-12"]))


@pytest.mark.parametrize("zero", [0xFF10, 0x0660, 0x06F0, 0x0966, 0x1D7CE])
def test_a_month_with_non_ascii_digits_is_refused(zero: int) -> None:
    """SPEC §5: a month is ASCII digits only (bad-month); `\\d` and int() take others."""
    g = Gen(random.Random(2), world(), 0.0)
    s = g.bundle(claims=0, max_lines=1, work=False).settlement
    assert isinstance(s.body, dict)
    year = "".join(chr(zero + int(d)) for d in "2026")
    bent = replace(s, body={**s.body, "month": year + "-09"})
    with pytest.raises(RillError) as info:
        m.decode(bent.raw)
    assert info.value.code == "bad-month"


@pytest.mark.parametrize("ch", ["\x85", "\x9b", "\u2028", "\u2029", "\u202a", "\u202e",
                                "\u2066", "\u2069"])
@pytest.mark.parametrize("t", ["key", "receipt"])
def test_texts_with_c1_or_bidi_controls_are_refused(t: str, ch: str) -> None:
    """DESIGN issue 10 B: a label or reference holds no C1 control, line/paragraph
    separator, bidi embedding, override or isolate (the fuzz's texts carry them all)."""
    g = Gen(random.Random(4), world(), 0.0)
    s = g.obj(t)
    assert isinstance(s.body, dict)
    name = "name" if t == "key" else "reference"
    bent = replace(s, body={**s.body, name: "a" + ch + "b"})
    m.decode(replace(s, body={**s.body, name: "ab"}).raw)  # the same object without it
    with pytest.raises(RillError) as info:
        m.decode(bent.raw)
    assert info.value.code == "schema"
