"""Notifications end to end: a creator's `rill node run` process with [hooks] (a command
writing to a file, a webhook on a real HTTP server on 127.0.0.1) takes in claims by
`rill import-object` while it runs.  Every event is delivered once, in order, also
across a restart with the receiver down meanwhile (the queue is persisted, the failed
delivery retried); every webhook request carries a valid signature by the node key; a
hostile thing URL in an event cannot run anything; the dashboard shows unread events."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from clitools import fast_home, js
from hookrecv import Receiver
from nodes import free_port
from procnet import ProcNode, wait_for
from webenv import axe_violations, horizontal_overflow, screenshot

from rill.protocol import keys
from rill.protocol.armour import armour
from rill.protocol.months import month_end, month_start
from rill.protocol.webhook import verify_header
from rill.wallet.wallet import Wallet

NOW = month_end("2026-10") + 120
#: Shell syntax that runs `touch PWNED` where a shell sees it in single quotes, and
#: `touch PWNED2` in double quotes (all of it survives URL normalisation).
HOSTILE = "https://erin.example/x?q=';touch$IFS'PWNED';'&r=$(touch$IFS'PWNED2')"


def _give(donor: Path, creator: str, month: str, things: list[str], out: Path
          ) -> list[str]:
    """``donor`` gives to ``creator`` in ``month`` and settles: the settlement and sealed
    claims written as armoured files (what the creator imports; ``.raw`` beside them)."""
    with Wallet.open(donor) as w:
        t = month_start(month) + 100
        if w.budget(month) is None:
            w.set_budget(500, "EUR", t)
        for i, thing in enumerate(things):
            w.click(thing, t + 1 + i, keys.key_from_did(creator))
        result, _ = w.settle(month, month_end(month) + 60)
    out.mkdir(exist_ok=True)
    files = []
    for obj in (result.settlement, *result.sealed):
        f = out / f"{obj.type}-{obj.id_hex[:16]}.rill"
        f.write_text(armour(obj.raw, obj.type))
        f.with_suffix(".raw").write_bytes(obj.raw)
        files.append(str(f))
    return files


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_hooks_deliver_each_event_once_in_order_across_a_restart(tmp_path: Path,
                                                                 browser: Any) -> None:
    alice = ProcNode(tmp_path, "alice", NOW)
    a = fast_home(alice.home, "Alice")
    dora, erin = tmp_path / "dora", tmp_path / "erin"
    d, e = fast_home(dora, "Dora"), fast_home(erin)
    # September: stored before the node ever ran, so no event for it
    with Wallet.open(alice.home) as w:
        w.import_objects([Path(f).with_suffix(".raw").read_bytes() for f in
                          _give(dora, a, "2026-09", ["https://alice.example/old"],
                                tmp_path / "sep")], NOW)
    claims, supporters = tmp_path / "claims.jsonl", tmp_path / "supporters.jsonl"
    receiver = Receiver()
    cfg = alice.home / "config.toml"
    # one command as argv, one as a string (split, never run by a shell of ours)
    claim_cmd = json.dumps(["sh", "-c", 'cat >> "$0"', str(claims)])
    supporter_cmd = json.dumps("sh -c 'cat >> \"$0\"' " + shlex.quote(str(supporters)))
    cfg.write_text(cfg.read_text() + f"""
[hooks]
desktop = false
retries = 30
backoff = 0.2
max_backoff = 0.5
timeout = 5

[hooks.on_claim]
command = {claim_cmd}
url = "{receiver.url}?hook=claim"

