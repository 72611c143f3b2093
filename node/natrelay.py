"""Behind NAT: circuit relay v2 (SPEC §11.1, docs/NETWORK.md "Behind NAT").

A node nobody can dial (``[node] reachable = "private"``, or "auto" with no listen
address) keeps a reservation on a relay peer: a connected peer whose identify record
lists the hop protocol, bootstrap peers first.  It announces
``<relay address>/p2p/RELAY/p2p-circuit/p2p/ME`` (identify, signed peer record, the
DHT, ``rill node status``), so others dial it through the relay.  The reservation is
watched once a second and made again when the relay's connection changes (the relay
restarted: py-libp2p re-reserves by itself only before expiry, on the same connection)
or when less than a tenth of its lifetime is left.

A public node relays for others (``[node] relay = true``, the default) within limits it
sets: reservations at once, circuits per reserved peer, seconds and bytes per circuit.
Every node can dial a relayed address (py-libp2p's swarm skips them: the daemon dials
them here) and accepts relayed connections (the stop protocol).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import STOP_PROTOCOL_ID as STOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service

from .keepalive import set_private_pings

log = logging.getLogger("rill.node.natrelay")

REACHABILITY = ("auto", "public", "private")


class _QuietCircuitEnds(logging.Filter):
    """py-libp2p 0.8.1's relay logs every normal end of a hop or relayed stream (a
    reservation stream the client closed, a circuit its ends closed) as an ERROR with an
    empty message, and each first circuit dial as a WARNING: expected, so DEBUG."""

    EXPECTED = ("Error reading from hop stream", "Unexpected error reading from stream",
                "Error writing to destination stream", "Error sending status message",
                "Unexpected error handling hop stream", "Error relaying data",
                "Failed to fetch stored addresses", "Error handling stop stream")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and str(record.msg).startswith(self.EXPECTED):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger("libp2p").isEnabledFor(logging.DEBUG)
        return True


for _name in ("libp2p.relay.circuit_v2.protocol", "libp2p.relay.circuit_v2.transport"):
    logging.getLogger(_name).addFilter(_QuietCircuitEnds())
#: How often the reservation is looked at (real seconds): a relay that restarted is
#: reserved on again within about this long once its connection is back.
WATCH_S = 1.0
#: A reservation is renewed when less than this fraction of its lifetime is left.
RENEW_FRACTION = 0.1
RESERVE_TIMEOUT_S = 10.0
#: A relay that refused (full, or no longer relaying) is asked again after this long.
REFUSED_RETRY_S = 60.0
DIAL_TIMEOUT_S = 15.0


@dataclass
class NatSettings:
    """``[node] reachable``, ``relay`` and the relay's limits (README "Behind NAT")."""

    #: "public": dialable at its listen addresses; "private": reserve a relay slot and
    #: announce the relayed address; "auto": private when there is no listen address.
    reachable: str = "auto"
    #: Offer the hop protocol to others (only while this node is public).
    relay: bool = True
    # Defaults (README "Behind NAT" says why): a reservation costs the relay a table entry;
    # a circuit costs what it carries.  A NAT'd node's own month is ~100 KB and a sharded
    # node's traffic ~50 MB a month (issue 12): 16 MiB per circuit-hour is ample for it,
    # and 16 slots x 4 circuits x 16 MiB bounds what strangers get from one hour of
    # circuits (1 GiB; py-libp2p 0.8.1 has no rate limit: a relay may be redialled).
    #: Reservations held for others at once.
    relay_slots: int = 16
    #: Circuits at once per reserved peer.
    relay_circuits: int = 4
    #: A circuit is reset after this many seconds (its dialer dials again).
    relay_circuit_s: int = 3600
    #: ... or after this many MiB, counted both ways.
    relay_circuit_mb: int = 16
    #: Lifetime of a reservation given to others (seconds); renewed by its holder.
    relay_reservation_s: int = 3600

    @classmethod
    def from_toml(cls, node: dict[str, Any]) -> NatSettings:
        out = cls()
        if "reachable" in node:
            if node["reachable"] not in REACHABILITY:
                raise ValueError("node.reachable must be one of " + ", ".join(
                    f'"{r}"' for r in REACHABILITY))
            out.reachable = node["reachable"]
        if "relay" in node:
            if not isinstance(node["relay"], bool):
                raise ValueError("node.relay must be a bool")
            out.relay = node["relay"]
        for name in ("relay_slots", "relay_circuits", "relay_circuit_s", "relay_circuit_mb",
                     "relay_reservation_s"):
            if name in node:
                value = node[name]
                if type(value) is not int or value < 1:
                    raise ValueError(f"node.{name} must be a positive integer")
                setattr(out, name, value)
        return out

    def private(self, listen: list[str]) -> bool:
        """Whether the node counts itself undialable (the "auto" rule: no listen
        address at all)."""
        if self.reachable == "auto":
            return not listen
        return self.reachable == "private"

    def limits(self) -> RelayLimits:
        return RelayLimits(duration=self.relay_circuit_s,
                           data=self.relay_circuit_mb * 1024 * 1024,
                           max_circuit_conns=self.relay_circuits,
                           max_reservations=self.relay_slots,
                           reservation_ttl=self.relay_reservation_s)


