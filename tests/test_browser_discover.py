"""The dashboard's Discover page in a real headless Chromium: search, kind and tag
filters, the most supported creators with their Flattr buttons; it fits a phone and has
no WCAG 2.1 AA violation (axe-core).  Screenshots as in test_browser_dashboard.py."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from helpers import signing_key
from nodes import free_port
from procnet import ProcNode
from webenv import axe_violations, horizontal_overflow, screenshot

from rill.protocol import messages as m
from rill.protocol.months import month_end, month_start
from rill.protocol.settle import settle
from rill.wallet.wallet import Wallet

NOV = month_start("2026-11")
CLOCK = NOV + 6 * 86400


@pytest.fixture
def node(tmp_path: Path) -> Any:
    """A reader's node holding the listings of two creators, and October's settlements of
    three donors (two name Ada, one names Bob)."""
    n = ProcNode(tmp_path, "rea", CLOCK)
    w = Wallet.create(n.home, "Rea", bytes(signing_key("rea")))
    ada, bob = signing_key("ada"), signing_key("bob")
    for key, name, origin in ((ada, "Ada Lovelace", "https://ada.example"),
                              (bob, "Bob's Workshop", "https://bob.example")):
        doc = m.sign(m.KeyDocument(name, (origin,), (), NOV), key)
        w.import_object(doc.raw, CLOCK)
        if key is ada:  # as after `rill creator verify ada.example`
            w.record_site(origin, doc, None, CLOCK)
    entries = [
        (ada, "https://ada.example/rivers", "Notes on small rivers", "text",
         "An essay on streams, weirs and the creatures that live in them.", ("essay",
                                                                             "rivers")),
        (ada, "https://ada.example/rain", "Rain on the roof", "audio",
         "Twelve minutes of rain on a tin roof, recorded at night.", ("field-recording",
                                                                      "rain")),
        (ada, "https://ada.example/" + "a-long-path-segment/" * 5, "A thing with a long "
         "address", "other", "", ()),
        (bob, "https://bob.example/loom", "Loom controller", "software",
         "Firmware for a small weaving loom.", ("hardware", "weaving")),
    ]
    for i, (key, thing, title, kind, desc, tags) in enumerate(entries):
        w.import_object(m.sign(m.Listing(thing, CLOCK - 3600 + i, title, kind, desc or None,
                                         tags, "en"), key).raw, CLOCK)
    for donor, creators in (("d1", [ada, bob]), ("d2", [ada]), ("d3", [ada])):
        things = {f"https://{donor}-{i}.example/": bytes(c.verify_key)
                  for i, c in enumerate(creators)}
        res = settle(signing_key(donor), "2026-10", 900, "EUR", bytes(32), things,
                     work_bits=0)
        w.import_object(res.settlement.raw, month_end("2026-10") + 60)
    w.close()
    port = free_port()
    n.start([], dashboard_port=port)
    n.wait_started()
    yield f"http://127.0.0.1:{port}"
    assert n.stop() == 0


def test_discover_searches_filters_and_links_to_the_button(node: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(node + "/discover")
    ranking = page.locator("ol.ranking > li")
    assert ranking.count() == 2
    assert "Ada Lovelace" in ranking.nth(0).inner_text()
    assert "3 supporters" in ranking.nth(0).inner_text()
    assert "1 supporter" in ranking.nth(1).inner_text()
    assert "verified on site" in ranking.nth(0).inner_text()
    assert "site not verified" in ranking.nth(1).inner_text()
    assert page.locator("nav a.on").inner_text() == "Discover"
    screenshot(page, "discover-1280")
    # a search by words, then the kind filter
    page.fill("#q", "rain roof")
    page.click("form[role=search] button[type=submit]")
    titles = page.locator("main > .card").nth(1).locator(".listing-title")
    assert titles.all_inner_texts() == ["Rain on the roof"]
    page.goto(node + "/discover?q=&kind=software")
    assert page.locator(".listing-title").first.inner_text() == "Loom controller"
    # a tag link filters by that tag
    page.goto(node + "/discover?q=essay")
    page.locator("a.tag", has_text="#rivers").first.click()
    assert urllib.parse.urlparse(page.url).query == "tag=rivers"
    assert page.locator("main > .card").nth(1).locator(".listing-title").all_inner_texts() \
        == ["Notes on small rivers"]
    # the Flattr button opens the confirmation page for that thing and creator
    page.locator("a.flattr").first.click()
    assert urllib.parse.urlparse(page.url).path == "/flattr"
    assert "ada.example/rivers" in page.inner_text("main")
    # hostile input is a search for words, answered with a page
    response = page.goto(node + "/discover?q=" + urllib.parse.quote('NEAR("x" OR'))
    assert response is not None and response.status == 200
    # phones: no horizontal scroll at 390 and 360 px; no AA violation (axe-core, on the
    # page that holds every part: the form, the ranking and the listings)
    failed = []
    page.goto(node + "/discover")
    for width, height in ((390, 844), (360, 740)):
        page.set_viewport_size({"width": width, "height": height})
        overflow = horizontal_overflow(page)
        if overflow:
            failed.append(f"/discover at {width}px: {overflow}")
    failed += [f"/discover at 360px: {v}" for v in axe_violations(page)]
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(node + "/discover?q=rain")
    screenshot(page, "discover-390")
    page.close()
    assert failed == [], "\n".join(failed)
