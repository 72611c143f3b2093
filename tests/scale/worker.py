"""One process of the scale simulation: many real Daemons (real py-libp2p hosts on
127.0.0.1, the daemon's own gossip gate, validation and store) in one trio run, driven by
JSON lines on stdin; each answer is one JSON line on stdout.

Commands: ``start``, ``connect``, ``clicks``, ``clock``, ``status``, ``stop``
(see :func:`handle`).  Bytes on the wire are counted per node at the raw TCP connection
(``RawConnection.read``/``write``, below Noise and Yamux: what a router would count).
"""

from __future__ import annotations

import contextvars
import gc
import hashlib
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from libp2p.network import swarm  # noqa: E402
from libp2p.network.connection import raw_connection  # noqa: E402
from libp2p.network.stream import net_stream  # noqa: E402
from libp2p.pubsub import pubsub as pubsub_mod  # noqa: E402
from nodes import Net, free_port, make_home  # noqa: E402

from rill.node.clock import ManualClock  # noqa: E402
from rill.node.relay import totals  # noqa: E402

#: the node whose task is running (inherited by the tasks each node starts)
NODE: contextvars.ContextVar[str] = contextvars.ContextVar("node", default="?")
SENT: dict[str, int] = {}
RECEIVED: dict[str, int] = {}
#: payload bytes (sent and received, every node of the process) by stream protocol, and
#: connections opened: what a run's bytes were spent on
PROTOCOL_BYTES: dict[str, int] = {}
CONNECTIONS = [0]
#: GossipSub RPCs sent by ``write_msg`` (every node of the process; not the hello a new
#: stream opens with, which is in ``PROTOCOL_BYTES``), serialized bytes by what they carry
#: (``publish``, ``subscriptions``, ``graft``, ``prune``, ``prune-px`` for peers offered in
#: a PRUNE, ``ihave``, ``iwant``, ``idontwant``, ``sender-record`` for py-libp2p's signed
#: peer record of the sender, ``other``): what GossipSub bytes are
RPC_BYTES: dict[str, int] = {}


def rpc_kinds(rpc: Any) -> dict[str, int]:
    """A GossipSub RPC's serialized bytes by part (see ``RPC_BYTES``)."""
    out: dict[str, int] = {}

    def add(kind: str, n: int) -> None:
        if n:
            out[kind] = out.get(kind, 0) + n

    add("sender-record", len(rpc.senderRecord))
    add("publish", sum(m.ByteSize() for m in rpc.publish))
    add("subscriptions", sum(m.ByteSize() for m in rpc.subscriptions))
    if rpc.HasField("control"):
        c = rpc.control
        add("graft", sum(m.ByteSize() for m in c.graft))
        for m in c.prune:
            px = sum(p.ByteSize() for p in m.peers)
            add("prune-px", px)
            add("prune", m.ByteSize() - px)
        add("ihave", sum(m.ByteSize() for m in c.ihave))
        add("iwant", sum(m.ByteSize() for m in c.iwant))
        add("idontwant", sum(m.ByteSize() for m in c.idontwant))
    add("other", rpc.ByteSize() - sum(out.values()))
    return out


def _count_rpcs() -> None:
    write_msg = pubsub_mod.Pubsub.write_msg

    async def counted(self: Any, stream: Any, rpc: Any) -> bool:
        for kind, n in rpc_kinds(rpc).items():
            RPC_BYTES[kind] = RPC_BYTES.get(kind, 0) + n
        return await write_msg(self, stream, rpc)

    pubsub_mod.Pubsub.write_msg = counted  # type: ignore[method-assign]


