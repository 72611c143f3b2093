"""The wallet CLI end to end: real `rill` processes on real homes (clock set by RILL_NOW)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rill.protocol.months import month_end, month_start

RILL = str(Path(sys.executable).parent / "rill")
OCT = month_start("2026-10")
AFTER = month_end("2026-10") + 3600


def run(home: Path, *args: str, now: int = OCT + 3600, code: int | None = 0
        ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RILL_HOME": str(home), "RILL_NOW": str(now)}
    proc = subprocess.run([RILL, *args], capture_output=True, text=True, env=env, timeout=60)
    if code is not None:
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc


def js(home: Path, *args: str, now: int = OCT + 3600) -> Any:
    return json.loads(run(home, *args, "--json", now=now).stdout)


def test_a_month_from_clicks_to_receipts(tmp_path: Path) -> None:
    donor, alice, bob = tmp_path / "donor", tmp_path / "alice", tmp_path / "bob"
    d_id = js(donor, "init", "--name", "Dora")["id"]
    a_id = js(alice, "init", "--name", "Alice")["id"]
    b_id = js(bob, "init")["id"]
    assert js(donor, "id") == {"id": d_id, "name": "Dora"}
    assert js(donor, "budget", "set", "10.00", "EUR")["amount"] == 1000
    assert js(donor, "budget")["amount"] == 1000
    assert js(donor, "click", "https://alice.example/a", "--creator", a_id)["new"]
    assert not js(donor, "click", "https://ALICE.example/a#x")["new"]
    js(donor, "click", "alice.example/b", "--creator", a_id)
    js(donor, "click", "https://bob.example/", "--creator", b_id)
    js(donor, "click", "https://nobody.example/")
    js(donor, "subscribe", b_id, "--months", "2")
    st = js(donor, "status", "--month", "2026-10")
    assert (st["counted"], st["pending"]) == (4, 1)
    assert sum(r["share"] for r in st["things"]) == 1000

    run(donor, "settle", "--month", "2026-10", code=1)  # not ended yet
    out = tmp_path / "out"
    s = js(donor, "settle", "--month", "2026-10", "--out", str(out), "--yes", now=AFTER)
    assert (s["month"], s["budget"], s["currency"]) == ("2026-10", 1000, "EUR")
    assert sorted(c["amount"] for c in s["claims"]) == [500, 500]
    assert {c["creator"] for c in s["claims"]} == {a_id, b_id}
    assert js(donor, "settle", "--month", "2026-10", now=AFTER + 60)["settlement"] == \
        s["settlement"]
    files = sorted(str(p) for p in out.iterdir())
    v = run(donor, "verify", "--json", *files, now=AFTER)
    assert all(o["valid"] for o in json.loads(v.stdout))

    # the creator takes in what concerns it; a sealed claim for someone else is only stored
    imp = js(alice, "import-object", *files, now=AFTER)
    assert sorted(r["action"] for r in imp).count("claim-received") == 1
    inc = js(alice, "claims", "--incoming", now=AFTER)
    assert len(inc) == 1 and inc[0]["amount"] == 500 and inc[0]["donor"] == d_id
    claim_id = inc[0]["id"]

    out_claims = js(donor, "claims", "--outgoing", now=AFTER)
    assert len(out_claims) == 2
    for c in out_claims:
        assert {"id", "month", "donor", "creator", "amount", "currency", "state"} <= set(c)
        assert c["state"] == "owed"
    run(donor, "pay", claim_id, "--reference", "SEPA-1", now=AFTER)
    assert [c["state"] for c in js(donor, "claims", now=AFTER) if c["id"] == claim_id] == \
        ["paid"]

    rfile = tmp_path / "receipt.rill"
    r = js(alice, "receipt", claim_id, "--reference", "SEPA-1", "--out", str(rfile),
           now=AFTER + 60)
    assert r["amount"] == 500 and rfile.exists()
    assert js(donor, "import-object", str(rfile), now=AFTER + 120)[0]["action"] == "receipted"
    states = {c["id"]: c["state"] for c in js(donor, "claims", now=AFTER + 120)}
    assert states[claim_id] == "receipted"
    # a third party verifies the receipt against the claim and the settlement
    claim_file = next(f for f in files if "/claim-" in f and claim_id[:16] in f)
    settle_file = next(f for f in files if "/settlement-" in f)
    v = json.loads(run(donor, "verify", "--json", str(rfile), claim_file, settle_file,
                       now=AFTER + 120).stdout)
    assert v[0]["checks"] == ["claim"] and v[1]["checks"] == ["settlement"]

    e = js(alice, "earnings", now=AFTER + 120)
    assert e[0]["total"] == 500 and e[0]["receipted"] == 500 and e[0]["supporters"] == 1
    assert e[0]["new_supporters"] == [d_id]
    assert js(donor, "check", now=AFTER)["entries"] == 6  # the repeat click added nothing


def test_errors_exit_1_usage_errors_exit_2_and_change_nothing(tmp_path: Path) -> None:
    home = tmp_path / "h"
    js(home, "init")
    run(home, "init", code=1)  # refuses to overwrite
    js(home, "budget", "set", "5", "EUR")
    before = js(home, "check")["entries"]
    cases = [
        (["click", "not a url"], 1, "not a valid URL"),
        (["click", "https://a.example/", "--at", "2099-01-01T00:00:00"], 1, "future"),
        (["click", "https://a.example/", "--at", "yesterday"], 2, "ISO 8601"),
        (["click", "https://a.example/", "--creator", "did:key:z6Mkbogus"], 1, "did:key"),
        (["budget", "set", "-5", "EUR"], 1, "negative"),
        (["budget", "set", "--", "-5", "EUR"], 1, "negative"),
        (["budget", "set", "0.001", "EUR"], 1, "decimals"),
        (["budget", "set", "5", "EURO"], 1, "currency"),
        (["budget", "set", "5", "XYZ"], 1, "unknown currency"),
        (["settle", "--month", "2026-13"], 1, "YYYY-MM"),
        (["settle", "--month", "2030-01"], 1, "not ended"),
        (["settle"], 2, "--month"),
        (["pay", "00" * 32, "--reference", "x"], 1, "no claim"),
        (["pay", "zz", "--reference", "x"], 1, "hex"),
        (["receipt", "11" * 32], 1, "no claim"),
        (["unsubscribe", "https://never.example/"], 1, "not subscribed"),
        (["import-object", str(tmp_path / "missing")], 2, "cannot read"),
        (["claims", "--month", "nope"], 1, "YYYY-MM"),
        (["nosuchcommand"], 2, ""),
    ]
    for args, code, text in cases:
        proc = run(home, *args, code=code)
        assert text in proc.stderr, (args, proc.stderr)
        assert proc.stdout == "" or code == 2, (args, proc.stdout)
    assert js(home, "check")["entries"] == before
    # a garbage object is refused with exit 1
    junk = tmp_path / "junk.rill"
    junk.write_bytes(b"\xa1\x61\x61\x01")
    proc = run(home, "import-object", "--json", str(junk), code=1)
    assert json.loads(proc.stdout)[0]["ok"] is False


def test_no_home_is_a_clear_error(tmp_path: Path) -> None:
    proc = run(tmp_path / "none", "status", code=1)
    assert "rill init" in proc.stderr


def test_export_and_import(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    did = js(a, "init")["id"]
    js(a, "budget", "set", "3", "EUR")
    for i in range(5):
        js(a, "click", f"https://x.example/{i}")
    exp = tmp_path / "home.rillx"
    assert js(a, "export", "--out", str(exp))["entries"] == 6
    run(b, "import", str(exp), code=1)  # no key in it
    assert not (b / "rill.db").exists()
    keyed = tmp_path / "keyed.rillx"
    js(a, "export", "--out", str(keyed), "--with-key")
    assert (keyed.stat().st_mode & 0o777) == 0o600
    r = js(b, "import", str(keyed))
    assert r["id"] == did and r["entries"] == 6
    assert js(b, "status")["counted"] == 0 and js(b, "status")["pending"] == 5


@pytest.mark.parametrize("cmd", ["init", "id", "budget", "click", "subscribe", "unsubscribe",
                                 "status", "settle", "claims", "pay", "receipt",
                                 "import-object", "earnings", "export", "import", "verify",
                                 "due", "check", "subscriptions"])
def test_every_command_has_json_and_home(cmd: str) -> None:
    proc = subprocess.run([RILL, cmd, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "--json" in proc.stdout
    if cmd != "verify":
        assert "--home" in proc.stdout
