"""The ``reconcile`` and ``shard`` sections of tests/vectors/rill_v1.json (SPEC.md §10,
§11.4, §11.6), built with rill.protocol from the positive vectors of generate.py."""

from __future__ import annotations

import hashlib
from typing import Any

from rill.protocol import cbor
from rill.protocol.errors import RemoteError
from rill.protocol.months import month_start
from rill.protocol.network import TOPIC_OF
from rill.protocol.preview import preview, preview_object
from rill.protocol.reconcile import (
    MAX_GET,
    IdList,
    Objects,
    ReconcileRequest,
    Roots,
    Summary,
    digest,
)
from rill.protocol.shard import (
    BACKBONE_TAG,
    GROW_OVERLAP,
    ShardSchedule,
    backbone_shards,
    check_topic_any,
    node_topics,
    object_shards,
    object_topics,
    point,
    provider_key,
    rendezvous_provider,
    shard_of,
)

MONTH = "2026-10"
#: The public objects of the month in the reconciled set (plain claims travel sealed).
SET_OBJECTS = ("settlement", "sealed-claim-alice", "sealed-claim-bob", "sealed-claim-carol",
               "settlement-empty", "receipt", "equivocation", "settlement-anonymous",
               "sealed-claim-anonymous-disclosed")
#: First bytes of the made-up IDs: two in bucket 0, one in 255, and two more in the
#: buckets of the first two objects, so that some buckets hold several IDs.
MADE_UP_BUCKETS = (0x00, 0x00, 0xFF)
SHARD = (4, 8)
BITS = (1, 2, 3, 4, 8, 16)
SHARD_KEYS = ("donor", "alice", "bob", "carol", "alice2")
PROVIDERS = ((1, 0), (1, 1), (3, 6), (4, 8), (4, 13), (16, 57237))
#: A growth (SPEC §11.6 "Growing"): 3 bits before 2026-11, 4 from its first instant.
GROWTH = (3, "2026-11", 4)
GLOBAL_TOPICS = ("rill/1/equivocations", "rill/1/catalogue")


def made_up_ids(objects: list[bytes]) -> list[bytes]:
    firsts = (*MADE_UP_BUCKETS, objects[0][0], objects[1][0])
    return [bytes([b]) + hashlib.sha256(b"rill test vector made-up id %d" % n).digest()[1:]
            for n, b in enumerate(firsts)]


def _summary_json(s: Summary, ids: list[bytes]) -> dict[str, Any]:
    return {
        "count": s.root.count,
        "root": s.root.digest.hex(),
        "buckets": [{"bucket": b, "count": s.counts[b], "digest": s.digests[b].hex(),
                     "ids": [i.hex() for i in sorted(i for i in ids if i[0] == b)]}
                    for b in range(256) if s.counts[b]],
    }


def _exchange(name: str, req: ReconcileRequest, resp: bytes, note: str) -> dict[str, Any]:
    raw = req.encode()
    assert ReconcileRequest.decode(raw) == req
    return {"name": name, "note": note, "request": raw.hex(), "response": resp.hex()}


def reconcile_section(pos: list[dict[str, Any]]) -> dict[str, Any]:
    by_name = {v["name"]: v for v in pos}
    objects = [bytes.fromhex(by_name[n]["bytes"]) for n in SET_OBJECTS]
    oids = [hashlib.sha256(o).digest() for o in objects]
    extra = made_up_ids(oids)
    ids = oids + extra
    full = Summary.of(MONTH, ids)
    placed = [oid for oid, raw in zip(oids, objects, strict=True)
              if SHARD[1] in object_shards(preview_object(raw), SHARD[0])]
    part = Summary.of(MONTH, placed)
    empty = Summary.of("2026-09", [])
    ask = sorted({i[0] for i in ids} | {0x42})  # and one bucket the server has nothing in
    ask_part = sorted({i[0] for i in placed} | {0x42})
    get_ids = (oids[0], extra[0], oids[5])  # the second is of no object: left out
    have = dict(zip(oids, objects, strict=True))
    ex = [
        _exchange("roots", ReconcileRequest("roots", months=(MONTH, "2026-09")),
                  Roots((full.root, empty.root)).encode(),
                  "the roots of the set and of an empty month"),
        _exchange("roots-shard", ReconcileRequest("roots", months=(MONTH, "2026-09"),
                                                  shard=SHARD),
                  Roots((part.root, empty.root)).encode(), "the same, scoped to shard 8 at 4 bits"),
        _exchange("summary", ReconcileRequest("summary", MONTH), full.encode(),
                  "the 256 counts and digests of the set"),
        _exchange("summary-shard", ReconcileRequest("summary", MONTH, shard=SHARD),
                  part.encode(), "those of the objects of the set placed in shard 8 at 4 bits"),
        _exchange("ids", ReconcileRequest("ids", MONTH, buckets=tuple(ask)),
                  IdList(tuple(sorted(ids)), tuple(ask)).encode(),
                  "every non-empty bucket and bucket 0x42 (empty): all listed, ascending"),
        _exchange("ids-shard", ReconcileRequest("ids", MONTH, buckets=tuple(ask_part),
                                                shard=SHARD),
                  IdList(tuple(sorted(placed)), tuple(ask_part)).encode(),
                  "the same, scoped to shard 8 at 4 bits"),
        _exchange("get", ReconcileRequest("get", ids=get_ids),
                  Objects(tuple(have[i] for i in get_ids if i in have)).encode(),
                  "two objects held and one made-up ID (of no object), in the order asked"),
    ]
    return {
        "month": MONTH,
        "objects": list(SET_OBJECTS),
        "made_up_ids": [i.hex() for i in extra],
        "empty_digest": digest([]).hex(),
        "set": _summary_json(full, ids),
        "shard": list(SHARD),
        "shard_set": {"objects": [n for n, oid in zip(SET_OBJECTS, oids, strict=True)
                                  if oid in placed], **_summary_json(part, placed)},
        "empty_month": {"month": "2026-09", "count": 0, "root": empty.root.digest.hex()},
        "exchanges": ex,
        "negative": reconcile_negatives(),
        "negative_responses": response_negatives(sorted(ids)),
    }


