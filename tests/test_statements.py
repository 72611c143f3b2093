"""Statements (SPEC §5.9): signing, the rules of the type, `rill verify` against the
claims and receipts given with it (per-row errors), the CSV and JSON exports with their
escaping and formula guard, the donor's giving export, and a creator's statistics from
a known set of claims (tests/statementdata.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from clitools import js, rill
from statementdata import (
    FORMULA_REF,
    NAMES,
    RECEIPTS_AT,
    A,
    B,
    C,
    Scenario,
    build,
)

from rill.protocol import checks
from rill.protocol import messages as m
from rill.protocol.armour import armour
from rill.protocol.errors import RemoteError
from rill.protocol.months import month_end
from rill.protocol.network import TOPICS, check_gossip
from rill.protocol.statement import StatementRow, make_statement
from rill.protocol.verify import verify_files
from rill.wallet import statements as st
from rill.wallet.errors import Refused
from rill.wallet.exports import safe_cell, to_csv

NOW = RECEIPTS_AT + 3600


@pytest.fixture(scope="module")
def scen(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return build(tmp_path_factory.mktemp("statements"))


def _sign(s: Scenario, month: str = "2026-10") -> list[m.Signed[m.Statement]]:
    with s.open() as w:
        return st.sign_statements(w, month, NOW)


def _files(tmp: Path, *objs: m.Signed[Any]) -> list[tuple[str, bytes]]:
    return [(f"{i}-{o.type}", armour(o.raw, o.type).encode()) for i, o in enumerate(objs)]


# -- the object ---------------------------------------------------------------------


def test_statement_lists_every_claim_of_the_month_with_totals(scen: Scenario) -> None:
    [s] = _sign(scen)
    again = m.decode(s.raw)
    assert again.signer_did == scen.cleo_did and again.body.month == "2026-10"
    rows = {r.claim: r for r in again.body.rows}
    ann, ben = scen.claims[("ann", "2026-10")], scen.claims[("ben", "2026-10")]
    assert set(rows) == {ann.id, ben.id}
    assert [r.claim for r in again.body.rows] == sorted(rows)
    assert rows[ann.id].donor == ann.signer and rows[ann.id].amount == 600
    assert rows[ben.id].state == "receipted" and rows[ben.id].received == 450
    assert rows[ben.id].receipt == scen.receipts[("ben", "2026-10")].id
    [total] = again.body.totals
    assert (total.currency, total.claims, total.amount, total.received) == \
        ("EUR", 2, 1100, 1050)
    [nov] = _sign(scen, "2026-11")
    states = sorted(r.state for r in nov.body.rows)
    assert states == ["owed", "receipted"] and nov.body.totals[0].amount == 1300


def test_rules_of_the_type(scen: Scenario) -> None:
    [s] = _sign(scen)
    key = signing_key_of(scen)
    body = s.body
    wrong = m.Statement(body.month, body.time, 1, 1, body.rows,
                        (m.StatementTotal("EUR", 2, 1101, 1050),))
    with pytest.raises(Exception) as info:  # sign() refuses what decode would refuse
        m.sign(wrong, key)
    assert getattr(info.value, "code", None) == "bad-total"
    # a statement for a month not ended, or signed before it ended, is refused (§7.4)
    with pytest.raises(RemoteError) as err:
        checks.check_time(s, month_end("2026-10") - 1000)
    assert err.value.code == "future"
    early = m.sign(make_statement("2026-10", month_end("2026-10") - 400, body.rows), key)
    with pytest.raises(RemoteError) as err:
        checks.check_time(early, NOW)
    assert err.value.code == "bad-time"
    with scen.open() as w, pytest.raises(Refused) as refused:
        st.sign_statements(w, "2026-12", NOW)
    assert refused.value.code == "future"
    # statements are documents, not gossip: no topic takes them, a home does not keep one
    for topic in TOPICS:
        with pytest.raises(RemoteError) as err:
            check_gossip(topic, s.raw, NOW)
        assert err.value.code == "wrong-topic"
    with scen.open() as w, pytest.raises(Refused):
        w.import_object(s.raw, NOW)


def signing_key_of(s: Scenario) -> Any:
    with s.open() as w:
        return w.key


def test_a_month_with_more_claims_than_a_statement_holds_is_signed_in_parts() -> None:
    from helpers import signing_key

    rows = [StatementRow(i.to_bytes(32, "big"), signing_key(f"d{i % 7}").verify_key.encode(),
                         "EUR", 100 + i, "owed") for i in range(m.Statement.MAX_ROWS + 1)]
    s = m.sign(make_statement("2026-10", NOW, rows[:m.Statement.MAX_ROWS], 1, 2),
               signing_key("cleo"))
    assert len(s.raw) <= m.Statement.MAX_SIZE
    assert m.decode(s.raw).body.totals[0].claims == m.Statement.MAX_ROWS
    with pytest.raises(Exception) as info:
        m.sign(make_statement("2026-10", NOW, rows), signing_key("cleo"))
    assert getattr(info.value, "code", None) == "schema"  # 2,001 rows


def test_parts_each_verify_against_their_claims(scen: Scenario, tmp_path: Path) -> None:
    with scen.open() as w:
        parts = st.sign_statements(w, "2026-10", NOW, size=1)
        evidence = st.statement_evidence(w, "2026-10")
    assert [(p.body.part, p.body.parts, len(p.body.rows)) for p in parts] == [(1, 2, 1),
                                                                             (2, 2, 1)]
    assert parts[0].body.rows[0].claim < parts[1].body.rows[0].claim
    assert sum(p.body.totals[0].amount for p in parts) == 1100
    claims = [o for o in evidence if o.type == "claim"]
    mine = [c for c in claims if c.id == parts[0].body.rows[0].claim]
    # a part is not refused for the claims of the other part given with it
    v = _verdict(verify_files(_files(tmp_path, parts[0], *claims), NOW), "statement")
    assert v.valid and v.checks == ["claims"]
    v = _verdict(verify_files(_files(tmp_path, parts[1], *mine), NOW), "statement")
    assert not v.valid and "not among the objects given" in v.reason


def test_the_largest_statement_fits_its_cap() -> None:
    """2,000 receipted rows in 2,000 currencies, every number at its largest: the size
    SPEC §5.9 gives, under the type's cap."""
    import hashlib
    import itertools

    from helpers import signing_key

    from rill.protocol.currency import MAX_AMOUNT

    curs = ["".join(c) for c in itertools.product("ABCDEFGHIJKLMNOPQRSTUVWXYZ", repeat=3)]
    donor = signing_key("d").verify_key.encode()
    rows = [StatementRow(hashlib.sha256(b"c%d" % i).digest(), donor, curs[i], MAX_AMOUNT,
                         "receipted", hashlib.sha256(b"r%d" % i).digest(), MAX_AMOUNT)
            for i in range(m.Statement.MAX_ROWS)]
    s = m.sign(make_statement("2026-10", 2**53 - 1, rows, 10000, 10000), signing_key("c"))
    assert len(s.raw) == 484196 < m.Statement.MAX_SIZE


