"""`rill demo` end to end: nodes, creator sites, a month, receipts, verification, and what
it tells the user on the way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rill.node.demo_text import STEPS, TEXT, split_line

TEXT_OF = {title: text for _, title, text in STEPS}

RILL = str(Path(sys.executable).parent / "rill")
MONTH = "2026-10"


def flat(text: str) -> str:
    return " ".join(text.split())


def test_demo_runs_a_month_and_verifies_everything(tmp_path: Path) -> None:
    proc = subprocess.run([RILL, "demo", "--no-wait", "--json", "--dir", str(tmp_path / "d"),
                           "--donors", "2", "--creators", "2"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert r["month"] == MONTH
    for d in r["donors"]:
        assert d["claims"] == d["receipted"] > 0
        assert d["pending_left_out"] == 1  # the one site with no Rill key
        assert d["split"] == split_line(d["budget"], "EUR", d["things"], 1)
        # the dashboard opens on the settled month, not on an empty current one
        assert d["dashboard"].endswith(f"/?month={MONTH}")
    assert all(c["dashboard"].endswith(f"/creator?month={MONTH}") for c in r["creators"])
    budgets = sum(d["budget"] for d in r["donors"])
    assert sum(c["income"] for c in r["creators"]) == budgets  # every cent accounted for
    assert all(c["receipted"] == c["income"] for c in r["creators"])
    assert r["verified"]["valid"] == r["verified"]["total"] > 0
    assert [s["step"] for s in r["steps"]] == [k for k, _, _ in STEPS]
    # every node stopped: no control socket left behind
    assert not list((tmp_path / "d").glob("*/node.sock"))


def test_demo_explains_each_step_and_links_the_settled_month(tmp_path: Path) -> None:
    proc = subprocess.run([RILL, "demo", "--no-wait", "--dir", str(tmp_path / "d"),
                           "--donors", "1", "--creators", "1"],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = flat(proc.stderr)
    said = [out.find(flat(TEXT[k])) for k, _, _ in STEPS]
    assert all(i >= 0 for i in said), [k for (k, _, _), i in zip(STEPS, said, strict=True) if i < 0]
    assert said == sorted(said)  # in the order things happen
    for word in ("Budget", "Flattr", "Equal split", "Settlement", "Sealed claim", "Receipt"):
        assert len(f"{word}: {TEXT_OF[word]}") <= 78  # one line, even at 80 columns
        assert f"{word}: " in out
    # donor0's budget (5.00 EUR) over its two things, and the one left out
    assert "donor0: 5.00 EUR over 2 things = 2.50 EUR each; 1 without a key left out" in out
    assert f"/?month={MONTH}" in out and f"/creator?month={MONTH}" in out


def test_split_lines_show_the_rule_in_numbers() -> None:
    assert split_line(500, "EUR", 3, 0) == "5.00 EUR over 3 things = 1.66 EUR each " \
        "(+0.01 to the first 2)"
    assert split_line(750, "EUR", 1, 2) == "7.50 EUR over 1 thing = 7.50 EUR each; " \
        "2 without a key left out"
    assert split_line(100, "JPY", 3, 0) == "100 JPY over 3 things = 33 JPY each " \
        "(+1 to the first 1)"
