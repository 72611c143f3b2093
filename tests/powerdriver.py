"""The wallet process of tests/test_power_loss.py: random wallet work until killed.

    python powerdriver.py DONOR CREATOR SPARE SEED START

Works on two homes (a donor and the creator it clicks for) and a folder for exports,
restored and new homes, all on LazyFS.  It picks operations at random (seeded) and
prints one line per operation, *after* the call returned (the acknowledgement):

    begin <op>                                 before each operation
    entry <id>                                 a click or budget change in the log
    settle <month> <sha256 of its objects>     a month settled
    paid <claim>   in <claim>   receipt <claim>   receipted <claim>
    export <file> <sha256>     import <home> <entries>     init <home> <name>
    name <home> <name>

Exports and imports go through the real CLI commands (in this process).  Each line is
one write(2) to the pipe, so a kill never leaves half a line.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path

from rill.cli import main as cli
from rill.protocol import messages as m
from rill.protocol.months import month_end, month_start, next_month
from rill.wallet.wallet import Wallet

FIRST_MONTH = "2026-10"


def say(text: str) -> None:
    os.write(1, (text + "\n").encode())


def settled_hash(res: object) -> str:
    h = hashlib.sha256(res.settlement.raw)  # type: ignore[attr-defined]
    for c in (*res.claims, *res.sealed):  # type: ignore[attr-defined]
        h.update(c.raw)
    return h.hexdigest()


def run_cli(*args: str, now: int) -> dict:  # type: ignore[type-arg]
    """A CLI command in this process; its --json output is returned."""
    import contextlib
    import io

    os.environ["RILL_NOW"] = str(now)
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            cli.main([*args, "--json"], standalone_mode=False)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    if code:
        raise RuntimeError(f"rill {' '.join(args)} exited {code}: {out.getvalue()[-300:]}")
    return json.loads(out.getvalue())


def main() -> None:
    donor_home, creator_home, spare = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    rng = random.Random(int(sys.argv[4]))
    i = int(sys.argv[5])
    donor = Wallet.open(donor_home)
    creator = Wallet.open(creator_home)
    say("open")
    ops = ["click"] * 10 + ["budget"] * 2 + ["settle", "pay", "take", "receipt",
                                               "receipted", "export", "import", "init", "name"]
    while True:
        i += 1
        settled = donor.settled_months()
        month = next_month(settled[-1]) if settled else FIRST_MONTH
        t = month_start(month) + i  # the clock: inside the month being clicked
        after = month_end(month) + 60
        op = rng.choice(ops)
        say(f"begin {op}")
        if op == "click":
            url = f"https://site{i % 7}.example/{i}"
            r = donor.click(url, now=t, creator=None if i % 9 == 0 else creator.identity)
            if r.entry is not None:
                say(f"entry {r.entry.id.hex()}")
        elif op == "budget":
            say(f"entry {donor.set_budget(500 + i % 1000, 'EUR', now=t).id.hex()}")
        elif op == "settle":
            if donor.budget(month) is None or not donor.month_view(month).known:
                continue
            res, _ = donor.settle(month, after)
            say(f"settle {month} {settled_hash(res)}")
        elif op == "pay":
            for p in donor.due():
                if p.payable:
                    for o in donor.pay(p.claims, f"ref-{i}", now=t):
                        say(f"paid {o.claim.hex()}")
        elif op == "take":  # the creator takes in what the donor settled
            for _, settlement, sealed in donor.unreceipted():
                creator.import_object(settlement, t)
                for raw in sealed:
                    r = creator.import_object(raw, t)
                    if r.action == "claim-received":
                        say(f"in {r.id.hex()}")
        elif op == "receipt":
            owed = [o for o in creator.obligations(direction="in") if o.state == "owed"]
            if owed:
                o = rng.choice(owed)
                creator.sign_receipt(o.claim, t, f"ref-{i}")
                say(f"receipt {o.claim.hex()}")
        elif op == "receipted":  # the donor takes in the creator's receipts
            for raw in creator.receipts_signed():
                if donor.import_object(raw, t).action == "receipted":
                    say(f"receipted {m.decode(raw, m.Receipt).body.claim.hex()}")
        elif op == "export":
            out = spare / f"export-{i}.rill"
            run_cli("export", "--out", str(out), "--with-key", "--home", str(donor_home),
                    now=t)
            say(f"export {out} {hashlib.sha256(out.read_bytes()).hexdigest()}")
        elif op == "import":
            files = sorted(spare.glob("export-*.rill"))
            if files:
                home = spare / f"restored-{i}"
                got = run_cli("import", str(rng.choice(files)), "--home", str(home), now=t)
                say(f"import {home} {got['entries']}")
        elif op == "init":
            home = spare / f"new-{i}"
            Wallet.create(home, f"new {i}", hashlib.sha256(b"%d" % i).digest()).close()
            say(f"init {home} new {i}")
        elif op == "name":
            creator.set_name(f"creator {i}")
            say(f"name {creator_home} creator {i}")


if __name__ == "__main__":
    try:
        main()
    except BaseException as exc:  # the file system went away under us (a LazyFS crash)
        say(f"error {type(exc).__name__}: {str(exc)[:200]}".replace("\n", " "))
        os._exit(3)
