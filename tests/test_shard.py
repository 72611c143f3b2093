"""Shard arithmetic, topics and placement (SPEC §11.6), and the shard field of
``/rill/reconcile/1.0.0`` requests: pure, against the test vectors and SPEC's examples."""

from __future__ import annotations

import hashlib
import random

import pytest
from helpers import load_vectors

from rill.node.daemon import NodeConfig
from rill.protocol import messages as m
from rill.protocol.errors import RemoteError
from rill.protocol.network import (
    EQUIVOCATION_TOPIC,
    TOPIC_OF,
    TOPICS,
    check_gossip,
    parse_shard_topic,
)
from rill.protocol.preview import preview
from rill.protocol.reconcile import ReconcileRequest
from rill.protocol.shard import (
    backbone_shards,
    check_topic,
    node_shards,
    node_topics,
    object_topics,
    placement_keys,
    point,
    prefix,
    provider_key,
    shard_of,
    shard_topic,
)

DATA = load_vectors()
NOW = DATA["verify_at"]
V = {v["name"]: bytes.fromhex(v["bytes"]) for v in DATA["positive"]}
DONOR = m.decode(V["settlement"]).signer


def pv(name: str):  # type: ignore[no-untyped-def]
    return preview(TOPIC_OF[m.peek_type(V[name]) or ""], V[name])


def test_a_shard_is_the_first_bits_of_the_keys_point() -> None:
    rnd = random.Random(7)
    for _ in range(200):
        key = rnd.randbytes(32)
        h = int.from_bytes(hashlib.sha256(b"rill/1/shard" + key).digest(), "big")
        for bits in range(17):
            assert shard_of(key, bits) == h >> (256 - bits)
        # prefix scheme: shard i at b bits splits into 2i and 2i+1 at b + 1
        for bits in range(16):
            assert shard_of(key, bits + 1) >> 1 == shard_of(key, bits)
    assert shard_of(DONOR, 0) == 0
    with pytest.raises(RemoteError):
        prefix(point(DONOR), 17)


def test_the_examples_of_spec_11_6() -> None:
    assert point(DONOR).hex().startswith("df95fd09")
    assert [shard_of(DONOR, b) for b in (1, 2, 4, 8, 14, 16)] == [1, 3, 13, 223, 14309,
                                                                   57237]
    assert backbone_shards(DONOR, 4) == (5, 8)
    assert node_topics(DONOR, 4) == ("rill/1/b4/s5", "rill/1/b4/s8", "rill/1/b4/s13",
                                     EQUIVOCATION_TOPIC, "rill/1/catalogue")
    assert object_topics(pv("settlement"), 4) == (
        "rill/1/b4/s2", "rill/1/b4/s8", "rill/1/b4/s9", "rill/1/b4/s13")
    assert object_topics(pv("sealed-claim-alice"), 4) == ("rill/1/b4/s8",)
    assert object_topics(pv("sealed-claim-carol"), 2) == ("rill/1/b2/s0",)
    assert object_topics(pv("receipt"), 4) == ("rill/1/b4/s8", "rill/1/b4/s13")
    assert object_topics(pv("key-document"), 4) == ("rill/1/b4/s8",)
    assert object_topics(pv("equivocation"), 4) == (EQUIVOCATION_TOPIC,)
    assert provider_key(4, 8).hex() == (
        "12202acb5c0a916afe9ea36d970279f0a3e2ff9f1be89bcebb8ea1d88a1c6cc72c2f")


def test_without_shards_the_four_topics_of_11_2() -> None:
    assert node_topics(DONOR, 0) == tuple(TOPICS)
    assert node_shards(DONOR, 0) == {0}
    for name in ("settlement", "sealed-claim-bob", "receipt", "key-document", "equivocation"):
        p = pv(name)
        assert object_topics(p, 0) == (TOPIC_OF[p.type],)
        check_topic(p, TOPIC_OF[p.type], 0)


def test_placement_keys_per_type() -> None:
    s = m.decode(V["settlement"])
    creators = {line.creator for line in s.body.lines}
    assert placement_keys(pv("settlement")) == {s.signer} | creators
    c = m.decode(V["sealed-claim-alice"])
    assert placement_keys(pv("sealed-claim-alice")) == {c.body.creator}  # not the donor
    r = m.decode(V["receipt"])
    assert placement_keys(pv("receipt")) == {r.signer, r.body.donor}
    assert placement_keys(pv("key-document")) == {m.decode(V["key-document"]).signer}
    assert placement_keys(pv("equivocation")) == {m.decode(V["equivocation"]).body.donor}


