"""Finding the network (issue 12): the DHT rendezvous against a local stand-in for the
public bootstrap nodes, `rill peers add`, mDNS scoping.  Real hosts on 127.0.0.1."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import multiaddr
import pytest
import trio
from click.testing import CliRunner, Result
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.network.connection.raw_connection import ConnectionType
from libp2p.peer.peerinfo import PeerInfo
from libp2p.tools.anyio_service import background_trio_service
from nodes import eventually, free_port, make_home, network

from rill.cli import main
from rill.node.discovery import RENDEZVOUS_KEY, check_peer_addr, mdns_scoped
from rill.node.host import make_host
from rill.protocol.months import month_start
from rill.wallet.home import Config, Home

OCT = month_start("2026-10")
PEER = "12D3KooWG3L2Lg4RSGihRyir6Lu6bL6zKfDsms8xhixNGGzfVz2Q"


def test_mdns_only_on_a_non_loopback_listener() -> None:
    assert mdns_scoped(True, ["/ip4/0.0.0.0/tcp/4741"])
    assert mdns_scoped(True, ["/ip4/127.0.0.1/tcp/1", "/ip4/192.168.1.5/tcp/4741"])
    assert not mdns_scoped(True, ["/ip4/127.0.0.1/tcp/4741", "/ip6/::1/tcp/4741"])
    assert not mdns_scoped(True, [])
    assert not mdns_scoped(False, ["/ip4/0.0.0.0/tcp/4741"])


def test_rendezvous_key_and_peer_addresses() -> None:
    assert "1220" + hashlib.sha256(b"rill/1/network").hexdigest() == RENDEZVOUS_KEY
    relayed = f"/ip4/192.0.2.7/tcp/4741/p2p/{PEER}/p2p-circuit/p2p/{PEER}"
    assert check_peer_addr(relayed) == relayed
    for bad in ("/ip4/192.0.2.7/tcp/4741", "nonsense", f"/ip4/1.2.3.4/tcp/1/p2p/{PEER}x", 7):
        with pytest.raises(ValueError):
            check_peer_addr(bad)


def test_rendezvous_providers_are_a_sample_of_the_nodes_at_more_than_two_bits() -> None:
    """SPEC §11.1: a node announces itself under the rendezvous key when the first
    max(0, b - 2) bits of its shard point are zero: every node up to b = 2, then about
    4 / 2^b of them; and the daemon asks exactly that of itself."""
    from types import SimpleNamespace

    from rill.node.discovery import Discovery
    from rill.protocol.shard import point, rendezvous_provider

    keys = [hashlib.sha256(b"rendezvous %d" % i).digest() for i in range(4000)]
    for bits in (0, 1, 2):
        assert all(rendezvous_provider(k, bits) for k in keys)
    for bits in (3, 6, 8):
        chosen = [k for k in keys if rendezvous_provider(k, bits)]
        assert all(int.from_bytes(point(k)[:4], "big") >> (32 - (bits - 2)) == 0
                   for k in chosen)
        share = len(chosen) / len(keys)
        assert 0.6 * 4 / 2**bits < share < 1.4 * 4 / 2**bits, (bits, share)
    sampled = next(k for k in keys if rendezvous_provider(k, 8))
    other = next(k for k in keys if not rendezvous_provider(k, 8))
    nat = SimpleNamespace(private=False, reserved=lambda: False)
    for key, bits, want in ((sampled, 8, True), (other, 8, False), (other, 2, True)):
        node = SimpleNamespace(p2p=SimpleNamespace(nat=nat), identity=key, shard_bits=bits,
                               config=SimpleNamespace(listen=["/ip4/0.0.0.0/tcp/4741"]))
        assert Discovery._announceable(node) is want  # type: ignore[arg-type]


def test_bootstrap_addresses_are_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer watch looks at every bootstrap peer each second (node/peering.py): each
    address is parsed once, not each time (~0.2 ms an address in py-multiaddr: a node
    given 90 peers with `rill peers add` spent 17 ms of every second parsing them)."""
    from rill.node import peering

    parsed: list[str] = []
    real = peering.info_from_p2p_addr

    def counting(addr: multiaddr.Multiaddr) -> PeerInfo:
        parsed.append(str(addr))
        return real(addr)

    monkeypatch.setattr(peering, "info_from_p2p_addr", counting)
    peering._p2p_info.cache_clear()
    other = "12D3KooWGwq4RYUxQ4dKKj9hVsHaXKH7rLC3tjvcGn4mZuihuoYY"
    boot = [f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}", f"/ip4/10.0.0.2/tcp/4001/p2p/{PEER}",
            f"/ip4/127.0.0.1/tcp/4002/p2p/{other}", "/ip4/127.0.0.1/tcp/4003"]

    class Node(peering.Peering):
        def __init__(self) -> None:
            self.config = SimpleNamespace(bootstrap=boot)  # type: ignore[assignment]
            self.blocked: set[Any] = set()

    node = Node()
    for _ in range(50):
        peers = node._bootstrap_peers()
        addrs = node._bootstrap_addrs(next(p for p in peers if str(p) == PEER))
    assert {str(p) for p in peers} == {PEER, other}  # the address without /p2p/ skipped
    assert [str(a) for a in addrs] == ["/ip4/127.0.0.1/tcp/4001", "/ip4/10.0.0.2/tcp/4001"]
    assert sorted(parsed) == sorted(boot)  # each once, however often asked
    assert not node._addr_blocked(boot[0])
    node.blocked.add(next(p for p in peers if str(p) == PEER))
    assert node._addr_blocked(boot[1]) and not node._addr_blocked(boot[2])
    assert not node._addr_blocked(boot[3])


