"""Money goes to the right person, and settling is never a surprise.

A thing on an origin with a verified key document belongs to that document's key
(SPEC §6.2 step 5): `rill click/subscribe --creator` naming another key is refused with the
verified creator's name, the button's confirmation page refuses it too, and settlement pays
the verified key even when the log names another.  `rill settle` checks the month's sites
itself (real HTTP servers on 127.0.0.1, tests/sitesrv.py), shows what is paid and left out
and why, and asks; `--yes`, `--dry-run`, `--json`; `rill status` shows the same left-out list.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest
import trio
from fuzztargets import StubDaemon
from helpers import signing_key
from sitesrv import WELL_KNOWN, Site

from rill.clikit import short_key
from rill.node.dashboard import CSRF_COOKIE, Dashboard
from rill.node.settling import preview_settle
from rill.protocol import keys, sitekeys
from rill.protocol import messages as m
from rill.protocol.months import month_end, month_start
from rill.wallet.wallet import Refused, Wallet

RILL = str(Path(sys.executable).parent / "rill")
OCT = month_start("2026-10")
AFTER = month_end("2026-10") + 3600
IBAN = "payto://iban/DE75512108001245126199"
ALICE, BOB, CAROL = (signing_key("attrib alice"), signing_key("attrib bob"),
                     signing_key("attrib carol"))
BOOK = "urn:isbn:0451450523"


def did(key: nacl.signing.SigningKey) -> str:
    return keys.did_from_key(keys.public_key(key))


def doc(key: nacl.signing.SigningKey, origin: str, name: str) -> m.Signed[m.KeyDocument]:
    return m.sign(m.KeyDocument(name, (origin,), (IBAN,), OCT, None), key)


def run(home: Path, *args: str, now: int = OCT + 3600, code: int | None = 0,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RILL_HOME": str(home), "RILL_NOW": str(now), "COLUMNS": "400"}
    proc = subprocess.run([RILL, *args], capture_output=True, text=True, env=env, timeout=60,
                          input=stdin if stdin is not None else "")
    if code is not None:
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc


def js(home: Path, *args: str, now: int = OCT + 3600) -> Any:
    return json.loads(run(home, *args, "--json", now=now).stdout)


@pytest.fixture
def alice_site() -> Iterator[Site]:
    """Alice's site, serving her key document (name "Alice's blog")."""
    with Site() as s:
        s.document(sitekeys.render(doc(ALICE, s.origin, "Alice's blog")))
        yield s


@pytest.fixture
def gone_site() -> Iterator[Site]:
    """A site with no key document (404)."""
    with Site() as s:
        yield s


@pytest.fixture
def donor(tmp_path: Path) -> Path:
    home = tmp_path / "donor"
    js(home, "init", "--name", "Dora")
    js(home, "budget", "set", "10.00", "EUR", now=OCT + 60)
    return home


# -- refusing a foreign creator ------------------------------------------------------------------


def test_click_and_subscribe_refuse_a_foreign_creator_for_a_verified_site(
        donor: Path, alice_site: Site, gone_site: Site) -> None:
    page = alice_site.origin + "/posts/rivers"
    js(donor, "creator", "verify", alice_site.origin)
    for args in (["click", page], ["subscribe", page, "--months", "2"]):
        proc = run(donor, *args, "--creator", did(BOB), code=1)
        assert "Alice's blog" in proc.stderr and did(ALICE) in proc.stderr, proc.stderr
        assert alice_site.origin in proc.stderr and did(BOB) in proc.stderr
        assert proc.stdout == ""
    assert js(donor, "check")["entries"] == 1  # only the budget: nothing was recorded
    assert js(donor, "subscriptions") == []

    # the verified key itself, or no --creator at all, is fine
    r = js(donor, "click", page, "--creator", did(ALICE))
    assert r["new"] and r["verified"] and r["verified_creator"] == did(ALICE)
    out = run(donor, "click", alice_site.origin + "/other").stdout
    assert "Alice's blog" in out and "verified" in out
    # an unverified site: recorded as given, shown unverified (settlement decides later)
    out = run(donor, "click", gone_site.origin + "/x", "--creator", did(BOB)).stdout
    assert "Flattred" in out and "unverified" in out and did(BOB) in out
    st = js(donor, "status")
    assert {r["thing"]: r["creator"] for r in st["things"]} == {
        page: did(ALICE), alice_site.origin + "/other": did(ALICE),
        gone_site.origin + "/x": did(BOB)}
    assert {r["thing"]: r["verified"] for r in st["things"]} == {
        page: True, alice_site.origin + "/other": True, gone_site.origin + "/x": False}
    assert f"{short_key(did(BOB))} (unverified)" in run(donor, "status").stdout


