"""The node's event log (node/events.py), the [hooks] config, the webhook signature and
`rill events` / `rill hooks test`, in-process on real homes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from clitools import fast_home, js, rill
from hookrecv import Receiver

from rill.node import events
from rill.node.hookconfig import HookConfigError, parse_hooks
from rill.protocol import keys
from rill.protocol import webhook as wh
from rill.protocol.errors import RemoteError
from rill.protocol.months import month_end, month_start
from rill.wallet.wallet import Wallet

SEP, OCT = month_start("2026-09"), month_start("2026-10")


def _give(donor: Path, creator: str, month: str, things: list[str]) -> list[bytes]:
    """``donor`` clicks ``things`` of ``creator`` in ``month`` and settles it: the
    settlement and sealed claims (what reaches the creator)."""
    with Wallet.open(donor) as w:
        t = month_start(month) + 100
        if w.budget(month) is None:
            w.set_budget(500, "EUR", t)
        for i, thing in enumerate(things):
            w.click(thing, t + 1 + i, keys.key_from_did(creator))
        result, _ = w.settle(month, month_end(month) + 60)
    return [result.settlement.raw, *(s.raw for s in result.sealed)]


def _thread_db() -> Any:
    """What the daemon gives Hooks as ``db``: a call in a worker thread, one at a time."""
    import functools

    import trio

    limiter = trio.CapacityLimiter(1)

    async def db(fn: Any, *args: Any) -> Any:
        return await trio.to_thread.run_sync(functools.partial(fn, *args), limiter=limiter)
    return db


def _alice_and_dora(tmp_path: Path) -> tuple[Path, str, Path]:
    """Alice's home and did:key (the creator), Dora's home (a donor)."""
    home, dora = tmp_path / "alice", tmp_path / "dora"
    a = fast_home(home)
    fast_home(dora)
    return home, a, dora


def _python_command(script: str, arg: Path) -> str:
    """A hook's ``command`` (TOML) running ``script`` by this Python with ``arg``."""
    return json.dumps([sys.executable, "-c", script, str(arg)])


def _scan(home: Path, now: int, hooks: Any = None) -> list[dict[str, Any]]:
    with Wallet.open(home) as w:
        return events.scan(w.db, w.identity, now, hooks)


def test_events_once_each_only_for_what_is_stored_after_the_first_scan(tmp_path: Path
                                                                       ) -> None:
    alice, dora, erin = tmp_path / "alice", tmp_path / "dora", tmp_path / "erin"
    a = fast_home(alice, "Alice")
    fast_home(dora, "Dora")
    fast_home(erin)
    sep = _give(dora, a, "2026-09", ["https://alice.example/old"])
    with Wallet.open(alice) as w:  # stored before notifications ever ran: no event
        w.import_objects(sep, OCT)
    assert _scan(alice, OCT) == []  # the first scan only notes where the store ends
    assert _scan(dora, OCT) == []  # Dora's September settlement was already there
    now = month_end("2026-10") + 120
    oct_ = _give(dora, a, "2026-10", ["https://alice.example/new"])
    got = _scan(dora, now)
    assert [e["event"] for e in got] == ["month_settled"]
    settled = got[0]["data"]
    assert settled["month"] == "2026-10" and settled["budget"] == 500
    assert settled["creators"] == [{"creator": a, "things": 1, "amount": 500,
                                    "currency": "EUR", "amount_text": "5.00 EUR"}]
    with Wallet.open(alice) as w:
        w.import_objects(oct_, now)
    got = _scan(alice, now)
    # Dora gave in September already: a claim, not a new supporter
    assert [e["event"] for e in got] == ["claim"]
    claim = got[0]["data"]
    assert claim["donor"] == js("id", home=dora)["id"] and claim["amount"] == 500
    assert claim["things"] == ["https://alice.example/new"] and claim["sealed"] is True
    assert got[0]["node"] == a and got[0]["time"] == events.iso(now)
    assert _scan(alice, now + 5) == []  # once
    erin_oct = _give(erin, a, "2026-10", ["https://alice.example/new"])
    with Wallet.open(alice) as w:
        w.import_objects(erin_oct, now)
        receipt = w.sign_receipt(bytes.fromhex(claim["claim"]), now, "bank 42")
    got = _scan(alice, now)
    assert [e["event"] for e in got] == ["claim", "new_supporter"]
    assert got[1]["data"]["donor"] == js("id", home=erin)["id"]
    with Wallet.open(dora) as w:
        w.import_object(receipt.raw, now)
    got = _scan(dora, now)
    assert [e["event"] for e in got] == ["receipt"]
    assert got[0]["data"]["claim"] == claim["claim"] and got[0]["data"]["creator"] == a
    assert got[0]["id"] == events.event_id("receipt", receipt.id).hex()
    # the CLI: list, mark read
    listed = js("events", home=alice)
    assert [e["event"] for e in listed] == ["new_supporter", "claim", "claim"]
    assert not any(e["read"] for e in listed)
    assert js("events", "read", listed[0]["id"][:10], home=alice) == {"marked": 1,
                                                                       "unread": 2}
    assert [e["event"] for e in js("events", "--unread", home=alice)] == ["claim", "claim"]
    assert js("events", "read", home=alice)["marked"] == 2
    assert js("events", "--unread", home=alice) == []
    bad = rill("events", "read", "xyz", "--json", home=alice, code=1)
    assert bad.json()["code"] == "bad-event-id"


