"""Gossip out (a mixin of :class:`rill.node.daemon.Daemon`): objects queued for
publishing, checked first; a pseudonym's objects held back a random while and published
under the pseudonym's own libp2p author (node/anonpub.py); on start, what we signed
and may not have reached anyone yet.  The publisher task itself, and the topics of an
object, are in node/sharding.py."""

from __future__ import annotations

import logging
import random

import trio

from ..protocol import messages as m
from ..protocol.disclosure import pseudonym_seed
from ..protocol.errors import RemoteError
from ..protocol.network import TOPIC_OF, check_gossip
from .anonpub import publish_as
from .host import peer_id_from_seed

log = logging.getLogger("rill.node")


class Publishing:

    async def publish(self, raw: bytes) -> None:
        """Queue an object for gossip (checked first: our own invalid publishes would
        lower our own score)."""
        obj = check_gossip(TOPIC_OF.get(m.peek_type(raw) or "", ""), raw, self.clock.now(),
                           self.config.window_months, self.work_bits)
        if obj.id not in self._published and self.gate.forwarded_lately(obj.id):
            log.debug("not publishing %s: forwarded less than 20 minutes ago", obj.id_hex)
            return
        self._published.add(obj.id)
        if (obj.signer != self.identity and self.config.pseudonym_jitter > 0
                and self._nursery is not None
                and await self.db(self.wallet.pseudonym_of, obj.signer) is not None):
            # one random delay per pseudonym, its objects kept in order (a settlement
            # before its claims: nodes ignore a claim that hangs off nothing they hold)
            held = self._held.setdefault(obj.signer, [])
            held.append(raw)
            if len(held) == 1:
                self._nursery.start_soon(self._send_later, obj.signer,
                                         random.uniform(0, self.config.pseudonym_jitter))
            return
        await self._outbox_send.send(raw)

    async def _send_later(self, signer: bytes, delay: float) -> None:
        await trio.sleep(delay)
        for raw in self._held.pop(signer, []):
            await self._outbox_send.send(raw)

    async def _publish_on(self, topic: str, raw: bytes) -> None:
        """One object on one topic: under our peer ID, or under its pseudonym's when one of
        our pseudonyms signed it (SPEC §13)."""
        assert self.p2p is not None
        ps = self.p2p.pubsub
        seed = await self._pseudonym_seed(raw)
        if seed is None:
            await ps.publish(topic, raw)
        else:
            self.own_authors.add(peer_id_from_seed(seed).to_bytes())
            await publish_as(ps, topic, raw, seed)

    async def _pseudonym_seed(self, raw: bytes) -> bytes | None:
        """The key seed of our pseudonym that signed ``raw``, if one did."""
        signer = m.decode(raw, verify_signature=False).signer
        if signer == self.identity:
            return None
        month = await self.db(self.wallet.pseudonym_of, signer)
        return None if month is None else pseudonym_seed(bytes(self.wallet.key), month)

    async def _publish_known(self) -> None:
        """On start: what we signed and may not have reached anyone yet."""
        for _month, settlement, sealed in await self.db(self.wallet.unreceipted):
            for raw in (settlement, *sealed):
                await self._publish_quietly(raw)
        for raw in await self.db(self.wallet.receipts_signed):
            await self._publish_quietly(raw)
        await self._publish_own_listings()

    async def _publish_quietly(self, raw: bytes) -> None:
        try:
            await self.publish(raw)
        except RemoteError as exc:  # e.g. outside the window by now
            log.debug("not publishing: %s", exc)
