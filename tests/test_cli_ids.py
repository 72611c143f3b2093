"""IDs and names people can use: unique ID prefixes, short IDs in tables accepted back,
names from verified key documents beside short keys, one's own display name, and
`rill pay` keeping a recorded reference unless --force."""

from __future__ import annotations

import re
import sqlite3
import tomllib
from pathlib import Path

import pytest
from clitools import AFTER, js, month_with_claims, rill

from rill.clikit import short_key
from rill.wallet.errors import NotFound, Refused
from rill.wallet.home import Home, user_name
from rill.wallet.lookup import resolve_claim, set_name


def test_unique_prefixes_of_8_or_more_hex_digits_are_accepted(tmp_path: Path) -> None:
    w = month_with_claims(tmp_path)
    alice_claim = w["claims"][w["a"]]
    # the table shows 16 digits, and exactly those are accepted back
    table = rill("claims", home=w["dora"], now=AFTER).stdout
    shown = re.findall(r"\b[0-9a-f]{16}\b", table)
    assert alice_claim[:16] in shown and alice_claim not in table
    paid = js("pay", alice_claim[:16], "--reference", "SEPA-1", home=w["dora"], now=AFTER)
    assert [(p["id"], p["state"]) for p in paid] == [(alice_claim, "paid")]
    bob_claim = w["claims"][w["b"]]
    paid = js("pay", bob_claim[:8].upper(), "--reference", "SEPA-2", home=w["dora"], now=AFTER)
    assert paid[0]["id"] == bob_claim
    # too short, unknown, not hex: refused with a reason, nothing changes
    out = rill("pay", bob_claim[:7], "--reference", "x", home=w["dora"], now=AFTER, code=1)
    assert "at least 8 hex digits" in out.stderr
    unknown = "0123456789abcdef"
    if any(c.startswith(unknown) for c in w["claims"].values()):
        unknown = "fedcba9876543210"
    out = rill("pay", unknown, "--reference", "x", home=w["dora"], now=AFTER, code=1)
    assert f"no claim ID starts with {unknown}" in out.stderr
    out = rill("pay", "zz", "--reference", "x", home=w["dora"], now=AFTER, code=1)
    assert "hex" in out.stderr
    # the creator signs a receipt by prefix too
    rill("import-object", *(str(p) for p in w["out"].iterdir()), home=w["alice"], now=AFTER)
    r = js("receipt", alice_claim[:10], "--reference", "SEPA-1", home=w["alice"], now=AFTER)
    assert r["claim"] == alice_claim


def test_an_ambiguous_prefix_is_refused_listing_the_candidates() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE obligations (claim BLOB)")
    ids = [bytes.fromhex("abcdef01" + "00" * 28), bytes.fromhex("abcdef01" + "ff" * 28),
           bytes.fromhex("abcdef02" + "11" * 28), bytes.fromhex("ff" * 32)]
    db.executemany("INSERT INTO obligations VALUES (?)", [(i,) for i in ids])
    with pytest.raises(Refused) as exc:
        resolve_claim(db, "abcdef01")
    assert exc.value.code == "ambiguous"
    assert ids[0].hex() in str(exc.value) and ids[1].hex() in str(exc.value)
    assert ids[2].hex() not in str(exc.value)
    assert resolve_claim(db, "abcdef010") == ids[0]  # odd lengths work
    assert resolve_claim(db, "ABCDEF01F") == ids[1]
    assert resolve_claim(db, "abcdef02") == ids[2]
    assert resolve_claim(db, "ffffffffff") == ids[3]  # no upper bound past 0xff...
    with pytest.raises(NotFound):
        resolve_claim(db, "abcdef03")


