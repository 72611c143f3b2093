"""An outside attacker against five `rill node run` processes (issue 10, open network).

The attacker (tests/attacker.py) is a separate libp2p peer built on py-libp2p alone;
the daemons are real processes on 127.0.0.1 (tests/attacknet.py), shared by the
module and revived when an attack killed one.  Each test states what the issue
demands; the failure message lists every demand that was not met.

Counters relied upon (design E): received, accepted, ignored, rejected, duplicates,
stored; "store": relay_bytes / cap_bytes.  Read as: ``accepted`` = the gate's ACCEPT
(the Rill signature was checked and passed), ``rejected`` = REJECT (penalised),
``ignored`` = IGNORE, ``stored`` = new objects written.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from attackcost import proc_cpu_s
from attacker import RECEIPTS, SETTLEMENTS, Attacker, Signer, throwaway_signers
from attacknet import AttackNet, control
from forge import (
    forge_empty_settlements,
    forge_receipt,
    forge_settlement,
    object_id,
    public,
    rill_key,
)
from libp2p.peer.id import ID
from procnet import RILL, ProcNode

from rill.node.host import MAX_STREAMS_PER_PEER
from rill.protocol import keys
from rill.protocol import messages as m
from rill.protocol.months import month_start
from rill.protocol.network import SYNC_PROTOCOL

START = month_start("2026-11") + 7200  # every daemon's manual clock
MONTH = "2026-10"                      # ended, inside the window
CAP = 1024 * 1024                      # [node] disk_cap_mb = 1


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackNet]:
    n = AttackNet(tmp_path_factory.mktemp("attacknet"), 5, START)
    try:
        n.start()
        yield n
    finally:
        n.stop()


@pytest.fixture
def live(net: AttackNet) -> AttackNet:
    """The shared network with every daemon running (an earlier attack may have
    killed some: they are restarted, so each test reports its own outcome)."""
    net.restart_dead()
    return net


class Expect:
    """Collect every unmet demand of a test, then fail once with all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, ok: object, message: str) -> bool:
        if not ok:
            self.failures.append(message)
        return bool(ok)

    def verify(self) -> None:
        assert not self.failures, "\n  - " + "\n  - ".join(self.failures)


async def blocking(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kw))


async def until(net: AttackNet, pred: Callable[[], Any], timeout: float,
                every: float = 0.25) -> bool:
    """Poll a blocking predicate; False on timeout or as soon as a daemon died."""
    with trio.move_on_after(timeout):
        while True:
            if await blocking(pred):
                return True
            if net.dead():
                return False
            await trio.sleep(every)
    return False


def deltas(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]], key: str
           ) -> dict[str, int | None]:
    return {n: (None if key not in after[n] else after[n][key] - before[n].get(key, 0))
            for n in after}


def no_tracebacks(net: AttackNet, mark: dict[str, int], expect: Expect) -> None:
    for name in net.names:
        text = net.log_since(name, mark)
        expect("Traceback" not in text,
               f"{name} logged a traceback:\n{_around(text, 'Traceback')}")


def _around(text: str, needle: str, n: int = 900) -> str:
    i = text.find(needle)
    return text[max(0, i - 200): i + n]


async def alive(net: AttackNet, expect: Expect) -> None:
    for problem in await blocking(net.alive_problems):
        expect(False, problem)


async def publish_all(peer: Attacker, target: ID, raws: list[bytes], gap: float = 0.05
                      ) -> bool:
    """Publish through ``peer``; False if the target is gone (its daemon died)."""
    for raw in raws:
        try:
            if not await peer.publish(target, raw):
                return False
        except Exception:  # no connection left: the caller reports dead daemons
            return False
        await trio.sleep(gap)
    return True


async def stored_everywhere(net: AttackNet, oids: list[bytes], timeout: float = 30.0,
                            names: list[str] | None = None) -> bool:
    names = names or net.names
    return await until(net, lambda: all(net.has(n, o) for n in names for o in oids), timeout)


