"""The button and the dashboard in a real headless Chromium (Playwright), all on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from nodes import free_port
from procnet import ProcNode
from webenv import ARTIFACTS, static_site

from rill.protocol.months import month_start

NOW = month_start("2026-11") + 5 * 86400




@pytest.fixture
def reader(tmp_path: Path) -> Any:
    """A reader's node (a real `rill node run` process) with its dashboard."""
    node = ProcNode(tmp_path, "reader", NOW)
    node.rill("init", "--name", "Rea")
    node.rill("budget", "set", "6.00", "EUR", now=NOW - 3600)
    node.dashboard_port = free_port()  # type: ignore[attr-defined]
    node.start([], dashboard_port=node.dashboard_port)  # type: ignore[attr-defined]
    node.wait_started()
    yield node
    assert node.stop() == 0


def creator_site(tmp_path: Path, reader: Any, name: str = "creator") -> tuple[Path, str]:
    creator = ProcNode(tmp_path, name, NOW)
    creator.rill("init", "--name", "Alice")
    site = tmp_path / f"{name}-site"
    site.mkdir()
    return site, creator.rill("id")["id"]


def test_button_to_confirmation_to_listed_flattr(tmp_path: Path, browser: Any, reader: Any
                                                 ) -> None:
    site, alice = creator_site(tmp_path, reader)
    with static_site(site) as port:
        url = f"http://127.0.0.1:{port}/posts/rivers.html"
        button = ProcNode(tmp_path, "creator", NOW).rill(
            "creator", "button", url, "--port", str(reader.dashboard_port))
        (site / "posts").mkdir()
        (site / "posts" / "rivers.html").write_text(
            "<!doctype html><html><head><meta charset=utf-8><title>On rivers</title></head>"
            "<body style='font:16px system-ui;max-width:640px;margin:40px auto'>"
            "<h1>On rivers</h1><p>Many small rills make a river.</p>"
            f"{button['html']}</body></html>")
        page = browser.new_page()
        page.goto(url)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "button-on-creator-page.png"))
        with page.expect_popup() as popup_info:
            page.click("a.rill-button")
        confirm = popup_info.value
        confirm.wait_for_load_state()
        assert confirm.url.startswith(f"http://127.0.0.1:{reader.dashboard_port}/flattr?")
        assert "Flattr this?" in confirm.content()
        assert url in confirm.inner_text("main")
        # nothing is recorded until the reader confirms
        assert reader.rill("status", now=NOW)["things"] == []
        confirm.set_viewport_size({"width": 900, "height": 720})
        confirm.screenshot(path=str(ARTIFACTS / "dashboard-confirm.png"), full_page=True)
        confirm.click("#confirm")
        confirm.wait_for_url(lambda u: "notice=" in u)
        text = confirm.inner_text("main")
        assert "Flattred" in text and url in text
        assert "6.00 EUR" in text  # the one thing gets the whole budget (projected)
        status = reader.rill("status", now=NOW)
        assert [(r["thing"], r["creator"], r["share"]) for r in status["things"]] == [
            (url, alice, 600)]
        confirm.screenshot(path=str(ARTIFACTS / "dashboard-home.png"), full_page=True)
        for path in ("claims", "settlements", "creator"):
            confirm.goto(f"http://127.0.0.1:{reader.dashboard_port}/{path}")
            confirm.screenshot(path=str(ARTIFACTS / f"dashboard-{path}.png"), full_page=True)


HOSTILE = """<!doctype html><html><body>
<h1>Totally harmless page</h1>
<img id="img" src="{dash}/flattr?url={target}">
<form id="f" method="post" action="{dash}/flattr" target="sink">
  <input name="url" value="{target}"><input name="token" value="guess"></form>
<iframe name="sink"></iframe>
<pre id="log"></pre>
<script>
const log = (s) => document.getElementById("log").textContent += s + "\\n";
const body = new URLSearchParams({{url: "{target}", token: "guess"}});
fetch("{dash}/flattr", {{method: "POST", mode: "no-cors", body}})
  .then(() => log("post sent")).catch(e => log("post failed " + e));
fetch("{dash}/", {{mode: "cors"}}).then(r => r.text()).then(t => log("READ " + t.length))
  .catch(e => log("read failed " + e));
fetch("{dash}/claims", {{credentials: "include"}}).then(r => r.text())
  .then(t => log("READ " + t.length)).catch(e => log("read failed " + e));
document.getElementById("f").submit();
</script></body></html>"""


