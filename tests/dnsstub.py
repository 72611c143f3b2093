"""A DNS stand-in on 127.0.0.1 (UDP) for offline tests: answers TXT and A queries from a
dict, NXDOMAIN for names it does not know, nothing at all for names in ``silent`` (a
timeout).  Built on dnspython's message parsing and a trio socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import trio
from dns.rdtypes.ANY.TXT import TXT


class DnsStub:
    def __init__(self) -> None:
        #: name (no trailing dot) -> TXT strings (each one record; bytes sent as they are)
        self.txt: dict[str, list[str | bytes]] = {}
        self.a: dict[str, list[str]] = {}
        self.silent: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self.port = 0

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text().rstrip(".")
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        if name not in self.txt and name not in self.a:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif rdtype == "TXT" and name in self.txt:
            rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, dns.rdatatype.TXT)
            for text in self.txt[name]:
                raw = text if isinstance(text, bytes) else text.encode()
                chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
                rrset.add(TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks), ttl=60)
            response.answer.append(rrset)
        elif rdtype == "A" and name in self.a:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A",
                                                       *self.a[name]))
        return response.to_wire()  # type: ignore[no-any-return]

    async def serve(self, sock: trio.socket.SocketType) -> None:
        while True:
            wire, peer = await sock.recvfrom(4096)
            try:
                reply = self.answer(wire)
            except Exception:  # a query we cannot parse: no answer
                continue
            if reply is not None:
                await sock.sendto(reply, peer)


@asynccontextmanager
async def dns_stub() -> AsyncIterator[DnsStub]:
    stub = DnsStub()
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    stub.port = sock.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stub.serve, sock)
        try:
            yield stub
        finally:
            nursery.cancel_scope.cancel()
            sock.close()
