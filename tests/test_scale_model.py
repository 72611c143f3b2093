"""The scale model's DHT arithmetic (tests/scale/model.py): the keys a node provides by
SPEC §11.1 and §11.6's rules, and how a lookup's cost is carried to larger N; the simulation's
DHT-only runs and its count of GossipSub RPCs by part."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "scale_model", Path(__file__).parent / "scale" / "model.py")
assert _spec is not None and _spec.loader is not None
model = importlib.util.module_from_spec(_spec)
sys.modules["scale_model"] = model
_spec.loader.exec_module(model)


def test_keys_a_node_provides() -> None:
    # without shards: the rendezvous key, every node
    assert model.keys_per_node(50, 0) == model.keys_per_node(10**6, 0) == 1.0
    # SPEC's bits at 10^6 (b = 15, ~30 own members a shard): the own shard's key, the
    # rendezvous for 2^-13 of the nodes, and a lookup of each backbone shard weekly
    b = model.spec_bits(10**6)
    assert b == 15
    weekly = 2 * (1 - 2 ** -15) / 7
    assert model.keys_per_node(10**6, b) == pytest.approx(1 + 2 ** -13 + weekly, rel=1e-4)
    # a network with more bits than its size calls for (~1.6 own members a shard): the
    # backbone shards are short, each looked up and provided every round
    assert model.keys_per_node(100, 6) == pytest.approx(
        1 + 2 ** -4 + 2 * (63 / 64) * 2, rel=1e-3)
    # at 2 bits or fewer every node announces the rendezvous key too
    assert model.keys_per_node(100, 2) == pytest.approx(2 + 2 * 0.75 / 7, rel=1e-2)


def _point(n: int, bits: int) -> model.Point:
    return model.Point({"n": n, "shard_bits": bits, "k": 2, "objects_held": [1.0],
                        "idle_cpu_s": 0.0, "idle_bytes_s": 0.0, "month_end_bytes": [0],
                        "month_end_cpu_s": 0.0, "full_s": 1.0, "round_bytes": 0,
                        "stored": [0]})


def test_a_lookups_growth_comes_from_the_dht_only_runs_when_there_are_two_sizes() -> None:
    points = [_point(50, 1), _point(100, 2)]  # no refresh or provide measured
    dht = [{"n": 100, "refresh": {"kb": 40.0}, "provide": {"kb": 60.0}},
           {"n": 1000, "refresh": {"kb": 120.0}, "provide": {"kb": 180.0}}]
    factor, how = model.dht_growth(points, 100, dht)
    per_doubling = 200 / math.log2(10)
    line = 100 + per_doubling * (math.log2(10**6) - math.log2(100))
    assert factor(10**6) == pytest.approx(line / 100)  # steeper than lookup_peers's ratio
    assert factor(10**6) > model.lookup_peers(10**6) / model.lookup_peers(100)
    assert factor(100) == pytest.approx(1.0)
    assert "DHT-only" in how and "N = 100–1,000" in how
    # a flat DHT line: the lookup_peers ratio stands
    flat = [{**r, "refresh": {"kb": 50.0}, "provide": {"kb": 50.0}} for r in dht]
    factor, how = model.dht_growth(points, 100, flat)
    assert factor(10**6) == pytest.approx(model.lookup_peers(10**6) / model.lookup_peers(100))
    # one size only: no line
    factor, how = model.dht_growth(points, 100, dht[:1])
    assert "DHT-only" not in how


def test_yamux_pings_are_counted_per_connection_a_node_keeps() -> None:
    """No run sees a ping (the next comes 20 minutes after the last frame): the model adds
    0.05 B/s per peer at rest, and a run that did not count its peers takes the median of
    those of its setting that did (of every run that did when none of its setting did)."""
    assert abs(model.PING_BPS - 0.05) < 1e-12  # a ping and its answer, 30 bytes, per 1,200 s
    counted = [model.Point({**_point(50, 1).r, "idle_peers": p}) for p in (10.0, 30.0)]
    plain, bare = _point(100, 2), _point(50, 0)
    model.fill_peers([*counted, plain, bare])
    assert counted[0].ping_bps() == pytest.approx(0.5)
    assert plain.ping_bps() == bare.ping_bps() == pytest.approx(1.0)  # median of 10, 30
    assert plain.idle_total_bps() == pytest.approx(1.0)
    quiet = _point(50, 1)
    assert counted[1].month_mb() - quiet.month_mb() == pytest.approx(
        1.5 * model.MONTH_S / 1e6)
    unsharded = model.Point({**_point(50, 0).r, "idle_peers": 40.0})
    model.fill_peers([*counted, plain, unsharded, bare])
    assert bare.ping_bps() == pytest.approx(2.0) and plain.ping_bps() == pytest.approx(1.0)
    # extrapolated: a sharded node at the cap, an unsharded one as measured
    from rill.node.upkeep import MAX_CONNECTIONS
    assert model.connections(True, 28.5) == MAX_CONNECTIONS
    assert model.connections(False, 28.5) == 28.5


def test_the_dht_only_simulation_measures_a_small_network(tmp_path: Path) -> None:
    """tests/scale/dhtsim.py end to end at N = 12 (bare hosts in 2 processes): every
    operation completes and is counted."""
    import json
    import subprocess

    out = tmp_path / "dht.json"
    subprocess.run([sys.executable, str(Path(__file__).parent / "scale" / "dhtsim.py"), "12",
                    "--procs", "2", "--sample", "3", "--json", str(out)],
                   check=True, capture_output=True, timeout=240)
    (run,) = json.loads(out.read_text())
    assert run["n"] == 12
    for what in ("refresh", "provide", "find", "ping"):
        r = run[what]
        assert r["ok"] == r["of"] == 3, (what, r)
        assert r["kb"] > 0 and r["cpu_s"] > 0
    assert run["refresh"]["asked"] >= 1 and run["provide"]["asked"] >= 1
    assert "/ipfs/kad/1.0.0" in run["provide"]["by_protocol"]
    assert run["ping"]["connections"] >= 2  # a new connection, counted at both ends


def test_the_simulation_counts_gossipsub_rpcs_by_part() -> None:
    """tests/scale/worker.py ``rpc_kinds``: what idle GossipSub bytes are spent on (PRUNE's
    offered peers apart from the PRUNE), the parts adding up to the RPC's size."""
    from libp2p.pubsub.pb import rpc_pb2

    spec = importlib.util.spec_from_file_location(
        "scale_worker", Path(__file__).parent / "scale" / "worker.py")
    assert spec is not None and spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    rpc = rpc_pb2.RPC()
    rpc.subscriptions.add(subscribe=True, topicid="rill/1/b1/s0")
    rpc.publish.add(data=b"x" * 300, topicIDs=["rill/1/b1/s0"])
    rpc.control.graft.add(topicID="rill/1/b1/s1")
    prune = rpc.control.prune.add(topicID="rill/1/b1/s1", backoff=60)
    prune.peers.add(peerID=b"p" * 38, signedPeerRecord=b"r" * 200)
    rpc.control.ihave.add(topicID="rill/1/b1/s0", messageIDs=[b"i" * 32] * 3)
    kinds = worker.rpc_kinds(rpc)
    assert set(kinds) >= {"subscriptions", "publish", "graft", "prune", "prune-px", "ihave"}
    assert kinds["publish"] > 300 and kinds["prune-px"] > 238 > kinds["prune"]
    assert kinds["ihave"] > 96
    assert sum(kinds.values()) == rpc.ByteSize()  # the framing of each part in "other"
    assert worker.rpc_kinds(rpc_pb2.RPC()) == {}