def test_a_full_queue_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    alice, dora = tmp_path / "alice", tmp_path / "dora"
    a = fast_home(alice)
    fast_home(dora)
    hooks = parse_hooks({"hooks": {"queue": 2, "desktop": False,
                                   "on_claim": {"url": "http://127.0.0.1:9/x"},
                                   "on_new_supporter": {"command": ["true"]}}})
    _scan(alice, OCT, hooks)
    for month in ("2026-08", "2026-09", "2026-10"):
        raws = _give(dora, a, month, [f"https://alice.example/{month}"])
        with Wallet.open(alice) as w:
            w.import_objects(raws, month_end("2026-10") + 60)
    assert [e["event"] for e in _scan(alice, month_end("2026-10") + 60, hooks)] == [
        "claim", "new_supporter", "claim", "claim"]
    with Wallet.open(alice) as w:
        st = events.stats(w.db)
        assert st["on_claim.url"]["waiting"] == 2 and st["on_claim.url"]["dropped"] == 1
        assert st["on_new_supporter.command"]["waiting"] == 1
        n, _attempts, body = events.head(w.db, "on_claim.url") or (0, 0, b"")
        assert json.loads(body)["data"]["month"] == "2026-09"  # August's was dropped
        events.attempt_failed(w.db, "on_claim.url", n, "down", give_up=False)
        assert events.head(w.db, "on_claim.url") == (n, 1, body)  # still first
        events.attempt_failed(w.db, "on_claim.url", n, "down", give_up=True)
        events.delivered(w.db, "on_claim.url", events.head(w.db, "on_claim.url")[0], 1)
        st = events.stats(w.db)["on_claim.url"]
        assert (st["waiting"], st["failed"], st["delivered"]) == (0, 1, 1)
        assert st["last_error"] == "down"
        assert events.forget_targets(w.db, set()) == 1  # a hook removed from the config
        assert events.stats(w.db)["on_new_supporter.command"]["dropped"] == 1


