"""Behind NAT (issue 12): a daemon with no listener at all takes part fully through a
circuit relay v2 hop; it re-reserves when the relay restarts.  Real libp2p hosts on
127.0.0.1, one process, manual clock."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from libp2p.network.connection.raw_connection import ConnectionType
from nodes import Net, eventually, free_port, listening, network

from rill.node import natrelay
from rill.node.daemon import Daemon, NodeConfig
from rill.node.host import P2P, running
from rill.node.keepalive import YAMUX_PING_PRIVATE_S, ping_interval
from rill.node.natrelay import NatSettings
from rill.protocol.months import month_end, month_start
from rill.protocol.work import NETWORK_WORK_BITS, find_work

OCT = month_start("2026-10")
END = month_end("2026-10")
GRACE = 60


@asynccontextmanager
async def bare_relay(port: int, name: str = "relay",
                     settings: NatSettings | None = None) -> AsyncIterator[P2P]:
    """A public peer offering only the hop: libp2p host, pubsub subscribed to no Rill
    topic (so it forwards no gossip), circuit relay v2 with the default limits."""
    seed = hashlib.sha256(b"relay " + name.encode()).digest()
    async with running(seed, [f"/ip4/127.0.0.1/tcp/{port}"]) as p2p, \
            natrelay.running(p2p.host, settings or NatSettings(), False, lambda: []) as nat:
        p2p.nat = nat
        yield p2p


def relayed(p2p: P2P | None, peer: object) -> bool:
    """p2p holds a connection with ``peer`` that goes through a relay."""
    if p2p is None:
        return False
    conns = p2p.host.get_network().connections.get(peer) or []
    return any(getattr(c, "get_connection_type", lambda: None)() == ConnectionType.RELAYED
               for c in conns)


def obligations(net: Net, name: str) -> list:  # type: ignore[type-arg]
    w = net.wallet(name)
    try:
        return w.obligations()
    finally:
        w.close()


def test_settings_from_toml() -> None:
    s = NatSettings.from_toml({"reachable": "private", "relay": False, "relay_slots": 3})
    assert (s.reachable, s.relay, s.relay_slots) == ("private", False, 3)
    assert NatSettings().private([]) and not NatSettings().private(["/ip4/0.0.0.0/tcp/1"])
    assert NatSettings(reachable="private").private(["/ip4/0.0.0.0/tcp/1"])
    assert not NatSettings(reachable="public").private([])
    for bad in ({"reachable": "maybe"}, {"relay": "yes"}, {"relay_circuit_mb": 0}):
        with pytest.raises(ValueError):
            NatSettings.from_toml(bad)
    cfg = NodeConfig.from_toml({"node": {"reachable": "private", "listen": []}})
    assert cfg.nat.reachable == "private" and cfg.listen == []



async def one_click_ready(net: Net, donor: Daemon, creator: Daemon) -> None:
    """The donor clicks one of the creator's things in October, and the settlement's
    proof of work (it depends on the donor's key and the month only: ~4 s here) is done
    beforehand, so the clock measures the network."""
    w = net.wallet("donor")
    w.set_budget(900, "EUR", OCT + 10)
    w.click("https://creator.example/1", OCT + 20, creator=creator.identity)
    w.close()
    await trio.to_thread.run_sync(find_work, donor.identity, "2026-10", NETWORK_WORK_BITS)

async def test_a_node_nobody_can_dial_takes_part_through_a_relay(tmp_path: Path) -> None:
    relay_port = free_port()
    async with network(tmp_path, OCT + 3600) as net, trio.open_nursery() as nursery:
        relay_up = trio.Event()
        stop_relay = trio.Event()
        relay_box: list[P2P] = []

        async def run_relay() -> None:
            async with bare_relay(relay_port) as r:
                relay_box.append(r)
                relay_up.set()
                await stop_relay.wait()

        nursery.start_soon(run_relay)
        await relay_up.wait()
        relay = relay_box[0]
        # the creator: no listen address at all ("auto" -> private), only the relay known
        creator = await net.start("creator", listen=[], bootstrap=[relay.addrs()[0]],
                                  grace=GRACE)
        assert creator.p2p is not None
        assert creator.p2p.host.get_transport_addrs() == []  # accepts nothing directly
        # its NAT's mappings (its relay's above all) kept warm: Yamux pings every 4 min
        assert ping_interval() == YAMUX_PING_PRIVATE_S
        await eventually(lambda: creator.p2p is not None and creator.p2p.nat.reserved(),
                         what="a reservation on the relay")
        status = await creator.status()
        reach = status["reachability"]
        assert reach["reachability"] == "private" and reach["relay"] == str(relay.peer_id)
        (addr,) = reach["relayed_addrs"]
        assert addr == (f"{relay.addrs()[0]}/p2p-circuit/p2p/{creator.p2p.peer_id}")
        assert status["dialable"] == [addr]
        # the donor knows only the creator's relayed address
        donor = await net.start("donor", bootstrap=[addr], grace=GRACE)
        assert donor.p2p is not None
        await eventually(lambda: creator.p2p.peer_id in donor.p2p.pubsub.peers
                         and donor.p2p.peer_id in creator.p2p.pubsub.peers,
                         what="gossip peers through the relay")
        assert relayed(donor.p2p, creator.p2p.peer_id)
        assert relayed(creator.p2p, donor.p2p.peer_id)
        await one_click_ready(net, donor, creator)
        net.clock.set(END + GRACE + 1)  # month end + grace: the donor settles now
        t0 = trio.current_time()
        await eventually(lambda: len(obligations(net, "creator")) == 1, timeout=5.0,
                         what="the sealed claim at the NAT'd creator within 5 s")
        latency = trio.current_time() - t0
        (ob,) = obligations(net, "creator")
        assert (ob.amount, ob.direction) == (900, "in")
        cw = net.wallet("creator")
        cw.sign_receipt(ob.claim, END + 120, "ref-nat")
        cw.close()
        await eventually(lambda: [o.state for o in obligations(net, "donor")]
                         == ["receipted"], what="the receipt back at the donor")
        print(f"month end -> claim at the NAT'd creator: {latency * 1000:.0f} ms")

        # the relay restarts (same key, same port): the creator reserves again and
        # the donor reaches it again through the new relay process
        made = creator.p2p.nat.reservations
        stop_relay.set()
        await eventually(lambda: not listening(relay_port), what="the relay gone")
        relay_box.clear()
        relay_up = trio.Event()
        stop_relay = trio.Event()
        nursery.start_soon(run_relay)
        await relay_up.wait()
        await eventually(lambda: creator.p2p.nat.reserved()
                         and creator.p2p.nat.reservations > made, timeout=20,
                         what="a new reservation after the relay restarted")
        # connected again: through the new relay, or by the creator dialling out to the
        # donor (whose address it learnt meanwhile: a node behind NAT can dial out), which
        # ever comes first; the creator still listens on nothing
        await eventually(lambda: creator.p2p.peer_id in donor.p2p.pubsub.peers,
                         timeout=20, what="the donor and the creator connected again")
        assert creator.p2p.addrs() == [] or all("p2p-circuit" in a
                                                for a in creator.p2p.addrs())
        stop_relay.set()


async def test_a_relay_keeps_to_its_slots_and_private_nodes_relay_for_nobody(
        tmp_path: Path) -> None:
    async with network(tmp_path, OCT + 3600) as net:
        # reservations of 6 s: renewed when less than 5 s are left
        relay = await net.start("relay", nat=NatSettings(relay_slots=1, relay_reservation_s=6))
        assert relay.p2p is not None
        boot = [relay.p2p.addrs()[0]]
        first = await net.start("first", listen=[], bootstrap=boot)
        await eventually(lambda: first.p2p.nat.reserved(), what="the one slot taken")
        second = await net.start("second", listen=[], bootstrap=boot)
        assert second.p2p is not None
        await eventually(lambda: second.p2p.nat.last_error is not None, what="a refusal")
        assert "refused" in second.p2p.nat.last_error and not second.p2p.nat.reserved()
        reach = (await second.status())["reachability"]
        assert reach["relay"] is None and reach["relayed_addrs"] == []
        relay_status = (await relay.status())["reachability"]
        assert relay_status["reachability"] == "public" and relay_status["relaying"]
        assert relay_status["relaying_for"] == 1
        assert relay_status["relay_limits"]["slots"] == 1
        # the relay still carries the refused node's gossip as an ordinary peer
        assert second.p2p.peer_id in relay.p2p.pubsub.peers
        # a private node offers no hop (it could not carry anyone's circuit anyway)
        protocols = first.p2p.host.get_mux().get_protocols()
        assert natrelay.HOP_PROTOCOL not in protocols
        assert natrelay.STOP_PROTOCOL in protocols
        # the holder renews before expiry; the relay extends the same reservation
        expires = first.p2p.nat.expires
        await eventually(lambda: first.p2p.nat.expires > expires, timeout=10,
                         what="a renewal")
        assert first.p2p.nat.reserved() and first.p2p.nat.reservations >= 2
        assert (await relay.status())["reachability"]["relaying_for"] == 1
        # the refused node does not ask the full relay again every second
        assert second.p2p.nat.relay is None and len(second.p2p.nat._refused) == 1


@pytest.mark.soak
def test_nat_claim_latency_with_node_processes(tmp_path: Path) -> None:
    """The bench's run (three `rill node run` processes, the creator with --no-listen)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "bench"))
    import nat_bench

    out = nat_bench.nat_once(tmp_path, 0)
    assert out["relayed"] and out["latency"] < 5.0 and out["exit"] == [0, 0, 0], out


@pytest.mark.soak
async def test_a_circuit_reset_by_its_relay_limit_loses_nothing(tmp_path: Path) -> None:
    """Circuits of 2 s: the month's claim still reaches the NAT'd creator (the donor dials
    again through the relay and syncs), and how long that takes is printed."""
    async with network(tmp_path, OCT + 3600) as net, \
            bare_relay(free_port(), settings=NatSettings(relay_circuit_s=2)) as relay:
        creator = await net.start("creator", listen=[], bootstrap=[relay.addrs()[0]],
                                  grace=GRACE)
        await eventually(lambda: creator.p2p.nat.reserved(), what="a reservation")
        (addr,) = creator.p2p.nat.relayed_addrs()
        # the donor knows the creator only by its relayed address; the relay carries no
        # gossip: every object to the creator has to cross a circuit
        donor = await net.start("donor", bootstrap=[addr], grace=GRACE)
        assert donor.p2p is not None
        await eventually(lambda: creator.p2p.peer_id in donor.p2p.pubsub.peers,
                         what="the circuit")
        await one_click_ready(net, donor, creator)
        await trio.sleep(3)  # past the circuit's 2 s: the next bytes reset it
        net.clock.set(END + GRACE + 1)
        t0 = trio.current_time()
        await eventually(lambda: len(obligations(net, "creator")) == 1, timeout=60,
                         what="the claim despite the reset circuit")
        print(f"claim through a reset circuit after {trio.current_time() - t0:.1f} s")
