"""How the DHT's upkeep grows with N: bare py-libp2p hosts (the daemon's own host set-up,
node/host.py ``make_host``, with the daemon's DHT patches, node/patches.py) running only
the Kademlia DHT, in P worker processes, at sizes the full simulation (tests/scale/sim.py:
whole Daemons, ~25 per core) cannot reach on a small machine.

Per size N: every host dials 3 random earlier hosts, then every host looks up its own ID
twice (the routing tables fill), then every host closes the connections it made since it
dialled its 3 (a sharded daemon closes connections outside its shards after 60 s, so each
lookup of its dials anew).  Then S sampled hosts, one after another, each make

- a routing-table refresh as the daemon makes it daily (a lookup of the host's own ID),
- a provide of a random key (a lookup, then ADD_PROVIDER to the 20 closest peers), as a
  member announces its own shard daily,
- a lookup of the providers of a key another sampled host provided (node/discovery.py
  ``find_providers``, as a publisher looks a shard's members up): its cost, and whether
  it found that provider,
- a ping of a routing-table peer it is not connected to, as py-libp2p's check of stale
  peers makes 60 an hour (node/patches.py now pings connected peers only): the cost of
  one new connection,

each host first closing the connections the previous operations left it.  Measured per
operation, summed over every host (so a byte sent and received counts twice, as the full
simulation's per-node means do when every node makes one operation): bytes at the raw TCP
connection, by stream protocol, peers asked (FIND_NODE requests sent), connections opened
and CPU seconds.

What this leaves out: the daemon's own hellos on each new connection (GossipSub's
subscriptions, and with a peer of its shards a sync and a reconciliation), which the full
simulation measures (docs/SCALE.md).

Usage: python tests/scale/dhtsim.py N [N ...] [--procs P] [--sample S] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from pipe import Pipe, all_do  # noqa: E402

#: each host dials this many random earlier hosts
FANOUT = 3
#: dials and bootstrap lookups in flight per process (LIBP2P_NOTES trap 14)
AT_ONCE = 8


# -- the worker -----------------------------------------------------------------------


async def worker_main() -> None:
    import gc

    import multiaddr
    import trio
    from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
    from libp2p.kad_dht.peer_routing import PeerRouting
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.tools.anyio_service import background_trio_service
    from nodes import free_port
    from worker import CONNECTIONS, NODE, PROTOCOL_BYTES, RECEIVED, SENT, _count_bytes, cpu_s, serve

    from rill.node.host import make_host
    from rill.node.patches import patch_libp2p

    patch_libp2p()
    _count_bytes()
    asked: dict[str, int] = {}
    query = PeerRouting._query_peer_for_closest

    async def counted_query(self: Any, peer: Any, key: bytes) -> Any:
        name = NODE.get()
        asked[name] = asked.get(name, 0) + 1
        return await query(self, peer, key)

    PeerRouting._query_peer_for_closest = counted_query  # type: ignore[method-assign]
    hosts: dict[str, Any] = {}
    dhts: dict[str, Any] = {}
    base: dict[str, set[Any]] = {}

    async def run_host(name: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        NODE.set(name)
        host = make_host(hashlib.sha256(b"dht " + name.encode()).digest())
        dht = KadDHT(host, DHTMode.SERVER)
        ma = multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{free_port()}")
        async with host.run([ma]), background_trio_service(dht):
            hosts[name], dhts[name] = host, dht
            task_status.started()
            await trio.sleep_forever()

    async def trim(name: str) -> None:
        """Close the host's connections other than its first dials'."""
        net = hosts[name].get_network()

        async def close(peer: Any) -> None:
            try:
                await net.close_peer(peer)
            except Exception as exc:  # already going: nothing to close
                print(f"closing {peer}: {exc!r}", file=sys.stderr)

        async with trio.open_nursery() as n:
            for peer in list(net.connections):
                if peer not in base.get(name, set()):
                    n.start_soon(close, peer)

    async def handle(cmd: dict[str, Any], nursery: Any) -> Any:
        op = cmd["op"]
        if op == "start":
            for name in cmd["names"]:
                await nursery.start(run_host, name)
            gc.freeze()
            return {name: f"{hosts[name].get_addrs()[0]}" for name in cmd["names"]}
        if op == "connect":
            limit = trio.CapacityLimiter(AT_ONCE)

            async def dial(name: str, addr: str) -> None:
                NODE.set(name)
                async with limit:
                    info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
                    with trio.move_on_after(30):
                        await hosts[name].connect(info)
                        await dhts[name].routing_table.add_peer(info.peer_id)

            async with trio.open_nursery() as n:
                for name, addr in cmd["pairs"]:
                    n.start_soon(dial, name, addr)
            return True
        if op == "base":  # the connections each host keeps
            for name, host in hosts.items():
                base[name] = set(host.get_network().connections)
            return True
        if op == "bootstrap":
            limit = trio.CapacityLimiter(AT_ONCE)

            async def refresh(name: str) -> None:
                NODE.set(name)
                async with limit:
                    with trio.move_on_after(60):
                        await dhts[name].peer_routing.refresh_routing_table()

            async with trio.open_nursery() as n:
                for name in hosts:
                    n.start_soon(refresh, name)
            return True
        if op == "trim":
            for name in cmd.get("names") or list(hosts):
                await trim(name)
            await trio.sleep(0.2)
            return True
        if op == "op":
            name, what = cmd["name"], cmd["what"]
            token = NODE.set(name)
            try:
                before = asked.get(name, 0)
                with trio.move_on_after(60) as scope:
                    if what == "refresh":
                        await dhts[name].peer_routing.refresh_routing_table()
                        ok = True
                    elif what == "ping":  # py-libp2p's check of a stale peer, unpatched
                        from libp2p.host.ping import PingService
                        net = hosts[name].get_network()
                        peers = [p for p in dhts[name].routing_table.get_peer_ids()
                                 if p not in net.connections]
                        ok = bool(peers) and bool(await PingService(hosts[name]).ping(
                            peers[0], ping_amt=1))
                    elif what == "find":  # a publisher's lookup of a shard's members
                        from rill.node.discovery import find_providers
                        infos = await find_providers(dhts[name], cmd["key"], 20)
                        ok = cmd["provider"] in {str(i.peer_id) for i in infos}
                    else:
                        ok = await dhts[name].provide(cmd["key"])
                return {"asked": asked.get(name, 0) - before, "id": str(hosts[name].get_id()),
                        "ok": bool(ok) and not scope.cancelled_caught,
                        "table": dhts[name].get_routing_table_size()}
            finally:
                NODE.reset(token)
        if op == "status":
            return {"bytes": sum(SENT.values()) + sum(RECEIVED.values()),
                    "protocols": dict(PROTOCOL_BYTES), "connections": CONNECTIONS[0],
                    "cpu": cpu_s()}
        if op == "stop":  # serve() returns after answering; the nursery is then cancelled
            return True
        raise ValueError(f"unknown op {op!r}")

    async with trio.open_nursery() as nursery:
        await serve(lambda cmd: handle(cmd, nursery))
        nursery.cancel_scope.cancel()


# -- the driver -----------------------------------------------------------------------


class Proc(Pipe):
    def __init__(self, log: Path) -> None:
        self.err = open(log, "w")  # noqa: SIM115
        self.p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True, cwd=ROOT)


def totals(procs: list[Proc]) -> dict[str, Any]:
    out: dict[str, Any] = {"bytes": 0, "protocols": {}, "connections": 0, "cpu": 0.0}
    for st in all_do(procs, [{"op": "status"}] * len(procs)):
        out["bytes"] += st["bytes"]
        out["connections"] += st["connections"]
        out["cpu"] += st["cpu"]
        for k, v in st["protocols"].items():
            out["protocols"][k] = out["protocols"].get(k, 0) + v
    return out


def say(n: int, text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} N={n}: {text}", file=sys.stderr, flush=True)


def measure(n: int, procs: int, sample: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    names = [f"d{i:05d}" for i in range(n)]
    where = {name: i % procs for i, name in enumerate(names)}
    with tempfile.TemporaryDirectory(prefix="rill-dhtsim-") as tmp:
        workers = [Proc(Path(tmp) / f"w{i}.log") for i in range(procs)]
        try:
            t0 = time.perf_counter()
            addrs: dict[str, str] = {}
            for got in all_do(workers, [{"op": "start", "names": [x for x in names
                                                                  if where[x] == i]}
                                        for i in range(procs)]):
                addrs.update(got)
            say(n, f"{n} hosts started in {time.perf_counter() - t0:.0f} s")
            pairs: list[list[list[str]]] = [[] for _ in range(procs)]
            for i, name in enumerate(names[1:], 1):
                for other in rng.sample(names[:i], min(FANOUT, i)):
                    pairs[where[name]].append([name, addrs[other]])
            all_do(workers, [{"op": "connect", "pairs": p} for p in pairs])
            all_do(workers, [{"op": "base"}] * procs)
            for _ in range(2):
                all_do(workers, [{"op": "bootstrap"}] * procs)
            all_do(workers, [{"op": "trim"}] * procs)
            say(n, f"connected and bootstrapped in {time.perf_counter() - t0:.0f} s")
            time.sleep(2)
            out: dict[str, Any] = {"n": n, "procs": procs, "sample": sample}
            provided: list[tuple[str, str, str]] = []  # (key, provider's ID, its name)
            for what in ("refresh", "provide", "find", "ping"):
                if what == "find" and not provided:
                    continue
                chosen = rng.sample(names, min(sample, n))
                before = totals(workers)
                asked, ok, tables = [], 0, []
                for i, name in enumerate(chosen):
                    key = (b"\x12\x20" + hashlib.sha256(f"{what} {name}".encode())
                           .digest()).hex()
                    provider = ""
                    if what == "find":  # another host looks up what was provided
                        key, provider, by = provided[i % len(provided)]
                        if name == by:
                            name = names[(names.index(name) + 1) % n]
                    w = workers[where[name]]
                    w.do({"op": "trim", "names": [name]})
                    r = w.do({"op": "op", "name": name, "what": what, "key": key,
                              "provider": provider})
                    if what == "provide" and r["ok"]:
                        provided.append((key, r["id"], name))
                    asked.append(r["asked"])
                    ok += r["ok"]
                    tables.append(r["table"])
                time.sleep(1.0)  # ADD_PROVIDER is sent and not answered: let it land
                after = totals(workers)
                k = len(chosen)
                out[what] = {
                    "kb": (after["bytes"] - before["bytes"]) / k / 1e3,
                    "cpu_s": (after["cpu"] - before["cpu"]) / k,
                    "connections": (after["connections"] - before["connections"]) / k,
                    "asked": statistics.mean(asked), "ok": ok, "of": k,
                    "table": statistics.median(tables),
                    "by_protocol": {p: round((v - before["protocols"].get(p, 0)) / k / 1e3, 1)
                                    for p, v in sorted(after["protocols"].items())
                                    if v - before["protocols"].get(p, 0) > 0}}
                r = out[what]
                say(n, f"{what}: {r['kb']:.1f} KB, {r['cpu_s']:.3f} CPU-s, "
                    f"{r['connections']:.1f} connections, {r['asked']:.1f} peers asked per "
                    f"operation ({r['ok']}/{k} ok, routing table {r['table']:.0f}); KB by "
                    f"protocol {r['by_protocol']}")
            return out
        finally:
            for w in workers:
                try:
                    w.send({"op": "stop"})
                    w.p.wait(timeout=30)
                except Exception:  # a worker that is gone already
                    w.p.kill()


def main() -> int:
    if "--worker" in sys.argv:
        import trio
        trio.run(worker_main)
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", nargs="+", type=int)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--sample", type=int, default=40)
    ap.add_argument("--json")
    args = ap.parse_args()
    runs = []
    for n in args.sizes:
        runs.append(measure(n, args.procs, args.sample))
        if args.json:
            Path(args.json).write_text(json.dumps(runs, indent=1) + "\n")
    print(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
