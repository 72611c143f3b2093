"""What `rill demo` says: one line per step on what happens and why, each donor's
equal split in numbers, and the closing summary with dashboard links on the settled
month.  (node/demo.py runs the network.)"""

from __future__ import annotations

from typing import Any

from ..wallet.results import format_amount_safe

#: (step, title, what happens and why), in the order the demo goes through them.
STEPS: list[tuple[str, str, str]] = [
    ("sites", "Sites", "each creator's site serves a signed key file naming whom to pay."),
    ("budget", "Budget", "each donor fixes what the month costs them, however much they click."),
    ("nodes", "Nodes", "each person runs their own node: no server between donor and creator."),
    ("flattr", "Flattr", "click what you like; it is signed into your own log, seen by nobody."),
    ("split", "Equal split", "at month end each thing clicked gets an exact equal share."),
    ("settlement", "Settlement",
     "the split is signed and published: anyone can check it adds up."),
    ("claim", "Sealed claim", "an IOU each creator alone can open: its things, its amount."),
    ("receipt", "Receipt",
     "the donor pays (pretended here); the creator signs that it was paid."),
    ("verify", "Verify", "every object on every node is checked again: every cent adds up."),
]
TEXT = {step: f"{title}: {text}" for step, title, text in STEPS}


def split_line(budget: int, currency: str, things: int, left_out: int) -> str:
    """A donor's split in numbers: '7.50 EUR over 4 things = 1.87 EUR each (+0.01 to the
    first 2); 1 without a key left out'."""
    if not things:
        return f"{format_amount_safe(budget, currency)}: nothing to share"
    base, extra = divmod(budget, things)
    out = (f"{format_amount_safe(budget, currency)} over {things} "
           f"thing{'s' if things != 1 else ''} = {format_amount_safe(base, currency)} each")
    if extra:
        out += f" (+{format_amount_safe(1, currency).split()[0]} to the first {extra})"
    if left_out:
        out += f"; {left_out} without a key left out"
    return out


def print_step(console: Any, step: str) -> None:
    from rich.text import Text

    _, title, text = next(s for s in STEPS if s[0] == step)
    console.print(Text.assemble((f"{title}: ", "bold"), text))


def print_summary(console: Any, r: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(f"Donors, {r['month']}"), title_justify="left")
    for col in ("donor", "budget", "things", "claims", "receipted", "left out"):
        t.add_column(col)
    for d in r["donors"]:
        t.add_row(*(Text(str(x)) for x in (
            d["name"], format_amount_safe(d["budget"], "EUR") if d["budget"] else "-",
            d["things"], d["claims"], d["receipted"], d["pending_left_out"])))
    console.print(t)
    t = Table(title=Text(f"Creators, {r['month']}"), title_justify="left")
    for col in ("creator", "income", "supporters", "receipted"):
        t.add_column(col)
    for c in r["creators"]:
        t.add_row(*(Text(str(x)) for x in (
            c["name"], format_amount_safe(c["income"], "EUR"), c["supporters"],
            format_amount_safe(c["receipted"], "EUR"))))
    console.print(t)
    v = r["verified"]
    console.print(f"rill verify: {v['valid']} of {v['total']} stored objects valid.")
    # links on lines of their own, never folded: they must stay clickable
    console.print(Text(f"\nDashboards, open on {r['month']} (donors: shares and what to pay; "
                       "creators: income and receipts):"))
    for m in [*r["donors"], *r["creators"]]:
        console.print(Text(f"  {m['name']:<9} {m['dashboard']}"), overflow="ignore",
                      crop=False)
    console.print(Text("Creator sites with the button:"))
    for c in r["creators"]:
        console.print(Text(f"  {c['name']:<9} {c['site']}"), overflow="ignore", crop=False)
