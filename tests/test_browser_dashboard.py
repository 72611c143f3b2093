"""The dashboard in a real headless Chromium: every page fits a phone (no horizontal
scroll at 390 and 360 px), has no WCAG 2.1 AA violation (axe-core), and its forms
(budget, subscriptions, site checks, settling, payments, receipts) change the wallet
end to end and are refused cross-origin.  Screenshots of every page at 390x844 and
1280x800 go to tests/artifacts (and docs/screenshots with RILL_DOCS_SCREENSHOTS=1)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import signing_key
from nodes import free_port
from procnet import ProcNode
from webenv import (
    CONTRAST_JS,
    axe_violations,
    horizontal_overflow,
    screenshot,
    static_site,
)

from rill.protocol import messages as m
from rill.protocol import sitekeys
from rill.protocol.months import month_end, month_start
from rill.wallet.wallet import Wallet

OCT, NOV = month_start("2026-10"), month_start("2026-11")
#: The node's clock: December 1st, 30 s after November ended, inside its 60 s grace, so
#: November is ended but not settled by the node itself.
CLOCK = month_end("2026-11") + 30
PHONES = [(390, 844), (360, 740)]
IBAN = "payto://iban/DE75512108001245126199"




class Home:
    """A reader's home with two months of history, served by a running node."""

    def __init__(self, tmp_path: Path, site: int, dead: int, cleo: str) -> None:
        self.node = ProcNode(tmp_path, "rea", CLOCK)
        self.cleo = cleo
        self.site = f"http://127.0.0.1:{site}"
        self.dead = f"http://127.0.0.1:{dead}"
        rea = Wallet.create(self.node.home, "Rea", bytes(signing_key("rea")))
        ada, bob = signing_key("ada"), signing_key("bob")
        docs = [m.sign(m.KeyDocument("Ada Lovelace", ("https://ada.example",), (IBAN,), OCT),
                       ada),
                m.sign(m.KeyDocument("Bob", ("https://bob.example",),
                                     ("payto://iban/GB33BUKB20201555555555",), OCT), bob)]
        self.ada, self.bob = docs[0].signer_did, docs[1].signer_did
        rea.set_budget(1000, "EUR", OCT + 1)
        for d in docs:
            rea.import_object(d.raw, OCT + 2)
        rea.click("https://ada.example/rivers", OCT + 10, creator=docs[0].signer)
        rea.click("https://ada.example/" + "a-long-essay-title/" * 6, OCT + 11,
                  creator=docs[0].signer)
        rea.click("https://bob.example/x", OCT + 12, creator=docs[1].signer)
        res, _ = rea.settle("2026-10", NOV + 3600)
        bob_claim = next(c for c in res.claims if c.body.creator == docs[1].signer)
        rea.pay([bob_claim.id], "SEPA-BOB-1", NOV + 4000)
        rea.click("https://ada.example/lakes", NOV + 5000, creator=docs[0].signer)
        rea.click(self.site + "/essay", NOV + 5010)
        rea.click(self.dead + "/gone", NOV + 5020)
        # a donor who owes Rea for October: an incoming claim on the creator page
        don = Wallet.create(tmp_path / "don", "Don", bytes(signing_key("don")))
        don.set_budget(400, "EUR", OCT + 1)
        don.click("https://rea.example/post", OCT + 5, creator=rea.identity)
        dres, _ = don.settle("2026-10", NOV + 3600)
        rea.import_object(dres.settlement.raw, NOV + 3700)
        rea.import_object(dres.sealed[0].raw, NOV + 3700)
        self.incoming = dres.claims[0].id_hex
        don.close()
        rea.close()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.node.start([], dashboard_port=self.port)
        self.node.wait_started()

    def rill(self, *args: str) -> Any:
        return self.node.rill(*args, now=CLOCK)


@pytest.fixture
def home(tmp_path: Path) -> Any:
    """Cleo's site (a verified key document, found only by a check) and a dead site."""
    root = tmp_path / "cleo-site"
    (root / ".well-known").mkdir(parents=True)
    with static_site(root) as port:
        doc = m.sign(m.KeyDocument("Cleo", (f"http://127.0.0.1:{port}",), (IBAN,), OCT),
                     signing_key("cleo"))
        (root / ".well-known" / "rill.json").write_text(sitekeys.render(doc))
        h = Home(tmp_path, port, free_port(), doc.signer_did)
        try:
            yield h
        finally:
            assert h.node.stop() == 0


def submit(page: Any, selector: str) -> Any:
    """Click a submit button; the response of the page it leads to."""
    with page.expect_navigation() as nav:
        page.click(selector)
    return nav.value


