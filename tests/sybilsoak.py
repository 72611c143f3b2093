"""The Sybils of the Sybil soak (tests/test_sybil_soak.py): what they send and how.

* What they send: valid spam (fresh donors whose settlements carry the network's work,
  with sealed claims to honest creators), objects hanging off nothing (receipts and key
  documents of fresh keys), replays of honest objects under throwaway libp2p keys, and
  invalid messages (bad envelope signatures, garbage, objects on the wrong topic).
* How they send it (:class:`Sybil`): paced, to every honest target still connected.  A
  closed connection is the target cutting the Sybil off (SPEC §11.2): counted per
  target, never re-dialled; the Sybil goes on with the targets it has.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import trio
from attacker import KEYS, RECEIPTS, SETTLEMENTS, Attacker, Signer
from forge import Forged, forge_settlement, object_id, public, rill_key, sign_raw
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from rill.protocol import messages as m
from rill.protocol.network import TOPIC_OF

ROLES = ("valid", "dangling", "replay", "invalid")
#: A target whose streams fail this many times in a row, its connection still up, is
#: taken as cut off too (a blacklisted peer's new streams are reset; the connection
#: itself may take a moment to close).
MAX_STALLS = 20


# -- what the Sybils send ------------------------------------------------------------------

def valid_donors(n: int, month: str, creators: list[bytes], per_donor: int, filler: int,
                 rnd: random.Random) -> list[Forged]:
    """``n`` fresh donors, each a settlement (work included, ``filler`` extra lines for
    strangers, to weigh on the relay stores) with sealed claims to ``per_donor`` honest
    creators."""
    return [forge_settlement(rill_key(), month, rnd.sample(creators, per_donor),
                             filler=filler) for _ in range(n)]


def dangling(n: int, month: str, now: int) -> list[bytes]:
    """Valid objects that hang off nothing anyone holds: receipts for claims that do not
    exist and key documents of creators nobody pays, each signed by a fresh key."""
    out = []
    for i in range(n):
        key = rill_key()
        if i % 2:
            out.append(sign_raw(key, "receipt", {
                "claim": os.urandom(32), "donor": public(rill_key()), "month": month,
                "currency": "EUR", "amount": 100 + i, "reference": f"sybil-{i}",
                "time": now - 60}))
        else:
            out.append(sign_raw(key, "key", {
                "name": f"sybil {i}", "origins": [f"https://s{public(key).hex()[:16]}.example"],
                "payto": [], "valid_from": now - 86400}))
    return out


def invalid_messages(signer: Signer, settlements: list[bytes], others: list[bytes], n: int
                     ) -> list[rpc_pb2.Message]:
    """``n`` invalid messages in turn: a fresh valid settlement under a corrupted
    envelope signature (it passes every check before the envelope's, relations
    included), CBOR garbage, a valid settlement on the receipts topic, and a valid
    receipt or key document on the settlements topic."""
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(signer.message(SETTLEMENTS, settlements[i % len(settlements)],
                                      corrupt=True))
        elif kind == 1:
            out.append(signer.message(SETTLEMENTS, b"\xa2garbage" + os.urandom(16)))
        elif kind == 2:
            out.append(signer.message(RECEIPTS, settlements[i % len(settlements)]))
        else:
            out.append(signer.message(SETTLEMENTS, others[i % len(others)]))
    return out


# -- how they send it ----------------------------------------------------------------------

@dataclass
class Tally:
    """What one Sybil sent: messages written, writes refused (target gone), messages per
    second of the flood, and when each target stopped taking its writes."""

    role: str
    sent: int = 0
    refused: int = 0
    #: writes that failed while the connection stayed up (a stream that could not be
    #: opened, or a write that timed out on a slow reader): retried on a new stream
    stalled: int = 0
    #: consecutive stalls per target; past MAX_STALLS the target counts as cut off
    streak: Counter[str] = field(default_factory=Counter)
    per_second: Counter[int] = field(default_factory=Counter)
    cut: dict[str, float] = field(default_factory=dict)
    started: float | None = None


@dataclass
class Sybil:
    attacker: Attacker
    role: str
    home: str
    targets: dict[str, ID]
    tally: Tally = field(init=False)

    def __post_init__(self) -> None:
        self.tally = Tally(self.role)

    def open_targets(self) -> list[str]:
        return [n for n in self.targets if n not in self.tally.cut]

    def connected(self, peer: ID) -> bool:
        assert self.attacker.host is not None
        return bool(self.attacker.host.get_network().get_connections(peer))

    async def send(self, msgs: list[rpc_pb2.Message], t0: float) -> bool:
        """One RPC carrying ``msgs`` to every target still open; False when none is.

        A failure while the connection is still up (a busy daemon that did not take a
        new stream, or a write that timed out on its window) is a stall: the stream is
        dropped and the next message opens a new one on the same connection.  A closed
        connection is the target cutting us off: it is never dialled again."""
        for name in self.open_targets():
            peer = self.targets[name]
            if peer not in self.attacker._raw and not self.connected(peer):
                # never re-dial (new_stream would): the target closed the connection
                self.tally.cut[name] = trio.current_time() - t0
                self.tally.refused += len(msgs)
                continue
            try:
                ok = await self.attacker.send(peer, msgs)
            except Exception:  # the stream could not be opened
                ok = False
            now = trio.current_time() - t0
            if ok:
                self.tally.sent += len(msgs)
                self.tally.per_second[int(now)] += len(msgs)
                self.tally.streak[name] = 0
            elif self.connected(peer) and self.tally.streak[name] < MAX_STALLS:
                self.tally.stalled += len(msgs)
                self.tally.streak[name] += 1
                stream = self.attacker._raw.pop(peer, None)
                if stream is not None:
                    with trio.move_on_after(1):
                        try:
                            await stream.reset()
                        except Exception as exc:  # already gone
                            del exc
            else:
                self.tally.refused += len(msgs)
                self.tally.cut[name] = now
        return bool(self.open_targets())

    async def paced(self, batches: Iterable[list[rpc_pb2.Message] | None], rate: float,
                    t0: float, start: float, stop: trio.Event) -> None:
        """Send ``batches`` (one RPC each; None: nothing this time) at ``rate`` per
        second from ``start`` seconds into the flood, until ``stop``, the batches run
        out or no target is left."""
        due = t0 + start
        await trio.sleep_until(due)
        self.tally.started = trio.current_time() - t0
        for batch in batches:
            if stop.is_set():
                return
            if batch is not None and not await self.send(batch, t0):
                return
            due += 1.0 / rate
            await trio.sleep_until(max(due, trio.current_time()))


def replays(honest: Callable[[], list[bytes]], again: Callable[[], bool]
            ) -> Iterator[list[rpc_pb2.Message] | None]:
    """Honest objects replayed under throwaway libp2p keys (one fresh key per message)
    through the Sybil's one connection: each object once, as ``honest()`` yields them
    (the third-party ones, then the month's honest settlements and sealed claims the
    Sybil receives: where a target does not hold one yet, the replay is simply a valid
    first copy); once ``again()``, everything a second time, which the strike rule of
    SPEC §11.2 catches."""
    done: set[bytes] = set()
    repeated = False
    while True:
        if not repeated and again():
            repeated, done = True, set()
        fresh = [d for d in honest() if object_id(d) not in done]
        if not fresh:
            yield None
        for data in fresh:
            done.add(object_id(data))
            yield [Signer().message(TOPIC_OF[m.peek_type(data) or ""], data)]


def forged_batches(next_donor: Callable[[], Forged | None], signer: Signer
                   ) -> Iterator[list[rpc_pb2.Message]]:
    """Each fresh donor's settlement, then its sealed claims: RPCs back to back, as an
    author publishes them.  ``next_donor()`` gives the next donor of the month the
    flood is in (None: none left)."""
    while (donor := next_donor()) is not None:
        for raw in donor.all():
            yield [signer.message(TOPIC_OF[m.peek_type(raw) or ""], raw)]


class DonorPool:
    """One valid Sybil's fresh donors, by month; ``month`` is the month the flood is in
    (the one before until the honest clocks pass the end of the month settled)."""

    def __init__(self, by_month: dict[str, list[Forged]], month: str) -> None:
        self.by_month = {mo: iter(ds) for mo, ds in by_month.items()}
        self.month = month
        self.used: Counter[str] = Counter()

    def next(self) -> Forged | None:
        d = next(self.by_month[self.month], None)
        if d is not None:
            self.used[self.month] += 1
        return d


def junk_batches(items: list[bytes], signer: Signer) -> Iterator[list[rpc_pb2.Message]]:
    for raw in items:
        yield [signer.message(KEYS if m.peek_type(raw) == "key" else RECEIPTS, raw)]


__all__ = ["MAX_STALLS", "ROLES", "DonorPool", "Sybil", "Tally", "dangling", "forged_batches",
           "invalid_messages", "junk_batches", "replays", "valid_donors"]
