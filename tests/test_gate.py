"""node/gate.py: the gossip gate's policy, with a fake clock and fake checks."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from helpers import signing_key

from rill.node import gate as g
from rill.node.gate import ACCEPT, IGNORE, REJECT, Gate
from rill.protocol import messages as m
from rill.protocol.errors import BadSignature, RemoteError, RuleError, SchemaError
from rill.protocol.network import check_gossip

TOPIC = "rill/1/keys"
AUTHOR = bytes(range(32))
OTHER = bytes(range(1, 33))
T0 = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


class Checks:
    """precheck/check doubles: the data decides ("future", "bad", "forged" prefixes)."""

    def __init__(self) -> None:
        self.prechecks: list[bytes] = []
        self.checks: list[bytes] = []

    def precheck(self, topic: str, raw: bytes, now: int) -> Any:
        self.prechecks.append(raw)
        if raw.startswith(b"future"):
            raise RuleError("not yet", code="future")
        if raw.startswith(b"old"):
            raise RuleError("too old", code="outside-window")
        if raw.startswith(b"bad"):
            raise SchemaError("nonsense")
        return ("obj", raw)  # decoded, not authenticated

    def check(self, topic: str, raw: bytes, now: int) -> Any:
        self.checks.append(raw)
        if raw.startswith(b"forged"):
            raise BadSignature("does not verify")
        return ("obj", raw)


def obj(name: bytes, signer: bytes = AUTHOR) -> bytes:
    return name + b"|" + signer  # a "canonical envelope": its signer is its last 32 bytes


def make(held: set[bytes] | None = None, **kw: Any) -> tuple[Gate, Clock, Checks]:
    clock, checks = Clock(), Checks()
    held = held if held is not None else set()
    gate = Gate(held=held.__contains__, precheck=checks.precheck, check=checks.check,
                now=clock, **kw)
    return gate, clock, checks


def yes() -> bool:
    return True


def no() -> bool:
    return False


def judge(gate: Gate, data: bytes, fwd: str = "F", frm: bytes | None = OTHER,
          msg_id: bytes | None = None, envelope: Any = yes, own: bool = False,
          by_forwarder: bool = False) -> g.Verdict:
    mid = msg_id if msg_id is not None else hashlib.sha256((frm or b"") + data).digest()
    return gate.judge(fwd, mid, [TOPIC], data, frm, envelope, own=own,
                      by_forwarder=by_forwarder)


def test_new_object_accepted_then_known_ignored_and_replays_struck() -> None:
    gate, clock, checks = make()
    x = obj(b"x")
    v = judge(gate, x, "F", frm=AUTHOR)
    assert v == (ACCEPT, "", ("obj", x)) and checks.checks == [x]
    # the same message from another forwarder (the flood): known, ignored, no check
    assert judge(gate, x, "G", frm=AUTHOR).outcome is IGNORE
    assert judge(gate, x, "G", frm=AUTHOR).reason == g.KNOWN
    # the same object re-wrapped under throwaway keys, same forwarder: strikes
    clock.t += 60
    for i in range(3):
        v = judge(gate, x, "F", frm=bytes([i]) * 32)
        assert (v.outcome, v.reason) == (REJECT, g.REPLAYED)
    # ... from a forwarder that never sent it before: its first copy is only ignored
    assert judge(gate, x, "H", frm=bytes(32)).outcome is IGNORE
    assert judge(gate, x, "H", frm=bytes([9]) * 32).outcome is REJECT
    # the same message ID again from the same forwarder is no strike
    assert judge(gate, x, "F", frm=AUTHOR).outcome is IGNORE
    assert checks.checks == [x] and checks.prechecks == [x]


def test_a_forwarders_own_publish_of_an_object_it_relayed_is_no_strike() -> None:
    """A node adopts a claim once its settlement came and publishes it under its own ID,
    and also relays the author's message of it (e.g. the author's republish after a
    healed partition): two message IDs for one object, one of them the forwarder's own.
    No strike, in either order; a third ID (a throwaway key) still is one."""
    fkey = bytes([7]) * 32
    for order in ((True, False), (False, True)):
        gate, clock, _ = make()
        x = obj(b"x")
        for by_fwd in order:
            v = judge(gate, x, "F", frm=fkey if by_fwd else AUTHOR, by_forwarder=by_fwd)
            assert v.outcome is not REJECT, (order, by_fwd, v)
            clock.t += 1
        v = judge(gate, x, "F", frm=bytes([9]) * 32)
        assert (v.outcome, v.reason) == (REJECT, g.REPLAYED), order


def test_held_objects_are_ignored_without_any_check() -> None:
    x = obj(b"stored")
    gate, _clock, checks = make(held={g.object_id(x)})
    for fwd in "ABC":
        assert judge(gate, x, fwd).reason == g.KNOWN
    assert checks.prechecks == [] and checks.checks == []


def test_an_authors_republish_passes_at_most_once_per_floor() -> None:
    x = obj(b"x")
    gate, clock, checks = make(held={g.object_id(x)})
    # held from the store, never accepted here: the author's republish is judged afresh
    assert judge(gate, x, "F", frm=AUTHOR).outcome is ACCEPT
    clock.t += 10 * 60
    assert judge(gate, x, "G", frm=AUTHOR).reason == g.KNOWN  # within the floor
    assert judge(gate, x, "G2", frm=OTHER).reason == g.KNOWN  # not the author
    clock.t += 10 * 60  # 20 min after the last accepted republish
    assert judge(gate, x, "G", frm=AUTHOR).outcome is ACCEPT
    clock.t += g.REPUBLISH_FLOOR_S - 1
    assert judge(gate, x, "H", frm=AUTHOR).outcome is IGNORE
    assert judge(gate, x, "I", frm=None).outcome is IGNORE  # not an Ed25519 peer ID
    assert len(checks.checks) == 2
    # a forged envelope claiming to be the author is judged, and refused, not ignored
    clock.t += g.REPUBLISH_FLOOR_S
    v = judge(gate, x, "M", frm=AUTHOR, envelope=no)
    assert (v.outcome, v.reason) == (REJECT, g.BAD_ENVELOPE)
    assert judge(gate, x, "N", frm=AUTHOR).outcome is ACCEPT


def test_strikes_last_one_floor_then_the_note_is_replaced() -> None:
    gate, clock, _ = make()
    x = obj(b"x")
    assert judge(gate, x, "F", msg_id=b"m1").outcome is ACCEPT
    clock.t += g.REPUBLISH_FLOOR_S - 1
    assert judge(gate, x, "F", msg_id=b"m2").outcome is REJECT
    clock.t += 1
    assert judge(gate, x, "F", msg_id=b"m2").outcome is IGNORE  # a new flood: noted
    assert judge(gate, x, "F", msg_id=b"m1").outcome is REJECT  # m1 is the other one now


def test_own_publishes_skip_the_duplicate_rule_but_not_the_checks() -> None:
    x, junk = obj(b"x"), obj(b"bad")
    gate, _clock, checks = make(held={g.object_id(x)})
    assert judge(gate, x, "me", own=True).outcome is ACCEPT
    assert judge(gate, x, "me", msg_id=b"other", own=True).outcome is ACCEPT  # no strike
    assert judge(gate, junk, "me", own=True).outcome is REJECT  # never publish junk
    assert checks.checks == [x, x]


def test_cheap_checks_then_envelope_then_signature() -> None:
    gate, _clock, checks = make()
    calls: list[str] = []

    def envelope() -> bool:
        calls.append("envelope")
        return True

    for data, outcome in ((obj(b"future"), IGNORE), (obj(b"old"), IGNORE),
                          (obj(b"bad"), REJECT)):
        v = judge(gate, data, envelope=envelope)
        assert v.outcome is outcome, v
    assert calls == [] and checks.checks == []  # no crypto for any of them
    v = judge(gate, obj(b"y"), envelope=no)
    assert (v.outcome, v.reason) == (REJECT, g.BAD_ENVELOPE) and checks.checks == []
    v = judge(gate, obj(b"forged"), envelope=envelope)
    assert v.outcome is REJECT and v.reason.startswith("bad-signature")
    assert calls == ["envelope"]
    # nothing refused is remembered: the next copy is judged again (and refused again)
    assert judge(gate, obj(b"forged"), "G").outcome is REJECT
    assert judge(gate, obj(b"y"), "G", envelope=no).outcome is REJECT
    # one topic per message
    v = gate.judge("F", b"id", [TOPIC, "rill/1/receipts"], obj(b"z"), OTHER, yes)
    assert (v.outcome, v.reason) == (REJECT, g.ONE_TOPIC)


def test_ignored_future_objects_count_for_strikes() -> None:
    gate, _clock, checks = make()
    y = obj(b"future")
    assert judge(gate, y, "F", msg_id=b"m1").outcome is IGNORE
    assert judge(gate, y, "F", msg_id=b"m1").outcome is IGNORE  # same message: judged again
    assert judge(gate, y, "F", msg_id=b"m2").reason == g.REPLAYED
    assert judge(gate, y, "G", msg_id=b"m2").outcome is IGNORE
    assert len(checks.prechecks) == 3


def test_relations_hook() -> None:
    verdicts = {b"orphan": (IGNORE, "no settlement yet"), b"liar": (REJECT, "mismatch")}

    def relate(o: Any) -> tuple[g.Outcome, str]:
        return verdicts.get(o[1].split(b"|")[0], (ACCEPT, ""))

    gate, _clock, checks = make(relate=relate)
    assert judge(gate, obj(b"orphan")) == (IGNORE, "no settlement yet",
                                           ("obj", obj(b"orphan")))
    assert judge(gate, obj(b"orphan"), "G").outcome is IGNORE  # not remembered: judged again
    assert judge(gate, obj(b"liar")).outcome is REJECT
    assert judge(gate, obj(b"fine")).outcome is ACCEPT
    assert checks.checks == [obj(b"fine")]  # relations come before any signature check


def test_memory_is_bounded() -> None:
    gate, clock, checks = make(recent_max=100, sent_max=50)
    for i in range(1000):
        clock.t += 1
        judge(gate, obj(b"o%d" % i), f"F{i % 7}")
        judge(gate, obj(b"o%d" % i), f"G{i}")  # ignored, noted
        assert gate.sizes()["recent"] <= 100 and gate.sizes()["sent"] <= 50
    assert gate.sizes() == {"recent": 100, "sent": 50}
    assert gate.accepted_recently(g.object_id(obj(b"o999")))
    assert not gate.accepted_recently(g.object_id(obj(b"o0")))
    n = len(checks.checks)
    assert judge(gate, obj(b"o0"), "X").outcome is ACCEPT  # forgotten: judged afresh
    assert len(checks.checks) == n + 1


def test_unexpected_exceptions_are_the_callers_business() -> None:
    """RillPubsub turns them into REJECT "internal error" (tests/test_gossip_gate.py)."""
    gate, _clock, _ = make()

    def broken(topic: str, raw: bytes, now: int) -> None:
        raise ValueError("year 10000 is out of range")

    gate.precheck = broken
    with pytest.raises(ValueError):
        judge(gate, obj(b"x"))


def test_with_the_protocol_checks() -> None:
    """The daemon's wiring: real objects, check_gossip without and with signatures."""
    now = 1_790_000_000
    key = signing_key("gate author")
    doc = m.sign(m.KeyDocument("Author", ("https://a.example",), (), now - 10), key)
    later = m.sign(m.KeyDocument("Author", ("https://a.example",), (), now + 3600), key)
    gate = Gate(held=set().__contains__, now=lambda: now,
                precheck=lambda t, r, n: check_gossip(t, r, n, verify_signature=False),
                check=check_gossip)
    author = doc.signer
    assert g.signer_of(doc.raw) == author
    v = judge(gate, doc.raw, frm=author)
    assert v.outcome is ACCEPT and v.obj.id == doc.id
    assert judge(gate, later.raw, frm=author).outcome is IGNORE  # future
    tampered = doc.raw.replace(b"Author", b"Authos")  # the body changed, same length
    v = judge(gate, tampered, frm=author)
    assert v.outcome is REJECT and v.reason.startswith("bad-signature"), v
    assert judge(gate, b"\xa0", frm=author).outcome is REJECT
    with pytest.raises(RemoteError):  # the precheck alone does not see the tampering
        check_gossip(TOPIC, tampered, now)
    check_gossip(TOPIC, tampered, now, verify_signature=False)


def test_a_flood_of_ignorable_messages_spends_the_budget_then_is_rejected() -> None:
    def relate(o: Any) -> tuple[g.Outcome, str]:
        return IGNORE, "hangs off nothing held here"

    gate, clock, checks = make(relate=relate)
    outcomes = [judge(gate, obj(b"junk%d" % i), "F").outcome for i in range(g.IGNORE_BURST + 5)]
    assert outcomes[:g.IGNORE_BURST] == [IGNORE] * g.IGNORE_BURST
    assert outcomes[g.IGNORE_BURST:] == [REJECT] * 5
    assert judge(gate, obj(b"other"), "G").outcome is IGNORE  # budgets are per forwarder
    assert checks.checks == []  # none of it cost a signature check
    clock.t += 10  # tokens come back at IGNORE_RATE per second
    n = int(10 * g.IGNORE_RATE)
    assert [judge(gate, obj(b"later%d" % i), "F").outcome for i in range(n + 1)] == \
        [IGNORE] * n + [REJECT]
