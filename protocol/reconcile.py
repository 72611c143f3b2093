"""Wire format of anti-entropy, ``/rill/reconcile/1.0.0`` (SPEC.md §11.4).

Sync (§11.3) asks a peer for what concerns one key; reconciliation makes two nodes agree on
*every* public object of a month that both keep, so that the copies a node carries for others
come back after a loss too.  One-frame exchanges, each on its own stream:

0. ``roots``: for each month of the window, the number of IDs and one digest (the usual
   answer: equal, nothing more to ask);
1. ``summary``: per bucket (the first byte of the object ID), how many IDs and a digest of them;
2. ``ids``: the IDs in the buckets whose summaries differ;
3. ``get``: the objects whose IDs the asker lacks.

Pure: the node (rill.node) does the I/O.  Every decoder is total: any input is either a value
or a :class:`~rill.protocol.errors.RemoteError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from . import cbor
from .errors import SchemaError, TooLarge
from .months import check_month
from .network import MAX_SHARD_BITS

RECONCILE_PROTOCOL = "/rill/reconcile/1.0.0"
#: Buckets of a summary: the first byte of an object ID.
BUCKETS = 256
#: Bytes of a bucket digest: the first 16 bytes of SHA-256 of the bucket's sorted IDs.
DIGEST_BYTES = 16
#: A request frame: a ``get`` of MAX_GET IDs is ~34 KiB.
MAX_RECONCILE_REQUEST = 64 * 1024
#: IDs in one ``get``.
MAX_GET = 1000
#: IDs in one ``ids`` response (4 MiB of IDs).
MAX_IDS = 131072
#: A response frame (the ``get`` response is like a sync page: about 4 MiB of objects).
MAX_RECONCILE_RESPONSE = 5 * 1024 * 1024
#: Months in one ``roots`` request.
MAX_ROOTS = 12
OPS = ("roots", "summary", "ids", "get")


def bucket_of(oid: bytes) -> int:
    return oid[0]


def digest(ids: Iterable[bytes]) -> bytes:
    """The digest of one bucket: SHA-256 over its IDs in ascending byte order, cut to 16 bytes.
    The digest of an empty bucket is that of no bytes."""
    h = hashlib.sha256()
    for oid in sorted(ids):
        h.update(oid)
    return h.digest()[:DIGEST_BYTES]


@dataclass(frozen=True)
class Summary:
    """Counts and digests of the 256 buckets of one month's public objects."""

    month: str
    counts: tuple[int, ...]
    digests: tuple[bytes, ...]

    @classmethod
    def of(cls, month: str, ids: Iterable[bytes]) -> Summary:
        buckets: list[list[bytes]] = [[] for _ in range(BUCKETS)]
        for oid in ids:
            buckets[bucket_of(oid)].append(oid)
        return cls(month, tuple(len(b) for b in buckets), tuple(digest(b) for b in buckets))

    @property
    def root(self) -> Root:
        """The whole set in one digest: SHA-256 over the 256 bucket digests in order."""
        return Root(sum(self.counts), hashlib.sha256(b"".join(self.digests)).digest()[
            :DIGEST_BYTES])

    def differing(self, other: Summary) -> list[int]:
        """Buckets in which ``other`` holds something else than this summary: empty ones of
        ``other`` never count (nothing to fetch there)."""
        return [b for b in range(BUCKETS) if other.counts[b] and
                (other.counts[b], other.digests[b]) != (self.counts[b], self.digests[b])]

    def encode(self) -> bytes:
        return cbor.encode({"v": 1, "month": self.month, "counts": list(self.counts),
                            "digests": list(self.digests)})

    @classmethod
    def decode(cls, raw: bytes) -> Summary:
        v = _map(raw, {"v", "month", "counts", "digests"}, MAX_RECONCILE_RESPONSE, "summary")
        counts, digests = v["counts"], v["digests"]
        if (type(counts) is not list or len(counts) != BUCKETS or
                any(type(c) is not int or not 0 <= c < 2**63 for c in counts)):
            raise SchemaError(f"summary: counts must be {BUCKETS} integers")
        if (type(digests) is not list or len(digests) != BUCKETS or
                any(type(d) is not bytes or len(d) != DIGEST_BYTES for d in digests)):
            raise SchemaError(f"summary: digests must be {BUCKETS} byte strings of "
                              f"{DIGEST_BYTES}")
        return cls(_month(v["month"]), tuple(counts), tuple(digests))


