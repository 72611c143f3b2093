"""The Statements page and the creator's statistics in a real headless Chromium, on a
running node (tests/statementdata.py's creator): the page fits a phone, has no WCAG 2.1
AA violation, and its downloads are the signed statement (which `rill verify` accepts,
alone and with its claims) and the CSV; the creator page charts each thing.
Screenshots go to tests/artifacts (docs/screenshots with RILL_DOCS_SCREENSHOTS=1)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from nodes import free_port
from procnet import ProcNode
from statementdata import RECEIPTS_AT, A, Scenario, build
from webenv import axe_violations, horizontal_overflow, screenshot

from rill.protocol.verify import verify_files

CLOCK = RECEIPTS_AT + 3600


@pytest.fixture
def node(tmp_path: Path) -> Any:
    scen = build(tmp_path)
    n = ProcNode(tmp_path, "cleo", CLOCK)
    assert n.home == scen.cleo
    port = free_port()
    n.start([], dashboard_port=port)
    try:
        n.wait_started()
        yield scen, f"http://127.0.0.1:{port}"
    finally:
        assert n.stop() == 0


def _download(page: Any, selector: str) -> bytes:
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_bytes()


def test_statements_page_downloads_and_thing_charts(node: tuple[Scenario, str],
                                                    browser: Any) -> None:
    scen, url = node
    failed: list[str] = []
    for width, height in ((390, 844), (1280, 800)):
        page = browser.new_page(viewport={"width": width, "height": height},
                                accept_downloads=True)
        for name, path in (("statements", "/statements"), ("creator-stats", "/creator")):
            response = page.goto(url + path)
            assert response is not None and response.status == 200, page.inner_text("main")
            overflow = horizontal_overflow(page)
            if overflow:
                failed.append(f"{name} at {width}px: {overflow}")
            failed += [f"{name} at {width}px: {v}" for v in axe_violations(page)]
            screenshot(page, f"{name}-{width}")
        page.close()
    assert failed == [], "\n".join(failed)

    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page.goto(url + "/statements")
    assert page.locator("nav a.on").inner_text() == "Statements"
    rows = page.locator("table tr")
    assert "2026-11" in rows.nth(1).inner_text() and "2026-10" in rows.nth(2).inner_text()
    assert "11.00 EUR" in rows.nth(2).inner_text()  # October's total
    oct_row = "tr:has-text('2026-10')"
    signed = _download(page, f"{oct_row} a:has-text('Signed statement')")
    [v] = verify_files([("statement.rill", signed)], CLOCK)
    assert v.valid and v.type == "statement" and v.signer == scen.cleo_did
    bundle = _download(page, f"{oct_row} a:has-text('With claims')")
    verdicts = verify_files([("bundle.rill", bundle)], CLOCK)
    assert [x.type for x in verdicts].count("claim") == 2 and all(x.valid for x in verdicts)
    assert next(x for x in verdicts if x.type == "statement").checks == ["claims", "receipts"]
    table = list(csv.DictReader(io.StringIO(
        _download(page, f"{oct_row} a:has-text('CSV')").decode(), newline="")))
    assert sorted(r["amount"] for r in table) == ["5.00", "6.00"]
    # a month that has not ended, and a name that is no download: refusals with a reason
    response = page.goto(url + "/statements/2026-12.csv")
    assert response is not None and response.status == 400
    assert "has not ended" in page.inner_text("main")
    response = page.goto(url + "/statements/2026-10.exe")
    assert response is not None and response.status == 404

    page.goto(url + "/creator")
    charts = page.locator("figure.thingchart")
    assert charts.count() == 3
    first = charts.nth(0)
    assert first.locator("h3").inner_text() == A
    assert first.locator("rect").count() == 2  # October and November
    assert "4 flattr(s) · 19.00 EUR" in first.inner_text()
    assert "flattrs received (2026-11)" in page.inner_text("main").lower()
    page.close()