async def cut_off_checks(net: AttackNet, name: str, evil: Attacker, target: ID,
                         witness: Attacker, witness_target: ID, expect: Expect) -> None:
    """The attacker is blacklisted or gone at ``name``, and a valid object it publishes
    afterwards is stored nowhere (while an honest one sent after it is)."""
    pid = str(evil.peer_id)
    cut = await until(net, lambda: net.cut_off(name, pid), 8, every=0.5)
    expect(cut, f"{name} still lists the attacker as a gossip peer, not blacklisted: "
                f"{await blocking(net.peer_row, name, pid)}")
    late = forge_settlement(rill_key(), MONTH, [net.identity("n3")])
    await evil.publish(target, late.settlement)
    canary = forge_settlement(rill_key(), MONTH, [net.identity("n3")])
    await trio.sleep(0.2)
    await publish_all(witness, witness_target, [canary.settlement])
    expect(await stored_everywhere(net, [canary.id], names=[name]),
           f"{name} did not store an honest object published after the attack")
    expect(not await blocking(net.has, name, late.id),
           f"{name} stored a valid object the cut-off attacker published afterwards")


# -- (1) months out of range / fullwidth digits ----------------------------------------

async def test_months_out_of_range_and_fullwidth_digits(live: AttackNet) -> None:
    net, expect = live, Expect()
    mark = net.log_mark()
    creator = net.identity("n3")
    junk: list[bytes] = []
    for month in ("9999-12", "２０２６-10"):
        f = forge_settlement(rill_key(), month, [creator])
        junk += [f.settlement, f.claims[creator], *f.sealed.values()]
    canary = forge_settlement(rill_key(), MONTH, [creator], filler=1)
    async with Attacker.running() as evil, Attacker.running() as witness:
        targets = [await evil.connect(net.nodes[n].addr) for n in net.names]
        wt = await witness.connect(net.nodes["n0"].addr)
        for t in targets:  # every daemon gets them first hand
            for raw in junk:
                await evil.publish(t, raw)
        await trio.sleep(0.3)
        expect(await publish_all(witness, wt, canary.all())
               and await stored_everywhere(net, [canary.id], 30),
               "an honest settlement published after the junk was not stored everywhere")
        await blocking(net.wait_stable, net.names,
                       ("received", "rejected", "ignored"), 1.5, 15)
    await alive(net, expect)
    for name in net.names:
        held = await blocking(net.object_ids, name)
        stored = [object_id(j).hex()[:16] for j in junk if object_id(j) in held]
        expect(not stored, f"{name} stored junk objects {stored}")
        months = await blocking(net.months_stored, name)
        bad = sorted(mo for mo in months if not re.fullmatch(r"20[0-9]{2}-[01][0-9]", mo))
        expect(not bad, f"{name} holds objects for months {bad}")
    no_tracebacks(net, mark, expect)
    expect.verify()


# -- (2) one valid object replayed under 1,000 throwaway keys --------------------------

async def test_replay_under_throwaway_keys(live: AttackNet) -> None:
    net, expect = live, Expect()
    obj = forge_settlement(rill_key(), MONTH, [net.identity("n3")], filler=2).settlement
    oid = object_id(obj)
    async with Attacker.running() as witness, Attacker.running() as evil:
        wt = await witness.connect(net.nodes["n0"].addr)
        await publish_all(witness, wt, [obj])
        assert await stored_everywhere(net, [oid]), "the honest object never spread"
        keys_ = ("received", "accepted", "ignored", "rejected", "duplicates", "stored")
        before = await blocking(net.wait_stable, net.names, keys_, 1.0, 10)
        target = await evil.connect(net.nodes["n2"].addr)  # n2's neighbours: n1, n3
        stats = await evil.publish_as(target, obj, throwaway_signers(1000), per_rpc=20)
        # what did not go out failed because n2 closed the connection (the cut-off)
        assert stats.sent >= 20 and stats.sent + stats.write_errors == 1000, stats
        after = await blocking(net.wait_stable, net.names, keys_, 2.0, 40)
        await alive(net, expect)
        for name in net.names:
            expect(await blocking(net.has, name, oid), f"{name} lost the object")
        stored = deltas(after, before, "stored")
        expect(all(v == 0 for v in stored.values()), f"new objects stored: {stored}")
        received = deltas(after, before, "received")
        for name in net.names:
            if name != "n2":
                expect((received[name] or 0) <= 1,
                       f"{name} (not connected to the attacker) received {received[name]} "
                       "more copies: n2 forwarded the replays")
        accepted = deltas(after, before, "accepted")
        for name, d in accepted.items():
            expect(d is not None and d <= 1,
                   f"{name}: 'accepted' moved by {d} (the Rill signature must be checked "
                   "about once per daemon; None = no 'accepted' counter, design E)")
        dropped = [deltas(after, before, k)["n2"] for k in ("ignored", "rejected")]
        expect(all(d is not None for d in dropped) and sum(d or 0 for d in dropped) >= 1,
               f"n2 counted no ignored/rejected copies: {dropped} "
               f"(duplicates +{deltas(after, before, 'duplicates')['n2']})")
        await cut_off_checks(net, "n2", evil, target, witness, wt, expect)
    expect.verify()