def is_circuit(addr: str) -> bool:
    return "/p2p-circuit" in addr


def circuit_addr(relay_addr: str, relay: ID, me: ID | None = None) -> str:
    """``/ip4/A/tcp/P/p2p/RELAY/p2p-circuit[/p2p/ME]`` from a relay's transport address."""
    base = relay_addr.split("/p2p/")[0]
    out = f"{base}/p2p/{relay}/p2p-circuit"
    return out + (f"/p2p/{me}" if me is not None else "")


class NatRelay:
    """The relay protocol (hop when relaying, stop always), the circuit transport for
    dialling relayed addresses, and the reservation a private node keeps."""

    def __init__(self, host: IHost, settings: NatSettings, private: bool,
                 candidates: Callable[[], list[ID]]) -> None:
        self.host = host
        self.settings = settings
        self.private = private
        set_private_pings(private)
        self.hop = settings.relay and not private
        limits = settings.limits()
        self.protocol = CircuitV2Protocol(host, limits=limits, allow_hop=self.hop)
        roles = RelayRole.STOP | (RelayRole.HOP if self.hop else RelayRole.STOP)
        # no CLIENT role: py-libp2p would otherwise reserve a slot on every relay it
        # merely dials through; reservations are made here, on purpose, by a private node
        self.transport = CircuitV2Transport(host, self.protocol,
                                            RelayConfig(roles=roles, limits=limits))
        self._candidates = candidates
        #: the relay in use, its transport address, the connection reserved on, expiry
        self.relay: ID | None = None
        self.relay_addr: str | None = None
        self._reserved_conn: Any = None
        self.expires: float = 0.0
        self.lifetime: float = 0.0  # of the reservation the relay gave (seconds)
        self.reservations = 0  # reservations made (renewals included)
        self.last_error: str | None = None
        self._refused: dict[ID, float] = {}  # relay -> when it refused (trio time)
        self._announce()

    # -- announcing ----------------------------------------------------------------------

    def relayed_addrs(self) -> list[str]:
        if self.relay is None or self.relay_addr is None or not self.reserved():
            return []
        return [circuit_addr(self.relay_addr, self.relay, self.host.get_id())]

    def _announce(self) -> None:
        """``host.get_addrs()`` (identify, peer records, the DHT) gains the relayed
        address.  Not through py-libp2p's ``addrs_factory``: it strips everything from the
        first ``/p2p/`` on, which for a circuit address is the relay's ID."""
        host = self.host
        plain = host.get_addrs

        def get_addrs() -> list[multiaddr.Multiaddr]:
            return list(plain()) + [multiaddr.Multiaddr(a) for a in self.relayed_addrs()]

        host.get_addrs = get_addrs  # type: ignore[method-assign]

    def reserved(self) -> bool:
        return (self.relay is not None and self.expires > time.time()
                and self._conn(self.relay) is self._reserved_conn is not None)

    def _conn(self, peer: ID) -> Any:
        conns = self.host.get_network().connections.get(peer)
        if not conns:
            return None
        return conns[0] if isinstance(conns, list) else conns

    # -- dialling ------------------------------------------------------------------------

    async def dial(self, addr: str) -> ID:
        """Connect through a relay (``.../p2p/RELAY/p2p-circuit/p2p/PEER``)."""
        ma = multiaddr.Multiaddr(addr)
        _relay, peer = self.transport.parse_circuit_ma(ma)
        if peer == self.host.get_id():
            raise ValueError("that is this node's own relayed address")
        if self._conn(peer) is not None:
            return peer
        with trio.fail_after(DIAL_TIMEOUT_S):
            await self.transport.dial(ma)
        return peer

    # -- keeping a reservation -------------------------------------------------------------

    def set_private(self, private: bool) -> None:
        """The reachability probe's verdict (node/reachability.py): a node found private
        reserves from now on (and keeps its NAT mappings warm with Yamux pings every
        4 minutes, node/keepalive.py); one found public again drops its relay."""
        self.private = private
        set_private_pings(private)
        if not private:
            self.relay, self.relay_addr, self._reserved_conn = None, None, None
            self.expires = 0.0

    async def keep_reservation(self) -> None:
        """While private: hold a reservation on some relay."""
        while True:
            try:
                if self.private:
                    await self._check()
            except Exception as exc:  # never let a relay's answer stop the daemon
                self.last_error = str(exc) or type(exc).__name__
                log.info("relay reservation: %s", self.last_error)
            await trio.sleep(WATCH_S)

    async def _check(self) -> None:
        if self.relay is not None and self.reserved():
            if self.expires - time.time() > max(RENEW_FRACTION * self.lifetime, 5.0):
                return
            if await self._reserve(self.relay):  # renew on the same relay
                return
        elif (self.relay is not None and self._conn(self.relay) is not None
              and self._may_ask(self.relay) and await self._reserve(self.relay)):
            # connected again after a restart (or the reservation lapsed): reserved again
            log.info("reserved again on relay %s (its connection changed)", self.relay)
            return
        for peer in self._candidates():
            if peer == self.relay or self._conn(peer) is None or not self._may_ask(peer):
                continue
            if not self._offers_hop(peer):
                continue
            if await self._reserve(peer):
                return

    def _may_ask(self, peer: ID) -> bool:
        """Not refused by ``peer`` in the last REFUSED_RETRY_S seconds."""
        when = self._refused.get(peer)
        return when is None or trio.current_time() - when >= REFUSED_RETRY_S

    def _offers_hop(self, peer: ID) -> bool:
        try:
            return HOP_PROTOCOL in self.host.get_peerstore().get_protocols(peer)
        except Exception:  # identify not done yet
            return False

    async def _reserve(self, peer: ID) -> bool:
        conn = self._conn(peer)
        if conn is None:
            return False
        with trio.move_on_after(RESERVE_TIMEOUT_S):
            stream = await self.host.new_stream(peer, [TProtocol(HOP_PROTOCOL)])
            try:
                ok = await self.transport._make_reservation(stream, peer)
            finally:
                try:
                    await stream.close()
                except Exception as exc:
                    log.debug("closing a reservation stream: %r", exc)
            if not ok:
                self.last_error = f"relay {peer} refused a reservation"
                if len(self._refused) >= 1024:
                    self._refused.clear()
                self._refused[peer] = trio.current_time()
                return False
            expires = float(self.transport._reservations.get(peer, 0))
            new_relay = peer != self.relay
            self.relay, self._reserved_conn = peer, conn
            self.expires, self.lifetime = expires, max(0.0, expires - time.time())
            self.relay_addr = self._transport_addr(peer)
            self.reservations += 1
            self.last_error = None
            if new_relay:
                log.info("reserved a slot on relay %s: dial me at %s", peer,
                         ", ".join(self.relayed_addrs()) or "?")
            return True
        self.last_error = f"relay {peer} did not answer a reservation in time"
        return False

    def _transport_addr(self, peer: ID) -> str | None:
        """The address we reached the relay at (what others dial to reach it)."""
        conn = self._conn(peer)
        addrs: list[Any] = []
        try:
            addrs = list(conn.get_transport_addresses()) if conn is not None else []
        except Exception as exc:
            log.debug("no transport address of %s: %r", peer, exc)
        if not addrs:
            try:
                addrs = [a for a in self.host.get_peerstore().addrs(peer)
                         if not is_circuit(str(a))]
            except Exception:
                addrs = []
        return str(addrs[0]) if addrs else None

    def kept_peers(self) -> set[ID]:
        """Peers whose connection must stay (node/upkeep.py): the relay this node reserved
        on, and the peers holding a reservation on it."""
        kept = set(self.protocol.resource_manager._reservations) if self.hop else set()
        if self.relay is not None:
            kept.add(self.relay)
        return kept

    def status(self) -> dict[str, Any]:
        return {
            "reachability": "private" if self.private else "public",
            "setting": self.settings.reachable,
            "relay": str(self.relay) if self.relay is not None and self.reserved() else None,
            "relayed_addrs": self.relayed_addrs(),
            "reserved_until": int(self.expires) if self.reserved() else None,
            "reservations_made": self.reservations,
            "relaying": self.hop,
            "relaying_for": len(self.protocol.resource_manager._reservations) if self.hop
            else 0,
            "relay_limits": {"slots": self.settings.relay_slots,
                             "circuits_per_peer": self.settings.relay_circuits,
                             "circuit_s": self.settings.relay_circuit_s,
                             "circuit_bytes": self.settings.relay_circuit_mb * 1024 * 1024}
            if self.hop else None,
            "error": self.last_error,
        }


@asynccontextmanager
async def running(host: IHost, settings: NatSettings, private: bool,
                  candidates: Callable[[], list[ID]]) -> AsyncIterator[NatRelay]:
    """The relay protocol as a service; a private node's reservation kept meanwhile."""
    nat = NatRelay(host, settings, private, candidates)
    async with background_trio_service(nat.protocol), trio.open_nursery() as nursery:
        nursery.start_soon(nat.keep_reservation)  # idle while public
        yield nat
        nursery.cancel_scope.cancel()


__all__ = ["HOP_PROTOCOL", "STOP_PROTOCOL", "NatRelay", "NatSettings", "circuit_addr",
           "is_circuit", "running"]
