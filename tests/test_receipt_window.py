"""Receipts for claims outside the gossip window (SPEC §11.2, §13): every node refuses
such a receipt (``outside-window``), so it never leaves the creator's node; `rill
receipt` and the dashboard's receipt action say so (code ``outside-window`` in --json)
and tell the creator to hand the file to the donor, whose `rill import-object` takes it
in (no window there: a file given by hand is checked, not gossiped).  The dashboard's
receipt action is exercised in tests/test_long_sleep.py (a node that slept past the
window, whose creator receipts the month it then settled)."""

from __future__ import annotations

from pathlib import Path

import pytest
from clitools import AFTER, js, month_with_claims, rill

from rill.protocol import messages as m
from rill.protocol.armour import dearmour
from rill.protocol.errors import RemoteError
from rill.protocol.months import month_end, month_start
from rill.protocol.network import check_gossip, outside_window

JAN, FEB = month_start("2027-01") + 3600, month_start("2027-02") + 3600


def test_outside_window_is_the_gossip_check() -> None:
    # October is in the window through January (the current month and the 3 before)
    assert outside_window("2026-10", month_end("2027-01") - 1) is None
    assert outside_window("2026-10", month_end("2027-01")) == "2026-11"
    assert outside_window("2026-10", FEB, window_months=4) is None


def test_receipt_outside_the_window_warns_and_the_file_carries_it(tmp_path: Path) -> None:
    w = month_with_claims(tmp_path)
    files = [str(p) for p in w["out"].iterdir()]
    for creator in ("alice", "bob"):
        js("import-object", *files, home=w[creator], now=AFTER)
    alice_claim, bob_claim = w["claims"][w["a"]], w["claims"][w["b"]]
    js("pay", alice_claim, bob_claim, "--reference", "SEPA-9", home=w["dora"], now=AFTER)

    # inside the window (January: October is its oldest month): no warning
    inside = js("receipt", bob_claim, "--reference", "SEPA-9", home=w["bob"], now=JAN)
    assert inside["warning"] is None
    plain = rill("receipt", bob_claim, home=w["bob"], now=JAN)  # the same receipt again
    assert "warning" not in plain.stderr

    # outside (February): signed and recorded, with a warning that has a code
    rfile = tmp_path / "late.rill"
    late = js("receipt", alice_claim, "--reference", "SEPA-9", "--out", str(rfile),
              home=w["alice"], now=FEB)
    assert late["warning"]["code"] == "outside-window"
    assert "2026-10" in late["warning"]["message"]
    assert str(rfile) in late["warning"]["message"]
    assert "rill import-object" in late["warning"]["message"]
    # what the warning says is so: every node's gossip (and sync) check refuses it
    raw = dearmour(rfile.read_text())[0][1]
    with pytest.raises(RemoteError) as exc:
        check_gossip("rill/1/receipts", raw, FEB, work_bits=0)
    assert exc.value.reason.startswith("outside-window")
    assert m.decode(raw, m.Receipt).id_hex == late["receipt"]
    # in plain text the warning goes to stderr, the receipt's armour to stdout
    again = rill("receipt", alice_claim, home=w["alice"], now=FEB)
    assert again.stderr.startswith("warning: the claim is for 2026-10, outside the gossip "
                                   "window (from 2026-11)")
    assert "--out FILE" in again.stderr
    assert again.stdout.startswith("-----BEGIN RILL RECEIPT-----")
    # the hand-over works: the donor's claim turns receipted from the file
    got = js("import-object", str(rfile), home=w["dora"], now=FEB)
    assert got[0]["action"] == "receipted"
    states = {c["id"]: c["state"] for c in js("claims", home=w["dora"], now=FEB)}
    assert states[alice_claim] == "receipted"