# -- (3) bad envelope signatures at 1,000/s --------------------------------------------

async def test_bad_envelope_signatures_cut_off(live: AttackNet) -> None:
    net, expect = live, Expect()
    victims = ["n1", "n3"]
    payloads = forge_empty_settlements(rill_key(), MONTH, 10_000)
    slowest: dict[str, float] = dict.fromkeys(victims, 0.0)
    unanswered: list[str] = []

    async def watch_status() -> None:
        while True:
            for name in victims:
                t0 = time.monotonic()
                try:
                    await blocking(control, net.nodes[name].home, {"cmd": "status"}, 5.0)
                except OSError as exc:
                    unanswered.append(f"{name}: {exc}")
                slowest[name] = max(slowest[name], time.monotonic() - t0)
            await trio.sleep(0.5)

    async with Attacker.running() as witness, Attacker.running() as evil:
        wt = await witness.connect(net.nodes["n0"].addr)
        before = await blocking(net.counters)
        targets = [await evil.connect(net.nodes[n].addr) for n in victims]
        pids = {n: net.pid(n) for n in victims}
        cpu0 = {n: proc_cpu_s(p) for n, p in pids.items()}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_status)
            stats = await evil.flood_bad_signatures(targets, payloads, 10_000, 1000.0)
            nursery.cancel_scope.cancel()
        after = await blocking(net.wait_stable, victims, ("rejected",), 1.5, 15)
        cpu = {n: 1000 * (proc_cpu_s(p) - cpu0[n]) / stats.sent for n, p in pids.items()}
        print(f"bad-signature flood: {stats.sent} sent in {stats.elapsed:.1f} s; attacker "
              f"{1000 * stats.attacker_cpu_s / stats.sent:.3f} ms CPU/msg; defenders "
              f"{ {n: round(v, 3) for n, v in cpu.items()} } ms CPU/msg; slowest status "
              f"{ {n: round(v, 2) for n, v in slowest.items()} } s")
        await alive(net, expect)
        # the rest of the 10,000 could not even be written: the targets closed the
        # connection when they cut the attacker off (after about 6 rejections each: at
        # least 12 went out; how many more depends on how fast the targets are)
        expect(stats.sent >= 12 and stats.sent + stats.write_errors == 10_000,
               f"the flood did not go out: {stats}")
        rejected = deltas(after, {n: before[n] for n in victims}, "rejected")
        for name in victims:
            expect((rejected[name] or 0) <= 20,
                   f"{name} counted {rejected[name]} rejections (more than 20 before cut-off)")
            expect(slowest[name] <= 5.0, f"{name} took {slowest[name]:.1f} s to answer status")
        expect(not unanswered, f"status unanswered during the flood: {unanswered[:3]}")
        held = set().union(*[await blocking(net.object_ids, n) for n in net.names])
        expect(not any(object_id(p) in held for p in payloads[:200]),
               "a payload with a bad envelope signature was stored")
        async with trio.open_nursery() as nursery:
            for name, target in zip(victims, targets, strict=True):
                nursery.start_soon(cut_off_checks, net, name, evil, target, witness, wt,
                                   expect)
    expect.verify()


# -- control: what already works must keep working ------------------------------------

async def test_invalid_objects_get_their_sender_cut_off(live: AttackNet) -> None:
    """Garbage under the attacker's own key: counted, cut off after a few (this already
    works; it also shows the harness can see a cut-off)."""
    net, expect = live, Expect()
    async with Attacker.running() as witness, Attacker.running() as evil:
        wt = await witness.connect(net.nodes["n0"].addr)
        before = (await blocking(net.status, "n1"))["counters"]
        target = await evil.connect(net.nodes["n1"].addr)
        for i in range(30):
            await evil.publish(target, b"\xa1junk%d" % i, topic=SETTLEMENTS)
        after = await blocking(net.wait_stable, ["n1"], ("rejected",), 1.0, 10)
        rejected = after["n1"]["rejected"] - before["rejected"]
        expect(1 <= rejected <= 20, f"n1 counted {rejected} rejections of 30 junk messages")
        await cut_off_checks(net, "n1", evil, target, witness, wt, expect)
    await alive(net, expect)
    expect.verify()