def test_wallet_refusal_has_a_code_and_names_the_creator(tmp_path: Path) -> None:
    origin = "http://127.0.0.1:4001"
    w = Wallet.create(tmp_path / "w", "w", b"\x05" * 32)
    try:
        w.record_site(origin, doc(ALICE, origin, "Alice's blog"), None, OCT + 10)
        with pytest.raises(Refused) as exc:
            w.click(origin + "/a", OCT + 20, creator=keys.public_key(BOB))
        assert exc.value.code == "creator-mismatch"
        assert "Alice's blog" in str(exc.value) and did(ALICE) in str(exc.value)
        with pytest.raises(Refused) as exc:
            w.subscribe(origin + "/feed", OCT + 20, creator=keys.public_key(BOB))
        assert exc.value.code == "creator-mismatch"
        a = w.attribution(origin + "/a", keys.public_key(BOB))
        assert (a["verified"], a["creator"], a["name"], a["matches"]) == (
            True, did(ALICE), "Alice's blog", False)
        assert w.attribution(origin + "/a", keys.public_key(ALICE))["matches"] is True
        assert w.attribution("https://elsewhere.example/", keys.public_key(BOB))[
            "matches"] is None
    finally:
        w.close()


# -- settlement pays the verified key -------------------------------------------------------------


def test_settlement_pays_the_verified_key_even_when_the_log_names_another(
        donor: Path, alice_site: Site) -> None:
    page = alice_site.origin + "/posts/rivers"
    # the site was not checked yet: the click is recorded with the button's creator
    js(donor, "click", page, "--creator", did(BOB))
    js(donor, "click", BOOK, "--creator", did(CAROL))
    assert alice_site.requests == []
    dry = js(donor, "settle", "--month", "2026-10", "--dry-run", now=AFTER)
    assert dry["checked"] == [{"origin": alice_site.origin, "valid": True,
                               "creator": did(ALICE), "name": "Alice's blog", "reason": None}]
    rows = {r["thing"]: r for r in dry["paid"]}
    assert (rows[page]["creator"], rows[page]["name"], rows[page]["verified"],
            rows[page]["overridden"]) == (did(ALICE), "Alice's blog", True, did(BOB))
    assert (rows[BOOK]["creator"], rows[BOOK]["verified"]) == (did(CAROL), False)
    assert dry["settled"] is None and js(donor, "claims") == []  # a dry run signs nothing

    s = js(donor, "settle", "--month", "2026-10", "--yes", now=AFTER)
    assert s["new"] and s["left_out"] == []
    assert sorted((c["creator"], c["amount"]) for c in s["claims"]) == sorted(
        [(did(ALICE), 500), (did(CAROL), 500)])
    assert did(BOB) not in json.dumps(s)
    # a settled month shows its stored settlement (no question asked, nothing re-signed)
    again = js(donor, "settle", "--month", "2026-10", now=AFTER + 60)
    assert (again["settlement"], again["new"]) == (s["settlement"], False)


def test_import_keeps_a_foreign_creator_and_settlement_overrides_it(tmp_path: Path) -> None:
    origin = "http://127.0.0.1:4002"
    w = Wallet.create(tmp_path / "w", "w", b"\x06" * 32)
    try:
        w.set_budget(1000, "EUR", OCT + 10)
        w.click(origin + "/a", OCT + 20, creator=keys.public_key(BOB))  # before verification
        assert w.attribution_conflicts() == []
        w.record_site(origin, doc(ALICE, origin, "Alice"), None, OCT + 30)
        assert w.attribution_conflicts() == [{
            "thing": origin + "/a", "origin": origin, "named": did(BOB),
            "creator": did(ALICE), "name": "Alice"}]
        res, _ = w.settle("2026-10", AFTER)
        assert [ln.creator for ln in res.settlement.body.lines] == [keys.public_key(ALICE)]
    finally:
        w.close()


