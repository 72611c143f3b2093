"""Dialable addresses: a node listening on ``/ip4/0.0.0.0/...`` (every interface) is
reached at each of its interfaces' addresses, which is what ``rill node status`` lists."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable

log = logging.getLogger("rill.node.netaddrs")

_WILD = re.compile(r"^/(ip4/0\.0\.0\.0|ip6/::)(/.*)$")


def interface_addresses() -> tuple[list[str], list[str]]:
    """(IPv4, IPv6) addresses of this machine's interfaces, loopback last; link-local
    IPv6 addresses are left out (they need a zone to be dialled)."""
    v4: list[str] = []
    v6: list[str] = []
    try:
        import ifaddr  # comes with libp2p's mDNS (zeroconf)

        adapters = ifaddr.get_adapters()
    except Exception as exc:  # no interface list: the loopback is still dialable
        log.debug("cannot list interfaces: %s", exc)
        return ["127.0.0.1"], ["::1"]
    for adapter in adapters:
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                v4.append(ip.ip)
            else:
                text = ip.ip[0]
                addr = ipaddress.IPv6Address(text.split("%")[0])
                if not addr.is_link_local:
                    v6.append(str(addr))

    def order(a: str) -> tuple[bool, str]:
        return ipaddress.ip_address(a).is_loopback, a

    return sorted(set(v4), key=order), sorted(set(v6), key=order)


def dialable(addrs: Iterable[str], peer_id: str,
             interfaces: tuple[list[str], list[str]] | None = None) -> list[str]:
    """Full multiaddrs (with ``/p2p/PEER``) others can dial: wildcard listen addresses are
    replaced by each interface address of their family."""
    v4, v6 = interface_addresses() if interfaces is None else interfaces
    out: list[str] = []
    for a in addrs:
        if "/p2p-circuit" in a:  # relayed (node/natrelay.py): dialled as it is
            full = a if a.endswith(f"/p2p/{peer_id}") else f"{a}/p2p/{peer_id}"
            if full not in out:
                out.append(full)
            continue
        a = a.split("/p2p/")[0]
        wild = _WILD.match(a)
        if wild is None:
            hosts = [a]
        elif wild.group(1).startswith("ip4"):
            hosts = [f"/ip4/{ip}{wild.group(2)}" for ip in v4]
        else:
            hosts = [f"/ip6/{ip}{wild.group(2)}" for ip in v6]
        for h in hosts:
            full = f"{h}/p2p/{peer_id}"
            if full not in out:
                out.append(full)
    return out