@pytest.mark.parametrize("hooks, why", [
    ({"on_claim": {"command": []}}, "names no program"),
    ({"on_claim": {"command": "sh -c 'unclosed"}}, "quotation"),
    ({"on_claim": {"url": "file:///etc/passwd"}}, "http:// or https://"),
    ({"on_claim": {}}, "command and/or url"),
    ({"on_claim": {"url": "http://x", "shell": True}}, "not shell"),
    ({"on_payment": {"url": "http://x"}}, "unknown setting"),
    ({"queue": 0}, "hooks.queue"),
    ({"backoff": "2"}, "hooks.backoff"),
    ({"desktop": "yes"}, "hooks.desktop"),
])
def test_bad_hooks_are_refused_with_the_setting_named(hooks: dict[str, Any], why: str
                                                      ) -> None:
    with pytest.raises(HookConfigError, match=why):
        parse_hooks({"hooks": hooks})


def test_hooks_config_forms() -> None:
    cfg = parse_hooks({"hooks": {"desktop": False, "backoff": 1, "retries": 3, "on_receipt": {
        "command": "notify-me --title 'a receipt'", "url": "https://example.org/h"}}})
    assert [(t.name, t.argv, t.url) for t in cfg.all_targets()] == [
        ("on_receipt.command", ("notify-me", "--title", "a receipt"), ""),
        ("on_receipt.url", (), "https://example.org/h")]
    assert [cfg.delay(n) for n in (1, 2, 3, 20, 60)] == [1, 2, 4, 3600, 3600]
    capped = parse_hooks({"hooks": {"backoff": 0.5, "max_backoff": 3}})
    assert [capped.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 3, 3]
    assert parse_hooks({}).all_targets() == []


def test_webhook_signature() -> None:
    import nacl.signing

    key = nacl.signing.SigningKey(bytes(range(32)))
    me = bytes(key.verify_key)
    body = b'{"id":"ab","event":"claim"}'
    header = wh.sign_header(key, 1_800_000_000, body)
    assert header.startswith(f"t=1800000000,key={keys.did_from_key(me)},sig=")
    assert wh.verify_header(header, body, 1_800_000_100, me) == me
    sig = key.sign(b"rill-webhook/1\n1800000000\n" + body).signature.hex()
    assert header.endswith(sig)  # the signed input as SPEC §12.3 states it
    assert header == (  # SPEC §12.3's example
        "t=1800000000,key=did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd,sig="
        "5fee91a7b4f1092e198ce9985907eaf1acb9120b689c078041aa05be07f9d948a9b4e38f71d7015c"
        "7d2a587e4b47ae62f8390d1e63a4de57a79eb445cbaeac06")
    for value, payload, now, code in [
            (header, body + b" ", 1_800_000_000, "webhook-signature"),
            (header, body, 1_800_000_301, "webhook-time"),
            (header.replace("t=1800000000", "t=1800000001"), body, 1_800_000_000,
             "webhook-signature"),
            (header + ",x=1", body, 1_800_000_000, "webhook-format"),
            ("sig=" + sig, body, 1_800_000_000, "webhook-format")]:
        with pytest.raises(RemoteError) as err:
            wh.verify_header(value, payload, now, me)
        assert err.value.code == code
    other = nacl.signing.SigningKey(bytes(32))
    with pytest.raises(RemoteError) as err:
        wh.verify_header(header, body, 1_800_000_000, bytes(other.verify_key))
    assert err.value.code == "webhook-key"


