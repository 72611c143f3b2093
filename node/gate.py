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
   noted when it was accepted or ignored (never for a REJECT).
1. known (held in the store, or accepted lately) -> IGNORE, except an author's
   republish: the libp2p ``from`` key is the object's signer and the last accepted
   republish of the object is at least ``REPUBLISH_FLOOR_S`` old (or unknown to us).
2. cheap checks, no cryptography (``precheck``): codes ``future`` and
   ``outside-window`` -> IGNORE, any other -> REJECT.
3. the libp2p envelope signature (``envelope_ok``) -> REJECT when it fails.
4. the full check with the Rill signature (``check``) -> REJECT on failure.
5. relations with what the node holds (``relate``; ACCEPT by default).
6. ACCEPT; the object ID is remembered as accepted now.

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
    * ``precheck(topic, raw, now)``: cheap checks, raise :class:`RemoteError`;
    * ``check(topic, raw, now) -> obj``: full check (signatures), raise RemoteError;
    * ``now() -> int``: the node's clock (seconds);
    * ``relate(obj) -> (Outcome, reason)``: relations with what the node holds.
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

    def judge(self, forwarder: Hashable, msg_id: bytes, topics: Sequence[str], data: bytes,
              from_key: bytes | None, envelope_ok: Callable[[], bool], *,
              own: bool = False) -> Verdict:
        """The outcome for one message.  ``from_key``: the 32-byte Ed25519 key of the
        libp2p ``from`` field (None if it is not one); ``own``: we publish it."""
        now = self.now()
        oid = object_id(data)
        key = (forwarder, oid)
        if not own:
            sent = self._sent.get(key)
            if sent is not None and now - sent[1] < self.floor and sent[0] != msg_id:
                return Verdict(REJECT, REPLAYED)
            last = self._recent.get(oid)
            if last is not None or self.held(oid):
                author = from_key is not None and from_key == signer_of(data)
                if not (author and (last is None or now - last >= self.floor)):
                    return self._noted(key, msg_id, now, Verdict(IGNORE, KNOWN))
        if len(topics) != 1:
            return Verdict(REJECT, ONE_TOPIC)
        topic = topics[0]
        try:
            self.precheck(topic, data, now)
        except RemoteError as exc:
            if exc.code in IGNORE_CODES:
                return self._noted(key, msg_id, now, Verdict(IGNORE, exc.reason), own)
            return Verdict(REJECT, exc.reason)
        if not envelope_ok():
            return Verdict(REJECT, BAD_ENVELOPE)
        try:
            obj = self.check(topic, data, now)
        except RemoteError as exc:
            return Verdict(REJECT, exc.reason)
        outcome, reason = self.relate(obj)
        if outcome is REJECT:
            return Verdict(REJECT, reason, obj)
        if outcome is IGNORE:
            return self._noted(key, msg_id, now, Verdict(IGNORE, reason, obj), own)
        self._remember(oid, now)
        return self._noted(key, msg_id, now, Verdict(ACCEPT, "", obj), own)

    # -- bounded state -------------------------------------------------------------------

    def _remember(self, oid: bytes, now: int) -> None:
        recent = self._recent
        recent[oid] = now
        recent.move_to_end(oid)
        while len(recent) > self.recent_max:
            recent.popitem(last=False)

    def _noted(self, key: tuple[Hashable, bytes], msg_id: bytes, now: int, verdict: Verdict,
               own: bool = False) -> Verdict:
        """Note that a forwarder sent an object as ``msg_id`` (what the strike rule
        compares with), unless a note younger than ``floor`` exists."""
        if not own:
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

    def sizes(self) -> dict[str, int]:
        return {"recent": len(self._recent), "sent": len(self._sent)}


__all__ = ["ACCEPT", "IGNORE", "KNOWN", "REJECT", "REPLAYED", "REPUBLISH_FLOOR_S", "Gate",
           "Outcome", "Verdict", "object_id", "signer_of"]