# -- (5) the control socket ---------------------------------------------------------------

GARBAGE = [
    b"garbage\n", b"\xff\xfe\xfd\n", b"[]\n", b"null\n", b'{"cmd": 1}\n',
    b'{"cmd": "nope"}\n', b'{"cmd": "connect"}\n', b'{"cmd": "connect", "addr": 5}\n',
    b'{"cmd": "connect", "addr": "not a multiaddr"}\n',
    b'{"cmd": "connect", "addr": "/ip4/127.0.0.1/tcp/1"}\n',
    b'{"cmd": "publish", "objects": "zz"}\n', b'{"cmd": "publish", "objects": [1]}\n',
    b'{"cmd": "publish", "objects": ["zz"]}\n', b'{"cmd": "publish", "objects": ["00"]}\n',
    b'{"cmd": "clock", "set": "soon"}\n', b'{"cmd": "clock"}\n',
    b'{"cmd": "block"}\n', b'{"cmd": "block", "peer": 5}\n',
    b'{"cmd": "block", "peer": {"a": []}}\n', b'{"cmd": "block", "peer": "12D3KooWnope"}\n',
    b'{"cmd": "block", "peer": "' + b"1" * 5000 + b'"}\n',
    b'{"cmd": "unblock", "peer": ["x"]}\n', b'{"cmd": "unblock", "peer": "did:key:z6Mk"}\n',
    b"[" * 50_000 + b"\n",                     # nesting deep enough to break json
    b"x" * 70_000,                             # longer than a request may be, no newline
]


async def test_control_socket_garbage_and_unreachable_connect(live: AttackNet) -> None:
    net, expect = live, Expect()
    node = net.nodes["n4"]
    nobody = Signer().peer_id  # a peer nobody is connected to
    unreachable = {"cmd": "connect", "addr": f"/ip4/10.255.255.1/tcp/1/p2p/{nobody}"}
    for request in [unreachable, *GARBAGE]:
        shown = repr(request)[:60]
        try:
            reply = await blocking(control, node.home, request, 40.0)
        except OSError as exc:
            reply = {"transport-error": str(exc)}
        expect(isinstance(reply, dict) and reply.get("ok") is False and reply.get("error"),
               f"{shown}: expected an error reply, got {str(reply)[:200]}")
        if not await until_answers(node, settle=0.3):
            expect(False, f"{shown} killed the daemon:\n{net.log_tail('n4', 600)}")
            await blocking(net.revive, "n4")  # and go on with the next request
    for args in (["node", "status"], ["peers"], ["node", "sync"]):
        proc = await blocking(net.cli, "n4", *args, "--json", check=False)
        expect(proc.returncode == 0, f"rill {' '.join(args)}: {proc.stderr.strip()[-300:]}")
    await alive(net, expect)
    expect.verify()


async def test_control_clock_out_of_range(tmp_path: Path) -> None:
    """`rill node clock` with times a daemon cannot represent: an error (or a clock the
    daemon survives), never a dead daemon."""
    expect = Expect()
    solo = ProcNode(tmp_path, "solo", START)
    solo.start([])
    await blocking(solo.wait_started)
    try:
        for t in (str(2**53), str(2**64), "300000000000", str(START - 10)):
            proc = await blocking(subprocess.run, [RILL, "node", "clock", t, "--json"],
                                  env=solo.env(), capture_output=True, text=True, timeout=60)
            ok = await until_answers(solo)
            expect(ok, f"`rill node clock {t}` (exit {proc.returncode}: "
                       f"{(proc.stderr or proc.stdout).strip()[-200:]}) left the daemon dead "
                       f"or mute:\n{solo.log.read_text()[-1500:]}")
            if not ok:
                break
    finally:
        solo.stop()
    expect.verify()


async def until_answers(node: ProcNode, settle: float = 1.5) -> bool:
    """The daemon still runs and answers status ``settle`` seconds later."""
    await trio.sleep(settle)
    if node.proc is None or node.proc.poll() is not None:
        return False
    try:
        reply = await blocking(control, node.home, {"cmd": "status"}, 10.0)
    except OSError:
        return False
    return bool(reply and reply.get("ok"))