def reconcile_negatives() -> list[dict[str, Any]]:
    one = b"\x01" * 32
    cases: list[tuple[str, Any, str]] = [
        ("roots-month-twice", {"v": 1, "op": "roots", "months": [MONTH, MONTH]}, "schema"),
        ("roots-13-months", {"v": 1, "op": "roots",
                             "months": [f"2026-{k:02d}" for k in range(1, 13)] + ["2025-12"]},
         "schema"),
        ("roots-no-month", {"v": 1, "op": "roots", "months": []}, "schema"),
        ("ids-buckets-descending", {"v": 1, "op": "ids", "month": MONTH, "buckets": [3, 2]},
         "schema"),
        ("ids-bucket-twice", {"v": 1, "op": "ids", "month": MONTH, "buckets": [2, 2]},
         "schema"),
        ("ids-bucket-256", {"v": 1, "op": "ids", "month": MONTH, "buckets": [256]}, "schema"),
        ("ids-no-bucket", {"v": 1, "op": "ids", "month": MONTH, "buckets": []}, "schema"),
        ("get-1001-ids", {"v": 1, "op": "get", "ids": [one] * (MAX_GET + 1)}, "schema"),
        ("get-no-id", {"v": 1, "op": "get", "ids": []}, "schema"),
        ("get-31-byte-id", {"v": 1, "op": "get", "ids": [one[:31]]}, "schema"),
        ("get-with-shard", {"v": 1, "op": "get", "ids": [one], "shard": [4, 8]}, "schema"),
        ("shard-0-0", {"v": 1, "op": "summary", "month": MONTH, "shard": [0, 0]}, "schema"),
        ("shard-17-0", {"v": 1, "op": "summary", "month": MONTH, "shard": [17, 0]}, "schema"),
        ("shard-4-16", {"v": 1, "op": "summary", "month": MONTH, "shard": [4, 16]}, "schema"),
        ("shard-one-number", {"v": 1, "op": "summary", "month": MONTH, "shard": [4]},
         "schema"),
        ("unknown-field", {"v": 1, "op": "summary", "month": MONTH, "extra": 1}, "schema"),
        ("summary-without-month", {"v": 1, "op": "summary"}, "schema"),
        ("unknown-op", {"v": 1, "op": "sum", "month": MONTH}, "schema"),
        ("bad-month", {"v": 1, "op": "summary", "month": "2026-13"}, "bad-month"),
        ("version-2", {"v": 2, "op": "summary", "month": MONTH}, "unsupported-version"),
        # two faults: the order of the checks (SPEC §11.4 "Refusals")
        ("version-2-and-unknown-field", {"v": 2, "op": "summary", "month": MONTH, "x": 1},
         "schema"),
        ("version-2-and-bad-month", {"v": 2, "op": "summary", "month": "2026-13"},
         "unsupported-version"),
        ("bad-shard-and-bad-month", {"v": 1, "op": "summary", "month": "2026-13",
                                     "shard": [4, 16]}, "schema"),
        ("roots-13-months-one-bad", {"v": 1, "op": "roots",
                                     "months": [f"2026-{k:02d}" for k in range(1, 14)]},
         "schema"),
        ("roots-bad-month-twice", {"v": 1, "op": "roots", "months": ["2026-13", "2026-13"]},
         "bad-month"),
        ("ids-bad-month-and-no-bucket", {"v": 1, "op": "ids", "month": "2026-13",
                                         "buckets": []}, "bad-month"),
    ]
    out = [{"name": n, "bytes": cbor.encode(v).hex(), "reason": r} for n, v, r in cases]
    # not canonical CBOR (§3): keys out of order, then a key twice
    def pairs(*kv: object) -> bytes:
        return bytes([0xA0 | len(kv) // 2]) + b"".join(cbor.encode(x) for x in kv)

    out.append({"name": "keys-out-of-order", "reason": "non-canonical",
                "bytes": pairs("v", 1, "month", MONTH, "op", "summary").hex()})
    out.append({"name": "key-twice", "reason": "duplicate-key",
                "bytes": pairs("v", 1, "v", 1, "op", "summary", "month", MONTH).hex()})
    for v in out:
        try:
            ReconcileRequest.decode(bytes.fromhex(v["bytes"]))
        except RemoteError as exc:
            assert exc.code == v["reason"], (v["name"], exc.code)
        else:
            raise AssertionError(f"{v['name']} decodes")
    return out


def response_negatives(ids: list[bytes]) -> list[dict[str, Any]]:
    """Responses a client refuses (and ends the exchange): ``asked`` is the op asked and,
    for ``roots``, the number of months asked."""
    d16 = digest([])
    counts, digests = [0] * 256, [d16] * 256
    cases: list[tuple[str, str, Any, str]] = [
        ("roots-one-pair-for-two-months", "roots 2", {"v": 1, "roots": [[0, d16]]}, "schema"),
        ("roots-15-byte-root", "roots 1", {"v": 1, "roots": [[0, d16[:15]]]}, "schema"),
        ("summary-255-counts", "summary",
         {"v": 1, "month": MONTH, "counts": counts[:255], "digests": digests}, "schema"),
        ("summary-bad-month", "summary",
         {"v": 1, "month": "2026-13", "counts": counts, "digests": digests}, "bad-month"),
        ("summary-version-2", "summary",
         {"v": 2, "month": MONTH, "counts": counts, "digests": digests},
         "unsupported-version"),
        ("ids-id-outside-done", "ids",
         {"v": 1, "ids": [ids[0], ids[-1]], "done": [ids[0][0]]}, "schema"),
        ("ids-done-descending", "ids",
         {"v": 1, "ids": [], "done": [2, 1]}, "schema"),
        ("ids-31-byte-id", "ids", {"v": 1, "ids": [ids[0][:31]], "done": [ids[0][0]]},
         "schema"),
        ("objects-not-bytes", "get", {"v": 1, "objects": [1]}, "schema"),
        ("objects-unknown-field", "get", {"v": 1, "objects": [], "more": 0}, "schema"),
    ]
    assert ids[0][0] != ids[-1][0]
    decoders = {"roots": Roots.decode, "summary": Summary.decode, "ids": IdList.decode,
                "get": Objects.decode}
    out = []
    for name, asked, value, reason in cases:
        raw = cbor.encode(value)
        op, *n = asked.split()
        try:
            if n:
                Roots.decode(raw, int(n[0]))
            else:
                decoders[op](raw)  # type: ignore[operator]
        except RemoteError as exc:
            assert exc.code == reason, (name, exc.code)
        else:
            raise AssertionError(f"{name} decodes")
        out.append({"name": name, "asked": asked, "bytes": raw.hex(), "reason": reason})
    return out


def shard_section(pos: list[dict[str, Any]], pubs: dict[str, bytes]) -> dict[str, Any]:
    keys_out = []
    for name in SHARD_KEYS:
        k = pubs[name]
        keys_out.append({
            "name": name,
            "key": k.hex(),
            "point": point(k).hex(),
            "shards": {str(b): shard_of(k, b) for b in BITS},
            "backbone_hashes": [hashlib.sha256(BACKBONE_TAG + k + bytes([j])).hexdigest()
                                for j in range(2)],
            "backbone_4": list(backbone_shards(k, 4)),
            "topics_4": list(node_topics(k, 4)),
            # §11.1: the node announces itself under the rendezvous key up to these bits
            "rendezvous_up_to_bits": max(b for b in range(17) if rendezvous_provider(k, b)),
        })
    objs = []
    for v in pos:
        raw = bytes.fromhex(v["bytes"])
        if v["type"] not in ("settlement", "sealed-claim", "receipt", "key", "equivocation",
                             "listing"):
            continue  # plain claims travel sealed (§11.2)
        p = (preview(TOPIC_OF["listing"], raw) if v["type"] == "listing" else
             preview_object(raw))
        objs.append({"name": v["name"], "type": v["type"],
                     "shards_4": sorted(object_shards(p, 4)) if v["type"] != "listing" else [],
                     "topics_4": list(object_topics(p, 4))})
    return {
        "backbone": 2,
        "keys": keys_out,
        "objects": objs,
        "provider_keys": [{"bits": b, "index": i, "key": provider_key(b, i).hex()}
                          for b, i in PROVIDERS],
        "growth": growth_section(pos, pubs["donor"]),
    }


def _shard_topics_first(topics: list[str]) -> list[str]:
    """Shard topics by bits, then index; then the two global topics."""
    shard = sorted({t for t in topics if t not in GLOBAL_TOPICS},
                   key=lambda t: tuple(int(x) for x in t[len("rill/1/b"):].split("/s")))
    assert set(topics) == {*shard, *GLOBAL_TOPICS}
    return [*shard, *GLOBAL_TOPICS]


def growth_section(pos: list[dict[str, Any]], donor: bytes) -> dict[str, Any]:
    """A node of key ``donor`` and vector ``settlement`` across a growth from 3 to 4 bits:
    at instants on each side of B - O, B and B + O, the bits it publishes at, the bits
    whose topics it joins and accepts, its topics, the settlement's topics, and the
    verdict of the topic rule on a few topics."""
    before, month, after = GROWTH
    sched = ShardSchedule(before, ((month, after),))
    b0, o = month_start(month), GROW_OVERLAP
    raw = bytes.fromhex(next(v["bytes"] for v in pos if v["name"] == "settlement"))
    p = preview_object(raw)
    candidates = [*_shard_topics_first([*object_topics(p, before), *object_topics(p, after),
                                        shard_topic_of(before, 0), shard_topic_of(after, 0),
                                        *GLOBAL_TOPICS])[:-2],
                  "rill/1/equivocations", "rill/1/settlements"]
    rows = []
    for t in (b0 - o - 1, b0 - o, b0 - 1, b0, b0 + o - 1, b0 + o):
        accepted = sched.accepted(t)
        checks = []
        for topic in candidates:
            try:
                check_topic_any(preview(topic, raw), topic, accepted)
                verdict = "accept"
            except RemoteError as exc:
                verdict = exc.code
            checks.append({"topic": topic, "verdict": verdict})
        rows.append({"t": t, "from_boundary": t - b0, "bits": sched.at(t),
                     "accepted_bits": list(accepted),
                     "topics": _shard_topics_first(list(sched.topics(donor, t))),
                     "publish": list(object_topics(p, sched.at(t))),
                     "checks": checks})
    return {"bits": before, "month": month, "to_bits": after, "boundary": b0, "overlap": o,
            "key": "donor", "object": "settlement", "rows": rows}


def shard_topic_of(bits: int, index: int) -> str:
    return f"rill/1/b{bits}/s{index}"


def reach_section() -> dict[str, Any]:
    """The reachability probe (SPEC §11.1, /rill/reach/1.0.0): requests and answers as
    canonical CBOR, and requests a server refuses (it resets the stream)."""
    from rill.protocol import cbor
    from rill.protocol.reach import ReachRequest, ReachResponse

    exchanges = []
    for ports, opened in (((4741,), (True,)), ((4741, 443), (False, False)),
                          ((1, 65535, 8080, 4001), (True, False, True, False))):
        exchanges.append({"ports": list(ports), "open": [int(o) for o in opened],
                          "request": ReachRequest(ports).encode().hex(),
                          "response": ReachResponse(opened).encode().hex()})
    refused = [
        ("no ports", {"v": 1, "ports": []}),
        ("five ports", {"v": 1, "ports": [1, 2, 3, 4, 5]}),
        ("port 0", {"v": 1, "ports": [0]}),
        ("port 65536", {"v": 1, "ports": [65536]}),
        ("a port twice", {"v": 1, "ports": [4741, 4741]}),
        ("a port as text", {"v": 1, "ports": ["4741"]}),
        ("an address to dial", {"v": 1, "ports": [4741], "ip": "192.0.2.1"}),
        ("version 2", {"v": 2, "ports": [4741]}),
    ]
    return {"exchanges": exchanges,
            "refused": [{"name": n, "request": cbor.encode(v).hex()} for n, v in refused]
            + [{"name": "not canonical (port 80 as a 2-byte uint, 0x19 0x00 0x50)",
                "request": "a2617601" "65706f727473" "81" "190050"}]}