# -- the preview, the question, --yes, --dry-run, --json -------------------------------------------


async def test_preview_checks_a_served_site_then_counts_its_things(
        tmp_path: Path, alice_site: Site, gone_site: Site) -> None:
    w = Wallet.create(tmp_path / "w", "w", b"\x07" * 32)
    try:
        w.set_budget(900, "EUR", OCT + 10)
        w.click(alice_site.origin + "/a", OCT + 20)
        w.click(alice_site.origin + "/b", OCT + 21)
        w.click(gone_site.origin + "/c", OCT + 22)
        w.click(BOOK, OCT + 23)
        before = w.settle_preview("2026-10", AFTER)
        assert before["paid"] == [] and {r["code"] for r in before["left_out"]} == {
            "site-not-checked", "no-site"}
        seen: list[tuple[int, int, str]] = []
        with trio.fail_after(20):
            p = await preview_settle(w, "2026-10", AFTER,
                                     progress=lambda d, t, c: seen.append((d, t, c["origin"])))
        assert [(d, t) for d, t, _ in seen] == [(1, 2), (2, 2)]
        assert sorted(o for _, _, o in seen) == sorted([alice_site.origin, gone_site.origin])
        assert alice_site.requests == [WELL_KNOWN] and gone_site.requests == [WELL_KNOWN]
        assert (p["month"], p["budget"], p["currency"], p["ended"], p["settled"],
                p["problem"]) == ("2026-10", 900, "EUR", True, None, None)
        assert [(r["thing"], r["creator"], r["name"], r["share"]) for r in p["paid"]] == [
            (alice_site.origin + "/a", did(ALICE), "Alice's blog", 450),
            (alice_site.origin + "/b", did(ALICE), "Alice's blog", 450)]
        assert p["creators"] == [{"creator": did(ALICE), "name": "Alice's blog", "things": 2,
                                  "amount": 900}]
        left = {r["thing"]: r for r in p["left_out"]}
        assert left[gone_site.origin + "/c"]["code"] == "site-check-failed"
        assert "http-404" in left[gone_site.origin + "/c"]["reason"]
        assert left[BOOK]["code"] == "no-site"
        assert (p["counted"], p["total"]) == (2, 900)
        # the verdicts are recorded: the next preview checks nothing
        assert w.site(alice_site.origin)["creator"] == did(ALICE)  # type: ignore[index]
        with trio.fail_after(20):
            assert (await preview_settle(w, "2026-10", AFTER))["checked"] == []
        # a month not ended yet says so
        nov = w.settle_preview("2026-11", AFTER)
        assert not nov["ended"] and nov["problem"]["code"] == "not-ended"
    finally:
        w.close()