# -- (6) slowloris on /rill/sync/1.0.0 ---------------------------------------------------

SLOW_S = 22  # a sync request frame should come within ~15 s (the client's own timeout)


async def test_slowloris_sync_streams_time_out(live: AttackNet) -> None:
    net, expect = live, Expect()
    async with Attacker.running() as evil, Attacker.running() as honest:
        target = await evil.connect(net.nodes["n1"].addr)
        streams = await evil.slowloris(target, 200)
        # the daemon serves a bounded number of sync streams at once and resets the rest
        # (one it resets at once mostly fails the attacker's negotiation: the answer and
        # the reset come in one burst, node/framing.py): the attack holds the limit
        expect(len(streams) >= MAX_STREAMS_PER_PEER,
               f"only {len(streams)} slow streams could be opened")
        t0 = time.monotonic()
        ht = await honest.connect(net.nodes["n1"].addr)
        try:
            resp = await honest.sync_request(ht, net.identity("n3"), timeout=10)
            expect(resp.more in (False, True), "unreachable")
        except (Exception, trio.TooSlowError) as exc:
            expect(False, f"n1 did not serve an honest sync while 200 slow streams were "
                          f"open: {exc!r}")
        closed = await Attacker.wait_closed(streams, max(1.0, SLOW_S - (time.monotonic() - t0)))
        still = sum(1 for c in closed if c is None)
        expect(still == 0, f"n1 left {still} of {len(streams)} silent sync streams open "
                           f"after {SLOW_S} s")
        try:
            await honest.sync_request(ht, net.identity("n3"), timeout=10)
        except (Exception, trio.TooSlowError) as exc:
            expect(False, f"n1 did not serve an honest sync afterwards: {exc!r}")
    await alive(net, expect)
    expect.verify()


# -- (7) a hostile sync server: more = 1 forever --------------------------------------

MAX_PAGES = 1000


async def test_hostile_sync_server_bounded(live: AttackNet) -> None:
    net, expect = live, Expect()
    page_obj = forge_settlement(rill_key(), MONTH, [net.identity("n3")]).settlement
    async with Attacker.running(sync="hostile", hostile_objects=lambda page: [page_obj]
                                ) as evil:
        await evil.connect(net.nodes["n3"].addr)  # a new peer: n3 syncs with it
        started = await until(net, lambda: evil.served.pages > 0, 15, every=0.1)
        expect(started, "n3 never asked the new peer for a sync (test premise)")
        stopped = False
        with trio.move_on_after(20):
            while True:
                last = evil.served.times[-1] if evil.served.times else time.monotonic()
                if time.monotonic() - last >= 3.0:
                    stopped = True
                    break
                await trio.sleep(0.25)
        pages = evil.served.pages
        expect(stopped, f"n3 was still paging after 20 s ({pages} pages served)")
        expect(pages <= MAX_PAGES, f"n3 asked for {pages} pages (bound: {MAX_PAGES})")
        status = await blocking(net.status, "n3")
        expect(status["peers"] >= 2, f"n3 lost its honest peers: {status['peers']}")
    await alive(net, expect)
    expect.verify()


# -- (8) an equivocating donor seen by every daemon -------------------------------------

async def test_one_equivocation_proof_per_donor_and_month(live: AttackNet) -> None:
    net, expect = live, Expect()
    donor = rill_key()
    creator = net.identity("n2")
    one = forge_settlement(donor, MONTH, [creator], variant="a")
    two = forge_settlement(donor, MONTH, [creator], variant="b")
    did = keys.did_from_key(public(donor))
    async with Attacker.running() as w1, Attacker.running() as w2:
        t1 = await w1.connect(net.nodes["n0"].addr)
        t2 = await w2.connect(net.nodes["n3"].addr)
        async with trio.open_nursery() as n:
            n.start_soon(publish_all, w1, t1, [one.settlement])
            n.start_soon(publish_all, w2, t2, [two.settlement])
        marked = await until(net, lambda: all(did in net.status(n)["marked_donors"]
                                              for n in net.names), 30)
        expect(marked, "not every daemon marked the equivocating donor")
        await blocking(net.wait_stable, net.names, ("received", "stored"), 3.0, 30)
    await alive(net, expect)
    for name in net.names:
        proofs = await blocking(net.equivocation_proofs, name, public(donor), MONTH)
        expect(len(proofs) == 1, f"{name} stores {len(proofs)} equivocation proofs for the "
                                 f"donor and {MONTH} (want exactly 1)")
    expect.verify()