def test_hooks_test_sends_a_signed_sample_to_a_command_and_a_webhook(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    a = fast_home(home)
    out = tmp_path / "sample.json"
    script = "import sys; open(sys.argv[1], 'wb').write(sys.stdin.buffer.read())"
    receiver = Receiver()
    receiver.start()
    try:
        cfg = home / "config.toml"
        cfg.write_text(cfg.read_text() + f"""
[hooks]
desktop = false
[hooks.on_month_settled]
command = {_python_command(script, out)}
url = "{receiver.url}"
""")
        got = js("hooks", "test", "month_settled", home=home)
        assert got == [{"hook": "on_month_settled.command", "ok": True, "error": None},
                       {"hook": "on_month_settled.url", "ok": True, "error": None}]
        sent = json.loads(out.read_text())
        assert sent["event"] == "month_settled" and sent["test"] is True and sent["node"] == a
        (post,) = receiver.posts
        assert json.loads(post["body"]) == sent
        assert post["headers"]["Rill-Event"] == "month_settled"
        assert post["headers"]["Rill-Event-Id"] == sent["id"]
        import time
        assert wh.verify_header(post["headers"]["Rill-Signature"], post["body"],
                                int(time.time()), keys.key_from_did(a))
        receiver.status = 500
        bad = rill("hooks", "test", "month_settled", "--json", home=home, code=1).json()
        assert bad[1] == {"hook": "on_month_settled.url", "ok": False,
                          "error": "answered HTTP 500"}
        none = rill("hooks", "test", "claim", "--json", home=home, code=1).json()
        assert none["code"] == "no-hook"
    finally:
        receiver.stop()


async def test_delivery_retries_then_gives_up_in_order_and_kills_a_slow_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's delivery loop on a real home: a command that fails is retried
    ``retries`` times with backoff, then its event is given up and the next one goes;
    a command past the timeout is killed and counts as a failure.  With notify-send on
    PATH and a display, desktop notifications are on by default: one per scan."""
    import time

    import trio

    from rill.node.hooks import Hooks

    home, a, dora = _alice_and_dora(tmp_path)
    log = tmp_path / "log"
    # fails for August's claim, sleeps past the timeout for September's, takes October's
    script = ("import sys, json, time; e = json.load(sys.stdin); m = e['data']['month']; "
              "open(sys.argv[1], 'a').write(m + '\\n'); "
              "time.sleep(30) if m == '2026-09' else sys.exit(m == '2026-08')")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    shown = tmp_path / "shown"
    (bin_ / "notify-send").write_text(
        f"#!{sys.executable}\nimport sys, json\n"
        f"open({str(shown)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    (bin_ / "notify-send").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    monkeypatch.setenv("DISPLAY", ":99")
    cfg = home / "config.toml"
    cfg.write_text(cfg.read_text() + f"""
[hooks]
retries = 1
backoff = 0.05
timeout = 1
[hooks.on_claim]
command = {_python_command(script, log)}
""")
    w = Wallet.open(home)
    db = _thread_db()

    now = month_end("2026-10") + 60
    hooks = Hooks(db, w, lambda: now)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(hooks.run)
            raws = [r for month in ("2026-08", "2026-09", "2026-10")
                    for r in _give(dora, a, month, [f"https://alice.example/{month}"])]
            await db(w.import_objects, raws, now)  # one transaction: seen by one scan
            hooks.poke()
            started = time.monotonic()
            with trio.fail_after(20):  # October's ran and its delivery was noted
                while (await hooks.status())["hooks"].get("on_claim.command", {}).get(
                        "delivered") != 1:
                    await trio.sleep(0.05)
            took = time.monotonic() - started
            st = (await hooks.status())["hooks"]["on_claim.command"]
            nursery.cancel_scope.cancel()
    finally:
        w.close()
    # 2 attempts each (the first and 1 retry), in order, then October's at once
    assert log.read_text().split() == ["2026-08"] * 2 + ["2026-09"] * 2 + ["2026-10"]
    assert (st["delivered"], st["failed"], st["waiting"]) == (1, 2, 0)
    assert "did not finish within 1 s" in st["last_error"]
    assert took < 15  # two 1-s timeouts and short backoffs, not 30-s sleeps
    assert [json.loads(x) for x in shown.read_text().splitlines()] == [
        ["--app-name=Rill", "--", "Rill: 4 new events",
         "New claim; New supporter; New claim; New claim"]]


async def test_hooks_follow_config_changes_and_keep_the_last_good_ones(tmp_path: Path
                                                                       ) -> None:
    """A running node reads [hooks] again when config.toml changes; a broken [hooks] is
    reported and the previous hooks are kept."""
    import trio

    from rill.node.hooks import Hooks

    home = tmp_path / "alice"
    fast_home(home)
    cfg = home / "config.toml"
    base = cfg.read_text() + "\n[hooks]\ndesktop = false\n"
    cfg.write_text(base + '[hooks.on_claim]\nurl = "http://127.0.0.1:9/a"\n')
    w = Wallet.open(home)
    db = _thread_db()

    async def settled(pred: Any) -> dict[str, Any]:
        with trio.fail_after(10):
            while True:
                hooks.poke()
                st = await hooks.status()
                if pred(st):
                    return st
                await trio.sleep(0.05)

    hooks = Hooks(db, w, lambda: OCT)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(hooks.run)
            assert [t.name for t in hooks.config.all_targets()] == ["on_claim.url"]
            cfg.write_text(base + '[hooks.on_claim]\nurl = "gopher://x"\n')
            st = await settled(lambda st: st["config_error"])
            assert "gopher" in st["config_error"]
            assert [t.name for t in hooks.config.all_targets()] == ["on_claim.url"]
            cfg.write_text(base + '[hooks.on_receipt]\ncommand = ["true"]\n')
            await settled(lambda st: st["config_error"] is None and [
                t.name for t in hooks.config.all_targets()] == ["on_receipt.command"])
            nursery.cancel_scope.cancel()
    finally:
        w.close()


async def test_a_stop_lets_a_delivery_under_way_finish_and_be_noted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node stopped while a command is running (it has done its work, not yet exited)
    waits for it and notes the delivery: the next start does not run it again.  A command
    that outlasts the stop's grace is cut off and stays queued (delivered at least once)."""
    import time

    import trio

    from rill.node import hooks as hooks_mod
    from rill.node.hooks import Hooks

    monkeypatch.setattr(hooks_mod, "STOP_GRACE_S", 2.0)
    home, a, dora = _alice_and_dora(tmp_path)
    log = tmp_path / "log"
    # writes the month, then takes 0.5 s to exit (4 s for September's: past the grace)
    script = ("import sys, json, time; m = json.load(sys.stdin)['data']['month']; "
              "open(sys.argv[1], 'a').write(m + '\\n'); "
              "time.sleep(4 if m == '2026-09' else 0.5)")
    cfg = home / "config.toml"
    cfg.write_text(cfg.read_text() + f"""
[hooks]
desktop = false
timeout = 30
[hooks.on_claim]
command = {_python_command(script, log)}
""")
    w = Wallet.open(home)
    db = _thread_db()

    async def stop_when_logged(lines: int, month: str | None = None) -> float:
        """Run the hooks (Dora's claim for ``month`` comes in) until the command has
        written ``lines`` lines, then stop them: how long the stop took."""
        hooks = Hooks(db, w, lambda: now)
        async with trio.open_nursery() as nursery:
            await nursery.start(hooks.run)  # its first scan: events come after it
            if month:
                await db(w.import_objects, _give(dora, a, month, [f"https://a.example/{month}"]),
                         now)
            hooks.poke()
            with trio.fail_after(20):
                while len(log.read_text().split() if log.exists() else []) < lines:
                    await trio.sleep(0.01)
            stopped = time.monotonic()
            nursery.cancel_scope.cancel()
        return time.monotonic() - stopped

    now = month_end("2026-10") + 60
    try:
        took = await stop_when_logged(1, "2026-08")  # August's command ran: stopped before its exit
        st = (await db(events.stats, w.db))["on_claim.command"]
        assert (st["delivered"], st["waiting"]) == (1, 0), st  # noted before the stop ended
        assert 0.2 < took < 2.0, took
        took = await stop_when_logged(2, "2026-09")  # September's outlasts the grace: cut off
        st = (await db(events.stats, w.db))["on_claim.command"]
        assert (st["delivered"], st["waiting"]) == (1, 1), st
        assert 1.9 < took < 3.5, took
        await stop_when_logged(3)  # the next start runs it again, and only it
        assert log.read_text().split() == ["2026-08", "2026-09", "2026-09"]
    finally:
        w.close()