def test_names_from_key_documents_are_shown_beside_short_keys(tmp_path: Path) -> None:
    w = month_with_claims(tmp_path)
    rill("import-object", str(w["keyfile"]), home=w["dora"], now=AFTER)
    alice = f"Alice ({short_key(w['a'])})"
    bob = short_key(w["b"])  # Bob published no key document: his short key alone
    assert re.fullmatch(r"z6Mk[1-9A-HJ-NP-Za-km-z]{2}…[1-9A-HJ-NP-Za-km-z]{4}", bob)
    for args in (["claims"], ["due"]):
        text = rill(*args, home=w["dora"], now=AFTER).stdout
        assert alice in text and bob in text, (args, text)
        assert w["a"] not in text  # full keys only in --json
    js("subscribe", w["a"], home=w["dora"], now=AFTER)
    assert alice in rill("subscriptions", home=w["dora"], now=AFTER).stdout
    # the creator sees the donor's own name? Only from a key document the donor signed:
    rill("import-object", *(str(p) for p in w["out"].iterdir()), home=w["alice"], now=AFTER)
    text = rill("claims", home=w["alice"], now=AFTER).stdout
    assert short_key(w["d"]) in text and "Dora (" not in text
    # and one's own name is shown for one's own key
    assert rill("id", home=w["dora"]).stdout.strip() == f"Dora ({w['d']})"


def test_setting_ones_display_name(tmp_path: Path) -> None:
    home = tmp_path / "h"
    did = js("init", home=home)["id"]
    assert js("id", home=home) == {"id": did, "name": user_name()}  # named after the login
    out = rill("id", home=home)
    assert out.stdout.strip() == f"{user_name()} ({did})" and out.stderr == ""
    cfg = home / "config.toml"
    cfg.write_text(cfg.read_text().replace("min_payout = 100", "min_payout = 250"))
    assert js("id", "--name", "  Dora Diaz  ", home=home) == {"id": did, "name": "Dora Diaz"}
    assert js("id", "--name", 'Dora "D" \\ 2', home=home)["name"] == 'Dora "D" \\ 2'
    data = tomllib.loads(cfg.read_text())
    assert data["name"] == 'Dora "D" \\ 2' and data["payments"]["min_payout"] == 250
    assert cfg.read_text().count("name =") == 1
    for bad in ("", "   ", "a\u0000b", "x" * 129):
        out = rill("id", "--name", bad, home=home, code=1)
        assert "display name" in out.stderr
    assert js("id", home=home)["name"] == 'Dora "D" \\ 2'
    # a config without a name line gets one, before any table
    cfg.write_text("[payments]\nmin_payout = 5\n")
    assert "rill id --name NAME" in rill("id", home=home).stderr  # no name: how to set one
    assert set_name(Home(home), "Eve") == "Eve"
    assert tomllib.loads(cfg.read_text()) == {"name": "Eve", "payments": {"min_payout": 5}}
    # creator init signs the name in
    js("id", "--name", "Eve's blog", home=home)
    doc = js("creator", "init", "--site", "https://eve.example", home=home)
    assert '"name": "Eve\'s blog"' in doc["json"]


def test_pay_keeps_a_recorded_reference_unless_forced(tmp_path: Path) -> None:
    w = month_with_claims(tmp_path)
    cid = w["claims"][w["a"]]
    dora = w["dora"]
    js("pay", cid[:8], "--reference", "SEPA-1", home=dora, now=AFTER)
    out = rill("pay", cid[:8], "--reference", "SEPA-2", home=dora, now=AFTER, code=1)
    assert "already recorded as paid with reference 'SEPA-1'" in out.stderr
    assert "--force" in out.stderr
    err = rill("pay", cid[:8], "--reference", "SEPA-2", "--json", home=dora, now=AFTER,
               code=1).json()
    assert err["code"] == "already-paid"
    # the same reference again is no change, and is fine
    assert js("pay", cid, "--reference", "SEPA-1", home=dora, now=AFTER)[0]["reference"] == \
        "SEPA-1"
    assert [c["reference"] for c in js("claims", home=dora, now=AFTER) if c["id"] == cid] == \
        ["SEPA-1"]
    forced = js("pay", cid, "--reference", "SEPA-2", "--force", home=dora, now=AFTER)
    assert forced[0]["reference"] == "SEPA-2"
    # several claims at once: one refusal changes none of them
    other = w["claims"][w["b"]]
    rill("pay", other, cid, "--reference", "SEPA-3", home=dora, now=AFTER, code=1)
    states = {c["id"]: (c["state"], c["reference"]) for c in js("claims", home=dora, now=AFTER)}
    assert states[other] == ("owed", None) and states[cid] == ("paid", "SEPA-2")