def test_settle_shows_what_is_left_out_and_asks(donor: Path, alice_site: Site,
                                                gone_site: Site) -> None:
    js(donor, "click", alice_site.origin + "/a")
    js(donor, "click", gone_site.origin + "/gone")
    js(donor, "click", BOOK)
    st = js(donor, "status")  # status checks nothing: all left out, each with why
    assert {r["thing"]: r["code"] for r in st["left_out"]} == {
        alice_site.origin + "/a": "site-not-checked",
        gone_site.origin + "/gone": "site-not-checked", BOOK: "no-site"}
    assert "Left out" in run(donor, "status").stdout

    # answering no: nothing signed
    proc = run(donor, "settle", "--month", "2026-10", now=AFTER, stdin="n\n", code=1)
    assert "Alice's blog" in proc.stdout and "10.00 EUR" in proc.stdout
    assert "Left out" in proc.stdout and "http-404" in proc.stdout
    assert BOOK in proc.stdout
    assert "cannot be undone" in proc.stderr and "not settled" in proc.stderr
    assert f"{alice_site.origin} verified" in proc.stderr  # the site checks, as they go
    assert js(donor, "claims", now=AFTER) == []
    st = js(donor, "status", "--month", "2026-10", now=AFTER)
    assert st["settled"] is None and st["counted"] == 1
    assert "http-404" in {r["thing"]: r["reason"] for r in st["left_out"]}[
        gone_site.origin + "/gone"]

    # --json without --yes never asks and never settles
    proc = run(donor, "settle", "--month", "2026-10", "--json", now=AFTER, code=1)
    err = json.loads(proc.stdout)
    assert "--yes" in err["error"] and err["code"] == "needs-yes" and proc.stderr == ""
    assert js(donor, "claims", now=AFTER) == []

    # --dry-run: the same picture, nothing signed
    proc = run(donor, "settle", "--month", "2026-10", "--dry-run", now=AFTER)
    assert "Dry run: nothing signed" in proc.stdout and "http-404" in proc.stdout
    assert js(donor, "claims", now=AFTER) == []

    # answering yes settles
    proc = run(donor, "settle", "--month", "2026-10", now=AFTER, stdin="y\n")
    assert "Settled 2026-10" in proc.stdout
    claims = js(donor, "claims", now=AFTER)
    assert [(c["creator"], c["amount"]) for c in claims] == [(did(ALICE), 1000)]
    # settled: shown as it is, no question
    proc = run(donor, "settle", "--month", "2026-10", now=AFTER + 60)
    assert "Already settled 2026-10" in proc.stdout
    dry = js(donor, "settle", "--month", "2026-10", "--dry-run", now=AFTER + 60)
    assert dry["settled"] and dry["checked"] == []
    assert {r["thing"] for r in dry["left_out"]} == {gone_site.origin + "/gone", BOOK}
    assert [(r["thing"], r["share"]) for r in dry["paid"]] == [(alice_site.origin + "/a", 1000)]


def test_settle_with_yes_and_json(donor: Path, gone_site: Site) -> None:
    js(donor, "click", gone_site.origin + "/gone")
    js(donor, "click", BOOK, "--creator", did(CAROL))
    s = js(donor, "settle", "--month", "2026-10", "--yes", now=AFTER)
    assert s["new"] and [c["creator"] for c in s["claims"]] == [did(CAROL)]
    assert [(r["thing"], r["code"]) for r in s["left_out"]] == [
        (gone_site.origin + "/gone", "site-check-failed")]
    assert s["checked"][0]["origin"] == gone_site.origin and not s["checked"][0]["valid"]
    # a month not ended is refused before any site is checked
    proc = run(donor, "settle", "--month", "2026-11", "--yes", now=AFTER, code=1)
    assert "not ended" in proc.stderr and len(gone_site.requests) == 1


# -- the button's confirmation page ---------------------------------------------------------------


def _dashboard(w: Wallet, now: int) -> tuple[Dashboard, Any]:
    stub = StubDaemon(w, now)
    dash = Dashboard(stub, 4742)  # type: ignore[arg-type]
    return dash, dash.app()


def _get(app: Any, path: str) -> httpx.Response:
    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1:4742") as client:
            return await client.get(path)

    return trio.run(main)


def _post(dash: Dashboard, app: Any, data: dict[str, str]) -> httpx.Response:
    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1:4742",
                                     cookies={CSRF_COOKIE: dash.token}) as client:
            return await client.post("/flattr", data={**data, "token": dash.token},
                                     headers={"Origin": "http://127.0.0.1:4742"})

    return trio.run(main)


