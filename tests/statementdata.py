"""A creator with two months of claims, for the statement, export and statistics tests.

Cleo (the creator) has things a, b, c at https://cleo.example.  Three donors, whose key
documents Cleo holds (names with a comma and quotes, and one that a spreadsheet would
run as a formula):

* Ann (9.00 EUR a month) flattrs cleo/a, cleo/b and bob/x in October (300 cents each:
  Cleo's claim 600 for a and b), cleo/a alone in November (900);
* Ben (5.00 EUR) flattrs cleo/a in October (500);
* Cy (4.00 EUR) flattrs cleo/c and cleo/a in November (200 each: 400).

Cleo receipts Ann's October claim in full (a reference that looks like a formula), Ben's
October claim in part (450 of 500) and Cy's November claim; Ann's November claim is owed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import signing_key

from rill.protocol import messages as m
from rill.protocol.months import month_end, month_start
from rill.wallet.wallet import Wallet

OCT, NOV, DEC = month_start("2026-10"), month_start("2026-11"), month_start("2026-12")
#: When Cleo signs the receipts; statements are signed after it.
RECEIPTS_AT = month_end("2026-11") + 7200
A, B, C = ("https://cleo.example/a", "https://cleo.example/b,notes",
           "https://cleo.example/c")
BOB_THING = "https://bob.example/x"
NAMES = {"ann": 'Ann "the patron", Esq.', "ben": "=HYPERLINK(\"http://evil\")",
         "cy": "Cy"}
FORMULA_REF = "=cmd|' /C calc'!A0"


@dataclass
class Scenario:
    cleo: Path
    donors: dict[str, Path]
    cleo_did: str
    dids: dict[str, str]
    #: (donor, month) -> the claim to Cleo
    claims: dict[tuple[str, str], m.Signed[m.Claim]] = field(default_factory=dict)
    #: (donor, month) -> Cleo's receipt
    receipts: dict[tuple[str, str], m.Signed[m.Receipt]] = field(default_factory=dict)

    def open(self) -> Any:
        return Wallet.open(self.cleo)


def _wallet(path: Path, name: str) -> Wallet:
    w = Wallet.create(path, name, bytes(signing_key(name)))
    cfg = path / "config.toml"
    cfg.write_text(cfg.read_text().replace("work_bits = 20", "work_bits = 0"))
    return w


def build(tmp: Path) -> Scenario:
    cleo = _wallet(tmp / "cleo", "cleo")
    bob = signing_key("bob")
    cleo_doc = m.sign(m.KeyDocument("Cleo", ("https://cleo.example",), (), OCT), cleo.key)
    bob_doc = m.sign(m.KeyDocument("Bob", ("https://bob.example",), (), OCT), bob)
    s = Scenario(tmp / "cleo", {}, cleo.did, {})
    plan = {"ann": (900, {"2026-10": [A, B, BOB_THING], "2026-11": [A]}),
            "ben": (500, {"2026-10": [A]}),
            "cy": (400, {"2026-11": [C, A]})}
    for name, (budget, months) in plan.items():
        w = _wallet(tmp / name, name)
        s.donors[name], s.dids[name] = tmp / name, w.did
        doc = m.sign(m.KeyDocument(NAMES[name], (f"https://{name}.example",), (), OCT), w.key)
        cleo.import_object(doc.raw, OCT + 1)
        for d in (cleo_doc, bob_doc):
            w.import_object(d.raw, OCT + 1)
        w.set_budget(budget, "EUR", OCT + 2)
        for month in ("2026-10", "2026-11"):
            start = month_start(month)
            for i, thing in enumerate(months.get(month, [])):
                who = bob.verify_key.encode() if thing == BOB_THING else cleo.identity
                w.click(thing, start + 100 + i, creator=who)
            if month not in months:
                continue
            res, _ = w.settle(month, month_end(month) + 3600)
            claim = next(c for c in res.claims if c.body.creator == cleo.identity)
            sealed = next(x for x in res.sealed if x.body.creator == cleo.identity)
            s.claims[(name, month)] = claim
            cleo.import_object(res.settlement.raw, month_end(month) + 3700)
            cleo.import_object(sealed.raw, month_end(month) + 3700)
        w.close()
    for (name, month), ref, amount in ((("ann", "2026-10"), FORMULA_REF, None),
                                       (("ben", "2026-10"), "SEPA partial", 450),
                                       (("cy", "2026-11"), "LN 7f3a", None)):
        s.receipts[(name, month)] = cleo.sign_receipt(s.claims[(name, month)].id,
                                                      RECEIPTS_AT, ref, amount)
    cleo.close()
    # the donors learn of their receipts (their giving export shows them)
    for (name, _), r in s.receipts.items():
        with Wallet.open(s.donors[name]) as w:
            w.import_object(r.raw, RECEIPTS_AT + 60)
    return s