# -- (9) a receipt signed by a daemon's key, received from elsewhere ---------------------

async def test_own_receipt_received_is_not_regossiped(live: AttackNet) -> None:
    net, expect = live, Expect()
    me = "n2"
    donor = rill_key()
    f = forge_settlement(donor, MONTH, [net.identity(me)], filler=1)
    claim = f.claims[net.identity(me)]
    amount = m.decode(claim, m.Claim).body.amount
    receipt = forge_receipt(net.signing_key(me), claim, public(donor), MONTH, amount,
                            START + 30, reference="paid-elsewhere")
    rid = object_id(receipt)
    me_id = ID.from_base58(net.peer_id(me))
    async with Attacker.running() as witness, Attacker.running() as observer, \
            Attacker.running() as courier:
        wt = await witness.connect(net.nodes["n0"].addr)
        await publish_all(witness, wt, f.all())
        assert await stored_everywhere(net, [f.id, object_id(f.sealed[net.identity(me)])],
                                       names=[me]), "n2 never got its claim"
        await observer.connect(net.nodes[me].addr)
        await observer.wait_mesh(me_id, [RECEIPTS])
        before = (await blocking(net.status, me))["counters"]
        ct = await courier.connect(net.nodes["n4"].addr)
        await publish_all(courier, ct, [receipt])
        expect(await stored_everywhere(net, [rid], names=[me]),
               "n2 never received the receipt (test premise)")
        # two housekeeping rounds (5 s each) for a re-publish to happen, if it would
        deadline = trio.current_time() + 11
        while trio.current_time() < deadline and not observer.seen_from(me_id, receipt):
            await trio.sleep(0.2)
        after = (await blocking(net.status, me))["counters"]
        expect(not observer.seen_from(me_id, receipt),
               "n2 re-gossiped under its own peer ID a receipt it merely received")
        expect(after["published"] == before["published"],
               f"n2 published {after['published'] - before['published']} object(s)")
    await alive(net, expect)
    expect.verify()


# -- (10) a gossip peer without /rill/sync/1.0.0 ------------------------------------------

async def test_peer_without_sync_protocol_is_quiet(live: AttackNet) -> None:
    net, expect = live, Expect()
    mark = net.log_mark()
    async with Attacker.running(sync=None) as peer:
        await peer.connect(net.nodes["n4"].addr)
        # n4 syncs with each new peer at once (or may skip a peer whose identify shows
        # no sync protocol): give it that chance
        await until(net, lambda: peer.asked_for(SYNC_PROTOCOL) > 0, 4, every=0.1)
        try:  # and again when asked (stands in for the 10-minute periodic sync)
            reply = await blocking(control, net.nodes["n4"].home, {"cmd": "sync"}, 60.0)
        except OSError as exc:
            reply = {"transport-error": str(exc)}
        expect(reply is not None and "transport-error" not in reply,
               f"`sync` with a peer lacking the protocol got no answer: {reply}")
    await alive(net, expect)
    text = net.log_since("n4", mark)
    errors = [ln for ln in text.splitlines()
              if (" ERROR " in ln and str(peer.peer_id) in ln) or "Traceback" in ln]
    expect(not errors, f"n4 logged {len(errors)} ERROR/traceback line(s) about the peer:\n"
                       + "\n".join(errors[:8]))
    about = [ln for ln in text.splitlines() if str(peer.peer_id) in ln and
             (" INFO " in ln or " DEBUG " in ln)]
    expect(len(about) <= 1, f"n4 logged {len(about)} lines about the peer:\n"
                            + "\n".join(about[:6]))
    expect.verify()


# -- (11) a second daemon on a port already in use ----------------------------------------

