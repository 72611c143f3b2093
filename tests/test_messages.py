"""Every message type: sign/decode round trips (hypothesis), fuzzing, mutations."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
from helpers import load_vectors, signing_key
from hypothesis import given, settings
from hypothesis import strategies as st

from rill.protocol import keys
from rill.protocol import messages as m
from rill.protocol.errors import LocalError, RemoteError, RillError
from rill.protocol.settle import settle

DATA = load_vectors()
SIGNERS = [signing_key(f"k{i}") for i in range(4)]
PUBS = [keys.public_key(k) for k in SIGNERS]

hashes = st.binary(min_size=32, max_size=32)
times = st.integers(0, 2**53 - 1)
amounts = st.integers(0, 2**53 - 1)
months = st.builds(lambda y, mo: f"{y:04d}-{mo:02d}", st.integers(2000, 9999),
                   st.integers(1, 12))
currencies = st.from_regex(r"[A-Z]{3}", fullmatch=True)
things = st.one_of(
    st.from_regex(r"https://[a-z]{1,10}\.(org|example)/[a-z0-9/._~-]{0,20}", fullmatch=True)
    .filter(lambda s: "/." not in s and "//" not in s[8:]),
    st.from_regex(r"urn:isbn:[0-9]{10}", fullmatch=True),
)
labels = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
                 min_size=1, max_size=30)
pubs = st.sampled_from(PUBS)


def _click(seq: int, prev: bytes, time: int, kind: str, thing: str, creator: bytes | None,
           months_n: int | None, amount: int, currency: str) -> m.ClickEntry:
    prev = m.ZERO_HASH if seq == 0 else (prev if prev != m.ZERO_HASH else b"\x01" * 32)
    if kind == "budget":
        return m.ClickEntry(seq, prev, time, kind, amount=amount, currency=currency)
    if kind == "click":
        return m.ClickEntry(seq, prev, time, kind, thing=thing, creator=creator)
    if creator is not None:
        thing_arg: str | None = None
    else:
        thing_arg = thing
    return m.ClickEntry(seq, prev, time, kind, thing=thing_arg, creator=creator,
                        months=months_n if kind == "subscribe" else None)


clicks = st.builds(_click, st.integers(0, 10**6), hashes, times,
                   st.sampled_from(m.CLICK_KINDS), things, st.none() | pubs,
                   st.none() | st.integers(1, 1200), amounts, currencies)
keydocs = st.builds(
    lambda name, origins, payto, t: m.KeyDocument(name, tuple(sorted(set(origins))),
                                                  tuple(dict.fromkeys(payto)), t),
    labels,
    st.lists(st.from_regex(r"https://[a-z]{1,12}\.example", fullmatch=True), min_size=1,
             max_size=5),
    st.lists(st.from_regex(r"payto://(iban|bitcoin|x-ln)/[A-Za-z0-9]{4,30}", fullmatch=True),
             max_size=4),
    times,
)
receipts = st.builds(m.Receipt, hashes, st.just(PUBS[3]), months, currencies, amounts,
                     st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40),
                     times)
sealed = st.builds(m.SealedClaim, hashes, months, pubs, hashes, st.binary(min_size=49,
                                                                         max_size=300))
bodies = st.one_of(clicks, keydocs, receipts, sealed)


@settings(max_examples=150, deadline=None)
@given(bodies, st.integers(0, 2))
def test_sign_decode_round_trip(body: Any, who: int) -> None:
    obj = m.sign(body, SIGNERS[who])
    again = m.decode(m.encode(obj))
    assert again == obj
    assert again.body == body
    assert again.id == obj.id


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(things, pubs, max_size=12), amounts, months, currencies)
def test_settlement_claim_sealed_equivocation_round_trip(
        ts: dict[str, bytes], budget: int, month: str, currency: str) -> None:
    res = settle(SIGNERS[0], month, budget, currency, b"\x07" * 32, ts, work_bits=0)
    for obj in (res.settlement, *res.claims, *res.sealed):
        assert m.decode(obj.raw) == obj
    other = settle(SIGNERS[0], month, budget + 1 if budget < 2**53 - 1 else 0, currency,
                   b"\x07" * 32, ts, work_bits=0)
    a, b = sorted([res.settlement, other.settlement], key=lambda s: s.id)
    proof = m.sign(m.Equivocation(a.raw, b.raw), SIGNERS[1])
    assert m.decode(proof.raw) == proof
    assert proof.body.donor == PUBS[0] and proof.body.month == month


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(things, pubs, max_size=4), months, st.none() | st.integers(0, 2**64 - 1))
def test_settlement_with_any_work_round_trips(ts: dict[str, bytes], month: str,
                                              work: int | None) -> None:
    res = settle(SIGNERS[2], month, 1000, "EUR", bytes(32), ts, work_bits=0)
    body = dataclasses.replace(res.settlement.body, work=work)
    obj = m.sign(body, SIGNERS[2])
    assert m.decode(obj.raw) == obj and obj.body.work == work
    assert ("work" in obj.body.to_map()) == (work is not None)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_decoder_fuzz_raises_only_our_errors(raw: bytes) -> None:
    with contextlib.suppress(RillError):
        m.decode(raw)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DATA["positive"]), st.data())
def test_every_byte_change_of_a_valid_object_is_rejected(vec: dict[str, Any],
                                                        data: st.DataObject) -> None:
    raw = bytes.fromhex(vec["bytes"])
    at = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    mutated = raw[:at] + bytes([raw[at] ^ (1 << bit)]) + raw[at + 1:]
    with pytest.raises(RemoteError):
        m.decode(mutated)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(DATA["positive"]), st.data())
def test_truncation_and_extension_are_rejected(vec: dict[str, Any], data: st.DataObject) -> None:
    raw = bytes.fromhex(vec["bytes"])
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(RemoteError):
        m.decode(raw[:cut])
    with pytest.raises(RemoteError):
        m.decode(raw + data.draw(st.binary(min_size=1, max_size=8)))


def test_signing_an_invalid_body_is_a_local_error() -> None:
    with pytest.raises(LocalError) as info:
        m.sign(m.Receipt(b"\x00" * 32, PUBS[0], "2026-10", "EUR", 5, "r", 0), SIGNERS[0])
    assert info.value.code == "self-receipt"
    with pytest.raises(LocalError):
        m.sign(m.ClickEntry(1, m.ZERO_HASH, 0, "click", thing="https://a.example/"),
               SIGNERS[0])
    with pytest.raises(LocalError):
        m.sign(m.ClickEntry(0, m.ZERO_HASH, 0, "click", thing="not a url"), SIGNERS[0])


def test_expect_type() -> None:
    vec = next(v for v in DATA["positive"] if v["type"] == "receipt")
    with pytest.raises(RemoteError) as info:
        m.decode(bytes.fromhex(vec["bytes"]), m.Claim)
    assert info.value.code == "wrong-type"
    assert m.decode(bytes.fromhex(vec["bytes"]), m.Receipt).type == "receipt"


def test_key_document_rotation_requires_both_keys() -> None:
    old, new = SIGNERS[0], SIGNERS[1]
    doc = m.KeyDocument("Me", ("https://me.example",), (), 100, prev=PUBS[0])
    rotated = m.sign(doc, new, previous_key=old)
    assert rotated.cosignature is not None
    with pytest.raises(LocalError):
        m.sign(doc, new)  # no co-signature
    with pytest.raises(LocalError):
        m.sign(doc, new, previous_key=SIGNERS[2])  # co-signed by a stranger
    with pytest.raises(LocalError):
        m.sign(m.KeyDocument("Me", ("https://me.example",), (), 100, prev=PUBS[1]), new,
               previous_key=new)


def test_signature_from_another_type_does_not_transfer() -> None:
    """Domain separation: a signature over a body as one type is no good as another."""
    res = settle(SIGNERS[0], "2026-10", 10, "EUR", bytes(32), {"https://a.example/": PUBS[1]},
                 work_bits=0)
    s = res.settlement
    forged = m.cbor.encode({"v": 1, "t": "claim", "body": s.body.to_map(), "signer": s.signer,
                            "sig": s.signature})
    with pytest.raises(RemoteError):
        m.decode(forged)


def test_object_id_text_form() -> None:
    vec = DATA["positive"][0]
    assert m.parse_object_id(vec["id"].upper()).hex() == vec["id"]
    for bad in ("", "xyz", vec["id"][:-1], vec["id"] + "0"):
        with pytest.raises(LocalError):
            m.parse_object_id(bad)