# -- verify against claims and receipts ---------------------------------------------------


def _verdict(verdicts: list[Any], type_name: str) -> Any:
    return next(v for v in verdicts if v.type == type_name)


def test_verify_checks_every_row_against_its_claim_and_receipt(scen: Scenario,
                                                                tmp_path: Path) -> None:
    [s] = _sign(scen)
    claims = [scen.claims[("ann", "2026-10")], scen.claims[("ben", "2026-10")]]
    receipts = [scen.receipts[("ann", "2026-10")], scen.receipts[("ben", "2026-10")]]
    v = _verdict(verify_files(_files(tmp_path, s, *claims, *receipts), NOW), "statement")
    assert v.valid, v.reason
    assert v.checks == ["claims", "receipts"]
    # alone, a statement is only checked as an object
    v = _verdict(verify_files(_files(tmp_path, s), NOW), "statement")
    assert v.valid and v.checks == []
    # a claim missing from the batch, a receipt missing while others are given
    v = _verdict(verify_files(_files(tmp_path, s, claims[0], receipts[0]), NOW), "statement")
    assert not v.valid and v.reason.startswith("mismatch: row ")
    assert "the claim is not among the objects given" in v.reason
    v = _verdict(verify_files(_files(tmp_path, s, *claims, receipts[0]), NOW), "statement")
    assert not v.valid and "its receipt" in v.reason and "is not among" in v.reason
    # a claim of this creator and month that the statement leaves out
    nov = scen.claims[("ann", "2026-11")]
    [snov] = _sign(scen, "2026-11")
    v = _verdict(verify_files(_files(tmp_path, s, *claims, nov), NOW), "statement")
    assert v.valid  # another month's claim is not this statement's business
    v = _verdict(verify_files(_files(tmp_path, snov, nov), NOW), "statement")
    assert not v.valid and "is not among the objects given" in v.reason


