"""The ``reconcile`` and ``shard`` sections of tests/vectors/rill_v1.json recomputed from
SPEC.md's definitions alone (§3, §11.4, §11.6), with hashlib and cbor2 and no import of
rill: what another implementation would write, so it shows SPEC is enough."""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest

HERE = Path(__file__).parent
DATA = json.loads((HERE / "vectors" / "rill_v1.json").read_text())
POS = {v["name"]: bytes.fromhex(v["bytes"]) for v in DATA["positive"]}
REC = DATA["reconcile"]
SH = DATA["shard"]


def enc(v: Any) -> bytes:
    return cbor2.dumps(v, canonical=True)  # §3: length-first map keys, shortest heads


def h16(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()[:16]


def summary(ids: list[bytes]) -> tuple[list[int], list[bytes]]:
    """§11.4 "Buckets": an ID's bucket is its first byte; a bucket's digest is the first
    16 bytes of SHA-256 over its IDs in ascending order."""
    buckets: list[list[bytes]] = [[] for _ in range(256)]
    for i in ids:
        buckets[i[0]].append(i)
    return [len(b) for b in buckets], [h16(b"".join(sorted(b))) for b in buckets]


def root(digests: list[bytes]) -> bytes:
    return h16(b"".join(digests))


def point(key: bytes) -> bytes:
    return hashlib.sha256(b"rill/1/shard" + key).digest()


def first_bits(d: bytes, b: int) -> int:
    return int.from_bytes(d, "big") >> (256 - b)


def backbone(key: bytes, b: int) -> list[int]:
    return [first_bits(hashlib.sha256(b"rill/1/backbone" + key + bytes([j])).digest(), b)
            for j in range(2)]


def placement(raw: bytes) -> list[bytes]:
    """§11.6 "Placement", read from the envelope (§4.1) and the bodies of §5."""
    env = cbor2.loads(raw)
    t, body, signer = env["t"], env["body"], env["signer"]
    if t == "settlement":
        return [signer, *(line["creator"] for line in body["lines"])]
    if t in ("claim", "sealed-claim"):
        return [body["creator"]]
    if t == "receipt":
        return [signer, body["donor"]]
    if t == "equivocation":
        return [cbor2.loads(body["a"])["signer"]]
    if t == "key":
        return [signer]
    return []  # a listing: the global catalogue topic


def set_ids() -> tuple[list[bytes], list[bytes]]:
    objs = [hashlib.sha256(POS[n]).digest() for n in REC["objects"]]  # §4.3: the ID
    return objs, objs + [bytes.fromhex(i) for i in REC["made_up_ids"]]


def placed_ids() -> list[bytes]:
    b, i = REC["shard"]
    return [hashlib.sha256(POS[n]).digest() for n in REC["objects"]
            if any(first_bits(point(k), b) == i for k in placement(POS[n]))]


def check_summary(section: dict[str, Any], ids: list[bytes]) -> None:
    counts, digests = summary(ids)
    assert section["count"] == len(ids)
    assert section["root"] == root(digests).hex()
    assert [(x["bucket"], x["count"], x["digest"], x["ids"]) for x in section["buckets"]] == [
        (b, counts[b], digests[b].hex(), sorted(i.hex() for i in ids if i[0] == b))
        for b in range(256) if counts[b]]


def test_the_set_its_buckets_and_root() -> None:
    _, ids = set_ids()
    assert REC["empty_digest"] == h16(b"").hex()
    check_summary(REC["set"], ids)
    assert any(x["count"] > 1 for x in REC["set"]["buckets"])
    assert REC["empty_month"]["root"] == root([h16(b"")] * 256).hex()


def test_the_set_of_one_shard() -> None:
    placed = placed_ids()
    assert 0 < len(placed) < len(REC["objects"])
    assert REC["shard_set"]["objects"] == [
        n for n in REC["objects"] if hashlib.sha256(POS[n]).digest() in placed]
    check_summary(REC["shard_set"], placed)


def test_requests_and_responses_byte_for_byte() -> None:
    month, shard = REC["month"], REC["shard"]
    objs, ids = set_ids()
    placed = placed_ids()
    empty = [0, root([h16(b"")] * 256)]
    ex = {e["name"]: e for e in REC["exchanges"]}
    for name, scope, scoped in (("", None, ids), ("-shard", shard, placed)):
        extra = {} if scope is None else {"shard": scope}
        counts, digests = summary(scoped)
        req = {"v": 1, "op": "roots", "months": [month, "2026-09"], **extra}
        assert ex["roots" + name]["request"] == enc(req).hex()
        assert ex["roots" + name]["response"] == enc(
            {"v": 1, "roots": [[len(scoped), root(digests)], empty]}).hex()
        req = {"v": 1, "op": "summary", "month": month, **extra}
        assert ex["summary" + name]["request"] == enc(req).hex()
        assert ex["summary" + name]["response"] == enc(
            {"v": 1, "month": month, "counts": counts, "digests": digests}).hex()
        buckets = sorted({i[0] for i in scoped} | {0x42})
        req = {"v": 1, "op": "ids", "month": month, "buckets": buckets, **extra}
        assert ex["ids" + name]["request"] == enc(req).hex()
        resp = cbor2.loads(bytes.fromhex(ex["ids" + name]["response"]))
        assert resp == {"v": 1, "ids": sorted(scoped), "done": buckets}  # any order is fine
        assert ex["ids" + name]["response"] == enc(resp).hex()
    made_up = bytes.fromhex(REC["made_up_ids"][0])
    asked = [objs[0], made_up, objs[5]]
    assert ex["get"]["request"] == enc({"v": 1, "op": "get", "ids": asked}).hex()
    held = {hashlib.sha256(POS[n]).digest(): POS[n] for n in REC["objects"]}
    resp = cbor2.loads(bytes.fromhex(ex["get"]["response"]))
    assert sorted(resp["objects"]) == sorted(held[i] for i in asked if i in held)
    assert set(resp) == {"v", "objects"} and resp["v"] == 1


def refusal(raw: bytes) -> str | None:
    """The reason a server gives for a request (§3.2 decoding, then §11.4 and §11.6), or
    None if it is valid. Of §3.2 it checks only what the vectors exercise."""
    if len(raw) > 65536:
        return "too-large"
    try:
        v = cbor2.loads(raw, allow_duplicate_keys=False)
    except Exception:
        try:
            cbor2.loads(raw)
        except Exception:
            return "malformed"
        return "duplicate-key"
    if enc(v) != raw:
        return "non-canonical"
    fields = {"roots": {"v", "op", "months"}, "summary": {"v", "op", "month"},
              "ids": {"v", "op", "month", "buckets"}, "get": {"v", "op", "ids"}}
    if not isinstance(v, dict) or v.get("op") not in fields:
        return "schema"
    want = fields[v["op"]] | ({"shard"} if v["op"] != "get" and "shard" in v else set())
    if set(v) != want:
        return "schema"
    if "shard" in v:
        s = v["shard"]
        if (type(s) is not list or len(s) != 2 or any(type(x) is not int for x in s) or
                not 1 <= s[0] <= 16 or not 0 <= s[1] < 2 ** s[0]):
            return "schema"
    if v["v"] != 1 or type(v["v"]) is not int:
        return "unsupported-version"
    months = v.get("months", [v["month"]] if "month" in v else [])
    if v["op"] == "roots" and (type(months) is not list or not 1 <= len(months) <= 12):
        return "schema"
    if any(type(x) is not str or not re.fullmatch(r"[2-9][0-9]{3}-(0[1-9]|1[0-2])", x)
           for x in months):
        return "bad-month"
    if len(set(months)) != len(months):
        return "schema"
    if v["op"] == "ids" and (type(v["buckets"]) is not list or not v["buckets"] or
                             any(type(b) is not int or not 0 <= b < 256 for b in v["buckets"])
                             or v["buckets"] != sorted(set(v["buckets"]))):
        return "schema"
    if v["op"] == "get" and (type(v["ids"]) is not list or not 1 <= len(v["ids"]) <= 1000 or
                             any(type(i) is not bytes or len(i) != 32 for i in v["ids"])):
        return "schema"
    return None


@pytest.mark.parametrize("vec", REC["negative"], ids=lambda v: v["name"])
def test_negative_requests_refused_with_spec_reason(vec: dict[str, Any]) -> None:
    assert refusal(bytes.fromhex(vec["bytes"])) == vec["reason"]


def test_the_exchanges_requests_are_valid() -> None:
    for e in REC["exchanges"]:
        assert refusal(bytes.fromhex(e["request"])) is None, e["name"]


def test_keys_shards_backbone_topics() -> None:
    assert SH["backbone"] == 2
    for k in SH["keys"]:
        key = bytes.fromhex(k["key"])
        assert k["point"] == point(key).hex()
        assert k["shards"] == {str(b): first_bits(point(key), b) for b in (1, 2, 3, 4, 8, 16)}
        hashes = [hashlib.sha256(b"rill/1/backbone" + key + bytes([j])).hexdigest()
                  for j in range(2)]
        assert k["backbone_hashes"] == hashes
        assert k["backbone_4"] == backbone(key, 4)
        # §11.1: a rendezvous provider at b when its point starts with max(0, b - 2) zeros
        zeros = len(format(int.from_bytes(point(key), "big"), "0256b").split("1")[0])
        assert k["rendezvous_up_to_bits"] == min(16, zeros + 2)
        mine = sorted({first_bits(point(key), 4), *backbone(key, 4)})
        assert k["topics_4"] == [f"rill/1/b4/s{i}" for i in mine] + [
            "rill/1/equivocations", "rill/1/catalogue"]


def test_objects_shards_and_topics() -> None:
    assert {o["type"] for o in SH["objects"]} >= {"settlement", "sealed-claim", "receipt",
                                                  "key", "equivocation", "listing"}
    for o in SH["objects"]:
        shards = sorted({first_bits(point(k), 4) for k in placement(POS[o["name"]])})
        assert o["shards_4"] == shards, o["name"]
        topics = {"equivocation": ["rill/1/equivocations"], "listing": ["rill/1/catalogue"]}
        assert o["topics_4"] == topics.get(o["type"], [f"rill/1/b4/s{i}" for i in shards])


def test_provider_keys() -> None:
    for p in SH["provider_keys"]:
        d = hashlib.sha256(b"rill/1/shard-providers/" + bytes([p["bits"]]) +
                           p["index"].to_bytes(4, "big")).digest()
        assert p["key"] == (b"\x12\x20" + d).hex()


def response_refusal(raw: bytes, asked: str) -> str | None:
    """Why a client refuses a response (§11.4's table), or None."""
    v = cbor2.loads(raw)
    op, *n = asked.split()
    fields = {"roots": {"v", "roots"}, "summary": {"v", "month", "counts", "digests"},
              "ids": {"v", "ids", "done"}, "get": {"v", "objects"}}[op]
    if not isinstance(v, dict) or set(v) != fields:
        return "schema"
    if v["v"] != 1 or type(v["v"]) is not int:
        return "unsupported-version"

    def uints(x: Any, count: int | None = None) -> bool:
        return (type(x) is list and (count is None or len(x) == count) and
                all(type(c) is int and c >= 0 for c in x))

    def bstrs(x: Any, size: int | None, count: int | None = None) -> bool:
        return (type(x) is list and (count is None or len(x) == count) and
                all(type(c) is bytes and (size is None or len(c) == size) for c in x))

    if op == "roots":
        r = v["roots"]
        ok = (type(r) is list and len(r) == int(n[0]) and
              all(type(p) is list and len(p) == 2 and uints(p[:1]) and bstrs(p[1:], 16)
                  for p in r))
        return None if ok else "schema"
    if op == "summary":
        if not uints(v["counts"], 256) or not bstrs(v["digests"], 16, 256):
            return "schema"
        ok = type(v["month"]) is str and re.fullmatch(r"[2-9][0-9]{3}-(0[1-9]|1[0-2])",
                                                       v["month"])
        return None if ok else "bad-month"
    if op == "ids":
        done = v["done"]
        if (not bstrs(v["ids"], 32) or not uints(done) or any(b > 255 for b in done) or
                done != sorted(set(done)) or any(i[0] not in done for i in v["ids"])):
            return "schema"
        return None
    return None if bstrs(v["objects"], None) else "schema"


@pytest.mark.parametrize("vec", REC["negative_responses"], ids=lambda v: v["name"])
def test_negative_responses_refused_with_spec_reason(vec: dict[str, Any]) -> None:
    assert response_refusal(bytes.fromhex(vec["bytes"]), vec["asked"]) == vec["reason"]


def test_the_exchanges_responses_are_valid() -> None:
    for e in REC["exchanges"]:
        req = cbor2.loads(bytes.fromhex(e["request"]))
        asked = req["op"] + (f" {len(req['months'])}" if req["op"] == "roots" else "")
        assert response_refusal(bytes.fromhex(e["response"]), asked) is None, e["name"]


def shard_topics(key: bytes, b: int) -> list[str]:
    """§11.6 "Membership": the topics of a node's shards at ``b`` bits, ascending."""
    return [f"rill/1/b{b}/s{i}" for i in sorted({first_bits(point(key), b), *backbone(key, b)})]


def test_growth_rows() -> None:
    """§11.6 "Growing": the table's rows on each side of B - O, B and B + O, and the topic
    rule (a settlement's shard topics at the bits of the fourth column, nothing else)."""
    g = SH["growth"]
    b, month, b1, o = g["bits"], g["month"], g["to_bits"], g["overlap"]
    assert (b1, o) == (b + 1, 3600)
    boundary = calendar.timegm(time.strptime(month + "-01", "%Y-%m-%d"))  # B, 00:00:00 UTC
    assert g["boundary"] == boundary
    key = bytes.fromhex(next(k["key"] for k in SH["keys"] if k["name"] == g["key"]))
    raw = POS[g["object"]]

    def topics_of(bits: int) -> list[str]:  # §11.6 "Topics": ascending shard order
        return [f"rill/1/b{bits}/s{i}"
                for i in sorted({first_bits(point(k), bits) for k in placement(raw)})]

    offsets = [r["from_boundary"] for r in g["rows"]]
    assert offsets == [-o - 1, -o, -1, 0, o - 1, o]
    for r in g["rows"]:
        t = r["t"]
        assert t == boundary + r["from_boundary"]
        publish = b if t < boundary else b1
        accepted = [b] if t < boundary - o else [b1] if t >= boundary + o else [b, b1]
        assert (r["bits"], r["accepted_bits"]) == (publish, accepted), t
        assert r["topics"] == [x for bits in accepted for x in shard_topics(key, bits)] + [
            "rill/1/equivocations", "rill/1/catalogue"]
        assert r["publish"] == topics_of(publish)
        ok = {x for bits in accepted for x in topics_of(bits)}
        assert len(r["checks"]) > len(ok)
        for c in r["checks"]:
            assert c["verdict"] == ("accept" if c["topic"] in ok else "wrong-topic"), (t, c)


def reach_refusal(raw: bytes) -> bool:
    """SPEC §11.1 "Reachability probe", read alone: whether a server refuses the request."""
    try:
        v = cbor2.loads(raw)
    except Exception:
        return True
    if enc(v) != raw or not isinstance(v, dict) or set(v) != {"v", "ports"} or v["v"] != 1:
        return True
    ports = v["ports"]
    return (not isinstance(ports, list) or not 1 <= len(ports) <= 4
            or any(type(p) is not int or not 1 <= p <= 65535 for p in ports)
            or len(set(ports)) != len(ports))


def test_reach_requests_and_answers_from_spec() -> None:
    for ex in DATA["reach"]["exchanges"]:
        assert enc({"v": 1, "ports": ex["ports"]}).hex() == ex["request"]
        assert enc({"v": 1, "open": ex["open"]}).hex() == ex["response"]
        assert not reach_refusal(bytes.fromhex(ex["request"]))
    for bad in DATA["reach"]["refused"]:
        assert reach_refusal(bytes.fromhex(bad["request"])), bad["name"]


def test_sync_requests_and_answers_from_spec() -> None:
    """§11.3: a request is {v, subject, after, limit} and ``ids: 1`` when IDs are wanted;
    the answer has ``objects`` (the envelopes) or, asked by IDs, ``ids`` (their SHA-256)."""
    sec = DATA["sync"]
    subject = bytes.fromhex(sec["subject"])
    page = [POS[n] for n in sec["objects"]]
    for ex in sec["exchanges"]:
        req = cbor2.loads(bytes.fromhex(ex["request"]))
        assert req["subject"] == subject and set(req) <= {"v", "subject", "after", "limit",
                                                          "ids"}
        by_ids = req.get("ids") == 1
        want = {"v": 1, "subject": subject, "after": req["after"], "limit": req["limit"]}
        if by_ids:
            want["ids"] = 1
        assert enc(want).hex() == ex["request"]
        items = ([hashlib.sha256(o).digest() for o in page] if by_ids
                 else page)[req["after"]:req["after"] + req["limit"]]
        more = int(req["after"] + req["limit"] < len(page))
        answer = {"v": 1, "ids" if by_ids else "objects": items,
                  "next": req["after"] + len(items), "more": more}
        assert enc(answer).hex() == ex["response"], ex["name"]
