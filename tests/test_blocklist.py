"""The peer blocklist: `rill peers block / unblock / blocked`, config.toml `[network] blocked`,
and what a daemon does with it (real libp2p hosts on 127.0.0.1, one process)."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import nacl.signing
import pytest
import trio
from clitools import fast_home, js, rill
from nodes import eventually, make_home, network

from rill.node import control
from rill.node.daemon import NodeConfig
from rill.protocol.errors import LocalError
from rill.protocol.keys import did_from_key, parse_peer, peer_id_from_key, public_key
from rill.protocol.months import month_end, month_start
from rill.wallet.errors import HomeError
from rill.wallet.home import Config, Home
from rill.wallet.wallet import Wallet

OCT = month_start("2026-10")
END = month_end("2026-10")


def key(n: int) -> bytes:
    return public_key(nacl.signing.SigningKey(hashlib.sha256(b"peer %d" % n).digest()))


P1, P2 = peer_id_from_key(key(1)), peer_id_from_key(key(2))
QM = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"  # a SHA-256 (RSA-key) peer ID


# -- peer names -------------------------------------------------------------------------

def test_a_peer_is_named_by_its_peer_id_or_its_identity() -> None:
    assert P1.startswith("12D3KooW") and parse_peer(P1) == P1
    assert parse_peer(f"  {P1}\n") == P1
    assert parse_peer(did_from_key(key(1))) == P1  # a node's peer ID is its identity key
    assert parse_peer(QM) == QM
    for bad in ("", "12D3KooW", P1[:-1], P1 + "x", "0OIl" + P1[4:], "x" * 65,
                "did:key:z6Mknope", QM[:-1], 123, None, ["12D3KooW"]):
        with pytest.raises(LocalError) as info:
            parse_peer(bad)  # type: ignore[arg-type]
        assert info.value.code == "bad-peer", bad


# -- config.toml ------------------------------------------------------------------------

def test_block_and_unblock_edit_only_the_blocked_line(tmp_path: Path) -> None:
    home = tmp_path / "h"
    fast_home(home, "Dora")
    h = Home(home)
    before = h.config_path.read_text()
    assert h.config().blocked == ()
    assert h.block(P1) and not h.block(P1) and h.block(did_from_key(key(2)))
    assert h.config().blocked == (P1, P2)
    text = h.config_path.read_text()
    assert f'blocked = [\n  "{P1}",\n  "{P2}",\n]' in text
    # every other line as it was (comments included)
    assert [ln for ln in text.splitlines() if "blocked" not in ln and "12D3" not in ln
            and ln != "]"] == before.splitlines()
    assert h.config().work_bits == 0 and h.config().name == "Dora"
    assert h.unblock(P1) and not h.unblock(P1) and h.config().blocked == (P2,)
    assert h.unblock(P2) and h.config().blocked == ()
    assert NodeConfig.from_toml(h.config().raw).blocked == []
    h.block(P1)
    assert NodeConfig.from_toml(Config.parse(h.config_path.read_text()).raw).blocked == [P1]


def test_a_hand_written_blocklist_is_read_and_kept(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    h = Home(home)
    # no [network] table yet: one is added
    h.config_path.write_text('name = "x"\n[payments]\nmin_payout = 5\n')
    h.block(QM)
    assert Config.parse(h.config_path.read_text()).raw == {
        "name": "x", "payments": {"min_payout": 5}, "network": {"blocked": [QM]}}
    # a hand-written list (a did:key, a comment holding a bracket) is parsed and rewritten
    h.config_path.write_text(
        f'name = "x"\n[network] # peers\nwork_bits = 3\nblocked = [ # ]\n'
        f'  "{did_from_key(key(1))}", # a friend ]\n]\n[node]\ngrace = 5\n')
    assert h.config().blocked == (P1,)
    h.block(P2)
    raw = Config.parse(h.config_path.read_text()).raw
    assert raw == {"name": "x", "network": {"work_bits": 3, "blocked": [P1, P2]},
                   "node": {"grace": 5}}
    # a layout it cannot edit safely is refused, the file left alone
    odd = f'name = "x"\nnetwork = {{ blocked = ["{P1}"] }}\n'
    h.config_path.write_text(odd)
    with pytest.raises(HomeError, match="edit it by hand"):
        h.block(P2)
    assert h.config_path.read_text() == odd
    # a bad entry is a clear error, for the node as for every command
    h.config_path.write_text('[network]\nblocked = ["12D3KooWnope"]\n')
    with pytest.raises(HomeError, match=r"network\.blocked: not a peer ID"):
        Home(home).config()
    with pytest.raises(ValueError, match=r"network\.blocked: not a peer ID"):
        NodeConfig.from_toml({"network": {"blocked": ["12D3KooWnope"]}})
    with pytest.raises(ValueError, match="must be a list"):
        NodeConfig.from_toml({"network": {"blocked": P1}})


def test_the_cli_blocks_unblocks_and_lists(tmp_path: Path) -> None:
    home = tmp_path / "h"
    did = fast_home(home)
    out = js("peers", "block", P1, home=home)
    assert out == {"peer_id": P1, "id": did_from_key(key(1)), "blocked": True,
                   "changed": True, "node": "not running", "disconnected": False,
                   "dialling": False}
    assert js("peers", "block", did_from_key(key(1)), home=home)["changed"] is False
    assert "applies when the node starts" in rill("peers", "block", QM, home=home).stdout
    assert js("peers", "blocked", home=home) == [
        {"peer_id": P1, "id": did_from_key(key(1)), "in_force": None},
        {"peer_id": QM, "id": None, "in_force": None}]
    assert "no node running" in rill("peers", "blocked", home=home).stdout
    assert js("peers", "unblock", QM, home=home)["changed"] is True
    assert js("peers", "unblock", QM, home=home)["changed"] is False
    # refusals, with a code
    for args, code in ((["block", "nope"], "bad-peer"), (["unblock", ""], "bad-peer"),
                       (["block", did], "bad-peer")):
        err = rill("peers", *args, "--json", home=home, code=1).json()
        assert err["code"] == code and err["error"], args
    assert "own peer ID" in rill("peers", "block", did, home=home, code=1).stderr
    assert rill("peers", "block", P1, "--json", home=tmp_path / "none",
                code=1).json()["code"] == "no-home"
    assert js("peers", "blocked", home=home) == [
        {"peer_id": P1, "id": did_from_key(key(1)), "in_force": None}]


# -- the daemon ---------------------------------------------------------------------------

async def test_a_blocked_peer_is_never_connected_and_its_gossip_ignored(tmp_path: Path
                                                                      ) -> None:
    """a starts with b in its config's blocklist and b as a bootstrap peer: a does not dial
    b, b's dial is closed after the handshake; c (connected to both) forwards b's
    settlement, which a ignores, and a never syncs with b.  Unblocked, a dials b again;
    blocked through the control socket, b is cut off at once."""
    async with network(tmp_path, END + 3600) as net:
        b = await net.start("b", work_bits=0)
        c = await net.start("c", work_bits=0)
        assert b.p2p is not None and c.p2p is not None
        b_id, b_addr = b.p2p.peer_id, b.p2p.addrs()[0]
        a = await net.start("a", blocked=[str(b_id)], bootstrap=[b_addr], work_bits=0)
        assert a.p2p is not None and a.is_blocked(b_id)
        # b's dial: a closes the connection once the handshake names b
        a_id = a.p2p.peer_id
        with contextlib.suppress(Exception):  # b may see it closed before or after
            await b.p2p.connect(a.p2p.addrs()[0])
        await eventually(lambda: not b.p2p.host.get_network().get_connections(a_id),
                         timeout=5, what="b's connection to a closed")
        assert not a.p2p.host.get_network().get_connections(b_id)
        await net.connect("c", "a")
        await net.connect("c", "b")
        assert b_id not in a.p2p.pubsub.peers and a.p2p.peer_id not in b.p2p.pubsub.peers
        assert not a.p2p.host.get_network().get_connections(b_id)
        # b settles a month and publishes it: c takes it and forwards it to a, which
        # judges it like any object (a block is about connections, not signers)
        raw = _settlement(tmp_path, "b", c.identity)
        await b.publish(raw)
        await eventually(lambda: hashlib.sha256(raw).digest() in a.held,
                         what="a holds it through c")
        assert await a.sync_with(b_id) == 0  # no sync with a blocked peer
        # the control socket: bad input is a refusal with a reason
        sock = a.socket_path
        for args, why in (({"peer": "nope"}, "not a peer ID"), ({}, "named by text"),
                          ({"peer": 7}, "not int"),
                          ({"peer": str(a.p2p.peer_id)}, "own peer ID")):
            with pytest.raises(ConnectionError, match=why):
                await trio.to_thread.run_sync(lambda a_=args: control.call(sock, "block",
                                                                           5, **a_))
        with pytest.raises(ConnectionError, match="not a peer ID"):
            await trio.to_thread.run_sync(lambda: control.call(sock, "unblock", 5, peer="x"))
        # unblocked: a dials b at once (its bootstrap address)
        got = await trio.to_thread.run_sync(lambda: control.call(sock, "unblock", 5,
                                                                 peer=str(b_id)))
        assert got == {"peer_id": str(b_id), "blocked": False, "changed": True,
                       "dialling": True}
        topic = "rill/1/settlements"  # b sends a its settlements once it knows a subscribes
        await eventually(lambda: b_id in a.p2p.pubsub.peers
                         and a.p2p.peer_id in b.p2p.pubsub.peer_topics.get(topic, ()),
                         what="a and b connected, a subscribed at b")
        await net.stop("c")  # b's gossip can reach a only directly now
        # what a blocked peer sends is dropped (here: blocked without closing the
        # connection, the moment before block_peer closes it)
        x, y = _settlement(tmp_path, "x", b.identity), _settlement(tmp_path, "y", b.identity)
        a.blocked.add(b_id)
        dropped = a.p2p.pubsub.blocked_dropped
        await b.publish(x)
        await eventually(lambda: a.p2p.pubsub.blocked_dropped > dropped, what="x dropped")
        # checked while still blocked: once unblocked, b's gossip may offer x again (IHAVE
        # at its next heartbeat), and a takes it like any object
        assert hashlib.sha256(x).digest() not in a.held
        a.blocked.discard(b_id)
        await b.publish(y)
        await eventually(lambda: hashlib.sha256(y).digest() in a.held, what="y taken")
        # blocked again, through its did:key: cut off at once
        got = await trio.to_thread.run_sync(lambda: control.call(
            sock, "block", 5, peer=did_from_key(b.identity)))
        assert got["disconnected"] is True and got["changed"] is True
        await eventually(lambda: b_id not in a.p2p.pubsub.peers
                         and a.p2p.peer_id not in b.p2p.pubsub.peers, what="b cut off")
        assert await trio.to_thread.run_sync(lambda: control.call(sock, "blocked", 5)) == \
            [str(b_id)]


def _settlement(base: Path, name: str, creator: bytes) -> bytes:
    """October's settlement of the home ``name`` (made if needed), without proof of work."""
    home = base / name
    if not home.exists():
        make_home(base, name)
    cfg = home / "config.toml"
    cfg.write_text(cfg.read_text().replace("work_bits = 20", "work_bits = 0"))
    with Wallet.open(home) as w:
        w.set_budget(100, "EUR", OCT)
        w.click("https://x.example/", OCT + 5, creator=creator)
        res, _ = w.settle("2026-10", END + 3600)
    return res.settlement.raw
