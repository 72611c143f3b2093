"""The reachability probe ``/rill/reach/1.0.0`` (SPEC §11.1 "Reachability"): a node asks a
peer to open a plain TCP connection to the node's own IP address (as the peer sees it) at
the ports it listens on, and to say which ones accepted.  Sans-I/O: the request and the
answer, encoded and decoded."""

from __future__ import annotations

from dataclasses import dataclass

from . import cbor
from .errors import SchemaError, TooLarge

REACH_PROTOCOL = "/rill/reach/1.0.0"
#: Ports asked about at most, and the bound on a request's and an answer's bytes.
MAX_REACH_PORTS = 4
MAX_REACH_REQUEST = 64
MAX_REACH_RESPONSE = 64


@dataclass(frozen=True)
class ReachRequest:
    """``{"v": 1, "ports": [port, ...]}``: 1 to 4 distinct TCP ports, each 1..65535."""

    ports: tuple[int, ...]

    def encode(self) -> bytes:
        return cbor.encode({"v": 1, "ports": list(self.ports)})

    @classmethod
    def decode(cls, raw: bytes) -> ReachRequest:
        if len(raw) > MAX_REACH_REQUEST:
            raise TooLarge("reach request too large")
        v = cbor.decode(raw)
        if not isinstance(v, dict) or set(v) != {"v", "ports"}:
            raise SchemaError("reach request: expected exactly v, ports")
        if v["v"] != 1:
            raise SchemaError("reach request: unsupported version", code="unsupported-version")
        ports = v["ports"]
        if (type(ports) is not list or not 1 <= len(ports) <= MAX_REACH_PORTS
                or any(type(p) is not int or not 1 <= p <= 65535 for p in ports)
                or len(set(ports)) != len(ports)):
            raise SchemaError(f"reach request: ports must be 1 to {MAX_REACH_PORTS} distinct "
                              "integers 1..65535")
        return cls(tuple(ports))


@dataclass(frozen=True)
class ReachResponse:
    """``{"v": 1, "open": [0|1, ...]}``: per port of the request, in its order, 1 if a TCP
    connection to it was accepted."""

    open: tuple[bool, ...]

    def encode(self) -> bytes:
        return cbor.encode({"v": 1, "open": [int(x) for x in self.open]})

    @classmethod
    def decode(cls, raw: bytes, ports: int) -> ReachResponse:
        """``ports``: how many the request asked about (the answer must have as many)."""
        if len(raw) > MAX_REACH_RESPONSE:
            raise TooLarge("reach response too large")
        v = cbor.decode(raw)
        if not isinstance(v, dict) or set(v) != {"v", "open"} or v["v"] != 1:
            raise SchemaError("reach response: expected exactly v = 1, open")
        got = v["open"]
        if (type(got) is not list or len(got) != ports
                or any(type(x) is not int or x not in (0, 1) for x in got)):
            raise SchemaError(f"reach response: open must be {ports} values, each 0 or 1")
        return cls(tuple(bool(x) for x in got))


__all__ = ["MAX_REACH_PORTS", "MAX_REACH_REQUEST", "MAX_REACH_RESPONSE", "REACH_PROTOCOL",
           "ReachRequest", "ReachResponse"]
