"""DNS bootstrap addresses (issue 12, "Finding the network"): /dnsaddr and /dns4 resolved
against a DNS stand-in on 127.0.0.1 (tests/dnsstub.py), hostile answers refused with a
reason, and a daemon whose only bootstrap entry is a /dnsaddr name joining real daemons."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
from dnsstub import DnsStub, dns_stub
from nodes import eventually, network

from rill.node import dnsaddr
from rill.node.discovery import check_peer_addr
from rill.node.dnsaddr import MAX_ADDRS, MAX_DEPTH, MAX_LOOKUPS, ResolveError, resolve
from rill.node.nodeconfig import NodeConfig
from rill.protocol.months import month_start

OCT = month_start("2026-10")
PEER = "12D3KooWG3L2Lg4RSGihRyir6Lu6bL6zKfDsms8xhixNGGzfVz2Q"
OTHER = "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"


async def _resolve(stub: DnsStub, name: str, peer: str = PEER, **kw: float) -> list[str]:
    return await resolve(f"/dnsaddr/{name}/p2p/{peer}", [("127.0.0.1", stub.port)], **kw)


async def _refused(stub: DnsStub, name: str, **kw: float) -> str:
    with pytest.raises(ResolveError) as err:
        await _resolve(stub, name, **kw)
    return str(err.value)


async def test_recursion_filtering_and_dns4(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rill.node")
    async with dns_stub() as stub:
        # the shape of bootstrap.libp2p.io: one name lists several peers, each through
        # its own name, whose records mix transports
        stub.txt["_dnsaddr.boot.test"] = [
            f"dnsaddr=/dnsaddr/one.test/p2p/{PEER}", f"dnsaddr=/dnsaddr/two.test/p2p/{OTHER}",
            f"dnsaddr=/ip4/192.0.2.9/tcp/4001/p2p/{OTHER}"]
        stub.txt["_dnsaddr.one.test"] = [
            f"dnsaddr=/ip4/127.0.0.1/tcp/4001/p2p/{PEER}",
            f"dnsaddr=/ip6/::1/tcp/4001/p2p/{PEER}",
            f"dnsaddr=/dns4/host.test/tcp/4002/p2p/{PEER}",
            f"dnsaddr=/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{PEER}",  # not dialled here
            f"dnsaddr=/ip4/127.0.0.1/tcp/4001/p2p/{OTHER}",  # another peer's
            f"dnsaddr=/ip4/127.0.0.1/tcp/7/p2p/{OTHER}/p2p-circuit/p2p/{PEER}"]
        stub.a["host.test"] = ["127.0.0.3"]
        got = await _resolve(stub, "boot.test")
        assert sorted(got) == sorted([
            f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}", f"/ip6/::1/tcp/4001/p2p/{PEER}",
            f"/ip4/127.0.0.3/tcp/4002/p2p/{PEER}",
            f"/ip4/127.0.0.1/tcp/7/p2p/{OTHER}/p2p-circuit/p2p/{PEER}"])
        # the other peer's name was never looked up
        assert ("_dnsaddr.two.test", "TXT") not in stub.queries
        # /dns4 on its own, and an address that needs no DNS comes back as it is
        assert await resolve(f"/dns4/host.test/tcp/1/p2p/{PEER}", [("127.0.0.1", stub.port)]
                             ) == [f"/ip4/127.0.0.3/tcp/1/p2p/{PEER}"]
        # /dns: A and AAAA asked; a name with no AAAA record is no error
        assert await resolve(f"/dns/host.test/tcp/1/p2p/{PEER}", [("127.0.0.1", stub.port)]
                             ) == [f"/ip4/127.0.0.3/tcp/1/p2p/{PEER}"]
        assert ("host.test", "AAAA") in stub.queries and "AAAA" not in caplog.text
        plain = f"/ip4/192.0.2.1/tcp/1/p2p/{PEER}"
        assert await resolve(plain) == [plain]
        # only a peer's own records: the public list's other entries are not an error
        assert "two.test" not in caplog.text
        # a name with records of other peers only
        assert "no address to dial" in await _refused(stub, "two.test")


async def test_hostile_answers_are_refused_with_a_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rill.node")
    async with dns_stub() as stub:
        assert "NXDOMAIN" in await _refused(stub, "nx.test")
        stub.silent.add("_dnsaddr.slow.test")
        with trio.fail_after(3):
            assert "timed out" in await _refused(stub, "slow.test", timeout=0.5)
        stub.txt["_dnsaddr.garbage.test"] = [
            "hello", b"\xff\xfe", "dnsaddr=", "dnsaddr=/ip4/999.1.1.1/tcp/1/p2p/" + PEER,
            "dnsaddr=/ip4/127.0.0.1/tcp/1", "dnsaddr=" + "x" * 2000]
        assert "no address to dial: _dnsaddr.garbage.test: " in await _refused(
            stub, "garbage.test")
        for why in ("not starting with dnsaddr=: 'hello'", "not ASCII",
                    "malformed 'dnsaddr=/ip4/999", "does not end in /p2p/PEER_ID",
                    "malformed 'dnsaddr=xxxx", "malformed 'dnsaddr='"):
            assert why in caplog.text, why
        # too deep: d0 -> d1 -> ... each a /dnsaddr name
        for i in range(MAX_DEPTH + 2):
            stub.txt[f"_dnsaddr.d{i}.test"] = [f"dnsaddr=/dnsaddr/d{i + 1}.test/p2p/{PEER}"]
        stub.txt[f"_dnsaddr.d{MAX_DEPTH + 2}.test"] = [f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{PEER}"]
        assert f"more than {MAX_DEPTH} nested" in await _refused(stub, "d0.test")
        assert await _resolve(stub, f"d{MAX_DEPTH - 1}.test") == [
            f"/ip4/127.0.0.1/tcp/1/p2p/{PEER}"]  # MAX_DEPTH names: fine
        # a loop
        stub.txt["_dnsaddr.loop.test"] = [f"dnsaddr=/dnsaddr/loop.test/p2p/{PEER}"]
        assert "(a loop?)" in await _refused(stub, "loop.test")
        # fan-out: lookups bounded
        stub.txt["_dnsaddr.wide.test"] = [f"dnsaddr=/dnsaddr/w{i}.test/p2p/{PEER}"
                                          for i in range(40)]
        before = len(stub.queries)
        assert f"more than {MAX_LOOKUPS} DNS lookups" in await _refused(stub, "wide.test")
        assert len(stub.queries) - before == MAX_LOOKUPS
        # many addresses: the first MAX_ADDRS kept
        stub.txt["_dnsaddr.many.test"] = [f"dnsaddr=/ip4/127.0.0.1/tcp/{1000 + i}/p2p/{PEER}"
                                          for i in range(60)]
        assert len(await _resolve(stub, "many.test")) == MAX_ADDRS
        assert f"more than {MAX_ADDRS} addresses" in caplog.text
    with pytest.raises(ResolveError, match="does not end in /p2p/PEER_ID"):
        await resolve("/dnsaddr/boot.test")


def test_dns_servers_setting() -> None:
    assert dnsaddr.parse_servers(["127.0.0.1:5353", "192.0.2.1", "[::1]:53", "[::1]"]) == [
        ("127.0.0.1", 5353), ("192.0.2.1", 53), ("::1", 53), ("::1", 53)]
    assert NodeConfig.from_toml({"node": {"dns_servers": ["127.0.0.1:5353"]}}
                                ).dns_servers == ["127.0.0.1:5353"]
    assert NodeConfig.from_toml({}).dns_servers == []  # the system's resolv.conf
    for bad in ("127.0.0.1:5353", ["dns.example:53"], ["127.0.0.1:0"], ["127.0.0.1:x"],
                [53], ["1.2.3.4:53"] * 9, ["[::1]x"], ["127.0.0.1:+53"]):
        with pytest.raises(ValueError, match=r"node\.dns_servers") as err:
            NodeConfig.from_toml({"node": {"dns_servers": bad}})
        assert "\n" not in str(err.value)
    assert dnsaddr.is_dns(f"/dnsaddr/x/p2p/{PEER}") and dnsaddr.is_dns("/dns6/x/tcp/1")
    assert not dnsaddr.is_dns(f"/ip4/1.2.3.4/tcp/1/p2p/{PEER}")
    assert not dnsaddr.is_dns("dnsaddr/x") and not dnsaddr.is_dns("/dnsaddrx/y")
    name = f"/dnsaddr/bootstrap.libp2p.io/p2p/{OTHER}"  # `rill peers add` takes it
    assert check_peer_addr(name) == name


async def test_a_daemon_bootstraps_from_a_dnsaddr_name(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rill.node")
    async with dns_stub() as stub, network(tmp_path, OCT + 3600) as net:
        boot = await net.start("boot")
        other = await net.start("other")
        assert boot.p2p is not None and other.p2p is not None
        bid, oid = boot.p2p.peer_id, other.p2p.peer_id
        # boot.test names both peers, each through its own name (a recursion)
        stub.txt["_dnsaddr.boot.test"] = [f"dnsaddr=/dnsaddr/b.boot.test/p2p/{bid}",
                                          f"dnsaddr=/dnsaddr/o.boot.test/p2p/{oid}"]
        stub.txt["_dnsaddr.b.boot.test"] = [f"dnsaddr={boot.p2p.addrs()[0]}"]
        stub.txt["_dnsaddr.o.boot.test"] = [f"dnsaddr={other.p2p.addrs()[0]}"]
        new = await net.start("new", bootstrap=[f"/dnsaddr/boot.test/p2p/{bid}"],
                              dns_servers=[stub.server])
        assert new.p2p is not None
        await eventually(lambda: bid in new.p2p.pubsub.peers, timeout=15,
                         what="the /dnsaddr bootstrap peer a gossip peer")
        assert oid not in new.p2p.pubsub.peers  # only the peer asked for
        assert ("_dnsaddr.o.boot.test", "TXT") not in stub.queries
        # the bootstrap peer restarts: resolved again and redialled (_keep_bootstrap)
        asked = stub.queries.count(("_dnsaddr.boot.test", "TXT"))
        await net.stop("boot")
        await eventually(lambda: bid not in new.p2p.pubsub.peers, what="boot gone")
        await net.start("boot")
        await eventually(lambda: bid in new.p2p.pubsub.peers, timeout=15,
                         what="the restarted bootstrap peer dialled again")
        assert stub.queries.count(("_dnsaddr.boot.test", "TXT")) > asked
        assert "connected again to bootstrap peer" in caplog.text
        # `rill peers add` (the control request) takes a /dnsaddr address too
        out = await new.add_peer(f"/dnsaddr/o.boot.test/p2p/{oid}")
        assert out["connected"], out
        await eventually(lambda: oid in new.p2p.pubsub.peers, what="the added peer")


async def test_hostile_bootstrap_names_leave_the_daemon_running(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rill.node")
    async with dns_stub() as stub, network(tmp_path, OCT + 3600) as net:
        stub.txt["_dnsaddr.garbage.test"] = ["dnsaddr=/ip4/nonsense", "v=spf1 -all"]
        stub.txt["_dnsaddr.deep.test"] = [f"dnsaddr=/dnsaddr/deep.test/p2p/{PEER}"]
        stub.silent.add("_dnsaddr.slow.test")
        hostile = [f"/dnsaddr/{n}.test/p2p/{PEER}" for n in ("nx", "garbage", "deep", "slow")]
        node = await net.start("node", bootstrap=hostile, dns_servers=[stub.server])
        # every entry refused with its reason (a failed dial: retried with backoff)
        await eventually(lambda: "slow.test: the DNS lookup timed out" in caplog.text,
                         timeout=10, what="the silent name timed out")
        for why in ("_dnsaddr.nx.test: no such DNS name", "malformed 'dnsaddr=/ip4/nonsense'",
                    "not starting with dnsaddr=: 'v=spf1 -all'",
                    "named twice, looked up once (a loop?)",
                    f"bootstrap /dnsaddr/deep.test/p2p/{PEER}: no address to dial"):
            assert why in caplog.text, why
        status = await node.status()  # the daemon runs on
        assert status["peers"] == 0
        # and a garbage answer through the control request is a refusal, not a crash
        out = await node.add_peer(f"/dnsaddr/garbage.test/p2p/{PEER}")
        assert not out["connected"] and "no address to dial" in out["error"]
