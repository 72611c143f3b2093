"""In headless Chromium: a button naming another creator than the one its site verifiably
publishes is refused, and the confirmation page names the real creator (SPEC §12.2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import signing_key
from nodes import free_port
from procnet import ProcNode
from sitesrv import Reply, Site
from webenv import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, need_browser

from rill.protocol import keys, sitekeys
from rill.protocol import messages as m
from rill.protocol.months import month_start

NOW = month_start("2026-11") + 5 * 86400
ALICE, MALLORY = signing_key("browser alice"), signing_key("browser mallory")


def did(key: Any) -> str:
    return keys.did_from_key(keys.public_key(key))


@pytest.fixture
def browser() -> Iterator[Any]:
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def test_a_button_with_a_foreign_creator_is_refused_and_names_the_real_one(
        tmp_path: Path, browser: Any) -> None:
    with Site() as site:
        body = m.KeyDocument("Alice's blog", (site.origin,), (), NOW - 86400, None)
        site.document(sitekeys.render(m.sign(body, ALICE)))
        reader = ProcNode(tmp_path, "reader", NOW)
        reader.rill("init", "--name", "Rea")
        reader.rill("budget", "set", "6.00", "EUR", now=NOW - 3600)
        port = free_port()
        reader.start([], dashboard_port=port)
        try:
            reader.wait_started()
            assert reader.rill("creator", "verify", site.origin, now=NOW)["valid"]
            url = site.origin + "/posts/rivers.html"
            buttons = {who: reader.rill("creator", "button", url, "--creator", did(key),
                                        "--port", str(port))["html"]
                       for who, key in (("mallory", MALLORY), ("alice", ALICE))}
            site.serve("/posts/rivers.html", Reply(
                content_type="text/html; charset=utf-8",
                body=("<!doctype html><title>On rivers</title><h1>On rivers</h1>"
                      + buttons["mallory"]).encode()))
            page = browser.new_page()
            page.goto(url)
            with page.expect_popup() as popup_info:
                page.click("a.rill-button")
            confirm = popup_info.value
            confirm.wait_for_load_state()
            text = confirm.inner_text("main")
            assert "This button names the wrong creator" in text
            assert "Alice's blog" in text and did(ALICE) in text and did(MALLORY) in text
            assert confirm.query_selector("#confirm") is None  # no "Yes"
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            confirm.set_viewport_size({"width": 900, "height": 720})
            confirm.screenshot(path=str(ARTIFACTS / "confirm-foreign-creator.png"),
                               full_page=True)
            assert reader.rill("status", now=NOW)["things"] == []

            # the site's own button: the name, marked verified, and "Yes" records it
            site.serve("/posts/rivers.html", Reply(
                content_type="text/html; charset=utf-8",
                body=("<!doctype html><title>On rivers</title>" + buttons["alice"]).encode()))
            page.goto(url)
            with page.expect_popup() as popup_info:
                page.click("a.rill-button")
            confirm = popup_info.value
            confirm.wait_for_load_state()
            text = confirm.inner_text("main")
            assert "Flattr this?" in text and "Alice's blog" in text and "verified" in text
            confirm.screenshot(path=str(ARTIFACTS / "confirm-verified-creator.png"),
                               full_page=True)
            confirm.click("#confirm")
            confirm.wait_for_url(lambda u: "notice=" in u)
            status = reader.rill("status", now=NOW)
            assert [(r["thing"], r["creator"]) for r in status["things"]] == [(url, did(ALICE))]
        finally:
            assert reader.stop() == 0