def _count_bytes() -> None:
    cls = raw_connection.RawConnection
    write, read = cls.write, cls.read

    async def counted_write(self: Any, data: bytes) -> None:
        name = getattr(self, "_rill_node", None) or NODE.get()
        self._rill_node = name
        SENT[name] = SENT.get(name, 0) + len(data)
        await write(self, data)

    async def counted_read(self: Any, n: int | None = None) -> bytes:
        data = await read(self, n)
        name = getattr(self, "_rill_node", None) or NODE.get()
        self._rill_node = name
        RECEIVED[name] = RECEIVED.get(name, 0) + len(data)
        return data

    cls.write, cls.read = counted_write, counted_read  # type: ignore[method-assign]

    stream_cls = net_stream.NetStream
    s_write, s_read = stream_cls.write, stream_cls.read

    def note(stream: Any, n: int) -> None:
        key = str(stream.get_protocol() or "(negotiating)")
        PROTOCOL_BYTES[key] = PROTOCOL_BYTES.get(key, 0) + n

    async def stream_write(self: Any, data: bytes) -> None:
        note(self, len(data))
        await s_write(self, data)

    async def stream_read(self: Any, n: int | None = None) -> bytes:
        data = await s_read(self, n)
        note(self, len(data))
        return data

    stream_cls.write, stream_cls.read = stream_write, stream_read  # type: ignore[method-assign]
    add_conn = swarm.Swarm.add_conn

    async def counted_add_conn(self: Any, *args: Any, **kwargs: Any) -> Any:
        CONNECTIONS[0] += 1
        return await add_conn(self, *args, **kwargs)

    swarm.Swarm.add_conn = counted_add_conn  # type: ignore[method-assign]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Worker:
    def __init__(self, net: Net) -> None:
        self.net = net

    async def handle(self, cmd: dict[str, Any]) -> Any:
        op = cmd["op"]
        net = self.net
        if op == "start":
            out = {}
            for name in cmd["names"]:
                if not (net.base / name).exists():
                    make_home(net.base, name)
                net.ports.setdefault(name, free_port())
                token = NODE.set(name)
                try:
                    d = await net.start(name, housekeeping=5.0, work_bits=0,
                                        **cmd.get("config", {}))
                finally:
                    NODE.reset(token)
                assert d.p2p is not None
                out[name] = {"addr": str(d.p2p.addrs()[0]) + f"/p2p/{d.p2p.peer_id}",
                             "key": d.identity.hex()}
            gc.freeze()  # thousands of long-lived objects: keep the collector off them
            return out
        if op == "connect":
            failed: list[str] = []

            async def dial(name: str, addr: str) -> None:
                NODE.set(name)
                d = net.nodes[name]
                assert d.p2p is not None
                # as `rill peers add` does: a peer that does not answer is dialled again
                # with backoff until it does, and redialled whenever it goes while the
                # node has few connections (node/discovery.py, node/peering.py)
                out = await d.add_peer(addr)
                if not out["connected"]:  # the driver dials one elsewhere too
                    print(f"{name} -> {addr}: {out['error']}", file=sys.stderr)
                    failed.append(name)

            async with trio.open_nursery() as n:
                for name, addr in cmd["pairs"]:
                    n.start_soon(dial, name, addr)
                    await trio.sleep(cmd.get("pace", 0.005))  # paced dials (LIBP2P_NOTES)
            return {"failed": failed}
        if op == "clicks":
            for name, spec in cmd["donors"].items():
                w = net.wallet(name)
                try:
                    w.set_budget(spec["budget"], "EUR", cmd["at"])
                    for i, (creator, url) in enumerate(spec["clicks"]):
                        w.click(url, cmd["at"] + 1 + i, creator=bytes.fromhex(creator))
                finally:
                    w.close()
            # the month's proof of work, which a real node finds during the month, weeks
            # before its end (node/stamping.py): asked for now and waited for here
            for name in cmd["donors"]:
                net.nodes[name].wake_stamp()
            with trio.fail_after(cmd.get("stamp_timeout", 900)):
                for name in cmd["donors"]:
                    d = net.nodes[name]
                    while not d.stamped:
                        await trio.sleep(0.2)
            return {"ok": True}
        if op in ("round", "periodic"):
            # "round": every node syncs and reconciles with every peer (the daemon's round
            # after month end); "periodic": the round a daemon runs by itself (a few peers).
            # A few nodes at a time: each real node has a CPU of its own, and hundreds of
            # rounds at once on one core time out opening their streams (10 s)
            limit = trio.CapacityLimiter(cmd.get("at_once", 4))

            async def one(name: str) -> None:
                NODE.set(name)
                async with limit:
                    d = net.nodes[name]
                    await (d._sync_all() if op == "round" else d._periodic_round())

            async with trio.open_nursery() as n:
                for name in net.nodes:
                    n.start_soon(one, name)
            return {"ok": True}
        if op == "refresh":
            # the DHT's routing table refresh (every DHT_REFRESH_S, node/patches.py), on
            # every node, a few at a time as the rounds
            limit = trio.CapacityLimiter(cmd.get("at_once", 4))

            async def refresh(name: str) -> None:
                NODE.set(name)
                async with limit:
                    d = net.nodes[name]
                    with trio.move_on_after(120):
                        try:
                            await d.p2p.dht.refresh_routing_table()
                        except Exception as exc:  # counted as what it cost until then
                            print(f"{name}: refresh: {exc!r}", file=sys.stderr)

            async with trio.open_nursery() as n:
                for name in net.nodes:
                    n.start_soon(refresh, name)
            return {"ok": True}
        if op == "provide":
            # the announcements a node repeats every PROVIDE_EVERY (protocol/shard.py): a
            # provide of each of the shards' keys it announces (node/sharding.py
            # shards_to_provide: its own shard's, and a backbone shard's only while too few
            # own members of it were found announced, which it may look up first) and, if
            # its key is one of the rendezvous providers', of the rendezvous key
            # (node/discovery.py: every node here is one others can dial).  With
            # "provide": false, only the shards are chosen (their lookups made): a node's
            # first round after start, when the other members' records may not be in yet.
            from rill.node.discovery import RENDEZVOUS_KEY
            from rill.protocol.shard import provider_key, rendezvous_provider
            limit = trio.CapacityLimiter(cmd.get("at_once", 4))
            outcome = {"provided": 0, "not_provided": 0, "timed_out": 0, "failed": 0,
                       "lookups": 0, "skipped": 0}

            async def provide(name: str) -> None:
                NODE.set(name)
                async with limit:
                    d = net.nodes[name]
                    before = (d.counters.get("own_provider_lookups", 0),
                              d.counters.get("provide_skipped", 0))
                    chosen: list[tuple[int, int]] = []
                    with trio.move_on_after(120):
                        chosen = await d.shards_to_provide()
                    outcome["lookups"] += d.counters.get("own_provider_lookups", 0) - before[0]
                    outcome["skipped"] += d.counters.get("provide_skipped", 0) - before[1]
                    if not cmd.get("provide", True):
                        return
                    keys = [provider_key(b, i).hex() for b, i in chosen]
                    if rendezvous_provider(d.identity, d.shard_bits):
                        keys.append(RENDEZVOUS_KEY)
                    for key in keys:
                        what = "timed_out"
                        with trio.move_on_after(60):
                            try:
                                ok = await d.p2p.dht.provide(key)
                                what = "provided" if ok else "not_provided"
                            except Exception as exc:  # counted as what it cost until then
                                print(f"{name}: provide: {exc!r}", file=sys.stderr)
                                what = "failed"
                        outcome[what] += 1

            async with trio.open_nursery() as n:
                for name in net.nodes:
                    n.start_soon(provide, name)
            return {"ok": True, **outcome}
        if op == "clock":
            net.clock.set(cmd["t"])
            return {"ok": True}
        if op == "status":
            # the counters of every node at one instant (``t``, the system's monotonic
            # clock, which the driver shares), then the databases: on a loaded process
            # 100 database calls take a minute, and counters read between them would
            # stretch every window measured by as much
            month = cmd["month"]
            t = time.monotonic()
            out = {name: {"sent": SENT.get(name, 0), "received": RECEIVED.get(name, 0),
                          "peers": len(d.p2p.pubsub.peers) if d.p2p else 0}
                   for name, d in net.nodes.items()}
            snapshot = {"t": t, "cpu_s": cpu_s(), "protocols": dict(PROTOCOL_BYTES),
                        "rpcs": dict(RPC_BYTES), "connections": CONNECTIONS[0],
                        "unattributed": {"sent": SENT.get("?", 0),
                                         "received": RECEIVED.get("?", 0)}}

            async def one(name: str, d: Any) -> None:
                out[name].update(await d.db(_node_status, d, month))
                if d.p2p is not None:  # IWANTs not sent: asked of another peer just before
                    out[name]["counters"]["iwant_spared"] = getattr(
                        d.p2p.gossipsub, "iwant_spared", 0)

            async with trio.open_nursery() as n:
                for name, d in net.nodes.items():
                    n.start_soon(one, name, d)
            return {"nodes": out, **snapshot}
        if op == "stop":
            slow, took = [], []
            for name in list(net.scopes):
                t = trio.current_time()
                try:
                    await net.stop(name)
                except trio.TooSlowError:
                    slow.append(name)
                took.append(round(trio.current_time() - t, 2))
            return {"ok": True, "slow_to_stop": slow, "stop_s": took}
        raise ValueError(f"unknown op {op!r}")


