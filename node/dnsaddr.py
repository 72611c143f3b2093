"""DNS bootstrap addresses: ``/dnsaddr/NAME/p2p/ID`` (and ``/dns4``, ``/dns6``, ``/dns``)
resolved into addresses the daemon dials (README "Finding the network").

A ``/dnsaddr/NAME`` address names the TXT records of ``_dnsaddr.NAME``, each
``dnsaddr=<multiaddr>``, which may name further ``/dnsaddr`` records (the libp2p
convention, as ``/dnsaddr/bootstrap.libp2p.io`` uses).  Only the addresses ending in the
peer ID asked for are kept, and only those this node can dial: TCP over IPv4/IPv6, or a
relayed address through such a relay (QUIC, WebSocket and WebTransport ones are left out).

A TXT answer is untrusted input: at most ``MAX_DEPTH`` nested ``/dnsaddr`` names,
``MAX_LOOKUPS`` DNS queries and ``MAX_ADDRS`` addresses per resolution, each query cut
after ``LOOKUP_TIMEOUT_S``; a malformed record is refused with a logged reason and never
raises anything but :class:`ResolveError`.

DNS itself is dnspython's (``dns.asyncresolver``, which runs under trio).  Not the
``multiaddr`` package's ``DNSResolver`` (which py-libp2p 0.8.1's TCP transport uses for
``/dns*`` addresses): it follows up to 32 levels, bounds neither lookups nor addresses,
drops malformed records silently, takes no nameserver, and its timeout returns None.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import multiaddr
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

log = logging.getLogger("rill.node")

MAX_DEPTH = 4
MAX_LOOKUPS = 16
MAX_ADDRS = 32
#: TXT records read from one answer (the rest are ignored).
MAX_RECORDS = 64
LOOKUP_TIMEOUT_S = 3.0
#: The whole resolution (within the bootstrap dial's own 15 s).
RESOLVE_TIMEOUT_S = 10.0
DNS_PROTOCOLS = ("dnsaddr", "dns", "dns4", "dns6")
PREFIX = "dnsaddr="


class ResolveError(Exception):
    """No dialable address came out of a DNS address; the message says why."""


def is_dns(addr: str) -> bool:
    """True for an address starting with /dnsaddr, /dns, /dns4 or /dns6."""
    parts = addr.split("/", 2)
    return len(parts) > 2 and parts[0] == "" and parts[1] in DNS_PROTOCOLS


def parse_servers(value: Any) -> list[tuple[str, int]]:
    """``[node] dns_servers``: a list of "IP:PORT" (or "IP", port 53; "[v6]:PORT") strings,
    or ValueError naming the key."""
    usage = 'node.dns_servers must be a list of "IP:PORT" strings, e.g. ["127.0.0.1:53"]'
    if not isinstance(value, list) or len(value) > 8:
        raise ValueError(f"{usage} (at most 8)")
    out = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{usage}, not {item!r}")
        host, port = item, "53"
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"{usage}, not {item!r}")
                port = rest[1:]
        elif item.count(":") == 1:
            host, port = item.split(":")
        try:
            ip = ipaddress.ip_address(host)
            number = int(port)
        except ValueError:
            raise ValueError(f"{usage}, not {item!r}") from None
        if not 1 <= number <= 65535 or not port.isdigit():
            raise ValueError(f"{usage}, not {item!r} (port 1..65535)")
        out.append((str(ip), number))
    return out


def _dialable(names: list[str]) -> bool:
    direct = len(names) >= 3 and names[0] in ("ip4", "ip6") and names[1:3] == ["tcp", "p2p"]
    return direct and (names[3:] == [] or names[3:] == ["p2p-circuit", "p2p"])


class _Enough(Exception):
    """A bound reached: the resolution ends with what it has."""


class _Resolution:
    def __init__(self, addr: str, servers: list[tuple[str, int]] | None,
                 timeout: float) -> None:
        self.addr = addr
        self.peer = addr.rsplit("/p2p/", 1)[-1]
        self.lookups = 0
        self.out: list[str] = []
        self.reasons: list[str] = []
        self.seen: set[str] = set()
        if servers:
            self.dns = dns.asyncresolver.Resolver(configure=False)
            self.dns.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in servers]
        else:
            self.dns = dns.asyncresolver.Resolver()  # /etc/resolv.conf
        self.dns.cache = None
        self.dns.timeout = self.dns.lifetime = timeout

    def refuse(self, reason: str, loud: bool = True) -> None:
        """A record or name left out; ``loud``: logged (a normal skip, e.g. a QUIC
        address or another peer's record, is only kept for the final error)."""
        reason = reason if len(reason) <= 240 else reason[:237] + "..."
        if loud:
            log.info("%s: %s", self.addr, reason)
        if reason not in self.reasons:
            self.reasons.append(reason)

    async def query(self, name: str, rdtype: str) -> list[Any]:
        if self.lookups >= MAX_LOOKUPS:
            self.refuse(f"more than {MAX_LOOKUPS} DNS lookups: {name} and the rest not "
                        "looked up")
            raise _Enough
        self.lookups += 1
        try:
            with trio.fail_after(self.dns.lifetime + 1):
                answer = await self.dns.resolve(name, rdtype, search=False)
            return list(answer)
        except dns.resolver.NXDOMAIN:
            self.refuse(f"{name}: no such DNS name (NXDOMAIN)")
        except dns.resolver.NoAnswer:  # e.g. a /dns name with A records only: not logged
            self.refuse(f"{name}: no {rdtype} record", loud=False)
        except (dns.exception.Timeout, trio.TooSlowError):
            self.refuse(f"{name}: the DNS lookup timed out ({self.dns.lifetime:g} s)")
        except dns.resolver.NoNameservers as exc:
            self.refuse(f"{name}: no DNS server answered ({exc})")
        except Exception as exc:  # a hostile or broken answer, a bad name
            self.refuse(f"{name}: DNS lookup failed ({exc or type(exc).__name__})")
        return []

    def keep(self, ma: multiaddr.Multiaddr) -> None:
        text = str(ma)
        if not _dialable([p.name for p in ma.protocols()]):
            self.refuse(f"{text}: not an address this node dials (TCP, or relayed over "
                        "TCP)", loud=False)
        elif not text.endswith(f"/p2p/{self.peer}"):
            self.refuse(f"{text}: another peer's address", loud=False)
        elif text not in self.out:
            if len(self.out) >= MAX_ADDRS:
                self.refuse(f"more than {MAX_ADDRS} addresses: the rest ignored")
                raise _Enough
            self.out.append(text)

    async def expand(self, ma: multiaddr.Multiaddr, depth: int) -> None:
        names = [p.name for p in ma.protocols()]
        first = names[0] if names else ""
        if first == "dnsaddr":
            await self.dnsaddr(ma, depth)
        elif first in ("dns", "dns4", "dns6"):
            host = ma.value_for_protocol(first)
            rest = ma.split(1)[1] if len(names) > 1 else None
            for rdtype, proto in (("A", "ip4"), ("AAAA", "ip6")):
                if first in ("dns", "dns4" if proto == "ip4" else "dns6"):
                    for rdata in await self.query(host, rdtype):
                        ip = multiaddr.Multiaddr(f"/{proto}/{rdata.address}")
                        self.keep(ip.encapsulate(rest) if rest is not None else ip)
        else:
            self.keep(ma)

    async def dnsaddr(self, ma: multiaddr.Multiaddr, depth: int) -> None:
        name = "_dnsaddr." + ma.value_for_protocol("dnsaddr").rstrip(".")
        if depth >= MAX_DEPTH:
            self.refuse(f"{name}: more than {MAX_DEPTH} nested /dnsaddr names")
            return
        if name in self.seen:
            self.refuse(f"{name}: named twice, looked up once (a loop?)")
            return
        self.seen.add(name)
        records = await self.query(name, "TXT")
        if len(records) > MAX_RECORDS:
            self.refuse(f"{name}: {len(records)} TXT records, only {MAX_RECORDS} read")
        for rdata in records[:MAX_RECORDS]:
            try:
                text = b"".join(rdata.strings).decode("ascii")
            except UnicodeDecodeError:
                self.refuse(f"{name}: a TXT record that is not ASCII")
                continue
            if not text.startswith(PREFIX):
                self.refuse(f"{name}: a TXT record not starting with {PREFIX}: {text[:80]!r}")
                continue
            try:
                inner = multiaddr.Multiaddr(text[len(PREFIX):])
                last = [p.name for p in inner.protocols()][-1]
            except Exception as exc:
                self.refuse(f"{name}: malformed {text[:120]!r} ({exc})")
                continue
            if last != "p2p":
                self.refuse(f"{name}: {text[:120]!r} does not end in /p2p/PEER_ID")
            elif not str(inner).endswith(f"/p2p/{self.peer}"):
                self.refuse(f"{name}: records of other peers only", loud=False)
            else:
                await self.expand(inner, depth + 1)


async def resolve(addr: str, servers: list[tuple[str, int]] | None = None,
                  timeout: float = LOOKUP_TIMEOUT_S) -> list[str]:
    """The dialable addresses of a DNS address ending in /p2p/PEER_ID (an address that
    is not a DNS one comes back as it is), or ResolveError with the reasons."""
    if not is_dns(addr):
        return [addr]
    try:
        ma = multiaddr.Multiaddr(addr)
        names = [p.name for p in ma.protocols()]
    except Exception as exc:
        raise ResolveError(f"not a multiaddr ({exc})") from None
    if names[-1] != "p2p":
        raise ResolveError("does not end in /p2p/PEER_ID: the peer must be named")
    try:
        job = _Resolution(str(ma), servers, timeout)
    except dns.resolver.NoResolverConfiguration:
        raise ResolveError("no DNS server: /etc/resolv.conf names none (set [node] "
                           "dns_servers)") from None
    try:
        with trio.fail_after(RESOLVE_TIMEOUT_S):
            await job.expand(ma, 0)
    except _Enough:
        pass
    except trio.TooSlowError:
        job.refuse(f"resolving took over {RESOLVE_TIMEOUT_S:g} s")
    except Exception as exc:  # a bug here must not take the daemon down: a failed dial
        log.warning("%s: resolving failed: %r", addr, exc)
        job.refuse(f"resolving failed ({exc!r})")
    if not job.out:
        why = job.reasons  # the first few, and the last (a bound reached, if one was)
        if len(why) > 4:
            why = [*why[:3], f"({len(why) - 4} more) {why[-1]}"]
        raise ResolveError("no address to dial" + (": " + "; ".join(why) if why else ""))
    return job.out


def servers_of(config: Any) -> list[tuple[str, int]] | None:
    """The nameservers of a NodeConfig (None: the system's)."""
    return parse_servers(config.dns_servers) if config.dns_servers else None


async def connect(p2p: Any, addr: str, servers: list[tuple[str, int]] | None) -> ID:
    """``p2p.connect(addr)`` (rill.node.host), a DNS address resolved first (again at each
    call: DNS may change); a failed resolution raises ResolveError (a failed dial)."""
    if not is_dns(addr):
        peer: ID = await p2p.connect(addr)
        return peer
    addrs = await resolve(addr, servers)
    log.info("%s resolved to %s", addr, " ".join(addrs))
    peer = ID.from_base58(addr.rsplit("/p2p/", 1)[1])
    direct = [multiaddr.Multiaddr(a).decapsulate_code(multiaddr.protocols.P_P2P)
              for a in addrs if "/p2p-circuit" not in a]
    error: Exception | None = None
    if direct:
        try:
            p2p.host.get_network().unblock_peer(peer)  # its negative cache: we back off
            await p2p.host.connect(PeerInfo(peer, direct))
            await p2p.dht.routing_table.add_peer(peer)
            return peer
        except Exception as exc:
            error = exc
    for relayed in (a for a in addrs if "/p2p-circuit" in a):
        try:
            p2p.host.get_network().unblock_peer(peer)
            connected: ID = await p2p.connect(relayed)
            return connected
        except Exception as exc:
            error = exc
    raise ConnectionError(f"none of its {len(addrs)} resolved addresses answered"
                          f" ({error})")