def test_a_tampered_amount_is_refused_with_the_row_named(scen: Scenario,
                                                          tmp_path: Path) -> None:
    """The creator re-signs its statement with one amount changed (totals adjusted, so
    the object alone is valid): the claims given with it refuse it, row by row."""
    [s] = _sign(scen)
    key = signing_key_of(scen)
    ann = scen.claims[("ann", "2026-10")]
    rows = [StatementRow(r.claim, r.donor, r.currency, r.amount + 50 if r.claim == ann.id
                         else r.amount, r.state, r.receipt, r.received) for r in s.body.rows]
    forged = m.sign(make_statement("2026-10", NOW, rows), key)
    claims = [ann, scen.claims[("ben", "2026-10")]]
    v = _verdict(verify_files(_files(tmp_path, forged, *claims), NOW), "statement")
    assert not v.valid
    i = [r.claim for r in forged.body.rows].index(ann.id) + 1
    assert v.reason == (f"mismatch: row {i} (claim {ann.id_hex[:16]}): the statement says "
                        "650 EUR, the claim 600 EUR")
    # a received amount that is not the receipt's, and a donor that is not the claim's
    ben = scen.claims[("ben", "2026-10")]
    rows = [StatementRow(r.claim, ann.signer if r.claim == ben.id else r.donor, r.currency,
                         r.amount, r.state, r.receipt,
                         500 if r.claim == ben.id else r.received) for r in s.body.rows]
    forged = m.sign(make_statement("2026-10", NOW, rows), key)
    receipts = [scen.receipts[("ann", "2026-10")], scen.receipts[("ben", "2026-10")]]
    v = _verdict(verify_files(_files(tmp_path, forged, *claims, *receipts), NOW), "statement")
    assert not v.valid
    assert any("signed by another donor" in p for p in v.problems)
    assert any("500 EUR received, the receipt 450 EUR" in p for p in v.problems)
    assert "(and " in v.reason and len(v.problems) >= 3
    # the command line prints every failing row
    paths = []
    for name, data in _files(tmp_path, forged, *claims, *receipts):
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    out = rill("verify", *paths, now=NOW, code=1)
    assert out.stdout.count("row ") >= 3 and "BAD" in out.stdout
    report = json.loads(rill("verify", "--json", *paths, now=NOW, code=1).stdout)
    assert _by_type(report, "statement")["problems"] == v.problems


def _by_type(report: list[dict[str, Any]], t: str) -> dict[str, Any]:
    return next(r for r in report if r["type"] == t)


