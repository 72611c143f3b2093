"""A node asleep longer than the gossip window (node/sleepers.py; SPEC §11.2 "Clocks",
§13 "Old months travel by hand"): real `rill node run` daemons with manual clocks
(tests/procnet.py, moved as tests/clocks.py does).  The donor's daemon is stopped in
October and started again on its home in March, when October and November have left the
window (March and the 3 months before it) and December is still inside.  It settles every
month in order (a month can no longer be settled once a later one is), publishes December
on (the creator takes it) but not October and November, which every node would refuse:
it logs each of those once with what to do, and `rill node status` lists them as held
back.  Following the advice -- `rill settle --month 2026-10 --out DIR`, the creator's
`rill import-object`, a payment, the receipt file back -- gets October paid and
receipted, and the status drops it."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import httpx
from clitools import fast_home, js, rill
from nodes import free_port
from partition import Node, wait_until
from procnet import ProcNode

from rill.protocol.keys import key_from_did, peer_id_from_key
from rill.protocol.months import month_start

OCT = month_start("2026-10")
WAKE = month_start("2027-03") + 10 * 86400


def node(base: Path, name: str, role: str) -> Node:
    proc = ProcNode(base, name, OCT + 3600)
    did = fast_home(proc.home, name)
    return Node(proc, "all", role, did, peer_id_from_key(key_from_did(did)))


def settled(n: Node) -> list[str]:
    return list(n.call("status")["settled"])


def status_text(n: Node) -> str:
    return rill("node", "status", home=n.proc.home).stdout


def test_a_node_asleep_past_the_window_settles_there_and_says_what_to_hand_over(
        tmp_path: Path) -> None:
    dora, cleo = node(tmp_path, "dora", "donor"), node(tmp_path, "cleo", "creator")
    home = dora.proc.home
    js("budget", "set", "5.00", "EUR", home=home, now=OCT + 60)
    # clicks in October, November and December (the wallet works with the node off)
    for month in ("2026-10", "2026-11", "2026-12"):
        js("click", f"https://cleo.example/{month}", "--creator", cleo.did, home=home,
           now=month_start(month) + 7200)
    try:
        port = free_port()
        cleo.proc.start([], dashboard_port=port)
        cleo.proc.wait_started()
        dora.proc.start([cleo.proc.addr])
        dora.proc.wait_started()
        wait_until(lambda: cleo.peer_id in dora.peers(), 30, "dora to connect")
        assert dora.call("status")["held_back"] == []
        assert dora.proc.stop() == 0  # asleep from October to March
        cleo.call("clock", set=WAKE)
        dora.proc.clock_start = WAKE
        log_from = dora.proc.log.stat().st_size
        dora.proc.start([cleo.proc.addr])
        dora.proc.wait_started()
        # every month settled, in order (January and February: a budget, nothing clicked)
        wait_until(lambda: settled(dora) == ["2026-10", "2026-11", "2026-12", "2027-01",
                                             "2027-02"], 30, "dora to settle",
                   lambda: settled(dora))
        # December is inside the window: published, and the creator takes it
        wait_until(lambda: "2026-12" in incoming(cleo), 30, "cleo to take December's claim")
        st = dora.call("status")
        held = {r["month"]: r for r in st["held_back"]}
        assert list(held) == ["2026-10", "2026-11"]
        assert (held["2026-10"]["claims"], held["2026-10"]["amount"]) == (1, 500)
        assert "rill settle --month 2026-10 --out DIR" in held["2026-10"]["advice"]
        log = dora.proc.log.read_text()[log_from:]
        for month in ("2026-10", "2026-11"):
            assert log.count(f"{month} settled here only (1 claim(s)): it left the gossip "
                             "window (from 2026-12)") == 1, log[-3000:]
        assert "2026-12 settled here only" not in log
        text = status_text(dora)
        assert "held back" in text and "2026-10: 1 claim(s), 5.00 EUR not receipted" in text
        assert "2026-11: 1 claim(s), 5.00 EUR not receipted" in text
        # nothing of October or November went out: the creator holds December's only
        # (a held-back month published would have come before December's, and cleo
        # would have ignored it as outside-window: nothing rejected either way)
        assert incoming(cleo) == {"2026-12"}
        assert cleo.call("status")["counters"]["rejected"] == 0
        # the advice, followed for October: the files to the creator, pay, receipt back
        out = tmp_path / "oct"
        s = cli(dora, "settle", "--month", "2026-10", "--out", str(out), "--yes",
                           now=WAKE + 60)
        assert s["month"] == "2026-10" and len(s["claims"]) == 1
        got = cli(cleo, "import-object", *(str(p) for p in sorted(out.iterdir())),
                             now=WAKE + 120)
        assert "claim-received" in {r["action"] for r in got}, got
        assert incoming(cleo) == {"2026-10", "2026-12"}
        claim = s["claims"][0]["id"]
        cli(dora, "pay", claim, "--reference", "late-oct", now=WAKE + 180)
        # the creator signs the receipt on its dashboard, which says it is not published
        # (tests/test_receipt_window.py: the CLI's side), and writes the file by CLI
        notice = dashboard_receipt(f"http://127.0.0.1:{port}", claim)
        assert "Receipt signed, but NOT published: the claim is for 2026-10, outside the " \
               "gossip window (from 2026-12)" in notice, notice[:2000]
        assert f"rill receipt {claim[:16]} --out receipt.rill" in notice
        rfile = tmp_path / "receipt.rill"
        r = cli(cleo, "receipt", claim, "--out", str(rfile), now=WAKE + 240)
        assert r["warning"]["code"] == "outside-window"  # the same receipt, by hand
        cli(dora, "import-object", str(rfile), now=WAKE + 300)
        assert [r["month"] for r in dora.call("status")["held_back"]] == ["2026-11"]
    finally:
        codes = [dora.proc.stop(), cleo.proc.stop()]
    assert codes == [0, 0]


def cli(n: Node, *args: str, now: int = WAKE) -> Any:
    """`rill ARGS --json` on a node's home, in-process (the daemon runs beside it)."""
    return js(*args, home=n.proc.home, now=now)


def dashboard_receipt(url: str, claim: str) -> str:
    """Sign a receipt through the dashboard's form; the page it lands on (unescaped)."""
    with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as client:
        page = client.get("/creator")
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        assert token is not None, page.text[:500]
        r = client.post("/receipt", data={"claim": claim, "reference": "late-oct",
                                          "token": token.group(1)}, headers={"Origin": url})
        assert r.status_code == 200, r.text[:500]
        return html.unescape(r.text)


def incoming(n: Node) -> set[str]:
    return {c["month"] for c in cli(n, "claims", "--incoming")}
