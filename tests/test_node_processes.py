"""Twelve `rill node run` processes on 127.0.0.1 in a sparse topology: a month end to end."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest
from procnet import RILL, ProcNode, wait_for

from rill.protocol.armour import armour
from rill.protocol.months import month_end, month_start

OCT = month_start("2026-10")
END = month_end("2026-10")


def test_a_month_across_six_processes(tmp_path: Path) -> None:
    """Two donors, two creators, two relays: the month of the twelve-process soak, small
    enough for every `make test`."""
    month_across_processes(tmp_path, 2)


@pytest.mark.soak
def test_a_month_across_twelve_processes(tmp_path: Path) -> None:
    month_across_processes(tmp_path, 4)


def month_across_processes(tmp_path: Path, k: int) -> None:
    """``k`` donors, ``k`` creators and ``k`` relays, each a `rill node run` process."""
    import subprocess

    names = [f"donor{i}" for i in range(k)] + [f"creator{i}" for i in range(k)] + \
        [f"relay{i}" for i in range(k)]
    nodes = {n: ProcNode(tmp_path, n, OCT + 3600) for n in names}
    order = [f"{role}{i}" for i in range(k) for role in ("relay", "donor", "creator")]
    try:
        # sparse: a ring, each node dialling the one before it, plus chords
        for i, name in enumerate(order):
            boot = [nodes[order[i - 1]].addr] if i else []
            if name == f"relay{k // 2}":
                boot.append(nodes["relay0"].addr)
            if name == f"creator{k - 1}" and k > 2:
                boot.append(nodes["relay1"].addr)
            nodes[name].start(boot)
            nodes[name].wait_started()
        # close the ring
        nodes["relay0"].rill("node", "status")
        creators = {n: nodes[n].id for n in names if n.startswith("creator")}
        # the donors click through October (CLI processes beside their daemons)
        for d in range(k):
            donor = nodes[f"donor{d}"]
            donor.rill("budget", "set", f"{5 + d}.00", "EUR", now=OCT + 60)
            for j in range(6):
                c = (d + j) % k
                donor.rill("click", f"https://creator{c}.example/post/{d}-{j}", "--creator",
                           creators[f"creator{c}"], now=OCT + 3600 * (j + 2))
            donor.rill("click", "https://nobody.example/", now=OCT + 86400)  # pending
        # the month ends: every daemon's clock moves past the end (all first, so no node
        # still lives in October when the first settlements arrive), then past the grace
        for t in (END + 1, END + 61, END + 121):
            for n in nodes.values():
                n.rill("node", "clock", str(t))
        expected: dict[str, set[str]] = defaultdict(set)
        for d in range(k):
            settled = nodes[f"donor{d}"]

            def settled_claims(node: ProcNode = settled) -> list:  # type: ignore[type-arg]
                return node.rill("claims", "--outgoing", now=END + 61) or []

            wait_for(lambda s=settled_claims: len(s()) == k, 60, "donor settlement")
            for c in settled_claims():
                name = next(n for n, v in creators.items() if v == c["creator"])
                expected[name].add(c["id"])
        # every creator ends up with all and only its claims
        for name in creators:
            node = nodes[name]
            wait_for(lambda node=node, name=name: {
                c["id"] for c in node.rill("claims", "--incoming", now=END + 61)
            } == expected[name], 60, f"{name}'s claims")
        # creators sign receipts from the CLI; the daemons publish them
        for name in creators:
            node = nodes[name]
            for cid in expected[name]:
                node.rill("receipt", cid, "--reference", f"ref-{cid[:8]}", now=END + 120)
        for d in range(k):
            donor = nodes[f"donor{d}"]
            wait_for(lambda donor=donor: all(
                c["state"] == "receipted"
                for c in donor.rill("claims", "--outgoing", now=END + 200)), 60,
                f"donor{d}'s receipts")
        status = nodes[f"relay{k // 2}"].rill("node", "status")
        assert status["peers"] >= 2 and status["counters"]["rejected"] == 0
        peers = nodes["relay0"].rill("peers")
        assert peers and all("score" in p and "last_sync" in p for p in peers)
    finally:
        codes = {n: node.stop() for n, node in nodes.items()}
    assert set(codes.values()) == {0}, codes  # every daemon shut down cleanly on SIGTERM
    # `rill verify` accepts everything every node stored
    files = []
    for name in names:
        db = sqlite3.connect(tmp_path / name / "rill.db")
        for i, (type_, raw) in enumerate(db.execute("SELECT type, raw FROM objects")):
            f = tmp_path / "dump" / f"{name}-{i}.rill"
            f.parent.mkdir(exist_ok=True)
            f.write_text(armour(raw, type_))
            files.append(str(f))
        db.close()
        assert not (tmp_path / name / "node.sock").exists()
    proc = subprocess.run([RILL, "verify", "--at", str(END + 300), *files],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert f"{len(files)} valid, 0 invalid" in proc.stderr


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket
    import subprocess

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        for args in (["--listen", f"/ip4/127.0.0.1/tcp/{port}", "--dashboard-port", "0"],
                     ["--listen", "/ip4/127.0.0.1/tcp/0", "--dashboard-port", str(port)]):
            proc = subprocess.run([RILL, "node", "run", "--home", str(tmp_path / "h"), *args],
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 1
            assert "rill: error: the node could not start" in proc.stderr
            assert "Traceback" not in proc.stderr
    finally:
        busy.close()


def test_a_second_node_on_the_same_port_is_refused(tmp_path: Path) -> None:
    """py-libp2p's listener sets SO_REUSEPORT: without the daemon's own check a second
    node would bind the port silently and the kernel would split connections."""
    import subprocess

    first = ProcNode(tmp_path, "first", OCT)
    try:
        first.start([])
        first.wait_started()
        proc = subprocess.run([RILL, "node", "run", "--home", str(tmp_path / "second"),
                               "--listen", f"/ip4/127.0.0.1/tcp/{first.port}",
                               "--dashboard-port", "0"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert "rill: error: the node could not start" in proc.stderr
        assert f"TCP port {first.port}" in proc.stderr and "--listen" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert first.proc is not None and first.proc.poll() is None  # the first runs on
    finally:
        assert first.stop() == 0