@dataclass(frozen=True)
class Root:
    """The number of IDs of a month's set and its root digest."""

    count: int
    digest: bytes


@dataclass(frozen=True)
class Roots:
    """``{"v": 1, "roots": [[count, digest]...]}``: one per month asked, in that order."""

    roots: tuple[Root, ...]

    def encode(self) -> bytes:
        return cbor.encode({"v": 1, "roots": [[r.count, r.digest] for r in self.roots]})

    @classmethod
    def decode(cls, raw: bytes, months: int) -> Roots:
        v = _map(raw, {"v", "roots"}, MAX_RECONCILE_RESPONSE, "roots")
        roots = v["roots"]
        if (type(roots) is not list or len(roots) != months or
                any(type(r) is not list or len(r) != 2 or type(r[0]) is not int or
                    not 0 <= r[0] < 2**63 or type(r[1]) is not bytes or
                    len(r[1]) != DIGEST_BYTES for r in roots)):
            raise SchemaError(f"roots: {months} pairs of a count and {DIGEST_BYTES} bytes")
        return cls(tuple(Root(c, d) for c, d in roots))


@dataclass(frozen=True)
class ReconcileRequest:
    """``{"v": 1, "op": "roots", "months": [M...]}``,
    ``{"v": 1, "op": "summary", "month": M}``,
    ``{"v": 1, "op": "ids", "month": M, "buckets": [b...]}`` or
    ``{"v": 1, "op": "get", "ids": [id...]}``; a summary or ids request scoped to one
    shard (SPEC §11.6) also has ``"shard": [bits, index]``, 1 <= bits <= 16."""

    op: str
    month: str | None = None
    buckets: tuple[int, ...] = ()
    ids: tuple[bytes, ...] = ()
    months: tuple[str, ...] = ()
    #: (bits, index): only the objects placed in that shard; None: all (SPEC §11.4)
    shard: tuple[int, int] | None = None

    def encode(self) -> bytes:
        v: dict[str, object] = {"v": 1, "op": self.op}
        if self.op == "roots":
            v["months"] = list(self.months)
        elif self.op != "get":
            v["month"] = self.month
        if self.op != "get" and self.shard is not None:
            v["shard"] = list(self.shard)
        if self.op == "ids":
            v["buckets"] = list(self.buckets)
        if self.op == "get":
            v["ids"] = list(self.ids)
        return cbor.encode(v)

    @classmethod
    def decode(cls, raw: bytes) -> ReconcileRequest:
        if len(raw) > MAX_RECONCILE_REQUEST:
            raise TooLarge("reconcile request too large")
        v = cbor.decode(raw)
        if not isinstance(v, dict) or v.get("op") not in OPS:
            raise SchemaError("reconcile request: op must be roots, summary, ids or get")
        op = v["op"]
        want = {"roots": {"v", "op", "months"}, "summary": {"v", "op", "month"},
                "ids": {"v", "op", "month", "buckets"}, "get": {"v", "op", "ids"}}[op]
        shard = None
        if op != "get" and "shard" in v:
            shard = _shard(v["shard"])
            want = want | {"shard"}
        if set(v) != want:
            raise SchemaError(f"reconcile request: {op} has exactly {', '.join(sorted(want))}")
        _version(v)
        if op == "roots":
            months = v["months"]
            if type(months) is not list or not 1 <= len(months) <= MAX_ROOTS:
                raise SchemaError(f"reconcile roots: 1..{MAX_ROOTS} months")
            ms = tuple(_month(x) for x in months)
            if len(set(ms)) != len(ms):
                raise SchemaError("reconcile roots: a month twice")
            return cls(op, months=ms, shard=shard)
        if op == "get":
            ids = v["ids"]
            if (type(ids) is not list or not 1 <= len(ids) <= MAX_GET or
                    any(type(i) is not bytes or len(i) != 32 for i in ids)):
                raise SchemaError(f"reconcile get: 1..{MAX_GET} IDs of 32 bytes")
            return cls(op, ids=tuple(ids))
        month = _month(v["month"])
        if op == "summary":
            return cls(op, month, shard=shard)
        buckets = v["buckets"]
        if (type(buckets) is not list or not 1 <= len(buckets) <= BUCKETS or
                any(type(b) is not int or not 0 <= b < BUCKETS for b in buckets) or
                buckets != sorted(set(buckets))):
            raise SchemaError("reconcile ids: 1..256 bucket numbers 0..255, ascending")
        return cls(op, month, buckets=tuple(buckets), shard=shard)