def test_second_daemon_on_a_used_p2p_port_exits(live: AttackNet, tmp_path: Path) -> None:
    port = live.nodes["n0"].port
    proc = subprocess.Popen([RILL, "node", "run", "--home", str(tmp_path / "second"),
                             "--listen", f"/ip4/127.0.0.1/tcp/{port}",
                             "--dashboard-port", "0", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "started", or its --json error when it exits
        if first.strip() and "error" not in json.loads(first):
            pytest.fail(f"a second daemon started on port {port}, where n0 already "
                        f"listens: {first.strip()[:160]}")
        err = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, (proc.returncode, err[-500:])
    said = first + err  # under --json the error is a JSON line on stdout
    assert str(port) in said, f"the message does not name port {port}: {said[-500:]}"
    assert "--listen" in said, said[-500:]
    assert "Traceback" not in err


# -- (4) valid spam from many fresh identities (last: it fills the stores) --------------

SYBIL_DONORS = 120
FILLER_LINES = 90  # ~10 KB per settlement: 120 of them are more than the 1 MiB cap


async def test_valid_spam_keeps_honest_data_and_the_cap(live: AttackNet) -> None:
    net, expect = live, Expect()
    creator_name, relays = "n4", ["n0", "n1", "n2", "n3"]
    creator = net.identity(creator_name)
    honest = [forge_settlement(rill_key(), MONTH, [creator], filler=3) for _ in range(2)]
    async with Attacker.running() as witness:
        wt = await witness.connect(net.nodes["n0"].addr)
        for f in honest:
            await publish_all(witness, wt, f.all())
        honest_ids = [o for f in honest for o in (f.id, *map(object_id, f.sealed.values()))]
        assert await stored_everywhere(net, honest_ids), "honest objects never spread"
        claims = [object_id(f.claims[creator]).hex() for f in honest]
        for cid in claims:
            await blocking(net.cli, creator_name, "receipt", cid, "--reference", "paid",
                           now=START + 60)
        receipts = [object_id(r) for r in await blocking(net.objects, creator_name, "receipt")
                    if m.decode(r, m.Receipt).body.claim.hex() in claims]
        expect(len(receipts) == 2, f"the creator signed {len(receipts)} receipts, not 2")
        expect(await stored_everywhere(net, receipts, names=relays),
               "the creator's receipts did not reach every relay")
        honest_ids += receipts
        before = await blocking(net.counters)
        # the flood: 4 Sybil peers, one per relay, 120 fresh donors, each a big valid
        # settlement and a sealed claim to the creator
        fakes = [forge_settlement(rill_key(), MONTH, [creator], filler=FILLER_LINES)
                 for _ in range(SYBIL_DONORS)]
        async with Attacker.running() as s0, Attacker.running() as s1, \
                Attacker.running() as s2, Attacker.running() as s3:
            sybils = [s0, s1, s2, s3]
            targets = [await s.connect(net.nodes[r].addr) for s, r in
                       zip(sybils, relays, strict=True)]
            for i, f in enumerate(fakes):
                for raw in f.all():
                    await sybils[i % 4].publish(targets[i % 4], raw)
                await trio.sleep(0.03)
            await blocking(net.wait_stable, net.names, ("received", "stored"), 3.0, 60)
        after = await blocking(net.counters)
        arrived = sum(after[n]["received"] - before[n]["received"] for n in net.names)
        assert arrived > 0, "the flood never arrived (test broken)"

        def settled() -> bool:  # a prune (housekeeping, every 5 s) ran on the full store
            st = [net.status(r) for r in relays]
            if all("store" in s for s in st):
                return all(s["store"]["relay_bytes"] <= s["store"]["cap_bytes"] for s in st)
            return False

        await until(net, settled, 12, every=0.5)
        await alive(net, expect)
        for r in relays:
            held = await blocking(net.object_ids, r)
            missing = [o.hex()[:12] for o in honest_ids if o not in held]
            expect(not missing, f"{r} evicted {len(missing)} honest object(s) {missing}")
            st = await blocking(net.status, r)
            store = st.get("store")
            expect(store is not None and store["relay_bytes"] <= store["cap_bytes"],
                   f"{r}: relay store over its cap or not reported: store={store} "
                   f"(stored_bytes={st.get('stored_bytes')}, cap {CAP})")
        rows = await blocking(net.cli_json, creator_name, "earnings", "--month", MONTH)
        row = rows[0] if rows else {}
        paid = row.get("paid_supporters", row.get("supporters"))
        expect(paid == 2, f"the creator's earnings count {paid} paid supporters, not the 2 "
                          f"honest donors who were receipted: {json.dumps(row)[:300]}")
    expect.verify()