[hooks.on_new_supporter]
command = {supporter_cmd}
url = "{receiver.url}?hook=supporter"
""")
    receiver.start()
    alice.start([])
    try:
        alice.wait_started()
        # October: Dora again (a claim, not a new supporter), by file import while it runs
        alice.rill("import-object", *_give(dora, a, "2026-10", ["https://alice.example/new"],
                                           tmp_path / "oct"), now=NOW)
        wait_for(lambda: len(receiver.events("/hook?hook=claim")) == 1
                 and len(_lines(claims)) == 1, 30, "Dora's claim delivered")
        # the receiver goes down; Erin, a new supporter, gives for a hostile URL
        receiver.stop()
        alice.rill("import-object", *_give(erin, a, "2026-10", [HOSTILE], tmp_path / "e"),
                   now=NOW)
        wait_for(lambda: len(_lines(claims)) == 2 and len(_lines(supporters)) == 1, 30,
                 "Erin's events run by the commands")
        wait_for(lambda: "hooks: on_claim.url failed (ConnectError" in alice.log.read_text()
                 and "hooks: on_new_supporter.url failed" in alice.log.read_text(), 30,
                 "failed webhook attempts")
        assert alice.stop() == 0
        assert receiver.events() == receiver.events("/hook?hook=claim")  # nothing else yet
        dash = free_port()
        alice.start([], dashboard_port=dash)  # the queue survived; the receiver comes back
        alice.wait_started()
        receiver.start()
        wait_for(lambda: len(receiver.events("/hook?hook=claim")) == 2
                 and len(receiver.events("/hook?hook=supporter")) == 1, 30,
                 "the queued events delivered after the restart")
        time.sleep(0.5)  # nothing more may come (a second delivery would show here)
        got_claims = receiver.events("/hook?hook=claim")
        got_supporters = receiver.events("/hook?hook=supporter")
        assert [c["data"]["donor"] for c in got_claims] == [d, e]  # in order, once each
        assert [s["data"]["donor"] for s in got_supporters] == [e]
        assert _lines(claims) == got_claims and _lines(supporters) == got_supporters
        assert len({c["id"] for c in got_claims}) == 2
        assert got_claims[1]["data"]["things"] == [HOSTILE]
        for post in receiver.posts:  # signed by the node's key, over this exact body
            sender = verify_header(post["headers"]["Rill-Signature"], post["body"],
                                   int(time.time()), keys.key_from_did(a))
            assert sender == keys.key_from_did(a)
            assert post["headers"]["Rill-Event-Id"] == json.loads(post["body"])["id"]
        # the hostile URL ran nothing, though a shell given it as text would have
        for where in (tmp_path, Path.cwd(), alice.home):
            assert not list(where.glob("PWNED*")), where
        control = tmp_path / "control"
        control.mkdir()
        subprocess.run(["sh", "-c", f"echo '{HOSTILE}'; echo \"{HOSTILE}\""], cwd=control,
                       capture_output=True, check=False)
        assert sorted(p.name for p in control.glob("PWNED*")) == ["PWNED", "PWNED2"]
        st = alice.rill("node", "status", now=NOW)["events"]
        assert st["unread"] == 3
        assert {k: (v["delivered"], v["waiting"], v["dropped"]) for k, v in
                st["hooks"].items()} == {
            "on_claim.command": (2, 0, 0), "on_claim.url": (2, 0, 0),
            "on_new_supporter.command": (1, 0, 0), "on_new_supporter.url": (1, 0, 0)}
        listed = js("events", home=alice.home)
        assert [x["event"] for x in listed] == ["new_supporter", "claim", "claim"]
        _dashboard(browser, f"http://127.0.0.1:{dash}", listed)
    finally:
        receiver.stop()
        alice.stop()
    assert js("events", "--unread", home=alice.home) == []  # read on the dashboard


def _dashboard(browser: Any, url: str, listed: list[dict[str, Any]]) -> None:
    """The nav shows the unread count; the Events page lists them; mark read works."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(url + "/")
    assert page.inner_text("nav a[href='/events']").split() == ["Events", "3"]
    page.click("nav a[href='/events']")
    assert page.inner_text("main h2 >> nth=0") == "3 unread"
    text = page.inner_text("main")
    assert "New supporter" in text and "5.00 EUR for 2026-10" in text
    assert horizontal_overflow(page) is None
    assert axe_violations(page) == []
    screenshot(page, "events-390")
    with page.expect_navigation():  # one event, by its own button
        page.click(f"form:has(input[value='{listed[0]['id']}']) button")
    assert page.inner_text("nav a[href='/events']").split() == ["Events", "2"]
    with page.expect_navigation():
        page.click("text=Mark all read")
    assert page.inner_text("nav a[href='/events']").split() == ["Events"]
    assert "3 event(s)" not in page.inner_text("main") and "0 unread" in page.inner_text("main")
    page.close()


@pytest.mark.soak
def test_every_event_kind_over_gossip_between_two_daemons(tmp_path: Path) -> None:
    """A donor's node and a creator's node: the donor's settling (month_settled), its
    claim reaching the creator by gossip (claim, new_supporter), the creator's receipt
    reaching the donor (receipt): each delivered once to each hook."""
    start, end = month_start("2026-10") + 3600, month_end("2026-10")
    dora, alice = ProcNode(tmp_path, "dora", start), ProcNode(tmp_path, "alice", start)
    d, a = fast_home(dora.home, "Dora"), fast_home(alice.home, "Alice")
    receiver = Receiver()
    files = {k: tmp_path / f"{k}.jsonl" for k in ("month_settled", "receipt")}
    for node, hooks in ((dora, {
            f"on_{k}": {"command": ["sh", "-c", 'cat >> "$0"', str(f)]}
            for k, f in files.items()}), (alice, {
            "on_claim": {"url": receiver.url + "?claim"},
            "on_new_supporter": {"url": receiver.url + "?supporter"}})):
        text = "\n[hooks]\ndesktop = false\nbackoff = 0.2\nmax_backoff = 1\n"
        for name, spec in hooks.items():
            text += f"[hooks.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n"
                                                  for k, v in spec.items())
        cfg = node.home / "config.toml"
        cfg.write_text(cfg.read_text() + text)
    receiver.start()
    try:
        dora.start([])
        dora.wait_started()
        alice.start([dora.addr])
        alice.wait_started()
        dora.rill("budget", "set", "5.00", "EUR", now=start)
        dora.rill("click", "https://alice.example/post", "--creator", a, now=start + 60)
        for t in (end + 1, end + 61, end + 121):  # the month ends; the grace passes
            for n in (dora, alice):
                n.rill("node", "clock", str(t))
        wait_for(lambda: len(_lines(files["month_settled"])) == 1, 60, "Dora settles")
        wait_for(lambda: len(receiver.events()) == 2, 60, "Alice's claim events")
        (claim,) = receiver.events("/hook?claim")
        (supporter,) = receiver.events("/hook?supporter")
        assert claim["data"]["donor"] == d == supporter["data"]["donor"]
        assert claim["data"]["amount"] == 500 and claim["data"]["month"] == "2026-10"
        (settled,) = _lines(files["month_settled"])
        assert settled["node"] == d and settled["data"]["creators"][0]["creator"] == a
        alice.rill("receipt", claim["data"]["claim"], "--reference", "bank-1", now=end + 200)
        wait_for(lambda: len(_lines(files["receipt"])) == 1, 60, "Dora's receipt event")
        (receipt,) = _lines(files["receipt"])
        assert receipt["data"]["claim"] == claim["data"]["claim"]
        assert receipt["data"]["creator"] == a
        time.sleep(3)  # a later scan or republish adds nothing
        assert len(receiver.events()) == 2 and len(_lines(files["receipt"])) == 1
        assert len(_lines(files["month_settled"])) == 1
    finally:
        receiver.stop()
        assert dora.stop() == 0 and alice.stop() == 0
