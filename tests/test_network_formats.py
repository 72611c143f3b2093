"""protocol.network: gossip checks and the sync codec; node clocks and control socket."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from helpers import load_vectors, signing_key

from rill.node import control
from rill.node.clock import FastClock, ManualClock, parse_clock
from rill.protocol import cbor, keys
from rill.protocol import messages as m
from rill.protocol.errors import RemoteError
from rill.protocol.months import month_end, month_start
from rill.protocol.network import (
    TOPIC_OF,
    TOPICS,
    SyncRequest,
    SyncResponse,
    check_gossip,
    frame,
    frame_length,
)

DATA = load_vectors()
NOW = DATA["verify_at"]


def test_every_positive_vector_passes_its_topic_and_no_other() -> None:
    for v in DATA["positive"]:
        raw = bytes.fromhex(v["bytes"])
        if v["type"] in ("click", "statement", "claim", "disclosure"):
            # click-log entries, statements, plain claims (their things list in clear) and
            # disclosures never travel by gossip: no topic takes them
            assert v["type"] not in TOPIC_OF
            for topic in TOPICS:
                with pytest.raises(RemoteError) as info:
                    check_gossip(topic, raw, NOW)
                assert info.value.code == "wrong-topic"
            continue
        assert check_gossip(TOPIC_OF[v["type"]], raw, NOW).id_hex == v["id"]
        for topic in TOPICS:
            if topic != TOPIC_OF[v["type"]]:
                with pytest.raises(RemoteError) as info:
                    check_gossip(topic, raw, NOW)
                assert info.value.code == "wrong-topic"


def test_negative_vectors_fail_gossip_checks() -> None:
    for v in DATA["negative"]:
        with pytest.raises(RemoteError):
            check_gossip("rill/1/settlements", bytes.fromhex(v["bytes"]), NOW)


def test_gossip_and_sync_refuse_bad_cbor_without_the_reason_scan(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # any CBOR failure is a rejection there: the byte scan for the SPEC §3.2 reason
    # (tens of ms on a large adversarial message) is skipped
    def no_scan(raw: bytes) -> None:
        raise AssertionError("scanned")

    monkeypatch.setattr(cbor, "classify", no_scan)
    s = next(v for v in DATA["positive"] if v["type"] == "settlement")
    bad = bytes.fromhex(s["bytes"]) + b"\x00"
    with pytest.raises(RemoteError) as info:
        check_gossip("rill/1/settlements", bad, NOW)
    assert info.value.code == "malformed"
    assert m.peek_type(bad) is None
    with pytest.raises(RemoteError) as info:
        SyncResponse.decode(SyncResponse((), 0, False).encode() + b"\x00")
    assert info.value.code == "malformed"
    monkeypatch.undo()
    with pytest.raises(RemoteError) as info:
        m.decode(bad)  # elsewhere (rill verify...), the exact reason
    assert info.value.code == "trailing-bytes"


def test_time_window() -> None:
    s = next(v for v in DATA["positive"] if v["type"] == "settlement")
    raw = bytes.fromhex(s["bytes"])
    with pytest.raises(RemoteError) as info:  # before the month ended
        check_gossip("rill/1/settlements", raw, month_start("2026-10"))
    assert info.value.code == "future"
    check_gossip("rill/1/settlements", raw, month_start("2027-01"))  # 3 months back: kept
    with pytest.raises(RemoteError) as info:
        check_gossip("rill/1/settlements", raw, month_start("2027-02"))
    assert info.value.code == "outside-window"


def test_last_month_and_clocks_past_the_year_9999() -> None:
    """The time and window rules are total: no input or clock makes them raise anything
    but a RemoteError (a 9999-12 settlement used to crash every daemon)."""
    late = next(v for v in DATA["negative"] if v["name"] == "settlement-9999-12")
    raw = bytes.fromhex(late["bytes"])
    for now, code in ((NOW, "future"), (month_end("9999-12") - 301, "future"),
                      (month_end("9999-12"), "insufficient-work"),
                      (2 * month_end("9999-12"), "outside-window"),
                      (2**53 - 1, "outside-window")):
        with pytest.raises(RemoteError) as info:
            check_gossip("rill/1/settlements", raw, now)
        assert info.value.code == code, now
    check_gossip("rill/1/settlements", raw, month_end("9999-12"), work_bits=0)
    proof = next(v for v in DATA["negative"] if v["name"] == "equivocation-9999-12")
    with pytest.raises(RemoteError) as info:
        check_gossip("rill/1/equivocations", bytes.fromhex(proof["bytes"]), NOW)
    assert info.value.code == "future"


def test_sync_codec() -> None:
    key = keys.public_key(signing_key("a"))
    req = SyncRequest(key, 5, 100)
    assert SyncRequest.decode(req.encode()) == req
    resp = SyncResponse((b"x", b"yz"), 9, True)
    assert SyncResponse.decode(resp.encode()) == resp
    by_ids = SyncRequest(key, 0, 1000, ids=True)
    assert m.cbor.decode(by_ids.encode())["ids"] == 1
    assert "ids" not in m.cbor.decode(req.encode())
    assert SyncRequest.decode(by_ids.encode()) == by_ids
    id_resp = SyncResponse((bytes(32), b"\x01" * 32), 7, False, ids=True)
    assert set(m.cbor.decode(id_resp.encode())) == {"v", "ids", "next", "more"}
    assert SyncResponse.decode(id_resp.encode()) == id_resp
    for bad_resp in ({"v": 1, "ids": [b"short"], "next": 0, "more": 0},
                     {"v": 1, "ids": [], "objects": [], "next": 0, "more": 0},
                     {"v": 1, "ids": [bytes(33)], "next": 0, "more": 0}):
        with pytest.raises(RemoteError):
            SyncResponse.decode(m.cbor.encode(bad_resp))
    base = {"v": 1, "subject": key, "after": 0, "limit": 1}
    for ids_value in (0, 2, True, b"\x01", -1, "1"):
        with pytest.raises(RemoteError):
            SyncRequest.decode(m.cbor.encode({**base, "ids": ids_value}))
    for bad in (b"", b"\xa0", m.cbor.encode({"v": 1, "subject": key, "after": 0, "limit": 0}),
                m.cbor.encode({"v": 1, "subject": bytes(32), "after": 0, "limit": 1}),
                m.cbor.encode({"v": 2, "subject": key, "after": 0, "limit": 1})):
        with pytest.raises(RemoteError):
            SyncRequest.decode(bad)
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame_length(b"\x00\x00\x00\x03", 10) == 3
    with pytest.raises(RemoteError):
        frame_length(b"\x01\x00\x00\x00", 10)


async def test_manual_clock_wakes_sleepers() -> None:
    clock = ManualClock(1000)
    woke: list[int] = []

    async def sleeper(t: int) -> None:
        await clock.sleep_until(t)
        woke.append(clock.now())

    async with trio.open_nursery() as n:
        n.start_soon(sleeper, 1500)
        n.start_soon(sleeper, month_end("2026-10"))
        await trio.testing.wait_all_tasks_blocked()
        clock.advance(600)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == [1600]
        clock.set(month_end("2026-10"))
    assert woke == [1600, month_end("2026-10")]
    with pytest.raises(ValueError):
        clock.set(5)


async def test_fast_clock_runs_fast() -> None:
    clock = FastClock(1000, 3600.0)  # an hour per second
    t0 = trio.current_time()
    await clock.sleep_until(1000 + 360)
    assert trio.current_time() - t0 < 1.0
    assert clock.now() >= 1360
    assert isinstance(parse_clock("manual:5"), ManualClock)
    for bad in ("fast:1:nan", "manual", "sun", "fast:x:2"):
        with pytest.raises(ValueError):
            parse_clock(bad)


async def test_control_socket_is_private_and_answers(tmp_path: Path) -> None:
    path = tmp_path / "node.sock"

    async def handler(req: dict[str, object]) -> object:
        if req["cmd"] == "boom":
            raise ValueError("no such thing")
        return {"echo": req["cmd"]}

    async with trio.open_nursery() as n:
        await n.start(control.serve, path, handler)
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert await trio.to_thread.run_sync(control.call, path, "status") == {"echo": "status"}
        with pytest.raises(ConnectionError, match="no such thing"):
            await trio.to_thread.run_sync(control.call, path, "boom")
        with pytest.raises(RuntimeError, match="already running"):
            await control.serve(path, handler)
        n.cancel_scope.cancel()
    assert not path.exists()
    with pytest.raises(ConnectionError, match="no node is running"):
        control.call(path, "status")