def test_rill_statement_with_claims_verifies_in_one_file(scen: Scenario,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "oct.rill"
    res = js("statement", "--month", "2026-10", "--with-claims", "--out", str(out),
             home=scen.cleo, now=NOW)
    assert res["claims"] == 2 and res["objects"] == 5  # statement, 2 claims, 2 receipts
    assert res["totals"] == [{"currency": "EUR", "claims": 2, "amount": 1100,
                              "received": 1050}]
    report = json.loads(rill("verify", "--json", str(out), now=NOW).stdout)
    assert _by_type(report, "statement")["checks"] == ["claims", "receipts"]
    assert all(r["valid"] for r in report)
    raw = tmp_path / "oct.cbor"
    rill("statement", "--month", "2026-10", "--format", "raw", "--out", str(raw),
         home=scen.cleo, now=NOW)
    assert m.decode(raw.read_bytes()).type == "statement"
    err = rill("statement", "--month", "2026-10", "--format", "csv", "--with-claims",
               "--json", home=scen.cleo, now=NOW, code=1)
    assert json.loads(err.stdout)["code"] == "usage"
    err = rill("statement", "--month", "2026-12", "--json", home=scen.cleo, now=NOW, code=1)
    assert json.loads(err.stdout)["code"] == "future"
    # a month without income: an empty statement, still signed and valid
    res = js("statement", "--month", "2026-09", home=scen.cleo, now=NOW)
    assert res["claims"] == 0 and res["totals"] == []
    [v] = verify_files([("sep.rill", res["content"].encode())], NOW)
    assert v.valid and v.type == "statement"


# -- exports ---------------------------------------------------------------------------


def test_formula_guard_and_quoting() -> None:
    for bad in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(bad) == "'" + bad
    assert safe_cell("1.50") == "1.50" and safe_cell(None) == "" and safe_cell("a=b") == "a=b"
    text = to_csv([{"name": 'a, "b"\nc', "amount": 150, "currency": "EUR"},
                   {"name": "-2+3", "amount": 5, "currency": "JPY"}],
                  ["name", "amount", "currency"])
    assert text.splitlines()[0] == "name,amount,currency"
    assert '"a, ""b""\nc",1.50,EUR\r\n' in text
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[1] == ['a, "b"\nc', "1.50", "EUR"]
    assert parsed[2] == ["'-2+3", "5", "JPY"]


def test_statement_csv_columns_escaping_and_guard(scen: Scenario) -> None:
    out = rill("statement", "--month", "2026-10", "--format", "csv", home=scen.cleo, now=NOW)
    rows = list(csv.DictReader(io.StringIO(out.stdout, newline="")))
    assert list(rows[0]) == list(st.STATEMENT_COLUMNS)
    by_donor = {r["donor"]: r for r in rows}
    ann, ben = by_donor[scen.dids["ann"]], by_donor[scen.dids["ben"]]
    assert ann["donor_name"] == NAMES["ann"]  # comma and quotes survive the round trip
    assert ben["donor_name"] == "'" + NAMES["ben"]  # a formula is defused
    assert ann["reference"] == "'" + FORMULA_REF
    assert (ann["amount"], ann["currency"], ann["state"], ann["received"]) == \
        ("6.00", "EUR", "receipted", "6.00")
    assert (ben["amount"], ben["received"]) == ("5.00", "4.50")
    assert ann["claim"] == scen.claims[("ann", "2026-10")].id_hex
    assert ann["receipt"] == scen.receipts[("ann", "2026-10")].id_hex
    doc = json.loads(rill("statement", "--month", "2026-10", "--format", "json",
                          home=scen.cleo, now=NOW).stdout)
    assert doc["totals"] == [{"currency": "EUR", "claims": 2, "amount": 1100,
                              "received": 1050}]
    assert {r["donor_name"] for r in doc["rows"]} == {NAMES["ann"], NAMES["ben"]}


def test_giving_export_for_the_donor(scen: Scenario) -> None:
    rows = js("giving", "--year", "2026", home=scen.donors["ann"], now=NOW)["rows"]
    cleo = [r for r in rows if r["creator"] == scen.cleo_did]
    assert [(r["month"], r["amount"], r["state"]) for r in cleo] == \
        [("2026-10", 600, "receipted"), ("2026-11", 900, "owed")]
    assert cleo[0]["receipt"] == scen.receipts[("ann", "2026-10")].id_hex
    # Ann recorded no payment: the reference is the one on Cleo's receipt
    assert cleo[0]["reference"] == FORMULA_REF and cleo[1]["reference"] is None
    assert cleo[0]["creator_name"] == "Cleo"
    assert len(rows) == 3  # and Bob's October claim
    text = rill("giving", "--year", "2026", "--format", "csv", home=scen.donors["ann"],
                now=NOW).stdout
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(parsed[0]) == list(st.GIVING_COLUMNS)
    assert [(r["month"], r["creator_name"], r["amount"], r["state"], r["reference"])
            for r in parsed if r["creator"] == scen.cleo_did] == \
        [("2026-10", "Cleo", "6.00", "receipted", "'" + FORMULA_REF),
         ("2026-11", "Cleo", "9.00", "owed", "")]
    assert js("giving", "--year", "2025", home=scen.donors["ann"], now=NOW)["rows"] == []


# -- statistics ------------------------------------------------------------------------


def test_creator_stats_from_known_claims(scen: Scenario) -> None:
    stats = js("creator", "stats", home=scen.cleo, now=NOW)
    octo, nov = stats["months"]
    assert {k: octo[k] for k in ("month", "flattrs", "donors", "supporters", "total",
                                 "receipted", "received", "claims")} == \
        {"month": "2026-10", "flattrs": 3, "donors": 2, "supporters": 2, "total": 1100,
         "receipted": 1100, "received": 1050, "claims": 2}
    assert sorted(octo["new_supporters"]) == sorted([scen.dids["ann"], scen.dids["ben"]])
    assert octo["top_things"] == [{"thing": A, "flattrs": 2}, {"thing": B, "flattrs": 1}]
    assert (nov["flattrs"], nov["donors"], nov["supporters"], nov["total"]) == (3, 2, 1, 1300)
    assert nov["new_supporters"] == [scen.dids["cy"]]  # Ann paid before: not new
    things = {t["thing"]: t for t in stats["things"]}
    assert [t["thing"] for t in stats["things"]] == [A, B, C]
    assert things[A]["months"] == [{"month": "2026-10", "flattrs": 2, "amount": 800},
                                   {"month": "2026-11", "flattrs": 2, "amount": 1100}]
    assert (things[B]["flattrs"], things[B]["amount"]) == (1, 300)
    assert (things[C]["flattrs"], things[C]["amount"]) == (1, 200)
    one = js("creator", "stats", "--month", "2026-11", home=scen.cleo, now=NOW)
    assert [e["month"] for e in one["months"]] == ["2026-11"]
    assert [(t["thing"], t["flattrs"], t["amount"]) for t in one["things"]] == \
        [(A, 2, 1100), (C, 1, 200)]
    text = rill("creator", "stats", home=scen.cleo, now=NOW).stdout
    assert "Per month" in text and "Per thing" in text


def test_thing_chart_scales_bars_to_the_best_month() -> None:
    chart = st.thing_chart([{"month": "2026-10", "flattrs": 2, "amount": 800},
                            {"month": "2026-11", "flattrs": 1, "amount": 100}], 200, 64)
    a, b = chart["bars"]
    assert a["h"] == 50 and b["h"] == 25 and a["y"] + a["h"] == b["y"] + b["h"] == 52
    assert (chart["first"], chart["last"]) == ("2026-10", "2026-11")