def test_the_page_checks_find_what_they_look_for(browser: Any) -> None:
    """The checks below can fail: faint text, an unlabelled input, a page too wide; and
    the contrast computed where axe cannot decide."""
    page = browser.new_page(viewport={"width": 360, "height": 740})
    page.set_content("""<!doctype html><html lang="en"><head><title>t</title></head><body>
      <main><p style="color:#aaa">faint text</p><input type="text">
      <p id="dark" style="color:#595959">dark enough</p>
      <p id="big" style="color:#949494;font-size:24px">large text needs 3:1</p>
      <p style="background:#13292b"><span id="inner" style="color:#0b6e6e">dark on dark</span></p>
      <p id="grad" style="background:linear-gradient(#fff,#000)">over a gradient</p>
      <div style="width:600px">too wide</div></main></body></html>""")
    assert "scrollWidth 608 > 360" in (horizontal_overflow(page) or "")  # 8 px: body margin
    found = "\n".join(axe_violations(page))
    assert "color-contrast (serious)" in found and "label (critical)" in found
    ratio = {sel: page.evaluate(CONTRAST_JS, sel) for sel in ("#dark", "#big", "#inner",
                                                               "#grad")}
    assert ratio["#dark"] == {"ok": True, "ratio": 7.0, "need": 4.5}
    assert ratio["#big"] == {"ok": True, "ratio": 3.03, "need": 3}
    assert ratio["#inner"]["ok"] is False and ratio["#inner"]["ratio"] < 3
    assert ratio["#grad"] == {"ok": False, "why": "background image on P"}


PAGES = {
    "month": "/", "payments": "/claims", "settlements": "/settlements",
    "month-2026-11": "/?month=2026-11", "settle-preview": "/settle?month=2026-11",
    "sites": "/sites", "creator": "/creator", "events": "/events",
    "confirm": "/flattr?" + urllib.parse.urlencode(
        {"url": "https://ada.example/" + "x" * 80, "creator": ""}),
    "refused": "/settle?month=2026-13", "not-found": "/nowhere",
}


def test_every_page_fits_a_phone_and_has_no_aa_violation(home: Home, browser: Any) -> None:
    failed: list[str] = []
    for width, height in [*PHONES, (1280, 800)]:
        page = browser.new_page(viewport={"width": width, "height": height})
        bad: list[str] = []
        page.on("response", lambda r, bad=bad: bad.append(f"{r.status} {r.url}")
                if r.status >= 400 and r.request.resource_type != "document" else None)
        for name, path in PAGES.items():
            response = page.goto(home.url + path)
            assert response is not None
            expect = 400 if name == "refused" else 404 if name == "not-found" else 200
            assert response.status == expect, (name, response.status, page.inner_text("main"))
            overflow = horizontal_overflow(page)
            if overflow:
                failed.append(f"{name} at {width}px: {overflow}")
            if width in (390, 1280):  # colours and names do not change with the width
                for v in axe_violations(page):
                    failed.append(f"{name} at {width}px: {v}")
                screenshot(page, f"{name}-{width}")
        assert bad == [], bad  # no 404 (the favicon included) on any load
        page.close()
    assert failed == [], "\n".join(failed)
    r = httpx.get(home.url + "/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")


