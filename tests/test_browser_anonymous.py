"""The dashboard's anonymous-month form and the settlements page of a month given
anonymously, in headless Chromium: the form changes the wallet, a settled month is
refused, the page fits a phone and has no WCAG 2.1 AA violation (screenshots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import signing_key
from nodes import free_port
from procnet import ProcNode
from webenv import axe_violations, horizontal_overflow, screenshot

from rill.protocol import keys
from rill.protocol import messages as m
from rill.protocol.months import month_end, month_start
from rill.wallet.wallet import Wallet

OCT, NOV = month_start("2026-10"), month_start("2026-11")
CLOCK = month_end("2026-11") + 30  # November ended, not settled yet (60 s grace)


@pytest.fixture
def node(tmp_path: Path) -> Any:
    n = ProcNode(tmp_path, "rea", CLOCK)
    rea = Wallet.create(n.home, "Rea", bytes(signing_key("rea")))
    rea.home.config_path.write_text("[network]\nwork_bits = 0\n")
    ada, bob = signing_key("ada"), signing_key("bob")
    for k, name in ((ada, "Ada"), (bob, "Bob")):
        rea.import_object(m.sign(m.KeyDocument(name, (f"https://{name.lower()}.example",),
                                               (), OCT), k).raw, OCT + 1)
    rea.set_budget(1000, "EUR", OCT + 1)
    rea.click("https://ada.example/a", OCT + 10, creator=keys.public_key(ada))
    rea.click("https://bob.example/b", OCT + 20, creator=keys.public_key(bob))
    rea.set_anonymous("2026-10", True, OCT + 30, only=(keys.public_key(bob),))
    rea.settle("2026-10", NOV + 3600)
    # Don gives October anonymously, hidden from Bob only: Rea is told who it is
    don = Wallet.create(tmp_path / "don", "Don", bytes(signing_key("don")))
    don.home.config_path.write_text("[network]\nwork_bits = 0\n")
    don.set_budget(400, "EUR", OCT + 1)
    don.click("https://rea.example/post", OCT + 5, creator=rea.identity)
    don.set_anonymous("2026-10", True, OCT + 6, only=(keys.public_key(bob),))
    dres, _ = don.settle("2026-10", NOV + 3600)
    rea.import_object(dres.settlement.raw, NOV + 3700)
    rea.import_object(dres.sealed[0].raw, NOV + 3700)
    n.don = don.did  # type: ignore[attr-defined]
    don.close()
    rea.close()
    n.port_dash = free_port()  # type: ignore[attr-defined]
    n.start([], dashboard_port=n.port_dash)  # type: ignore[attr-defined]
    n.wait_started()
    try:
        yield n
    finally:
        assert n.stop() == 0


def anonymous(node: Any) -> dict[str, Any]:
    """The home's anonymous months, read from its database (the node keeps running)."""
    with Wallet.open(node.home) as w:
        settled = set(w.settled_months())
        return {mo: dict(a.to_json(), settled=mo in settled)
                for mo, a in w.anonymous_months().items()}


def submit(page: Any, selector: str) -> Any:
    with page.expect_navigation() as nav:
        page.click(selector)
    return nav.value


def test_choose_an_anonymous_month_on_the_dashboard(node: Any, browser: Any) -> None:
    url = f"http://127.0.0.1:{node.port_dash}"
    bob = keys.did_from_key(keys.public_key(signing_key("bob")))
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(url + "/settlements")
    main = page.inner_text("main")
    assert "Given anonymously: signed by your pseudonym" in main
    assert "1 creator(s) told privately it is you" in main  # Ada; hidden from Bob
    assert "anonymous" in page.inner_text("h2 >> text=2026-10")
    assert page.input_value("#anon-month") == "2026-12"
    # November, anonymously towards every creator
    page.fill("#anon-month", "2026-11")
    page.check("#anon-all")
    assert submit(page, "#anon-save").status == 200
    assert "2026-11 will be settled anonymously (towards every creator)" in \
        page.inner_text(".notice")
    rows = anonymous(node)
    assert rows["2026-11"]["towards"] == "all" and not rows["2026-11"]["settled"]
    assert rows["2026-10"]["settled"] and rows["2026-10"]["towards"] == [bob]
    # then towards Bob only
    page.fill("#anon-month", "2026-11")
    page.check("#anon-some")
    page.fill("#anon-hide", bob)
    submit(page, "#anon-save")
    assert "towards 1 creator(s)" in page.inner_text(".notice")
    assert anonymous(node)["2026-11"]["towards"] == [bob]
    assert horizontal_overflow(page) is None and axe_violations(page) == []
    screenshot(page, "settlements-anonymous-390")
    page.set_viewport_size({"width": 1280, "height": 800})
    screenshot(page, "settlements-anonymous-1280")
    # the creator page names a donor that disclosed itself
    page.goto(url + "/creator")
    text = page.inner_text("main")
    assert "a pseudonym of did:key:z6Mk" in text and "(disclosed to you)" in text
    assert node.don[-6:] in text.split("a pseudonym of", 1)[1]  # Don's key, shortened
    assert horizontal_overflow(page) is None and axe_violations(page) == []
    # the Payments page marks the anonymous month's claims, paid apart
    page.goto(url + "/claims")
    assert page.inner_text("main").count("pay apart: these claims are your pseudonym's") == 2
    screenshot(page, "payments-anonymous-1280")
    page.set_viewport_size({"width": 360, "height": 740})
    assert horizontal_overflow(page) is None and axe_violations(page) == []
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(url + "/settlements")
    page.goto(url + "/?month=2026-11")
    assert "2026-11 is given anonymously" in page.inner_text("main")
    assert horizontal_overflow(page) is None and axe_violations(page) == []
    page.goto(url + "/settlements")
    # back to the identity
    page.fill("#anon-month", "2026-11")
    page.check("#anon-identity")
    submit(page, "#anon-save")
    assert "under your own identity" in page.inner_text(".notice")
    assert list(anonymous(node)) == ["2026-10"]
    # refused: a settled month, a bad month, "some" without a creator
    for month, mode, why in (("2026-10", "identity", "already settled"),
                             ("2026-13", "all", "2026-13"),
                             ("2026-11", "some", "at least one creator")):
        page.goto(url + "/settlements")
        page.fill("#anon-month", month)
        page.check(f"input[name=mode][value={mode}]")
        response = submit(page, "#anon-save")
        assert response.status == 400, (month, mode)
        assert why in page.inner_text(".reason")
    assert list(anonymous(node)) == ["2026-10"]
