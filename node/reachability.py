"""Whether peers can dial this node (a mixin of :class:`rill.node.daemon.Daemon`; SPEC §11.1
"Reachability", README "Behind NAT").

With ``[node] reachable = "auto"`` and a listen address, a node behind a home router
that forwards nothing used to count itself public: it reserved no relay and announced
addresses nobody could dial.  Here it asks up to ASK_PEERS connected peers
(``/rill/reach/1.0.0``) to open a TCP connection to its IP address as they see it, at the
ports it listens on.  One yes: public.  At least two answers, all no: private, so it
reserves a slot on a relay and announces the relayed address (node/natrelay.py) and uses
the DHT as a client only.  Asked again every RECHECK_S (every UNSURE_S while the answers
settle nothing).

The server side dials only the IP address the asker's connection comes from (never one
it names: no one can aim a node at a third party), at most 4 ports, one request per peer
a minute, PROBES_AT_ONCE at once in all, each connection closed as soon as it opens.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from typing import Any

import multiaddr
import trio
from libp2p.kad_dht.kad_dht import DHTMode
from libp2p.peer.id import ID

from ..protocol.errors import RuleError
from ..protocol.reach import (
    MAX_REACH_PORTS,
    MAX_REACH_RESPONSE,
    REACH_PROTOCOL,
    ReachRequest,
    ReachResponse,
)
from .host import request

log = logging.getLogger("rill.node")

#: The first check once the node has two peers to ask (real seconds), then every
#: RECHECK_S; every UNSURE_S while too few peers answered.
FIRST_S = 2.0
RECHECK_S = 3600.0
UNSURE_S = 60.0
ASK_PEERS = 3
#: A probe's TCP connection may take this long (real seconds).
PROBE_S = 5.0
#: Serving: one request per peer per SERVE_EVERY_S, at most PROBES_AT_ONCE in all.
SERVE_EVERY_S = 60.0
PROBES_AT_ONCE = 4


def remote_ip(conn: Any) -> str | None:
    """The IP address a (direct) connection comes from; None for a relayed one."""
    try:
        addrs = [str(a) for a in conn.get_transport_addresses()]
    except Exception:  # a connection closing meanwhile
        return None
    for addr in addrs:
        parts = addr.split("/")
        if "p2p-circuit" in parts or len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
            return None
        try:
            return str(ipaddress.ip_address(parts[2]))
        except ValueError:
            return None
    return None


async def tcp_open(ip: str, port: int) -> bool:
    """Whether a plain TCP connection to ip:port is accepted within PROBE_S."""
    with trio.move_on_after(PROBE_S):
        try:
            stream = await trio.open_tcp_stream(ip, port)
        except OSError:
            return False
        await stream.aclose()
        return True
    return False


class Reachability:
    def _init_reach(self) -> None:
        #: for `rill node status`: the last check's verdict and answers
        self.reach: dict[str, Any] = {"verdict": None, "checked": None, "answers": []}
        self._reach_served: dict[ID, float] = {}
        self._probes = trio.Semaphore(PROBES_AT_ONCE)

    # -- serving ------------------------------------------------------------------------

    async def _serve_reach(self, peer: ID, raw: bytes) -> bytes:
        req = ReachRequest.decode(raw)
        now = trio.current_time()
        last = self._reach_served.get(peer)
        if last is not None and now - last < SERVE_EVERY_S:
            raise RuleError("reach: one request a minute", code="busy")
        if len(self._reach_served) >= 4096:
            self._reach_served.clear()
        self._reach_served[peer] = now
        assert self.p2p is not None
        conns = self.p2p.host.get_network().get_connections(peer)
        ip = remote_ip(conns[0]) if conns else None
        if ip is None:
            raise RuleError("reach: only over a direct connection", code="relayed")
        results = [False] * len(req.ports)

        async def probe(i: int, port: int) -> None:
            async with self._probes:
                results[i] = await tcp_open(ip, port)

        async with trio.open_nursery() as n:
            for i, port in enumerate(req.ports):
                n.start_soon(probe, i, port)
        return ReachResponse(tuple(results)).encode()

    # -- asking ---------------------------------------------------------------------------

    def _listen_ports(self) -> list[int]:
        assert self.p2p is not None
        ports: list[int] = []
        for addr in self.p2p.host.get_transport_addrs():
            try:
                port = int(multiaddr.Multiaddr(str(addr)).value_for_protocol("tcp"))
            except Exception:  # not a TCP address
                continue
            if port not in ports:
                ports.append(port)
        return ports[:MAX_REACH_PORTS]

    def _reach_candidates(self) -> list[ID]:
        """Connected peers over a direct connection that serve the probe."""
        assert self.p2p is not None
        store = self.p2p.host.get_peerstore()
        out = []
        for peer, conns in self.p2p.host.get_network().get_connections_map().items():
            if self.is_blocked(peer) or not conns or remote_ip(conns[0]) is None:
                continue
            try:
                if REACH_PROTOCOL in store.get_protocols(peer):
                    out.append(peer)
            except Exception:  # identify not done yet
                continue
        return out

    async def _ask_reach(self, peer: ID, ports: list[int]) -> bool | None:
        """Whether ``peer`` could open one of ``ports``; None when it did not answer."""
        assert self.p2p is not None
        try:
            raw = await request(self.p2p.host, peer, REACH_PROTOCOL,
                                ReachRequest(tuple(ports)).encode(), MAX_REACH_RESPONSE)
            return any(ReachResponse.decode(raw, len(ports)).open)
        except (Exception, trio.TooSlowError) as exc:
            log.debug("reachability probe by %s: %r", peer, exc)
            return None

    async def _check_reach(self) -> None:
        """``reachable = "auto"`` with a listen address: ask peers now and then."""
        if self.config.nat.reachable != "auto" or not self.config.listen:
            return
        assert self.p2p is not None
        await trio.sleep(FIRST_S)
        ports: list[int] = []
        while True:
            ports = ports or self._listen_ports()  # the ports bound at start
            peers = self._reach_candidates()
            if not ports or len(peers) < 2:
                await trio.sleep(FIRST_S)
                continue
            asked = random.sample(peers, min(ASK_PEERS, len(peers)))
            answers: dict[ID, bool | None] = {}

            async def one(peer: ID, answers: dict[ID, bool | None] = answers,
                          ports: list[int] = ports) -> None:
                answers[peer] = await self._ask_reach(peer, ports)

            async with trio.open_nursery() as n:
                for peer in asked:
                    n.start_soon(one, peer)
            said = [a for a in answers.values() if a is not None]
            verdict = ("public" if any(said) else "private" if len(said) >= 2 else None)
            self.reach = {"verdict": verdict, "checked": self.clock.now(), "ports": ports,
                          "answers": {str(p): a for p, a in answers.items()}}
            if verdict is not None:
                try:
                    await self._set_private(verdict == "private")
                except Exception as exc:  # the DHT's mode switch: never stop the daemon
                    log.warning("switching to %s: %r", verdict, exc)
            await trio.sleep(RECHECK_S if verdict else UNSURE_S)

    async def _set_private(self, private: bool) -> None:
        assert self.p2p is not None
        nat = self.p2p.nat
        if nat is None or nat.private == private:
            return
        nat.set_private(private)
        await self.p2p.dht.switch_mode(DHTMode.CLIENT if private else DHTMode.SERVER)
        if private:
            log.warning("peers could not dial this node at port(s) %s: counting it as "
                        "private (a slot on a relay, the DHT as a client); forward the port "
                        "on your router, or set [node] reachable", self.reach.get("ports"))
        else:
            log.info("peers can dial this node again: public")