@dataclass(frozen=True)
class IdList:
    """``{"v": 1, "ids": [id...], "done": [b...]}``: the IDs of the buckets named in
    ``done``, each bucket complete; a bucket the server could not fit is left out."""

    ids: tuple[bytes, ...]
    done: tuple[int, ...]

    def encode(self) -> bytes:
        return cbor.encode({"v": 1, "ids": list(self.ids), "done": list(self.done)})

    @classmethod
    def decode(cls, raw: bytes) -> IdList:
        v = _map(raw, {"v", "ids", "done"}, MAX_RECONCILE_RESPONSE, "ids")
        ids, done = v["ids"], v["done"]
        if (type(ids) is not list or len(ids) > MAX_IDS or
                any(type(i) is not bytes or len(i) != 32 for i in ids)):
            raise SchemaError(f"ids: at most {MAX_IDS} IDs of 32 bytes")
        if (type(done) is not list or
                any(type(b) is not int or not 0 <= b < BUCKETS for b in done) or
                done != sorted(set(done))):
            raise SchemaError("ids: done must be ascending bucket numbers 0..255")
        if any(bucket_of(i) not in set(done) for i in ids):
            raise SchemaError("ids: an ID outside the buckets listed as done")
        return cls(tuple(ids), tuple(done))


@dataclass(frozen=True)
class Objects:
    """``{"v": 1, "objects": [envelope...]}``: the asked-for objects the server holds."""

    objects: tuple[bytes, ...]

    def encode(self) -> bytes:
        return cbor.encode({"v": 1, "objects": list(self.objects)})

    @classmethod
    def decode(cls, raw: bytes) -> Objects:
        v = _map(raw, {"v", "objects"}, MAX_RECONCILE_RESPONSE, "objects")
        objs = v["objects"]
        if (type(objs) is not list or len(objs) > MAX_GET or
                any(type(o) is not bytes for o in objs)):
            raise SchemaError(f"objects: at most {MAX_GET} byte strings")
        return cls(tuple(objs))


def _map(raw: bytes, fields: set[str], limit: int, what: str) -> dict[str, object]:
    if len(raw) > limit:
        raise TooLarge(f"{what} response too large")
    v = cbor.decode(raw, exact=False)  # up to 5 MiB: no reason scan
    if not isinstance(v, dict) or set(v) != fields:
        raise SchemaError(f"{what} response: expected exactly {', '.join(sorted(fields))}")
    _version(v)
    return v


def _version(v: dict[str, object]) -> None:
    if v["v"] != 1 or type(v["v"]) is not int:
        raise SchemaError("reconcile: unsupported version", code="unsupported-version")


def _shard(value: object) -> tuple[int, int]:
    if (type(value) is not list or len(value) != 2 or
            any(type(x) is not int for x in value) or
            not 1 <= value[0] <= MAX_SHARD_BITS or not 0 <= value[1] < 1 << value[0]):
        raise SchemaError(f"reconcile shard: [bits 1..{MAX_SHARD_BITS}, index < 2**bits]")
    return value[0], value[1]


def _month(value: object) -> str:
    return check_month(value, "reconcile month")


__all__ = ["BUCKETS", "DIGEST_BYTES", "MAX_GET", "MAX_IDS", "MAX_ROOTS", "RECONCILE_PROTOCOL",
           "IdList", "Objects", "ReconcileRequest", "Root", "Roots", "Summary", "bucket_of",
           "digest"]