def test_remember_peer_keeps_every_other_line(tmp_path: Path) -> None:
    home = Home(make_home(tmp_path, "h"))
    before = home.config_path.read_text()
    addr = f"/ip4/192.0.2.7/tcp/4741/p2p/{PEER}"
    assert home.remember_peer(addr) and not home.remember_peer(addr)
    text = home.config_path.read_text()
    assert text.startswith(before)  # nothing above it changed
    raw = Config.parse(text).raw
    assert raw["node"]["bootstrap"] == [addr]
    home.config_path.write_text(text.replace("[node]", "[node]\nmdns = false  # keep"))
    other = addr.replace("192.0.2.7", "192.0.2.8")
    assert home.remember_peer(other)
    raw = Config.parse(home.config_path.read_text()).raw
    assert raw["node"] == {"mdns": False, "bootstrap": [addr, other]}
    assert "# keep" in home.config_path.read_text()


@asynccontextmanager
async def dht_server(name: str) -> AsyncIterator[tuple[object, KadDHT]]:
    """A bare Kademlia server (no gossip, no Rill): what a public bootstrap node is."""
    host = make_host(hashlib.sha256(b"dht " + name.encode()).digest())
    dht = KadDHT(host, DHTMode.SERVER)
    async with host.run([multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{free_port()}")]):
        async with background_trio_service(dht):
            yield host, dht
        await host.close()


async def test_a_new_node_finds_rill_peers_through_stand_in_dht_bootstrap_nodes(
        tmp_path: Path) -> None:
    async with dht_server("s1") as (h1, d1), dht_server("s2") as (h2, d2), \
            dht_server("s3") as (h3, d3):
        servers = [(h1, d1), (h2, d2), (h3, d3)]
        for (ha, da), (hb, db) in itertools.pairwise(servers):  # a chain
            await hb.connect(PeerInfo(ha.get_id(), ha.get_addrs()))
            await db.routing_table.add_peer(ha.get_id())
            await da.routing_table.add_peer(hb.get_id())
        async with network(tmp_path, OCT + 3600) as net:
            # two Rill nodes that know only one (different) bootstrap server each
            old = await net.start("old", bootstrap=[str(h1.get_addrs()[0])], rendezvous=True)
            new = await net.start("new", bootstrap=[str(h3.get_addrs()[0])], rendezvous=True)
            assert old.p2p is not None and new.p2p is not None
            t0 = trio.current_time()
            await eventually(lambda: old.p2p.peer_id in new.p2p.pubsub.peers, timeout=20,
                             what="the new node finds the old one in the DHT")
            print(f"found through the DHT in {trio.current_time() - t0:.1f} s")
            # the provider record under the Rill key is what a big DHT needs (in a DHT of
            # five, the lookups themselves may already have connected the two)
            await eventually(lambda: old.rendezvous["provided"]
                             and (new.rendezvous["last_found"] or 0) >= 1, timeout=20,
                             what="the old node's provider record found by the new one")
            status = await new.status()
            assert status["discovery"]["rendezvous_key"] == RENDEZVOUS_KEY


async def test_peers_add_remembers_and_applies_to_the_running_node(tmp_path: Path) -> None:
    async with network(tmp_path, OCT + 3600) as net:
        a = await net.start("a")
        b = await net.start("b")
        assert a.p2p is not None and b.p2p is not None
        addr = b.p2p.addrs()[0]

        def add(*args: str) -> Result:  # the CLI in a thread (its socket call blocks)
            return CliRunner().invoke(main, ["peers", "add", "--home", str(tmp_path / "a"),
                                             *args])

        result = await trio.to_thread.run_sync(add, "--json", addr)
        assert result.exit_code == 0, result.output
        out = json.loads(result.output)
        assert out["connected"] and out["remembered"] and out["node"] == "applied"
        assert b.p2p.peer_id in a.p2p.host.get_network().connections
        assert Home(tmp_path / "a").config().raw["node"]["bootstrap"] == [addr]
        assert addr in a.config.bootstrap  # kept connected (redialled) by this run too
        with pytest.raises(ValueError):  # the control socket refuses a bad address too
            await a.add_peer("/ip4/1.2.3.4/tcp/1")
        assert Home(tmp_path / "a").config().raw["node"]["bootstrap"] == [addr]


async def test_a_node_behind_nat_is_found_in_the_dht_and_dialled_through_its_relay(
        tmp_path: Path) -> None:
    async with dht_server("s") as (h, _d), network(tmp_path, OCT + 3600) as net:
        boot = [str(h.get_addrs()[0])]
        relay = await net.start("relay", bootstrap=boot, rendezvous=True)
        assert relay.p2p is not None
        hidden = await net.start("hidden", listen=[], bootstrap=[relay.p2p.addrs()[0]],
                                 rendezvous=True)
        assert hidden.p2p is not None
        await eventually(lambda: hidden.rendezvous["provided"], timeout=20,
                         what="the NAT'd node's provider record, once it has a relay")
        newcomer = await net.start("newcomer", bootstrap=boot, rendezvous=True)
        assert newcomer.p2p is not None
        await eventually(lambda: hidden.p2p.peer_id in newcomer.p2p.pubsub.peers, timeout=20,
                         what="the newcomer dials the NAT'd node through its relay")
        conns = newcomer.p2p.host.get_network().connections[hidden.p2p.peer_id]
        assert all(c.get_connection_type() == ConnectionType.RELAYED for c in conns)
        assert not hidden.p2p.host.get_transport_addrs()  # still no listener at all


async def test_what_mdns_finds_is_dialled(tmp_path: Path) -> None:
    """py-libp2p's mDNS calls back from zeroconf's thread with a PeerInfo; the daemon takes
    it over to trio and dials it (mDNS itself stays off on 127.0.0.1: simulated here)."""
    async with network(tmp_path, OCT + 3600) as net:
        a = await net.start("a")
        b = await net.start("b")
        assert a.p2p is not None and b.p2p is not None
        assert a.p2p.host.mDNS is None  # scoped: a loopback listener announces nothing
        async with trio.open_nursery() as watching:
            watching.start_soon(a._mdns)
            await trio.sleep(0.1)
            info = PeerInfo(b.p2p.peer_id, b.p2p.host.get_addrs())
            own = PeerInfo(a.p2p.peer_id, a.p2p.host.get_addrs())
            await trio.to_thread.run_sync(peerDiscovery.emit_peer_discovered, own)
            await trio.to_thread.run_sync(peerDiscovery.emit_peer_discovered, info)
            await eventually(lambda: b.p2p.peer_id in a.p2p.pubsub.peers, timeout=10,
                             what="the peer mDNS found, dialled")
            watching.cancel_scope.cancel()
        assert peerDiscovery._peer_discovered_handlers == []  # unregistered on the way out
        assert a.counters["discovered"] == 1


async def test_a_bootstrap_entry_that_never_answers_does_not_stop_keeping_the_others(
        tmp_path: Path) -> None:
    """B's bootstrap list names A and a peer that never answers.  A restarts: B dials it
    again (before, B kept its bootstrap peers only once every entry had answered once)."""
    dead = (f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/"
            f"{make_host(hashlib.sha256(b'never').digest()).get_id()}")
    async with network(tmp_path, month_start("2026-10") + 3600) as net:
        a = await net.start("a")
        assert a.p2p is not None
        a_id, a_addr = a.p2p.peer_id, f"{a.p2p.addrs()[0]}/p2p/{a.p2p.peer_id}"
        b = await net.start("b", bootstrap=[a_addr, dead])
        assert b.p2p is not None
        await eventually(lambda: a_id in b.p2p.pubsub.peers, what="b meets a")
        await net.stop("a")
        await eventually(lambda: a_id not in b.p2p.pubsub.peers, what="b sees a gone")
        await net.start("a")  # same home, same port
        await eventually(lambda: a_id in b.p2p.pubsub.peers, timeout=20,
                         what="b dials its restarted bootstrap peer again")


async def test_a_peer_added_while_it_is_down_is_dialled_until_it_answers(
        tmp_path: Path) -> None:
    """`rill peers add` to a running node, while the peer is down: the first dial fails,
    and the node keeps trying (the CLI says so) until the peer is up, then keeps it."""
    async with network(tmp_path, month_start("2026-10") + 3600) as net:
        a = await net.start("a")
        b = await net.start("b")
        assert a.p2p is not None and b.p2p is not None
        b_id, b_addr = b.p2p.peer_id, b.p2p.addrs()[0]
        await net.stop("b")
        out = await a.add_peer(b_addr)
        assert not out["connected"] and out["error"]
        assert b_addr in a._bootstrap_dialling
        again = await a.add_peer(b_addr)  # added twice: still one loop dialling it
        assert not again["connected"] and a._bootstrap_dialling == {b_addr}
        await net.start("b")  # same home, same port
        await eventually(lambda: b_id in a.p2p.pubsub.peers, timeout=20,
                         what="a dials the added peer once it is up")
        await eventually(lambda: not a._bootstrap_dialling, what="the dialling loop ends")
        assert b_id in a._bootstrap_met  # from now on redialled whenever it goes
        await net.stop("b")
        await eventually(lambda: b_id not in a.p2p.pubsub.peers, what="a sees b gone")
        await net.start("b")
        await eventually(lambda: b_id in a.p2p.pubsub.peers, timeout=20,
                         what="a dials the added peer again after its restart")
