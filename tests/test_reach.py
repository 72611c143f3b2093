"""The reachability probe /rill/reach/1.0.0 (protocol/reach.py, node/reachability.py):
a node with reachable = "auto" that listens asks its peers to dial it; when none can, it
counts itself private and keeps a slot on a relay."""

from __future__ import annotations

from pathlib import Path

import cbor2
import multiaddr
import pytest
from libp2p.kad_dht.kad_dht import DHTMode
from nodes import eventually, network

from rill.node import reachability
from rill.node.reachability import remote_ip, tcp_open
from rill.protocol.errors import RemoteError
from rill.protocol.months import month_start
from rill.protocol.reach import ReachRequest, ReachResponse

OCT = month_start("2026-10")


def test_request_and_answer_round_trip_and_refusals() -> None:
    req = ReachRequest((4741, 80))
    assert req.encode() == cbor2.dumps({"v": 1, "ports": [4741, 80]}, canonical=True)
    assert ReachRequest.decode(req.encode()) == req
    ans = ReachResponse((True, False))
    assert ans.encode() == cbor2.dumps({"v": 1, "open": [1, 0]}, canonical=True)
    assert ReachResponse.decode(ans.encode(), 2) == ans
    bad_requests = [
        {"v": 1, "ports": []}, {"v": 1, "ports": [1, 2, 3, 4, 5]}, {"v": 1, "ports": [0]},
        {"v": 1, "ports": [65536]}, {"v": 1, "ports": [80, 80]}, {"v": 1, "ports": [True]},
        {"v": 1, "ports": 80}, {"v": 2, "ports": [80]}, {"v": 1}, [80],
        {"v": 1, "ports": [80], "ip": "192.0.2.1"},  # nobody names where to dial
    ]
    for v in bad_requests:
        with pytest.raises(RemoteError):
            ReachRequest.decode(cbor2.dumps(v, canonical=True))
    with pytest.raises(RemoteError):
        ReachRequest.decode(b"\x00" * 65)
    for v, n in (({"v": 1, "open": [1]}, 2), ({"v": 1, "open": [2]}, 1),
                 ({"v": 1, "open": [True]}, 1), ({"v": 1, "open": [1], "x": 0}, 1)):
        with pytest.raises(RemoteError):
            ReachResponse.decode(cbor2.dumps(v, canonical=True), n)


class Conn:
    def __init__(self, *addrs: str) -> None:
        self.addrs = [multiaddr.Multiaddr(a) for a in addrs]

    def get_transport_addresses(self) -> list[multiaddr.Multiaddr]:
        return self.addrs


def test_the_server_dials_only_the_address_a_direct_connection_comes_from() -> None:
    assert remote_ip(Conn("/ip4/198.51.100.7/tcp/50123")) == "198.51.100.7"
    assert remote_ip(Conn("/ip6/2001:db8::1/tcp/4741")) == "2001:db8::1"
    assert remote_ip(Conn("/ip4/198.51.100.7/tcp/4741/p2p/12D3KooWRU7mMUdmvWvVhvSEr5NiAXDS"
                          "F3gNgCbWAZxfoDYS4Yuq/p2p-circuit")) is None
    assert remote_ip(Conn()) is None


async def test_tcp_open_says_whether_a_port_accepts() -> None:
    import trio
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    assert await tcp_open("127.0.0.1", port)
    await listener.aclose()
    assert not await tcp_open("127.0.0.1", port)


async def test_a_node_peers_cannot_dial_counts_itself_private_and_takes_a_relay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reachability, "FIRST_S", 0.2)
    monkeypatch.setattr(reachability, "RECHECK_S", 0.5)
    monkeypatch.setattr(reachability, "UNSURE_S", 0.5)
    monkeypatch.setattr(reachability, "SERVE_EVERY_S", 0.2)
    async with network(tmp_path, OCT + 3600) as net:
        for name in ("p1", "p2", "n"):
            await net.start(name)
        await net.connect("n", "p1")
        await net.connect("n", "p2")
        node = net.nodes["n"]
        assert node.p2p is not None and node.p2p.nat is not None
        await eventually(lambda: node.reach["verdict"] == "public",
                         what="both peers dialled the node's port")
        assert not node.p2p.nat.private and node.p2p.nat.relayed_addrs() == []
        status = (await node.status())["reachability"]
        assert status["probe"]["verdict"] == "public"
        # the port closes (a router that forwards nothing): peers say so; the node takes a
        # relay slot, announces its relayed address, and asks the DHT as a client only
        for listener in list(node.p2p.host.get_network().listeners.values()):
            await listener.close()
        await eventually(lambda: node.p2p.nat.private and node.p2p.nat.reserved(),
                         what="private, with a slot on a relay")
        assert node.reach["verdict"] == "private"
        assert all(a is False for a in node.reach["answers"].values())
        assert node.p2p.nat.relayed_addrs()
        assert node.p2p.dht.mode == DHTMode.CLIENT