def test_a_hostile_page_records_nothing_and_reads_nothing(tmp_path: Path, browser: Any,
                                                          reader: Any) -> None:
    site = tmp_path / "evil"
    site.mkdir()
    dash = f"http://127.0.0.1:{reader.dashboard_port}"
    target = "https://evil.example/please-flattr-me"
    (site / "index.html").write_text(HOSTILE.format(dash=dash, target=target))
    with static_site(site) as port:
        page = browser.new_page()
        # the reader has the dashboard open in the same browser (so it holds a cookie)
        page.goto(dash + "/")
        messages: list[str] = []
        page.on("console", lambda m: messages.append(m.text))
        page.goto(f"http://127.0.0.1:{port}/index.html")
        page.wait_for_function("document.getElementById('log').textContent.split('\\n')"
                               ".filter(x => x).length >= 3", timeout=15000)
        log = page.inner_text("#log")
        page.wait_for_timeout(500)
    assert "READ" not in log, log  # no response body crossed origins
    assert "read failed" in log
    # a DNS-rebinding request: the right address, a foreign Host header
    r = httpx.get(dash + "/claims", headers={"Host": f"evil.example:{reader.dashboard_port}"})
    assert r.status_code == 421 and "rill" not in r.text.lower().split("dashboard")[0][:0]
    r = httpx.post(dash + "/flattr", data={"url": target, "token": "x"},
                   headers={"Host": f"evil.example:{reader.dashboard_port}",
                            "Origin": f"http://evil.example:{reader.dashboard_port}"})
    assert r.status_code == 421
    # same origin but without the form token: refused too
    r = httpx.post(dash + "/flattr", data={"url": target}, headers={"Origin": dash})
    assert r.status_code == 403
    # no CORS header anywhere
    r = httpx.get(dash + "/", headers={"Origin": "http://evil.example"})
    assert not any(k.lower().startswith("access-control") for k in r.headers)
    status = reader.rill("status", now=NOW)
    assert status["things"] == [] and status["counted"] == 0  # 0 clicks recorded
    node_status = reader.rill("node", "status")
    assert node_status["id"]
    json.dumps(messages)


def test_payments_page_shows_payto_qr_and_records_a_payment(tmp_path: Path, browser: Any
                                                            ) -> None:
    from helpers import signing_key

    from rill.protocol import messages as m
    from rill.protocol.months import month_end
    from rill.wallet.wallet import Wallet

    oct_ = month_start("2026-10")
    node = ProcNode(tmp_path, "payer", NOW)
    w = Wallet.create(node.home, "Payer", bytes(signing_key("payer")))
    w.set_budget(1000, "EUR", oct_)
    ada = signing_key("ada")
    doc = m.sign(m.KeyDocument("Ada", ("https://ada.example",),
                               ("payto://iban/DE75512108001245126199",), oct_), ada)
    w.import_object(doc.raw, oct_ + 10)
    w.click("https://ada.example/a", oct_ + 20, creator=doc.signer)
    w.settle("2026-10", month_end("2026-10") + 3600)
    w.close()
    port = free_port()
    node.start([], dashboard_port=port)
    node.wait_started()
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/claims")
        link = page.get_attribute("a[href^='payto:']", "href")
        assert link is not None and link.startswith(
            "payto://iban/DE75512108001245126199?amount=EUR:10.00&message=")
        assert page.evaluate("Array.from(document.images).every(i => i.naturalWidth > 0)")
        page.fill("input[name=reference]", "SEPA-E2E-42")
        page.click("text=Mark paid")
        page.wait_for_url(lambda u: "notice=" in u)
        assert "paid" in page.inner_text(".pill")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-payments-paid.png"), full_page=True)
        claims = node.rill("claims", "--outgoing", now=NOW)
        assert [(c["state"], c["reference"]) for c in claims] == [("paid", "SEPA-E2E-42")]
    finally:
        assert node.stop() == 0
