"""The gossip gate's policy: ACCEPT, IGNORE or REJECT for every gossip message.

Pure: no trio, no libp2p, no clock of its own (``now`` is injected), so it is
unit-tested with a fake clock.  :class:`rill.node.pubsub.RillPubsub` calls it from
``push_msg`` after py-libp2p's blacklist, seen-cache and publish-score checks, and acts
on the outcome (docs/NETWORK.md, "gossip gate"):

* ACCEPT -- delivered and forwarded;
* IGNORE -- neither delivered, forwarded nor penalised (known objects, objects from the
  future or outside the window: harmless but useless here);
* REJECT -- not delivered nor forwarded, and the forwarder is penalised (scored as an
  invalid message).

Order (each step only when the previous ones passed; own publishes skip 0 and 1):

0. object ID = SHA-256(data).  A forwarder that sent the same object under another
   message ID less than ``REPUBLISH_FLOOR_S`` ago gets a strike: REJECT "replayed a
   known object".  Honest forwarders send each object once per flood (an author's
   republish keeps its message ID, SHA-256(from || data)); a replayer re-wrapping a
   recorded object under throwaway libp2p keys does not.  What a forwarder sent is
   noted when it was accepted or ignored (never for a REJECT).  A message the forwarder
   publishes itself (``from`` is the forwarder) is neither checked nor noted here: an
   honest node publishes under its own ID a claim it adopted once its settlement came,
   and may also forward another message of the same object within seconds (creators
   adopting many claims at once when a partition heals were struck); its own message ID
   for an object is one, SHA-256(own || data), so no replayer gets more than one extra
   copy past this rule (the other steps still judge it).
1. known (held in the store, or accepted lately) -> IGNORE, except an author's
   republish: the libp2p ``from`` key is the object's signer and the last accepted
   republish of the object is at least ``REPUBLISH_FLOOR_S`` old (or unknown to us).
2. cheap checks, no cryptography (``precheck``, which returns the decoded but not yet
   authenticated object): codes ``future`` and ``outside-window`` -> IGNORE, any
   other -> REJECT.
3. relations with what the node holds (``relate`` on that object, still no
   cryptography; ACCEPT by default): an object that hangs off nothing held here is
   IGNOREd before it costs a signature check.
4. the libp2p envelope signature (``envelope_ok``) -> REJECT when it fails.
5. the full check with the Rill signature (``check``) -> REJECT on failure.
6. ACCEPT; the object ID is remembered as accepted now.

IGNOREs cost a forwarder nothing in score, so each forwarder has a budget of them (a
token bucket: ``IGNORE_BURST`` at once, refilled at ``IGNORE_RATE`` per second); past it,
what would be IGNOREd is REJECTed ("too many useless messages").  Honest peers forward
only what they accepted themselves, so they rarely send anything we ignore; a peer
flooding objects that hang off nothing (which cost us no signature check) is cut off.

Memory is bounded: at most ``recent_max`` accepted object IDs and ``sent_max``
(forwarder, object) pairs, oldest first out (about 200 bytes each: 50,000 of each is
~20 MB at worst).  ``held`` is the caller's (the store's IDs).
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

from ..protocol.errors import RemoteError

#: An author may republish one of its objects this often (clock seconds); the same
#: window bounds the replay strikes.
REPUBLISH_FLOOR_S = 20 * 60
RECENT_MAX = 50_000
SENT_MAX = 50_000
#: Cheap-check codes that do not make a message invalid, only useless to us now.
IGNORE_CODES = frozenset({"future", "outside-window"})
KEY_BYTES = 32

#: Reasons callers may test for (counters, logs).
KNOWN = "known object"
REPLAYED = "replayed a known object"
BAD_ENVELOPE = "bad libp2p envelope signature"
ONE_TOPIC = "a gossip message carries exactly one topic"
USELESS = "too many useless messages"
#: The IGNORE budget of one forwarder (see the module doc).
IGNORE_BURST = 200
IGNORE_RATE = 2.0
BUDGETS_MAX = 10_000


class Outcome(enum.Enum):
    ACCEPT = "accept"
    IGNORE = "ignore"
    REJECT = "reject"


ACCEPT, IGNORE, REJECT = Outcome.ACCEPT, Outcome.IGNORE, Outcome.REJECT


class Verdict(NamedTuple):
    outcome: Outcome
    reason: str
    obj: Any | None = None


def object_id(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def signer_of(data: bytes) -> bytes:
    """The signer of a canonical envelope: its last field (``signer``, the longest key
    in canonical order) is a 32-byte string, so its last 32 bytes."""
    return data[-KEY_BYTES:]


def _accept_all(obj: Any) -> tuple[Outcome, str]:
    return ACCEPT, ""


class Gate:
    """The policy, with everything it depends on injected:

    * ``held(oid) -> bool``: the object is in the store;
    * ``precheck(topic, raw, now) -> obj``: cheap checks, raise :class:`RemoteError`;
      returns the decoded object (signatures not checked), or None;
    * ``check(topic, raw, now) -> obj``: full check (signatures), raise RemoteError;
    * ``now() -> int``: the node's clock (seconds);
    * ``relate(obj) -> (Outcome, reason)``: relations with what the node holds, asked
      of the unauthenticated object (it must decide on what it reads, not trust it).
    """

    def __init__(self, *, held: Callable[[bytes], bool],
                 precheck: Callable[[str, bytes, int], Any],
                 check: Callable[[str, bytes, int], Any],
                 now: Callable[[], int],
                 relate: Callable[[Any], tuple[Outcome, str]] = _accept_all,
                 floor: int = REPUBLISH_FLOOR_S, recent_max: int = RECENT_MAX,
                 sent_max: int = SENT_MAX) -> None:
        self.held = held
        self.precheck = precheck
        self.check = check
        self.now = now
        self.relate = relate
        self.floor = floor
        self.recent_max = recent_max
        self.sent_max = sent_max
        #: object ID -> when it was last accepted (first time or an author's republish)
        self._recent: OrderedDict[bytes, int] = OrderedDict()
        #: (forwarder, object ID) -> (message ID, when first sent), oldest first
        self._sent: OrderedDict[tuple[Hashable, bytes], tuple[bytes, int]] = OrderedDict()
        #: forwarder -> (IGNORE tokens left, when counted)
        self._budget: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def judge(self, forwarder: Hashable, msg_id: bytes, topics: Sequence[str], data: bytes,
              from_key: bytes | None, envelope_ok: Callable[[], bool], *,
              own: bool = False, by_forwarder: bool = False) -> Verdict:
        """The outcome for one message.  ``from_key``: the 32-byte Ed25519 key of the
        libp2p ``from`` field (None if it is not one); ``own``: we publish it;
        ``by_forwarder``: the ``from`` field is the forwarder (it publishes it itself)."""
        now = self.now()
        oid = object_id(data)
        key = (forwarder, oid)
        if not own:
            sent = None if by_forwarder else self._sent.get(key)
            if sent is not None and now - sent[1] < self.floor and sent[0] != msg_id:
                return Verdict(REJECT, REPLAYED)
            last = self._recent.get(oid)
            if last is not None or self.held(oid):
                author = from_key is not None and from_key == signer_of(data)
                if not (author and (last is None or now - last >= self.floor)):
                    return self._noted(key, msg_id, now, Verdict(IGNORE, KNOWN), own,
                                       by_forwarder)
        if len(topics) != 1:
            return Verdict(REJECT, ONE_TOPIC)
        topic = topics[0]
        try:
            pre = self.precheck(topic, data, now)
        except RemoteError as exc:
            if exc.code in IGNORE_CODES:
                return self._noted(key, msg_id, now, Verdict(IGNORE, exc.reason), own,
                                   by_forwarder)
            return Verdict(REJECT, exc.reason)
        if pre is not None:
            outcome, reason = self.relate(pre)
            if outcome is REJECT:
                return Verdict(REJECT, reason, pre)
            if outcome is IGNORE:
                return self._noted(key, msg_id, now, Verdict(IGNORE, reason, pre), own,
                                   by_forwarder)
        if not envelope_ok():
            return Verdict(REJECT, BAD_ENVELOPE)
        try:
            obj = self.check(topic, data, now)
        except RemoteError as exc:
            return Verdict(REJECT, exc.reason)
        self._remember(oid, now)
        return self._noted(key, msg_id, now, Verdict(ACCEPT, "", obj), own, by_forwarder)

    # -- bounded state -------------------------------------------------------------------

    def _remember(self, oid: bytes, now: int) -> None:
        recent = self._recent
        recent[oid] = now
        recent.move_to_end(oid)
        while len(recent) > self.recent_max:
            recent.popitem(last=False)

    def _spend(self, forwarder: Hashable, now: int) -> bool:
        """Take one IGNORE token of ``forwarder``; False when it has none left."""
        budget = self._budget
        tokens, then = budget.get(forwarder, (float(IGNORE_BURST), now))
        tokens = min(float(IGNORE_BURST), tokens + (now - then) * IGNORE_RATE)
        ok = tokens >= 1.0
        budget[forwarder] = (tokens - 1.0 if ok else tokens, now)
        budget.move_to_end(forwarder)
        while len(budget) > BUDGETS_MAX:
            budget.popitem(last=False)
        return ok

    def _noted(self, key: tuple[Hashable, bytes], msg_id: bytes, now: int, verdict: Verdict,
               own: bool = False, by_forwarder: bool = False) -> Verdict:
        """Note that a forwarder sent an object as ``msg_id`` (what the strike rule
        compares with), unless a note younger than ``floor`` exists.  An IGNORE spends
        one of the forwarder's tokens; without one it becomes a REJECT."""
        if not own and verdict.outcome is IGNORE and not self._spend(key[0], now):
            return Verdict(REJECT, USELESS, verdict.obj)
        if not own and not by_forwarder:
            sent = self._sent
            prior = sent.get(key)
            if prior is None or now - prior[1] >= self.floor:
                sent[key] = (msg_id, now)
                sent.move_to_end(key)
                while len(sent) > self.sent_max:
                    sent.popitem(last=False)
        return verdict

    def accepted_recently(self, oid: bytes) -> bool:
        return oid in self._recent

    def forwarded_lately(self, oid: bytes) -> bool:
        """We accepted (and so forwarded) the object less than ``floor`` ago: publishing
        it again now under our own ID would look like a replay to our peers."""
        last = self._recent.get(oid)
        return last is not None and self.now() - last < self.floor

    def sizes(self) -> dict[str, int]:
        return {"recent": len(self._recent), "sent": len(self._sent)}


__all__ = ["ACCEPT", "IGNORE", "KNOWN", "REJECT", "REPLAYED", "REPUBLISH_FLOOR_S", "USELESS",
           "Gate",
           "Outcome", "Verdict", "object_id", "signer_of"]