def test_confirmation_page_refuses_a_foreign_creator_and_names_the_real_one(
        tmp_path: Path) -> None:
    import urllib.parse

    origin, other = "http://127.0.0.1:4003", "http://127.0.0.1:4004"
    w = Wallet.create(tmp_path / "w", "w", b"\x09" * 32)
    try:
        w.set_budget(600, "EUR", OCT + 10)
        w.record_site(origin, doc(ALICE, origin, "Alice's blog"), None, OCT + 20)
        w.record_site(other, None, "http-404: no key here", OCT + 20)
        dash, app = _dashboard(w, OCT + 3600)
        page = origin + "/posts/rivers"

        def q(url: str, creator: str) -> str:
            return "/flattr?" + urllib.parse.urlencode({"url": url, "creator": creator})

        r = _get(app, q(page, did(BOB)))
        assert r.status_code == 409
        assert "wrong creator" in r.text and "Alice&#39;s blog" in r.text
        assert did(ALICE) in r.text and did(BOB) in r.text and origin in r.text
        assert 'id="confirm"' not in r.text  # no "Yes"
        # a forged POST of the same is refused and records nothing
        r = _post(dash, app, {"url": page, "creator": did(BOB)})
        assert r.status_code == 409 and "Alice&#39;s blog" in r.text
        assert w.projection("2026-10")["things"] == []

        # the right creator: its name, marked verified, and the form
        r = _get(app, q(page, did(ALICE)))
        assert r.status_code == 200 and "Alice&#39;s blog" in r.text and "verified" in r.text
        assert 'id="confirm"' in r.text and "unverified" not in r.text
        r = _post(dash, app, {"url": page, "creator": did(ALICE)})
        assert r.status_code == 303
        assert [(t["thing"], t["creator"]) for t in w.projection("2026-10")["things"]] == [
            (page, did(ALICE))]

        # a site without a key: the button's creator is shown unverified, with why
        r = _get(app, q(other + "/x", did(BOB)))
        assert r.status_code == 200 and "unverified" in r.text and "http-404" in r.text
        assert did(BOB) in r.text and 'id="confirm"' in r.text
        # a site never checked
        r = _get(app, q("https://new.example/x", did(BOB)))
        assert "unverified" in r.text and "not been checked" in r.text
    finally:
        w.close()


def test_confirmation_page_of_a_month_already_settled_offers_nothing(tmp_path: Path) -> None:
    """A month settled early (a clock set ahead, e.g. RILL_NOW) cannot take more flattrs:
    the button's page says so (no "Yes"), and a POST is refused with an HTML page."""
    import urllib.parse

    origin = "http://127.0.0.1:4003"
    w = Wallet.create(tmp_path / "w", "w", b"\x0a" * 32)
    try:
        w.set_budget(600, "EUR", OCT + 10)
        w.record_site(origin, doc(ALICE, origin, "Alice's blog"), None, OCT + 20)
        w.click(origin + "/first", OCT + 30)
        w.settle("2026-10", month_end("2026-10") + 60)  # the clock was ahead
        dash, app = _dashboard(w, OCT + 3600)  # the real clock: still October
        url = origin + "/second"
        r = _get(app, "/flattr?" + urllib.parse.urlencode({"url": url, "creator": did(ALICE)}))
        assert r.status_code == 409 and "2026-10 is already settled" in r.text
        assert 'id="confirm"' not in r.text
        r = _post(dash, app, {"url": url, "creator": did(ALICE)})
        assert r.status_code == 409 and r.headers["content-type"].startswith("text/html")
        assert "already settled" in r.text and 'id="confirm"' not in r.text
        assert [t["thing"] for t in w.projection("2026-10")["things"]] == [origin + "/first"]
    finally:
        w.close()


def test_settle_with_a_clock_set_ahead_says_so(tmp_path: Path) -> None:
    import time

    from rill.protocol.months import month_of, next_month

    home = tmp_path / "ahead"
    month = next_month(month_of(int(time.time())))  # a month that has not really ended
    start = month_start(month)
    run(home, "init", "--name", "Tess", now=start)
    run(home, "budget", "set", "5", "EUR", now=start)
    run(home, "click", "urn:isbn:9780140449136", "--creator", did(CAROL), now=start + 60)
    proc = run(home, "settle", "--month", month, "--yes", now=month_end(month) + 60)
    assert "ahead of this machine's clock" in proc.stderr and "cannot be undone" in proc.stderr
    # on time, no note
    proc = run(home, "settle", "--month", month, "--dry-run", now=OCT + 3600)
    assert "ahead of" not in proc.stderr