def _node_status(d: Any, month: str) -> dict[str, Any]:
    db = d.wallet.db
    types = dict(db.execute("SELECT type, count(*) FROM objects WHERE month = ? AND "
                            "private = 0 GROUP BY type", (month,)).fetchall())
    incoming = db.execute("SELECT count(*) FROM obligations WHERE direction = 'in' AND "
                          "month = ?", (month,)).fetchone()[0]
    t = totals(d.wallet)
    return {"types": types, "incoming": incoming,
            "stored_bytes": t.own + t.relay, "counters": dict(d.counters)}


async def main(base: Path, start: int) -> None:
    _count_bytes()
    _count_rpcs()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if os.environ.get("RILL_SCALE_LOG"):
        logging.getLogger("rill").setLevel(os.environ["RILL_SCALE_LOG"])
    async with trio.open_nursery() as nursery:
        net = Net(nursery, base, ManualClock(start))
        await serve(Worker(net).handle)
        nursery.cancel_scope.cancel()


async def serve(handle: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
    """Answer the driver: one JSON command per line on stdin, one JSON line on stdout for
    each ({"ok": result} or {"error": ...}); returns after answering ``stop`` or at the
    end of stdin."""
    stdin = trio.lowlevel.FdStream(0)
    buf = b""
    while True:
        chunk = await stdin.receive_some(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            cmd = json.loads(line)
            try:
                result = {"ok": await handle(cmd)}
            except Exception as exc:  # reported to the driver, which stops the run
                result = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
            if cmd["op"] == "stop":
                return


def seed_key(name: str) -> bytes:
    """The key tests/nodes.make_home gives ``name`` (the driver derives it too)."""
    return hashlib.sha256(b"node " + name.encode()).digest()


if __name__ == "__main__":
    if os.environ.get("RILL_SCALE_PROFILE"):  # a cProfile dump per worker, for finding costs
        import cProfile
        import time
        # CPU time, not wall time: a worker mostly waits in epoll, and a loaded machine
        # would make every call look slower than it is
        prof = cProfile.Profile(time.process_time)
        try:
            prof.runcall(trio.run, main, Path(sys.argv[1]), int(sys.argv[2]))
        finally:
            prof.dump_stats(f"{os.environ['RILL_SCALE_PROFILE']}.{os.getpid()}")
    else:
        trio.run(main, Path(sys.argv[1]), int(sys.argv[2]))
