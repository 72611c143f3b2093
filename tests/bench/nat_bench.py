"""The NAT benchmark of run.py (`nat_claim_latency`): three `rill node run` processes on
127.0.0.1 -- a public relay, a creator that listens on nothing (behind NAT: it reserves
a slot on the relay), a donor that knows only the creator's relayed address -- and the
time from month end (the donor's clock moved past month end + grace) to the sealed claim
in the creator's wallet."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from nodes import free_port  # noqa: E402
from procnet import RILL, read_started, terminate  # noqa: E402

from rill.node import control  # noqa: E402
from rill.protocol.months import month_end, month_start  # noqa: E402
from rill.wallet.wallet import Wallet  # noqa: E402

MONTH = "2026-10"
OCT, END = month_start(MONTH), month_end(MONTH)
GRACE = 60
#: Every home of this private bench network asks the same, small proof of work: the
#: public 20 bits cost 1-4 s of one core at settle time, before anything reaches the
#: network, whatever the creator's reachability (tests/test_natrelay.py computes it first)
WORK_BITS = 8


class Proc:
    def __init__(self, base: Path, name: str, run: int) -> None:
        self.name, self.home, self.log = name, base / name, base / f"{name}.log"
        seed = hashlib.sha256(f"rill nat bench {run} {name}".encode()).digest()
        with Wallet.create(self.home, name, seed) as w:
            self.identity = w.identity
        cfg = self.home / "config.toml"
        cfg.write_text(cfg.read_text().replace("work_bits = 20", f"work_bits = {WORK_BITS}"))
        self.proc: subprocess.Popen[str] | None = None
        self.started: dict[str, Any] = {}

    def start(self, *args: str) -> None:
        argv = [RILL, "node", "run", "--json", "--home", str(self.home), "--clock",
                f"manual:{OCT + 3600}", "--grace", str(GRACE), "--dashboard-port", "0",
                "--no-mdns", "--no-rendezvous", "--log-level", "info", *args]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)

    def wait_started(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        self.started = read_started(self.proc, self.name, self.log, timeout)

    def call(self, cmd: str, **args: Any) -> Any:
        return control.call(self.home / control.SOCKET_NAME, cmd, 30, **args)

    def stop(self) -> int:
        code = terminate(self.proc)
        self.proc = None
        return code


def _wait(pred: Any, timeout: float, what: str, every: float = 0.02) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(every)
    raise AssertionError(f"timed out ({timeout:.0f} s) waiting for {what}")


def _incoming(home: Path) -> int:
    import sqlite3

    db = sqlite3.connect(f"file:{home / 'rill.db'}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT count(*) FROM obligations WHERE direction = 'in'")
                   .fetchone()[0])
    finally:
        db.close()


def nat_once(base: Path, run: int) -> dict[str, Any]:
    """One month end through a relay; the figures of one run."""
    base.mkdir(parents=True, exist_ok=True)
    relay, creator, donor = (Proc(base, n, run) for n in ("relay", "creator", "donor"))
    out: dict[str, Any] = {}
    try:
        relay.start("--listen", f"/ip4/127.0.0.1/tcp/{free_port()}")
        relay.wait_started()
        relay_addr = relay.started["addrs"][0]
        t0 = time.monotonic()
        creator.start("--no-listen", "--bootstrap", relay_addr)
        creator.wait_started()

        def relayed() -> list[str]:
            return list(creator.call("status")["reachability"]["relayed_addrs"])

        _wait(lambda: bool(relayed()), 30, "the creator's reservation", every=0.1)
        out["reserve"] = time.monotonic() - t0
        (addr,) = relayed()
        with Wallet.open(donor.home) as w:
            w.set_budget(900, "EUR", OCT + 10)
            w.click("https://creator.example/1", OCT + 20, creator=creator.identity)
        t0 = time.monotonic()
        donor.start("--listen", f"/ip4/127.0.0.1/tcp/{free_port()}", "--bootstrap", addr)
        donor.wait_started()
        creator_peer = creator.started["peer_id"]
        _wait(lambda: any(p["peer_id"] == creator_peer for p in donor.call("peers")), 30,
              "the donor and the creator as gossip peers through the relay", every=0.1)
        out["connect"] = time.monotonic() - t0
        time.sleep(1.5)  # a heartbeat or two: the mesh of each topic is formed
        after = END + GRACE + 1
        for p in (relay, creator):
            p.call("clock", set=after)
        t0 = time.monotonic()
        donor.call("clock", set=after)  # month end + grace at the donor: it settles now
        _wait(lambda: _incoming(creator.home) >= 1, 30, "the sealed claim at the creator")
        out["latency"] = time.monotonic() - t0
        out["relayed"] = any("/p2p-circuit" in a for p in donor.call("peers")
                             if p["peer_id"] == creator_peer for a in p["addrs"])
    finally:
        out["exit"] = [p.stop() for p in (donor, creator, relay)]
    return out


def nat_claim_latency(base: Path, runs: int = 3) -> list[tuple[str, str, str, str]]:
    import statistics

    results = [nat_once(base / f"run-{k}", k) for k in range(runs)]
    lat = [r["latency"] for r in results]
    med = statistics.median(lat)
    note = (f"runs {', '.join(f'{x * 1000:.0f}' for x in lat)} ms; three `rill node run` "
            "processes on 127.0.0.1: a public relay (relay on, default limits), a creator "
            "started with --no-listen (no listener at all: it reserves a slot on the relay, "
            f"median {statistics.median(r['reserve'] for r in results):.1f} s from start), a "
            "donor whose only bootstrap is the creator's relayed address "
            f"(/p2p-circuit; connected as gossip peers in "
            f"{statistics.median(r['connect'] for r in results):.1f} s); from the donor's "
            "manual clock moved past month end + grace (it settles and publishes the "
            "settlement and the sealed claim) to the claim in the creator's SQLite (polled "
            f"read-only every 20 ms); proof of work {WORK_BITS} bits on this bench network; "
            f"target < 5 s: {'met' if med < 5 and all(x < 5 for x in lat) else 'NOT met'}")
    if not all(r["relayed"] for r in results) or any(any(r["exit"]) for r in results):
        note += f"; PROBLEMS: relayed {[r['relayed'] for r in results]}, exit codes " \
                f"{[r['exit'] for r in results]}"
    return [("month end -> sealed claim at a creator behind NAT (through a relay), median of "
             f"{runs}", f"{med * 1000:.0f}", "ms", note)]


if __name__ == "__main__":
    import tempfile

    for row in nat_claim_latency(Path(tempfile.mkdtemp(prefix="rill-nat-"))):
        print(" | ".join(row))
    os._exit(0)