def test_shard_topics_names_and_what_they_carry() -> None:
    assert shard_topic(2, 3) == "rill/1/b2/s3"
    assert parse_shard_topic("rill/1/b2/s3") == (2, 3)
    assert parse_shard_topic("rill/1/b16/s65535") == (16, 65535)
    for bad in ("rill/1/b0/s0", "rill/1/b2/s4", "rill/1/b02/s1", "rill/1/b2/s01",
                "rill/1/b17/s0", "rill/1/b2/s", "rill/1/b2/s-1", "rill/1/b2/s1/"):
        assert parse_shard_topic(bad) is None, bad
    for bits, index in ((0, 0), (2, 4), (17, 0)):
        with pytest.raises(RemoteError):
            shard_topic(bits, index)
    for name in ("settlement", "sealed-claim-bob", "receipt", "key-document"):
        for topic in object_topics(pv(name), 4):
            assert check_gossip(topic, V[name], NOW).id == hashlib.sha256(V[name]).digest()
    # equivocation proofs, plain claims and click entries never travel on a shard topic
    for name in ("equivocation", "claim-alice", "click-1-click"):
        with pytest.raises(RemoteError) as info:
            check_gossip("rill/1/b4/s13", V[name], NOW)
        assert info.value.code == "wrong-topic"
    with pytest.raises(RemoteError) as info:
        check_gossip("rill/1/b4/s13/", V["settlement"], NOW)
    assert info.value.code == "wrong-topic"


def test_an_object_on_a_shard_topic_not_its_own_is_wrong_topic() -> None:
    p = pv("sealed-claim-alice")  # shard 8 at 4 bits
    check_topic(p, "rill/1/b4/s8", 4)
    for topic in ("rill/1/b4/s9", "rill/1/b2/s2", "rill/1/settlements", EQUIVOCATION_TOPIC):
        with pytest.raises(RemoteError) as info:
            check_topic(p, topic, 4)
        assert info.value.code == "wrong-topic"
    # a settlement belongs on each of its shards' topics, and only there
    s = pv("settlement")
    for i in range(16):
        topic = shard_topic(4, i)
        if i in (2, 8, 9, 13):
            check_topic(s, topic, 4)
        else:
            with pytest.raises(RemoteError):
                check_topic(s, topic, 4)


def test_reconcile_requests_with_and_without_a_shard() -> None:
    from rill.protocol import cbor

    # unchanged without a shard (SPEC §11.4): exactly v, op, month
    plain = ReconcileRequest("summary", "2026-10")
    assert cbor.decode(plain.encode()) == {"v": 1, "op": "summary", "month": "2026-10"}
    assert cbor.decode(ReconcileRequest("summary", "2026-10", shard=(4, 13)).encode()) == {
        "v": 1, "op": "summary", "month": "2026-10", "shard": [4, 13]}
    for req in (ReconcileRequest("summary", "2026-10", shard=(4, 13)),
                ReconcileRequest("ids", "2026-10", buckets=(0, 7), shard=(16, 65535)),
                ReconcileRequest("ids", "2026-10", buckets=(1,))):
        assert ReconcileRequest.decode(req.encode()) == req
    for shard in ([0, 0], [2, 4], [17, 0], [2], [2, 1, 0], "2/1", [2, -1], [True, 0]):
        raw = cbor.encode({"v": 1, "op": "summary", "month": "2026-10", "shard": shard})
        with pytest.raises(RemoteError):
            ReconcileRequest.decode(raw)
    raw = cbor.encode({"v": 1, "op": "get", "ids": [bytes(32)], "shard": [2, 1]})
    with pytest.raises(RemoteError):
        ReconcileRequest.decode(raw)


def test_config_reads_shard_bits_and_backbone() -> None:
    cfg = NodeConfig.from_toml({"network": {"shard_bits": 4, "shard_backbone": 1}})
    assert (cfg.shard_bits, cfg.shard_backbone) == (4, 1)
    assert (NodeConfig.from_toml({}).shard_bits, NodeConfig().shard_backbone) == (0, 2)
    for bad in (17, -1, "4", True):
        with pytest.raises(ValueError):
            NodeConfig.from_toml({"network": {"shard_bits": bad}})


def test_the_reconcile_servers_placement_cache_agrees_with_object_shards() -> None:
    from rill.node.sharding import Placements, in_shard
    from rill.protocol.shard import object_shards

    cache = Placements(limit=200)  # small: cleared and refilled on the way
    for _ in range(3):
        for name in ("settlement", "sealed-claim-bob", "receipt", "key-document",
                     "equivocation"):
            oid = hashlib.sha256(V[name]).digest()
            prefixes = cache.get(oid) or cache.put(oid, V[name])
            assert cache.size <= 200
            for bits in (1, 2, 4, 9, 16):
                want = object_shards(pv(name), bits)
                assert {i for i in range(1 << bits) if in_shard(prefixes, (bits, i))} == want
    # a plain claim (never gossiped, but reconciled when held) is its creator's
    alice = m.decode(V["claim-alice"]).body.creator
    assert Placements().put(b"x" * 32, V["claim-alice"]) == \
        shard_of(alice, 16).to_bytes(2, "big")
    assert Placements().put(b"y" * 32, V["click-1-click"]) == b""  # not an object placed
