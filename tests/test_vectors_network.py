"""rill.protocol against the ``reconcile`` and ``shard`` sections of
tests/vectors/rill_v1.json (SPEC §10), and those against SPEC §11.6's Examples paragraph."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pytest
from helpers import load_vectors

from rill.node.reconciling import bucket_ids, month_ids, objects_by_id
from rill.node.sharding import Placements
from rill.protocol.errors import RemoteError
from rill.protocol.preview import preview_object
from rill.protocol.reconcile import IdList, Objects, ReconcileRequest, Roots, Summary, digest
from rill.protocol.shard import (
    ShardSchedule,
    backbone_shards,
    node_topics,
    object_shards,
    object_topics,
    point,
    provider_key,
    rendezvous_provider,
    shard_of,
)
from rill.wallet.wallet import Wallet

DATA = load_vectors()
POS = {v["name"]: bytes.fromhex(v["bytes"]) for v in DATA["positive"]}
REC = DATA["reconcile"]
SH = DATA["shard"]
SPEC = (Path(__file__).parents[1] / "SPEC.md").read_text()


def _ids(names: list[str]) -> list[bytes]:
    return [hashlib.sha256(POS[n]).digest() for n in names]


def _check(section: dict[str, Any], s: Summary) -> None:
    assert (section["count"], section["root"]) == (s.root.count, s.root.digest.hex())
    for b in section["buckets"]:
        assert (s.counts[b["bucket"]], s.digests[b["bucket"]].hex()) == (b["count"],
                                                                          b["digest"])
    assert sum(1 for c in s.counts if c) == len(section["buckets"])


def test_summaries_and_roots() -> None:
    ids = _ids(REC["objects"]) + [bytes.fromhex(i) for i in REC["made_up_ids"]]
    assert REC["empty_digest"] == digest([]).hex()
    _check(REC["set"], Summary.of(REC["month"], ids))
    bits, index = REC["shard"]
    placed = [hashlib.sha256(POS[n]).digest() for n in REC["objects"]
              if index in object_shards(preview_object(POS[n]), bits)]
    assert _ids(REC["shard_set"]["objects"]) == placed
    _check(REC["shard_set"], Summary.of(REC["month"], placed))
    assert REC["empty_month"]["root"] == Summary.of("2026-09", []).root.digest.hex()


def test_exchanges_decode_and_reencode() -> None:
    seen = set()
    for e in REC["exchanges"]:
        raw = bytes.fromhex(e["request"])
        req = ReconcileRequest.decode(raw)
        assert req.encode() == raw
        seen.add((req.op, req.shard is not None))
        resp = bytes.fromhex(e["response"])
        if req.op == "roots":
            assert Roots.decode(resp, len(req.months)).encode() == resp
        elif req.op == "summary":
            s = Summary.decode(resp)
            assert s.month == req.month and s.encode() == resp
        elif req.op == "ids":
            lst = IdList.decode(resp)
            assert lst.done == req.buckets and lst.encode() == resp
        else:
            objs = Objects.decode(resp)
            assert [hashlib.sha256(o).digest() for o in objs.objects] == [
                i for i in req.ids if any(hashlib.sha256(p).digest() == i
                                          for p in POS.values())]
    assert seen == {("roots", False), ("roots", True), ("summary", False),
                    ("summary", True), ("ids", False), ("ids", True), ("get", False)}


def test_the_reference_servers_store_answers_the_shard_exchanges(tmp_path: Path) -> None:
    """A node holding the set's objects (made-up IDs are of no object, so only the
    shard-scoped exchanges and ``get`` can be compared whole) answers byte for byte."""
    w = Wallet.create(tmp_path / "n", "n", hashlib.sha256(b"vectors").digest())
    try:
        got = w.import_objects([POS[n] for n in ["key-document", *REC["objects"]]],
                               DATA["verify_at"])
        assert all(not isinstance(r, Exception) and r.action == "stored" for r in got), got
        assert sorted(month_ids(w, REC["month"])) == sorted(_ids(REC["objects"]))
        for e in REC["exchanges"]:
            req = ReconcileRequest.decode(bytes.fromhex(e["request"]))
            if req.op == "get":
                resp = objects_by_id(w, req.ids, 4 << 20).encode()
            elif req.shard is None:
                continue
            elif req.op == "roots":
                resp = Roots(tuple(Summary.of(m_, month_ids(w, m_, req.shard, Placements()))
                                   .root for m_ in req.months)).encode()
            elif req.op == "summary":
                assert req.month is not None
                resp = Summary.of(req.month, month_ids(w, req.month, req.shard,
                                                       Placements())).encode()
            else:
                assert req.month is not None
                resp = bucket_ids(w, req.month, req.buckets, shard=req.shard,
                                  cache=Placements()).encode()
            assert resp.hex() == e["response"], e["name"]
    finally:
        w.close()


@pytest.mark.parametrize("vec", REC["negative"], ids=lambda v: v["name"])
def test_negative_requests_refused_with_reason(vec: dict[str, Any]) -> None:
    with pytest.raises(RemoteError) as exc:
        ReconcileRequest.decode(bytes.fromhex(vec["bytes"]))
    assert exc.value.code == vec["reason"]


def test_shard_vectors() -> None:
    for k in SH["keys"]:
        key = bytes.fromhex(k["key"])
        assert k["point"] == point(key).hex()
        assert k["shards"] == {str(b): shard_of(key, b) for b in (1, 2, 3, 4, 8, 16)}
        assert k["backbone_4"] == list(backbone_shards(key, 4))
        assert [rendezvous_provider(key, b) for b in range(17)] == [
            b <= k["rendezvous_up_to_bits"] for b in range(17)]
        assert k["topics_4"] == list(node_topics(key, 4))
    for p in SH["provider_keys"]:
        assert p["key"] == provider_key(p["bits"], p["index"]).hex()


def test_growth_vectors_are_the_schedule() -> None:
    """The ``growth`` rows are what rill.protocol.shard's ShardSchedule does at each t."""
    g = SH["growth"]
    sched = ShardSchedule(g["bits"], ((g["month"], g["to_bits"]),))
    key = bytes.fromhex(next(k["key"] for k in SH["keys"] if k["name"] == g["key"]))
    p = preview_object(POS[g["object"]])
    for r in g["rows"]:
        t = r["t"]
        assert (sched.at(t), list(sched.accepted(t))) == (r["bits"], r["accepted_bits"])
        assert set(sched.topics(key, t)) == set(r["topics"])
        assert list(object_topics(p, sched.at(t))) == r["publish"]
    assert sched.next_event(g["rows"][0]["t"]) == g["boundary"] - g["overlap"]