def _run(n: int, bits: int, held: float, month_end_mb: float, cpu_s: float) -> dict:
    return {"n": n, "shard_bits": bits, "k": 2, "procs": 2, "objects_held": [held],
            "idle_cpu_s": 0.0, "idle_bytes_s": 0.0, "month_end_bytes": [month_end_mb * 1e6],
            "month_end_cpu_s": cpu_s * n, "full_s": 10.0, "gossip_s": 5.0,
            "full_complete": f"{n}/{n} creators, {n}/{n} full sets", "round_bytes": 0,
            "gossip_complete": f"{n}/{n} creators, 0/{n} full sets",
            "stored": [0], "settle_s": 100.0, "settle_bytes": 2e5}


def test_runs_too_large_for_the_machine_are_reported_beside_the_fit_not_in_it() -> None:
    spec = importlib.util.spec_from_file_location(
        "scale_report", Path(__file__).parent / "scale" / "report.py")
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    # at rest: 1 MB + 10 KB an object held, 1 s + 10 ms an object
    rest = [_run(50, 1, 100, 2.0, 2.0), _run(100, 2, 200, 3.0, 3.0)]
    loaded = [_run(500, 4, 300, 3.5, 9.0), _run(500, 4, 400, 9.9, 9.9)]  # the last counts
    text = report.report(rest, None, loaded)
    # the table and the fit are the runs at rest's alone, the loaded runs come after
    assert text.startswith(report.report(rest, None).rstrip("\n"))
    rows = [line for line in text.splitlines() if line.startswith("| 500 |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert cells[2] == "250"  # daemons per worker process
    assert cells[3].startswith("400, ")  # held: the last run's mean, then the arithmetic
    assert cells[7] == "9.90, 9.90, 5.00"  # measured, idle deducted, the fit at 400 held
    assert cells[8] == "9.9, 5.0"
    # with one size at rest there is no fit: the loaded run is still reported
    alone = report.report(rest[:1], None, loaded)
    row = next(line for line in alone.splitlines() if line.startswith("| 500 |"))
    assert "9.90, 9.90, – |" in row and "9.9, – |" in row
