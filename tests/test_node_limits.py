"""Limits at the daemon's trust boundaries, with real libp2p hosts on 127.0.0.1:
slow sync clients, hostile sync servers, peers without the sync protocol, the control
socket."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import signing_key
from libp2p.custom_types import TProtocol
from nodes import eventually, network

from rill.node import control, host, syncing
from rill.protocol.errors import SchemaError
from rill.protocol.months import month_end
from rill.protocol.network import SYNC_PROTOCOL, SyncRequest, SyncResponse
from rill.protocol.reconcile import RECONCILE_PROTOCOL, Objects, ReconcileRequest
from rill.protocol.settle import settle

END = month_end("2026-10")


async def test_slow_sync_clients_are_cut_off_and_honest_ones_served(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "REQUEST_TIMEOUT_S", 0.5)
    async with network(tmp_path, END + 3600) as net:
        server = await net.start("server")
        client = await net.start("client")
        await net.connect("client", "server")
        cp, sp = client.p2p, server.p2p
        assert cp is not None and sp is not None
        # many streams that never send a request: a few are served (and time out),
        # the rest are refused at once
        streams, refused = [], 0
        for _ in range(20):
            try:
                streams.append(await cp.host.new_stream(sp.peer_id,
                                                        [TProtocol(SYNC_PROTOCOL)]))
            except Exception:
                refused += 1
        assert len(streams) >= host.MAX_STREAMS_PER_PEER and refused >= 1
        # meanwhile another peer is served at once
        honest = await net.start("honest")
        await net.connect("honest", "server")
        assert honest.p2p is not None
        with trio.fail_after(5):
            await host.request(honest.p2p.host, sp.peer_id, SYNC_PROTOCOL,
                               SyncRequest(honest.identity, 0, 10).encode(), 1 << 20)

        async def reset_by_server(stream: Any) -> bool:
            try:
                return await stream.read(1) == b""
            except Exception:  # reset: what we want
                return True

        with trio.fail_after(10):
            for s in streams:
                assert await reset_by_server(s)
        # an honest request still gets its answer
        raw = await host.request(cp.host, sp.peer_id, SYNC_PROTOCOL,
                                 SyncRequest(client.identity, 0, 10).encode(), 1 << 20)
        assert SyncResponse.decode(raw).objects == ()


async def test_a_sync_server_that_always_says_more_is_left_after_a_bounded_session(
        tmp_path: Path) -> None:
    async with network(tmp_path, END + 3600) as net:
        liar = await net.start("liar")
        victim = await net.start("victim")
        asked: list[int] = []

        async def always_more(peer: Any, raw: bytes) -> bytes:
            req = SyncRequest.decode(raw)
            asked.append(req.after)
            return SyncResponse((), req.after + 1, True, req.ids).encode()

        assert liar.p2p is not None
        liar.p2p.host.set_stream_handler(TProtocol(SYNC_PROTOCOL),
                                         host.framed_handler(always_more, 1024))
        await net.connect("victim", "liar")
        await eventually(lambda: len(asked) >= 1, what="the victim's first sync")
        # an empty page ends the session at once
        await eventually(lambda: victim.peers[liar.p2p.peer_id].last_sync is not None)
        assert len(asked) == 1

        async def more_with_objects(peer: Any, raw: bytes) -> bytes:
            req = SyncRequest.decode(raw)
            asked.append(req.after)
            return SyncResponse((b"\x00" * (32 if req.ids else 1),), req.after + 1, True,
                                req.ids).encode()

        liar.p2p.host.set_stream_handler(TProtocol(SYNC_PROTOCOL),
                                         host.framed_handler(more_with_objects, 1024))
        asked.clear()
        assert await victim.sync_with(liar.p2p.peer_id) == 0
        assert len(asked) == syncing.MAX_SYNC_PAGES

        async def stuck_cursor(peer: Any, raw: bytes) -> bytes:
            req = SyncRequest.decode(raw)
            asked.append(req.after)
            return SyncResponse((b"\x00" * (32 if req.ids else 1),), 0, True,
                                req.ids).encode()

        liar.p2p.host.set_stream_handler(TProtocol(SYNC_PROTOCOL),
                                         host.framed_handler(stuck_cursor, 1024))
        asked.clear()
        await victim.sync_with(liar.p2p.peer_id)
        assert len(asked) == 1  # no progress: stop
        assert victim.p2p is not None  # still running


async def test_a_sync_server_that_resets_a_request_by_ids_is_asked_for_objects(
        tmp_path: Path) -> None:
    """A server from before SPEC §11.3's ``ids`` resets such a request (its decoder
    refuses the unknown field): the client asks it for whole objects from then on."""
    async with network(tmp_path, END + 3600) as net:
        old = await net.start("old")
        client = await net.start("client")
        donor = await net.start("donor")
        assert old.p2p is not None and client.p2p is not None
        settled = settle(signing_key("donor"), "2026-10", 100, "EUR", bytes(32),
                         {"https://a.example/": client.identity})
        await net.connect("donor", "old")
        await donor.publish(settled.settlement.raw)  # it concerns the client, too
        await eventually(lambda: old.counters["stored"] >= 1, what="the old server stores")
        await net.stop("donor")
        asked: list[bool] = []

        async def before_ids(peer: Any, raw: bytes) -> bytes:
            req = SyncRequest.decode(raw)
            asked.append(req.ids)
            if req.ids:
                raise SchemaError("sync request: expected exactly v, subject, after, limit")
            return await old._serve_sync(peer, raw)

        old.p2p.host.set_stream_handler(TProtocol(SYNC_PROTOCOL),
                                        host.framed_handler(before_ids, 1024))
        await net.connect("client", "old")
        await eventually(lambda: getattr(client.peers.get(old.p2p.peer_id), "sync_ids",
                                         None) is False,
                         what="the client notes the old server")
        await eventually(lambda: client.peers[old.p2p.peer_id].last_sync is not None,
                         what="the session ends")
        assert asked[:2] == [True, False]
        asked.clear()
        client.peers[old.p2p.peer_id].cursor = 0
        await client.sync_with(old.p2p.peer_id)
        assert asked == [False]  # not asked by IDs again
        assert client.wallet.has_object(settled.settlement.id)


async def test_sync_by_ids_fetches_what_is_missing_in_as_many_gets_as_it_takes(
        tmp_path: Path) -> None:
    """A server answers a request by IDs, then each ``get`` with one object (as one cut
    at its size limit would) plus one nobody asked for: the client asks again for the
    rest, takes every object it lacked, and drops the one it did not ask for."""
    async with network(tmp_path, END + 3600) as net:
        server = await net.start("server")
        client = await net.start("client")
        assert server.p2p is not None and client.p2p is not None
        settled = [settle(signing_key(f"donor {i}"), "2026-10", 100, "EUR", bytes(32),
                          {"https://a.example/": client.identity}).settlement
                   for i in range(4)]
        stranger = settle(signing_key("stranger"), "2026-10", 100, "EUR", bytes(32),
                          {"https://a.example/": client.identity}).settlement
        by_id = {s.id: s.raw for s in settled}
        gets: list[int] = []

        async def serve_ids(peer: Any, raw: bytes) -> bytes:
            req = SyncRequest.decode(raw)
            assert req.ids
            page = list(by_id) if req.after == 0 else []
            return SyncResponse(tuple(page), 4 if page else req.after, False, True).encode()

        async def serve_get(peer: Any, raw: bytes) -> bytes:
            req = ReconcileRequest.decode(raw)
            if req.op != "get":
                raise SchemaError("this server only answers get")
            gets.append(len(req.ids))
            return Objects((by_id[req.ids[0]], stranger.raw)).encode()

        server.p2p.host.set_stream_handler(TProtocol(SYNC_PROTOCOL),
                                           host.framed_handler(serve_ids, 1024))
        server.p2p.host.set_stream_handler(TProtocol(RECONCILE_PROTOCOL),
                                           host.framed_handler(serve_get, 1 << 20))
        await net.connect("client", "server")
        await eventually(lambda: getattr(client.peers.get(server.p2p.peer_id), "last_sync",
                                         None) is not None, what="the session ends")
        for s in settled:
            assert client.wallet.has_object(s.id)
        assert not client.wallet.has_object(stranger.id)
        assert gets == [4, 3, 2, 1]


async def test_a_peer_without_the_sync_protocol_is_noted_once_without_errors(
        tmp_path: Path) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(logging.DEBUG)
    host.route_libp2p_logs(keep, logging.INFO)
    rill_log = logging.getLogger("rill")
    rill_log.addHandler(keep)
    old_level = rill_log.level
    rill_log.setLevel(logging.INFO)
    try:
        async with network(tmp_path, END + 3600) as net:
            light = await net.start("light")
            node = await net.start("node")
            assert light.p2p is not None
            light.p2p.host.remove_stream_handler(TProtocol(SYNC_PROTOCOL))
            await net.connect("node", "light")
            await eventually(lambda: node.peers.get(light.p2p.peer_id) is not None
                             and node.peers[light.p2p.peer_id].no_sync,
                             what="the node notes the peer has no sync")
            for _ in range(3):
                assert await node.sync_with(light.p2p.peer_id) == 0
            # before identify has said anything, the refused stream itself tells
            node.peers[light.p2p.peer_id].no_sync = False
            node._serves_sync = lambda peer: None  # type: ignore[method-assign]
            assert await node.sync_with(light.p2p.peer_id) == 0
            assert node.peers[light.p2p.peer_id].no_sync
    finally:
        rill_log.removeHandler(keep)
        rill_log.setLevel(old_level)
        logging.getLogger("libp2p").removeHandler(keep)
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage()[:200] for r in errors]
    notes = [r for r in records if "does not serve" in r.getMessage()]
    assert len(notes) == 2  # once by identify, once by the refused stream


def test_libp2p_stream_failure_errors_are_demoted() -> None:
    host.route_libp2p_logs(logging.NullHandler(), logging.INFO)
    lg = logging.getLogger("libp2p.host.basic_host")
    failure = lg.makeRecord(lg.name, logging.ERROR, __file__, 1,
                            "Failed to open stream to peer X:\n  Error: ...", (), None)
    other = lg.makeRecord(lg.name, logging.ERROR, __file__, 1, "something else", (), None)
    assert not lg.filter(failure) and failure.levelno == logging.DEBUG
    assert lg.filter(other) and other.levelno == logging.ERROR


async def test_the_end_of_each_dht_request_served_is_not_a_warning() -> None:
    """py-libp2p's DHT server logged a WARNING at the close of every request it answered
    (the asker's end of the stream read as a failure): demoted to DEBUG, while other
    warnings of the DHT stay."""
    import hashlib

    from libp2p.network.stream.exceptions import StreamEOF
    from nodes import free_port

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    class Count(logging.Filter):  # runs before the daemon's filter: what py-libp2p logs
        seen = 0

        def filter(self, record: logging.LogRecord) -> bool:
            Count.seen += "Failed to read DHT message" in record.getMessage()
            return True

    keep = Keep(logging.DEBUG)
    host.route_libp2p_logs(keep, logging.INFO)
    lg = logging.getLogger("libp2p.kad_dht.kad_dht")
    lg.filters.insert(0, Count())
    try:
        async with host.running(hashlib.sha256(b"quiet a").digest(),
                                [f"/ip4/127.0.0.1/tcp/{free_port()}"]) as a, \
                host.running(hashlib.sha256(b"quiet b").digest(),
                             [f"/ip4/127.0.0.1/tcp/{free_port()}"]) as b:
            await a.connect(b.addrs()[0])
            served = 0
            for i in range(3):  # b answers a FIND_NODE and an ADD_PROVIDER each time
                await a.dht.peer_routing._query_peer_for_closest(
                    b.peer_id, hashlib.sha256(b"%d" % i).digest())
                served += 1
            assert served == 3
            await trio.sleep(0.5)
    finally:
        logging.getLogger("libp2p").removeHandler(keep)
        lg.filters[:] = [f for f in lg.filters if not isinstance(f, Count)]
    assert Count.seen >= 3  # one per request b answered
    assert [r for r in records if "Failed to read DHT message" in r.getMessage()] == []
    other = lg.makeRecord(lg.name, logging.WARNING, __file__, 1,
                          "Failed to read DHT message from stream: %s", (ValueError("x"),),
                          None)
    end = lg.makeRecord(lg.name, logging.WARNING, __file__, 1,
                        "Failed to read DHT message from stream: %s", (StreamEOF(),), None)
    assert lg.filter(other) and other.levelno == logging.WARNING
    assert not lg.filter(end) and end.levelno == logging.DEBUG


async def test_control_socket_failures_are_answers(tmp_path: Path) -> None:
    async with network(tmp_path, END + 3600) as net:
        node = await net.start("node")
        path = node.socket_path
        with pytest.raises(ConnectionError):
            await trio.to_thread.run_sync(
                lambda: control.call(path, "connect", timeout=30,
                                     addr="/ip4/127.0.0.1/tcp/1/p2p/"
                                     "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"))
        with pytest.raises(ConnectionError):
            await trio.to_thread.run_sync(
                lambda: control.call(path, "connect", timeout=30, addr="not a multiaddr"))
        with pytest.raises(ConnectionError):
            await trio.to_thread.run_sync(lambda: control.call(path, "no-such-command"))

        def garbage() -> bytes:
            import socket

            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(str(path))
            s.sendall(b"\xff\xfe not json\n")
            reply = s.recv(4096)
            s.close()
            return reply

        assert b'"ok": false' in await trio.to_thread.run_sync(garbage)
        status = await trio.to_thread.run_sync(lambda: control.call(path, "status"))
        assert status["id"].startswith("did:key:")