def test_spec_examples_paragraph_agrees_with_the_vectors() -> None:
    para = SPEC[SPEC.index("**Examples** (the keys of the test vectors"):]
    para = " ".join(para[:para.index("\n\n")].split())
    keys = {k["name"]: k for k in SH["keys"]}
    objs = {o["name"]: o for o in SH["objects"]}
    donor = keys["donor"]
    signer = donor["key"]
    assert preview_object(POS["settlement"]).signer.hex() == signer
    assert f"`{signer[:8]}…{signer[-8:]}`" in para
    assert f"shard point `{donor['point'][:8]}…`" in para
    s = donor["shards"]
    assert (f"its shard is {s['1']} at 1 bit, {s['2']} at 2, {s['3']} at 3, {s['4']} at 4, "
            f"{s['8']} at 8 and {s['16']:,} at 16") in para
    b4 = donor["backbone_4"]
    assert f"backbone shards are {b4[0]} and {b4[1]}" in para
    hashes = donor["backbone_hashes"]
    assert f"(backbone hashes `{hashes[0][:8]}…`, `{hashes[1][:8]}…`)" in para
    assert ", ".join(f"`{t}`" for t in donor["topics_4"][:-1]) in para
    creators = ", ".join(str(keys[n]["shards"]["4"]) for n in ("alice", "bob", "carol"))
    assert f"(creators alice, bob, carol: shards {creators})" in para

    def on(shards: list[int]) -> str:  # "`rill/1/b4/s2`, `s8`, `s9` and `s13`"
        names = [f"`rill/1/b4/s{shards[0]}`", *(f"`s{x}`" for x in shards[1:])]
        return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]

    assert f"goes on {on(objs['settlement']['shards_4'])};" in para
    assert f"`sealed-claim-alice` on {on(objs['sealed-claim-alice']['shards_4'])};" in para
    assert (f"`receipt` (alice's, to that donor) on {on(objs['receipt']['shards_4'])}"
            .replace("`rill/1/b4/s", "`s")) in para
    assert (f"`key-document` (alice's) on {on(objs['key-document']['shards_4'])}"
            .replace("`rill/1/b4/s", "`s")) in para
    assert f"`equivocation` on `{objs['equivocation']['topics_4'][0]}`" in para
    pk = next(p for p in SH["provider_keys"] if (p["bits"], p["index"]) == (4, 8))
    assert f"The provider key of shard 8 at 4 bits is `{pk['key']}`" in para
    assert keys["alice"]["shards"]["4"] == 8
    # at 3 bits, and across the growth from 3 to 4 (the ``growth`` rows)
    pk3 = next(p for p in SH["provider_keys"] if (p["bits"], p["index"]) == (3, s["3"]))
    assert f"in shards {s['3']} (its own; provider key `{pk3['key']}`)" in para
    rows = SH["growth"]["rows"]
    assert rows[0]["topics"][:3] == [f"rill/1/b3/s{i}" for i in sorted({s["3"], 2, 4})]
    assert "`settlement` goes on `rill/1/b3/s1`, `s4` and `s6`" in para
    assert rows[0]["publish"] == ["rill/1/b3/s1", "rill/1/b3/s4", "rill/1/b3/s6"]
    verdicts = [{c["topic"]: c["verdict"] for c in r["checks"]} for r in rows]
    assert [v["rill/1/b3/s4"] for v in verdicts] == ["accept"] * 5 + ["wrong-topic"]
    assert [v["rill/1/b4/s8"] for v in verdicts] == ["wrong-topic"] + ["accept"] * 5
    assert rows[-1]["from_boundary"] == 3600 and rows[1]["from_boundary"] == -3600
    assert "until 2026-11-01 01:00:00 UTC (B + O" in para
    assert "on `rill/1/b4/s8` from 2026-10-31 23:00:00 UTC (B − O)" in para


