"""`rill demo` end to end: nodes, creator sites, a month, receipts, verification."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RILL = str(Path(sys.executable).parent / "rill")


def test_demo_runs_a_month_and_verifies_everything(tmp_path: Path) -> None:
    proc = subprocess.run([RILL, "demo", "--no-wait", "--json", "--dir", str(tmp_path / "d"),
                           "--donors", "2", "--creators", "2"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert r["month"] == "2026-10"
    for d in r["donors"]:
        assert d["claims"] == d["receipted"] > 0
        assert d["pending_left_out"] == 1  # the one site with no Rill key
    budgets = sum(d["budget"] for d in r["donors"])
    assert sum(c["income"] for c in r["creators"]) == budgets  # every cent accounted for
    assert all(c["receipted"] == c["income"] for c in r["creators"])
    assert r["verified"]["valid"] == r["verified"]["total"] > 0
    # every node stopped: no control socket left behind
    assert not list((tmp_path / "d").glob("*/node.sock"))