def test_budget_and_subscription_forms(home: Home, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(home.url + "/")
    assert page.input_value("#budget-amount") == "10.00"
    page.fill("#budget-amount", "12.50")
    page.fill("#budget-currency", "eur")
    assert submit(page, "button:has-text('Set budget')").status == 200
    assert "Budget set to 12.50 EUR per month from 2026-12 on" in page.inner_text(".notice")
    assert home.rill("budget") == {"month": "2026-12", "amount": 1250, "currency": "EUR"}
    # 0 pauses, and says so
    page.fill("#budget-amount", "0")
    submit(page, "button:has-text('Set budget')")
    assert "paused" in page.inner_text(".notice")
    assert "giving is paused" in page.inner_text("main")
    assert home.rill("budget")["amount"] == 0
    # a bad amount: a refusal page with the reason, nothing recorded
    page.fill("#budget-amount", "-5")
    response = submit(page, "button:has-text('Set budget')")
    assert response.status == 400 and "Not done" in page.inner_text("h1")
    assert "amount" in page.inner_text(".reason")
    assert home.rill("budget")["amount"] == 0
    # subscribe to a thing for 3 months, and to a creator; then cancel the thing
    page.goto(home.url + "/")
    page.fill("#sub-target", "ada.example/feed")
    page.fill("#sub-months", "3")
    submit(page, "button:has-text('Subscribe')")
    assert "Subscribed to https://ada.example/feed for 3 month(s)" in page.inner_text(".notice")
    page.fill("#sub-target", home.bob)
    submit(page, "button:has-text('Subscribe')")
    subs = {s["target"]: s for s in home.rill("subscriptions")}
    assert set(subs) == {"https://ada.example/feed", home.bob}
    assert subs["https://ada.example/feed"]["until"] == "2027-02"
    assert "Bob" in page.inner_text("table >> nth=-1")  # the name beside the key
    submit(page, "button[aria-label='Unsubscribe from https://ada.example/feed']")
    assert "Unsubscribed from https://ada.example/feed" in page.inner_text(".notice")
    assert [s["target"] for s in home.rill("subscriptions")] == [home.bob]
    # bad input is refused with its reason
    page.fill("#sub-target", "https://")
    assert submit(page, "button:has-text('Subscribe')").status == 400
    assert [s["target"] for s in home.rill("subscriptions")] == [home.bob]
    assert horizontal_overflow(page) is None


def test_verify_a_site_then_settle_after_the_preview(home: Home, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(home.url + "/sites")
    token, cookies = _token(page), _cookie(page)
    text = page.inner_text("main")
    assert home.site in text and home.dead in text and "never checked" in text
    submit(page, f"button[aria-label='Check {home.site} now']")
    assert f"{home.site} is verified: Cleo" in page.inner_text(".notice")
    assert "verified" in page.inner_text("main") and home.cleo in page.inner_text("main")
    page.fill("#site-target", home.dead + "/gone")
    submit(page, "button:has-text('Verify')")
    assert "NOT verified: unreachable" in page.inner_text(".notice")
    # the settlements page offers November; its preview says who gets what and why not
    page.goto(home.url + "/settlements")
    submit(page, "text=Preview 2026-11")
    paid = page.inner_text("table >> nth=0")
    assert "Ada Lovelace" in paid and "Cleo" in paid and "5.00 EUR" in paid
    left = page.inner_text("table >> nth=1")
    assert home.dead + "/gone" in left and f"checking {home.dead} failed: unreachable" in left
    assert home.rill("claims", "--month", "2026-11") == []  # a preview settles nothing
    page.check("#confirm-settle")
    submit(page, "#settle-now")
    assert "Settled 2026-11: 2 claim(s)" in page.inner_text(".notice")
    claims = home.rill("claims", "--month", "2026-11", "--outgoing")
    assert sorted((c["creator"], c["amount"]) for c in claims) == sorted(
        [(home.ada, 500), (home.cleo, 500)])
    # settling again is refused with the reason, and nothing changes
    page.goto(home.url + "/settle?month=2026-11")
    assert "already settled" in page.inner_text("[role=alert]")
    assert page.locator("#settle-now").count() == 0
    r = httpx.post(home.url + "/settle", data={"month": "2026-11", "confirm": "yes",
                                               "token": token},
                   headers={"Origin": home.url, "Cookie": cookies})
    assert r.status_code == 400 and "already settled" in r.text
    assert len(home.rill("claims", "--month", "2026-11", "--outgoing")) == 2


def test_pay_with_reference_and_sign_a_receipt(home: Home, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(home.url + "/claims")
    assert page.evaluate("Array.from(document.images).every(i => i.naturalWidth > 0 && "
                         "i.getBoundingClientRect().right <= window.innerWidth)")  # the QR
    page.get_by_label("Payment reference").fill("SEPA-ADA-7")
    submit(page, "button:has-text('Mark paid')")
    assert "Marked 1 claim(s) as paid (reference SEPA-ADA-7)" in page.inner_text(".notice")
    outgoing = {c["creator"]: c for c in home.rill("claims", "--outgoing")}
    assert outgoing[home.ada]["state"] == "paid"
    assert outgoing[home.ada]["reference"] == "SEPA-ADA-7"
    # a recorded reference is not changed unless 'replace' is ticked
    bob_row = page.locator("tr", has_text="SEPA-BOB-1")
    bob_row.locator("summary").click()
    bob_row.locator("input[name=reference]").fill("SEPA-BOB-2")
    response = submit(page, "tr:has-text('SEPA-BOB-1') button:has-text('Save')")
    assert response.status == 400 and "replace" in page.inner_text(".reason")
    assert {c["creator"]: c for c in home.rill("claims", "--outgoing")}[home.bob][
        "reference"] == "SEPA-BOB-1"
    page.goto(home.url + "/claims")
    bob_row = page.locator("tr", has_text="SEPA-BOB-1")
    bob_row.locator("summary").click()
    bob_row.locator("input[name=reference]").fill("SEPA-BOB-2")
    bob_row.locator("input[name=replace]").check()
    submit(page, "tr:has-text('SEPA-BOB-1') button:has-text('Save')")
    assert {c["creator"]: c for c in home.rill("claims", "--outgoing")}[home.bob][
        "reference"] == "SEPA-BOB-2"
    # the creator side: sign a receipt for Don's claim
    page.goto(home.url + "/creator")
    page.get_by_label("Reference").fill("got it, thanks")
    submit(page, "button:has-text('Sign receipt')")
    assert "Receipt signed" in page.inner_text(".notice")
    incoming = home.rill("claims", "--incoming")
    assert [(c["id"], c["state"]) for c in incoming] == [(home.incoming, "receipted")]


async def test_unexpected_failures_are_answered_with_a_reason(tmp_path: Path) -> None:
    """No browser: the dashboard app on a stand-in daemon whose wallet breaks."""
    from fuzztargets import StubDaemon

    from rill.node.dashboard import Dashboard

    w = Wallet.create(tmp_path / "w", "W", bytes(signing_key("w")))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    dash = Dashboard(StubDaemon(w, CLOCK), 4742)  # type: ignore[arg-type]
    w.projection = broken  # type: ignore[method-assign]
    w.set_budget = broken  # type: ignore[method-assign]
    here = "http://127.0.0.1:4742"
    post = {"Origin": here, "Cookie": f"rill_csrf={dash.token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=dash.app()),
                                 base_url=here) as client:
        answers = [await client.get("/"),
                   await client.post("/budget", headers=post, data={
                       "amount": "5", "currency": "EUR", "token": dash.token})]
        for r in answers:
            assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
            assert "RuntimeError: disk on fire" in r.text and "Traceback" not in r.text
        r = await client.post("/budget", headers={**post, "Content-Type": "multipart/form-data"},
                              content=b"--x\r\nbroken")  # no boundary
        assert r.status_code == 400 and "The form could not be read" in r.text
        r = await client.post("/flattr", headers={**post, "Content-Type": "multipart/form-data"},
                              content=b"--x\r\nbroken")  # a form outside dashboard_actions
        assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")
        r = await client.post("/budget", headers=post, data={"amount": "5", "currency": "EUR",
                                                             "token": "\u00e9" * 40})
        assert r.status_code == 403 and "form token" in r.text
    w.close()


def _token(page: Any) -> str:
    return str(page.get_attribute("input[name=token] >> nth=0", "value"))


def _cookie(page: Any) -> str:
    """The page's cookies as a Cookie header."""
    return "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())


HOSTILE = """<!doctype html><html><body><h1>Win a prize</h1>
<form id="f" method="post" action="{dash}/budget">
<input name="amount" value="999"><input name="currency" value="EUR">
<input name="token" value="{token}"></form>
<script>document.getElementById("f").submit();</script></body></html>"""


def test_forms_are_refused_cross_origin(home: Home, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    page.goto(home.url + "/")
    token, cookie = _token(page), _cookie(page)
    forms = {"/budget": {"amount": "999", "currency": "EUR"},
             "/subscribe": {"target": "https://evil.example/"},
             "/unsubscribe": {"target": home.bob},
             "/settle": {"month": "2026-11", "confirm": "yes"},
             "/pay": {"claims": home.incoming, "reference": "x"},
             "/receipt": {"claim": home.incoming},
             "/sites": {"target": "http://127.0.0.1:1"}}
    for path, data in forms.items():
        for headers, send_token in (({"Origin": "http://evil.example"}, True),
                                    ({}, True),  # no Origin at all
                                    ({"Origin": home.url, "Sec-Fetch-Site": "cross-site"}, True),
                                    ({"Origin": home.url}, False)):  # no CSRF token
            body = {**data, "token": token} if send_token else data
            r = httpx.post(home.url + path, data=body, headers={**headers, "Cookie": cookie})
            assert r.status_code == 403, (path, headers, send_token, r.status_code)
            assert r.headers["content-type"].startswith("text/html"), (path, r.text[:200])
            assert "Traceback" not in r.text
    # the same from a hostile page in the browser (it even knows the token)
    site = tmp_path / "evil"
    site.mkdir()
    (site / "index.html").write_text(HOSTILE.format(dash=home.url, token=token))
    with static_site(site) as port:
        page.goto(f"http://127.0.0.1:{port}/index.html")
        page.wait_for_url(home.url + "/budget")
        assert "Cross-site request refused" in page.content()
    assert home.rill("budget")["amount"] == 1000
    assert home.rill("claims", "--month", "2026-11") == []
    assert [s["target"] for s in home.rill("subscriptions")] == []
    assert {c["state"] for c in home.rill("claims", "--incoming")} == {"owed"}