def test_spec_refusal_order_is_the_codes() -> None:
    """SPEC §11.4 "Refusals", as tests/test_vectors_stranger.py writes it from the text,
    gives the reason rill.protocol gives, on requests with random faults."""
    from test_vectors_stranger import enc, refusal

    rnd = random.Random(11)
    oid = b"\x07" * 32
    pool: dict[str, list[object]] = {
        "v": [1, 1, 1, 2, 0, "1", 2**40],
        "op": ["roots", "summary", "ids", "get", "sum", 1],
        "month": ["2026-10", "2026-10", "2026-13", "1999-12", 202610],
        "months": [["2026-10"], ["2026-10", "2026-09"], [], ["2026-10", "2026-10"],
                   ["2026-13", "2026-13"], [f"2026-{k:02d}" for k in range(1, 14)],
                   "2026-10"],
        "buckets": [[0, 7, 255], [3, 2], [], [256], [1, 1], [-1], 5],
        "ids": [[oid], [oid[:31]], [], [oid] * 1001, [oid, oid], oid],
        "shard": [[4, 8], [1, 0], [16, 65535], [0, 0], [17, 0], [4, 16], [4], "4/8"],
        "extra": [1],
    }
    fields = {"roots": ["months"], "summary": ["month"], "ids": ["month", "buckets"],
              "get": ["ids"], "sum": ["month"], 1: ["month"]}
    codes: set[str | None] = set()
    for _ in range(600):
        op = rnd.choice(pool["op"])
        req: dict[str, object] = {"v": rnd.choice(pool["v"]), "op": op}
        for f in fields[op]:
            req[f] = rnd.choice(pool[f])
        for f in ("shard", "extra", "month", "v", "op"):
            if rnd.random() < 0.15:
                if f in req:
                    del req[f]
                else:
                    req[f] = rnd.choice(pool[f])
        raw = enc(req)
        try:
            ReconcileRequest.decode(raw)
            code = None
        except RemoteError as exc:
            code = exc.code
        assert refusal(raw) == code, req
        codes.add(code)
    assert codes >= {None, "schema", "bad-month", "unsupported-version"}


@pytest.mark.parametrize("vec", REC["negative_responses"], ids=lambda v: v["name"])
def test_negative_responses_refused_with_reason(vec: dict[str, Any]) -> None:
    raw = bytes.fromhex(vec["bytes"])
    op, *n = vec["asked"].split()
    with pytest.raises(RemoteError) as exc:
        if op == "roots":
            Roots.decode(raw, int(n[0]))
        else:
            {"summary": Summary.decode, "ids": IdList.decode, "get": Objects.decode}[op](raw)
    assert exc.value.code == vec["reason"]


def test_reach_vectors() -> None:
    from rill.protocol.errors import RemoteError
    from rill.protocol.reach import ReachRequest, ReachResponse

    for ex in DATA["reach"]["exchanges"]:
        req = ReachRequest.decode(bytes.fromhex(ex["request"]))
        assert req.ports == tuple(ex["ports"]) and req.encode().hex() == ex["request"]
        resp = ReachResponse.decode(bytes.fromhex(ex["response"]), len(req.ports))
        assert resp.open == tuple(bool(o) for o in ex["open"])
        assert resp.encode().hex() == ex["response"]
    for bad in DATA["reach"]["refused"]:
        with pytest.raises(RemoteError):
            ReachRequest.decode(bytes.fromhex(bad["request"]))


def test_sync_vectors() -> None:
    """SPEC §11.3 on the wire: each exchange decodes to what it says and encodes back to
    the same bytes; the IDs are the SHA-256 of the objects; each refusal has its reason."""
    from rill.protocol.network import SyncRequest, SyncResponse

    sec = DATA["sync"]
    objects = {v["name"]: bytes.fromhex(v["bytes"]) for v in DATA["positive"]}
    page = [objects[n] for n in sec["objects"]]
    for ex in sec["exchanges"]:
        req = SyncRequest.decode(bytes.fromhex(ex["request"]))
        resp = SyncResponse.decode(bytes.fromhex(ex["response"]))
        assert req.subject.hex() == sec["subject"]
        assert (req.encode().hex(), resp.encode().hex()) == (ex["request"], ex["response"])
        assert resp.ids == req.ids and len(resp.objects) <= req.limit
        want = [hashlib.sha256(o).digest() for o in page] if req.ids else page
        assert list(resp.objects) == want[req.after:req.after + req.limit]
    for bad, decode in ([(v, SyncRequest.decode) for v in sec["negative_requests"]]
                        + [(v, SyncResponse.decode) for v in sec["negative_responses"]]):
        with pytest.raises(RemoteError) as exc:
            decode(bytes.fromhex(bad["bytes"]))
        assert exc.value.code == bad["reason"], bad["name"]
