#!/usr/bin/env python3
"""Generate tests/vectors/rill_v1.json, Rill's protocol test vectors (SPEC.md §10).

Deterministic: running it twice gives the same file.  Keys come from seeds
``SHA-256("rill test vector key " + name)``.  Positive vectors are built with
rill.protocol; negative ones are built by hand with a tiny CBOR writer below,
so that they can hold what rill.protocol refuses to produce (floats, tags,
indefinite lengths, duplicate keys, non-shortest integers...).

Usage: python tests/vectors/generate.py [--check]
  --check  exit 1 if the file on disk differs from what would be generated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

import nacl.signing
from netvectors import SHARD_KEYS, reach_section, reconcile_section, shard_section
from syncvectors import sync_section

from rill.protocol import cbor, keys
from rill.protocol import messages as m
from rill.protocol.months import month_end
from rill.protocol.settle import settle
from rill.protocol.work import NETWORK_WORK_BITS, work_bits

OUT = Path(__file__).with_name("rill_v1.json")
MONTH = "2026-10"
#: Time at which the vectors are checked (2026-11-15T00:00:00Z).
VERIFY_AT = month_end(MONTH) + 14 * 86400


def seed(name: str) -> bytes:
    return hashlib.sha256(b"rill test vector key " + name.encode()).digest()


def key(name: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed(name))


def pub(name: str) -> bytes:
    return keys.public_key(key(name))


# -- a small, permissive CBOR writer for negative vectors ------------------------------


class Wide(int):
    """An integer written with a fixed argument width (1, 2, 4 or 8 bytes)."""

    width: int

    def __new__(cls, value: int, width: int) -> Wide:
        obj = super().__new__(cls, value)
        obj.width = width
        return obj


class Tag:
    def __init__(self, tag: int, value: Any) -> None:
        self.tag, self.value = tag, value


class Indef(list):  # type: ignore[type-arg]
    """An array written with indefinite length."""


class Pairs(list):  # type: ignore[type-arg]
    """A map written from (key, value) pairs in the given order (duplicates allowed)."""


class Raw(bytes):
    """Bytes written as they are (any item, valid or not)."""


def _head(major: int, n: int, width: int | None = None) -> bytes:
    if width is None:
        width = 0 if n < 24 else 1 if n < 256 else 2 if n < 65536 else 4 if n < 2**32 else 8
    if width == 0:
        return bytes([major << 5 | n])
    ai = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | ai]) + n.to_bytes(width, "big")


def write(v: Any, *, sort: bool = True) -> bytes:
    if isinstance(v, Raw):
        return bytes(v)
    if isinstance(v, Tag):
        return _head(6, v.tag) + write(v.value, sort=sort)
    if isinstance(v, float):
        return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        width = v.width if isinstance(v, Wide) else None
        return _head(0, v, width) if v >= 0 else _head(1, -1 - v, width)
    if isinstance(v, bytes):
        return _head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return _head(3, len(b)) + b
    if isinstance(v, Indef):
        return b"\x9f" + b"".join(write(x, sort=sort) for x in v) + b"\xff"
    if isinstance(v, Pairs):
        return _head(5, len(v)) + b"".join(write(k) + write(x, sort=sort) for k, x in v)
    if isinstance(v, list):
        return _head(4, len(v)) + b"".join(write(x, sort=sort) for x in v)
    if isinstance(v, dict):
        items = list(v.items())
        if sort:
            items.sort(key=lambda kv: (len(write(kv[0])), write(kv[0])))
        return _head(5, len(items)) + b"".join(write(k) + write(x, sort=sort) for k, x in items)
    raise TypeError(type(v))


def envelope(type_name: str, body: Any, signer: str, *, sign_with: str | None = None,
             sort: bool = True, extra: dict[str, Any] | None = None) -> bytes:
    """Sign ``body`` exactly as written by :func:`write` and wrap it."""
    body_bytes = write(body, sort=sort)
    sk = key(sign_with or signer)
    sig = keys.sign(sk, m.signing_input(type_name, body_bytes))
    env: dict[str, Any] = {"v": 1, "t": type_name, "body": body, "signer": pub(signer),
                           "sig": sig}
    env.update(extra or {})
    return write(env, sort=sort)


# -- JSON rendering --------------------------------------------------------------------


def jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v


def positive(name: str, obj: m.Signed[Any], signer: str, note: str,
             cosigner: str | None = None) -> dict[str, Any]:
    body_map = obj.body.to_map()
    body_bytes = cbor.encode(body_map)
    out = {
        "name": name,
        "type": obj.type,
        "note": note,
        "signer_seed": seed(signer).hex(),
        "signer": keys.did_from_key(obj.signer),
        "fields": jsonable(body_map),
        "body": body_bytes.hex(),
        "signing_input": m.signing_input(obj.type, body_bytes).hex(),
        "signature": obj.signature.hex(),
        "bytes": obj.raw.hex(),
        "id": obj.id_hex,
        "valid": True,
    }
    if cosigner is not None:
        out["cosigner_seed"] = seed(cosigner).hex()
        out["cosignature"] = obj.cosignature.hex() if obj.cosignature else None
        out["rotation_input"] = m.rotation_input(body_bytes).hex()
    return out


def negative(name: str, raw: bytes, reason: str, note: str) -> dict[str, Any]:
    return {"name": name, "note": note, "bytes": raw.hex(), "valid": False, "reason": reason}


def nested(levels: int, inner: Any = 0) -> Any:
    """``inner`` inside ``levels`` one-element arrays."""
    for _ in range(levels):
        inner = [inner]
    return inner


def cbor_negatives(base: m.Signed[Any], receipt: m.Signed[Any], claim: m.Signed[Any]
                   ) -> list[dict[str, Any]]:
    """Inputs refused by the strict CBOR decoder (SPEC §3.2): one or more per reason code,
    then inputs with two faults where the first in byte order must be the reason."""
    donor, alice = pub("donor"), pub("alice")
    smap, rmap, cmap = base.body.to_map(), receipt.body.to_map(), claim.body.to_map()
    neg: list[dict[str, Any]] = []

    def add(name: str, raw: bytes, reason: str, note: str) -> None:
        neg.append(negative(name, raw, reason, note))

    # -- one reason each ---------------------------------------------------------------
    add("empty", b"", "empty", "zero bytes")
    add("truncated", base.raw[:-1], "malformed", "last byte missing")
    bad_text = b"SEPA \xff\xfe"
    bad_ref = Raw(bytes([0x60 | len(bad_text)]) + bad_text)
    add("invalid-utf8", envelope("receipt", dict(rmap, reference=bad_ref), "alice"), "malformed",
        "receipt reference is a text string that is not valid UTF-8")
    add("lone-break", envelope("receipt", dict(rmap, time=Raw(b"\xff")), "alice"), "malformed",
        "receipt time is a 0xff 'break' outside any indefinite-length item")
    add("trailing-bytes", base.raw + b"\x00", "trailing-bytes",
        "a valid settlement followed by one zero byte")
    add("non-canonical-integer", envelope("settlement", dict(smap, budget=Wide(1001, 4)),
                                          "donor"),
        "non-canonical", "budget 1001 written with a 4-byte argument")
    add("unsorted-keys", envelope("settlement", smap, "donor", sort=False), "non-canonical",
        "map keys in insertion order, not canonical order")
    dup = Pairs([("t", "settlement"), ("t", "settlement"), ("v", 1), ("sig", base.signature),
                 ("body", smap), ("signer", donor)])
    add("duplicate-key", write(dup), "duplicate-key",
        "envelope with key 't' twice, keys otherwise in canonical order")
    add("indefinite-length", envelope("settlement", dict(smap, lines=Indef(smap["lines"])),
                                      "donor"),
        "indefinite-length", "lines written as an indefinite-length array")
    add("float-amount", envelope("settlement", dict(smap, budget=1001.0), "donor"), "float",
        "budget written as a float (1001.0), correctly signed")
    add("float-in-claim", envelope("claim", dict(cmap, amount=400.5), "donor"), "float",
        "claim amount 400.5")
    add("bool-value", envelope("claim", dict(cmap, amount=True), "donor"), "simple-value",
        "claim amount true")
    add("tag", envelope("receipt", dict(rmap, time=Tag(1, rmap["time"])), "alice"), "tag",
        "receipt time wrapped in tag 1 (epoch date-time)")
    add("self-describe-tag", write(Tag(55799, {"v": 1, "t": "receipt", "body": rmap,
                                               "signer": alice, "sig": receipt.signature})),
        "tag", "a valid receipt wrapped in tag 55799 (self-described CBOR)")
    add("bignum-tag", envelope("settlement", dict(smap, budget=Tag(2, b"\x03\xe9")), "donor"),
        "tag", "budget 1001 written as a bignum (tag 2), a value that fits a uint")
    add("non-text-key", write({1: 1, "t": "receipt"}), "non-text-key",
        "a map with an integer key")
    add("too-deep", envelope("settlement", dict(smap, fee=nested(7)), "donor"), "too-deep",
        "an extra body field holding 7 nested arrays: envelope (depth 1) > body (2) > "
        "arrays at depths 3..9; an array or map at depth 9 is refused")
    add("nesting-8-levels", envelope("settlement", dict(smap, fee=nested(6)), "donor"),
        "schema", "as too-deep with one array less (depth 8): valid CBOR, refused only "
        "for the unknown field 'fee'")

    # -- two faults: the first in byte order is the reason --------------------------------
    add("float-before-trailing-bytes",
        envelope("settlement", dict(smap, budget=1001.0), "donor") + b"\x00", "float",
        "a float budget, and a trailing byte after the envelope")
    unsorted_dup = Pairs([("v", 1), ("t", "settlement"), ("t", "settlement"),
                          ("sig", base.signature), ("body", smap), ("signer", donor)])
    add("unsorted-before-duplicate", write(unsorted_dup), "non-canonical",
        "envelope keys v, t, t: the first 't' is out of order (after 'v') before the "
        "second 't' repeats it")
    dup_float = Pairs([("t", "settlement"), ("t", "settlement"), ("v", 1),
                       ("sig", base.signature), ("body", dict(smap, budget=1001.0)),
                       ("signer", donor)])
    add("duplicate-before-float", write(dup_float), "duplicate-key",
        "key 't' twice, then a float budget inside the body")
    add("non-text-key-with-float-value", write(Pairs([(1, 1.5), ("t", "receipt")])),
        "non-text-key", "the first key is the integer 1 and its value is a float")
    add("tag-as-key", write(Pairs([(Tag(1, 0), 0), ("t", "receipt")])), "non-text-key",
        "a map key that is a tag: refused on the key's initial byte as non-text-key")
    add("non-canonical-before-tag",
        envelope("receipt", dict(rmap, time=Tag(1, rmap["time"])), "alice",
                 extra={"v": Wide(1, 1)}), "non-canonical",
        "envelope v = 1 written with a 1-byte argument (before the body), then a tagged "
        "receipt time in the body")
    first_tagged = [dict(smap["lines"][0], amount=Tag(2, b"\x01")), *smap["lines"][1:]]
    add("tag-inside-indefinite-array",
        envelope("settlement", dict(smap, lines=Indef(first_tagged)), "donor"),
        "indefinite-length", "lines as an indefinite-length array whose first line has a "
        "bignum amount")
    too_deep = envelope("settlement", dict(smap, fee=nested(7)), "donor")
    add("too-deep-then-truncated", too_deep[:-1], "too-deep",
        "the too-deep vector without its last byte: the depth-9 array header comes first")
    add("non-canonical-header-at-depth-9",
        envelope("settlement", dict(smap, fee=nested(6, Raw(b"\x98\x00"))), "donor"),
        "non-canonical", "the depth-9 array's count 0 is written with a 1-byte argument: "
        "the header is read completely before the depth is checked")
    add("indefinite-at-depth-9",
        envelope("settlement", dict(smap, fee=nested(6, Indef([0]))), "donor"),
        "indefinite-length", "an indefinite-length array at depth 9")
    add("count-beyond-end-float-first", bytes.fromhex("9903e801f93c00"), "float",
        "an array claims 1000 items but 2 follow, the second a float: there is no "
        "count-versus-bytes-left shortcut, the float is met before the end of the input")
    add("truncated-simple-value", b"\xf8", "simple-value",
        "0xf8 (a one-byte simple value) with its argument missing: simple-value is decided "
        "on the initial byte alone")
    add("truncated-float", b"\xfb\x3f\xf0", "float",
        "a double-precision float cut short: float is decided on the initial byte alone")
    add("truncated-tag", b"\xc2", "tag", "a bignum tag with nothing after it")
    add("bad-utf8-key-out-of-order", bytes.fromhex("a2616200" + "61ff00"), "malformed",
        "the second key is not valid UTF-8 (and would sort before the first): its UTF-8 is "
        "checked before the key order")
    return neg


def build() -> dict[str, Any]:
    alice, bob, carol, donor = pub("alice"), pub("bob"), pub("carol"), pub("donor")
    pos: list[dict[str, Any]] = []
    neg: list[dict[str, Any]] = []

    # --- click log: four entries, one of each kind -----------------------------------
    t0 = month_end(MONTH) - 20 * 86400
    entries = []
    prev = m.ZERO_HASH
    for seq, (kind, extra) in enumerate([
        ("budget", {"amount": 500, "currency": "EUR"}),
        ("click", {"thing": "https://alice.example/post/1", "creator": alice}),
        ("subscribe", {"creator": bob, "months": 3}),
        ("click", {"thing": "https://carol.example/"}),
        ("unsubscribe", {"thing": "https://alice.example/post/1"}),
    ]):
        entry = m.sign(m.ClickEntry(seq, prev, t0 + 60 * seq, kind, **extra), key("donor"))
        entries.append(entry)
        prev = entry.id
        pos.append(positive(f"click-{seq}-{kind}", entry, "donor",
                            f"click log entry seq {seq} ({kind})"))

    # --- creator key documents, one with a rotation -------------------------------------
    kd = m.sign(m.KeyDocument("Alice's blog", ("https://alice.example",),
                              ("payto://iban/DE75512108001245126199",
                               "payto://bitcoin/bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
                              t0 - 86400), key("alice"))
    pos.append(positive("key-document", kd, "alice", "creator key document"))
    rot = m.sign(m.KeyDocument("Alice's blog", ("https://alice.example", "https://www.alice.example"),
                               ("payto://iban/DE75512108001245126199",), t0, prev=alice),
                 key("alice2"), previous_key=key("alice"))
    pos.append(positive("key-document-rotation", rot, "alice2",
                        "key rotation: signed by the new key, co-signed by the old one",
                        cosigner="alice"))

    # --- settlement, claims, sealed claims --------------------------------------------
    things = {
        "https://alice.example/post/1": alice,
        "https://alice.example/post/2": alice,
        "https://bob.example/": bob,
        keys.did_from_key(bob): bob,
        "urn:isbn:0451450523": carol,
    }
    res = settle(key("donor"), MONTH, 1001, "EUR", entries[-1].id, things)
    pos.append(positive("settlement", res.settlement, "donor",
                        "1001 cents over 5 things: 200 each, the first 1 leftover unit to the "
                        "first thing in split order; work: the smallest nonce with "
                        f"{work_bits(donor, MONTH, res.settlement.body.work)} >= "
                        f"{NETWORK_WORK_BITS} leading zero bits"))
    for c, s in zip(res.claims, res.sealed, strict=True):
        who = {alice: "alice", bob: "bob", carol: "carol"}[c.body.creator]
        pos.append(positive(f"claim-{who}", c, "donor", f"claim of {who}"))
        pos.append(positive(f"sealed-claim-{who}", s, "donor",
                            f"claim of {who} sealed to {who}'s key"))
    empty = settle(key("donor2"), MONTH, 500, "EUR", m.ZERO_HASH, {})
    pos.append(positive("settlement-empty", empty.settlement, "donor2",
                        "no things: nothing owed"))

    claim_alice = next(c for c in res.claims if c.body.creator == alice)
    receipt = m.sign(m.Receipt(claim_alice.id, donor, MONTH, "EUR", claim_alice.body.amount,
                               "SEPA E2E 2026-11-03 0001", month_end(MONTH) + 3 * 86400),
                     key("alice"))
    pos.append(positive("receipt", receipt, "alice", "alice acknowledges the donor's payment"))

    other = settle(key("donor"), MONTH, 1001, "EUR", entries[-1].id,
                   {**things, "https://carol.example/": carol})
    a, b = sorted([res.settlement, other.settlement], key=lambda s: s.id)
    proof = m.sign(m.Equivocation(a.raw, b.raw), key("carol"))
    pos.append(positive("equivocation", proof, "carol",
                        "two different settlements by the donor for one month, "
                        "reported by carol"))

    # --- negatives --------------------------------------------------------------------
    base = res.settlement
    smap = base.body.to_map()

    def flip(raw: bytes, at: int) -> bytes:
        return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]

    sig_at = base.raw.index(base.signature)
    neg.append(negative("flipped-signature-byte", flip(base.raw, sig_at + 10), "bad-signature",
                        "one bit of the signature flipped"))
    cur_at = base.raw.index(b"cEUR") + 3
    neg.append(negative("flipped-body-byte", flip(base.raw, cur_at), "bad-signature",
                        "one bit of the body flipped (EUR -> ETR)"))
    neg.append(negative("wrong-key", envelope("settlement", smap, "donor", sign_with="mallory"),
                        "bad-signature", "signed by another key than 'signer'"))
    rmap = receipt.body.to_map()
    big = {"seq": 0, "prev": m.ZERO_HASH, "time": t0, "kind": "click",
           "data": {"thing": "https://alice.example/" + "a" * 4000}}
    neg.append(negative("oversize", envelope("click", big, "donor"), "too-large",
                        "a click-log entry of more than 4096 bytes"))
    small_order = bytes([1] + [0] * 31)  # the neutral element, order 1
    so = {"v": 1, "t": "receipt", "body": rmap, "signer": small_order, "sig": bytes(64)}
    neg.append(negative("small-order-key", write(so), "bad-key",
                        "signer is the identity point (small order)"))
    non_canon = (2**255 - 19 + 1).to_bytes(32, "little")  # y = p + 1, non-canonical
    nc = {"v": 1, "t": "receipt", "body": rmap, "signer": non_canon, "sig": bytes(64)}
    neg.append(negative("non-canonical-key", write(nc), "bad-key",
                        "signer encodes y = p + 1 (non-canonical point encoding)"))
    neg.append(negative("wrong-version", write({"v": 2, "t": "settlement", "body": smap,
                                                "signer": donor, "sig": base.signature}),
                        "unsupported-version", "envelope version 2"))
    neg.append(negative("unknown-type", envelope("invoice", smap, "donor"), "unknown-type",
                        "type 'invoice' does not exist"))
    neg.append(negative("unknown-field", envelope("settlement", dict(smap, fee=100), "donor"),
                        "schema", "settlement with an extra field 'fee'"))
    missing = {k: v for k, v in smap.items() if k != "head"}
    neg.append(negative("missing-field", envelope("settlement", missing, "donor"), "schema",
                        "settlement without 'head'"))
    lines = [dict(ln) for ln in smap["lines"]]
    lines[0]["amount"] += 1
    lines[1]["amount"] -= 1
    neg.append(negative("unequal-split", envelope("settlement", dict(smap, lines=lines), "donor"),
                        "bad-split", "amounts still sum to the budget but one line has one "
                        "unit too many"))
    lines = [dict(ln) for ln in smap["lines"]]
    lines[-1]["amount"] -= 1
    neg.append(negative("sum-below-budget", envelope("settlement", dict(smap, lines=lines),
                                                     "donor"),
                        "bad-split", "the last line is one unit short: sum != budget"))
    neg.append(negative("lines-unsorted",
                        envelope("settlement", dict(smap, lines=list(reversed(smap["lines"]))),
                                 "donor"), "schema", "lines not in ascending creator order"))
    cmap = claim_alice.body.to_map()
    bad_thing = dict(cmap, things=["https://Alice.example/post/1", cmap["things"][1]])
    neg.append(negative("non-normalised-thing", envelope("claim", bad_thing, "donor"),
                        "bad-thing", "claim with an upper-case host"))
    kmap = rot.body.to_map()
    neg.append(negative("rotation-without-cosig", envelope("key", kmap, "alice2"),
                        "bad-rotation", "key document with 'prev' but no 'cosig'"))
    neg.append(negative("rotation-bad-cosig",
                        envelope("key", kmap, "alice2", extra={"cosig": rot.signature}),
                        "bad-rotation", "cosig made by the new key instead of the old one"))
    same = {"a": a.raw, "b": a.raw}
    neg.append(negative("equivocation-same", envelope("equivocation", same, "carol"),
                        "bad-equivocation", "the same settlement twice is no equivocation"))
    swapped = {"a": b.raw, "b": a.raw}
    neg.append(negative("equivocation-order", envelope("equivocation", swapped, "carol"),
                        "bad-equivocation", "a must have the smaller ID"))
    neg.append(negative("self-receipt",
                        envelope("receipt", dict(rmap, donor=alice), "alice"),
                        "self-receipt", "a receipt whose donor is its own signer"))
    neg.extend(cbor_negatives(base, receipt, claim_alice))
    pseudonyms = anonymous_vectors(pos, neg, entries[-1].id, things)
    neg += field_negatives(res.settlement, claim_alice, receipt, kd, rot)
    statement = statement_vector(claim_alice, receipt)
    pos.append(positive("statement", statement, "alice",
                        "alice's statement for the month: the donor's claim, receipted, and "
                        "a claim in another currency still owed; totals per currency"))
    neg += statement_negatives(statement)
    listing_vectors(pos, neg)

    return {
        "description": "Rill protocol v1 test vectors; see SPEC.md section 10. "
                       "Generated by tests/vectors/generate.py.",
        "verify_at": VERIFY_AT,
        "positive": pos,
        "negative": neg,
        "pseudonyms": pseudonyms,
        "reconcile": reconcile_section(pos),
        "shard": shard_section(pos, {n: pub(n) for n in SHARD_KEYS}),
        "reach": reach_section(),
        "sync": sync_section(pos, pub("alice")),
    }


def anonymous_vectors(pos: list[dict[str, Any]], neg: list[dict[str, Any]], head: bytes,
                      things: dict[str, bytes]) -> list[dict[str, Any]]:
    """Pseudonyms (SPEC §2.4), disclosures (§5.10) and a month settled under a pseudonym
    whose claim to bob discloses it; returns the derivation vectors."""
    from rill.protocol.disclosure import make_disclosure, pseudonym_key, pseudonym_seed
    from rill.protocol.settle import blind_head

    alice, bob = pub("alice"), pub("bob")
    derivations = []
    for month in (MONTH, "2026-11"):
        ps = pseudonym_seed(seed("donor"), month)
        derivations.append({"identity_seed": seed("donor").hex(), "month": month,
                            "pseudonym_seed": ps.hex(),
                            "pseudonym": keys.did_from_key(keys.public_key(
                                nacl.signing.SigningKey(ps)))})
    pkey = pseudonym_key(key("donor"), MONTH)
    pseed = pseudonym_seed(seed("donor"), MONTH).hex()

    def as_pseudonym(v: dict[str, Any]) -> dict[str, Any]:
        return dict(v, signer_seed=pseed)

    d = make_disclosure(key("donor"), MONTH, to=alice)
    pos.append(positive("disclosure", d, "donor", "the donor discloses its 2026-10 pseudonym "
                        "to alice: signed by the identity, proof by the pseudonym"))
    public = make_disclosure(key("donor"), MONTH)
    pos.append(positive("disclosure-public", public, "donor",
                        "a disclosure without recipient ('to' left out)"))
    to_bob = make_disclosure(key("donor"), MONTH, to=bob)
    res = settle(pkey, MONTH, 1001, "EUR", blind_head(pkey, head), things,
                 disclosures={bob: to_bob.raw})
    pos.append(as_pseudonym(positive(
        "settlement-anonymous", res.settlement, "donor",
        "the month settled under the donor's pseudonym (signer_seed: the pseudonym seed); "
        "head blinded, salts, seals and work from the pseudonym")))
    for c, sc in zip(res.claims, res.sealed, strict=True):
        if c.body.creator == bob:
            pos.append(as_pseudonym(positive("claim-anonymous-disclosed", c, "donor",
                                             "bob's claim carries the disclosure to bob")))
            pos.append(as_pseudonym(positive("sealed-claim-anonymous-disclosed", sc, "donor",
                                             "that claim sealed to bob")))
    dmap = d.body.to_map()
    link = m.Disclosure.link_map(d.body)
    wrong_proof = keys.sign(key("donor"), b"rill/1/disclosure-link\n" + pub("donor")
                            + cbor.encode(link))
    neg.append(negative("disclosure-proof-by-identity",
                        envelope("disclosure", dict(dmap, proof=wrong_proof), "donor"),
                        "bad-disclosure", "proof signed by the identity, not the pseudonym"))
    self_link = {"pseudonym": pub("donor"), "month": MONTH}
    self_proof = keys.sign(key("donor"), b"rill/1/disclosure-link\n" + pub("donor")
                           + cbor.encode(self_link))
    neg.append(negative("disclosure-of-itself",
                        envelope("disclosure", dict(self_link, proof=self_proof), "donor"),
                        "bad-disclosure", "pseudonym = signer"))
    neg.append(negative("disclosure-short-proof",
                        envelope("disclosure", dict(dmap, proof=dmap["proof"][:63]), "donor"),
                        "schema", "a 63-byte proof"))
    claim_bob = next(c for c in res.claims if c.body.creator == bob)
    cmap = dict(claim_bob.body.to_map(), disclosure=d.raw)
    raw = write({"v": 1, "t": "claim", "body": cmap, "signer": keys.public_key(pkey),
                 "sig": keys.sign(pkey, m.signing_input("claim", write(cmap)))})
    neg.append(negative("claim-disclosure-to-another", raw, "bad-disclosure",
                        "bob's claim carrying the disclosure addressed to alice"))
    return derivations


def field_negatives(settlement: m.Signed[Any], claim: m.Signed[Any], receipt: m.Signed[Any],
                    keydoc: m.Signed[Any], rotation: m.Signed[Any]) -> list[dict[str, Any]]:
    """One vector per decision of SPEC §4.4 and §5 on field codes and check order, and the
    time rule of §7.4 for the last month a settlement or an equivocation proof can name."""
    neg: list[dict[str, Any]] = []
    alice = pub("alice")
    smap, cmap = settlement.body.to_map(), claim.body.to_map()
    rmap, kmap = receipt.body.to_map(), keydoc.body.to_map()

    def add(name: str, raw: bytes, reason: str, note: str) -> None:
        neg.append(negative(name, raw, reason, note))

    def env_with(type_name: str, body: Any, author: str, **fields: Any) -> bytes:
        """An envelope signed correctly, then with envelope fields replaced or removed."""
        sig = keys.sign(key(author), m.signing_input(type_name, write(body)))
        env: dict[str, Any] = {"v": 1, "t": type_name, "body": body, "signer": pub(author),
                               "sig": sig}
        for k, v in fields.items():
            if v is None:
                env.pop(k)
            else:
                env[k] = v
        return write(env)

    # -- step 3: version and type ---------------------------------------------------
    add("version-2-to-the-40", env_with("receipt", rmap, "alice", v=2**40),
        "unsupported-version", "v = 2**40: any uint other than 1 (not schema)")
    add("version-negative", env_with("receipt", rmap, "alice", v=-1), "schema",
        "v = -1 is not a uint")
    add("version-missing", env_with("receipt", rmap, "alice", v=None), "schema",
        "no v at all")
    add("type-40-bytes", env_with("receipt", rmap, "alice", t="receipt" * 5 + "s" * 5),
        "unknown-type", "t is a 40-byte text: any text that is not a v1 type")
    add("type-not-text", env_with("receipt", rmap, "alice", t=b"receipt"), "schema",
        "t is a byte string")
    # -- step 5: envelope fields in the order signer, sig, cosig, body, unknown keys ---
    add("signer-31-bytes", env_with("receipt", rmap, "alice", signer=alice[:31]), "bad-key",
        "a 31-byte signer: bad-key for any value that is not a key")
    add("signer-text", env_with("receipt", rmap, "alice", signer=keys.did_from_key(alice)),
        "bad-key", "the signer written as did:key text")
    add("signer-missing", env_with("receipt", rmap, "alice", signer=None), "schema",
        "no signer: a missing field is schema")
    add("sig-63-bytes", env_with("receipt", rmap, "alice", sig=bytes(63)), "bad-signature",
        "a 63-byte sig")
    add("signer-before-sig", env_with("receipt", rmap, "alice", signer=alice[:31],
                                      sig="x"), "bad-key",
        "a bad signer and a bad sig: signer is checked first")
    add("cosig-text", env_with("key", kmap, "alice", cosig="sig"), "bad-rotation",
        "cosig is text")
    add("unknown-envelope-key-before-body",
        env_with("receipt", dict(rmap, currency="EURO"), "alice", note="hi"), "schema",
        "an unknown envelope key and a bad body field: the envelope comes first")
    add("body-not-a-map", env_with("receipt", [rmap], "alice"), "schema",
        "body is an array")
    # -- step 6: field kinds with their own codes, whatever the CBOR type ---------------
    add("currency-4-letters", envelope("settlement", dict(smap, currency="EURO"), "donor"),
        "bad-currency", "currency EURO (4 letters; not schema)")
    add("currency-bytes", envelope("receipt", dict(rmap, currency=b"EUR"), "alice"),
        "bad-currency", "currency as a byte string")
    add("currency-lower-case", envelope("receipt", dict(rmap, currency="eur"), "alice"),
        "bad-currency", "currency eur")
    add("month-integer", envelope("settlement", dict(smap, month=202610), "donor"),
        "bad-month", "month as the integer 202610")
    fullwidth = "\uff12\uff10\uff12\uff16-10"  # 2026-10 in FULLWIDTH digits
    add("month-fullwidth-digits", envelope("receipt", dict(rmap, month=fullwidth), "alice"),
        "bad-month", "month written with FULLWIDTH digits: ASCII digits only")
    add("month-1999-12", envelope("receipt", dict(rmap, month="1999-12"), "alice"),
        "bad-month", "year before 2000")
    add("month-10000-01", envelope("receipt", dict(rmap, month="10000-01"), "alice"),
        "bad-month", "five-digit year")
    add("thing-integer", envelope("claim", dict(cmap, things=[7, *cmap["things"][1:]]),
                                  "donor"),
        "bad-thing", "an integer where a thing belongs")
    add("thing-3000-bytes", envelope("claim", dict(cmap, things=[
        cmap["things"][0], "https://alice.example/" + "a" * 3000]), "donor"),
        "bad-thing", "a thing longer than 2,048 bytes is bad-thing, not schema")
    add("creator-31-bytes", envelope("claim", dict(cmap, creator=cmap["creator"][:31]),
                                     "donor"),
        "bad-key", "claim creator of 31 bytes")
    lines = [dict(ln) for ln in smap["lines"]]
    lines[1]["creator"] = keys.did_from_key(lines[1]["creator"])
    add("line-creator-text", envelope("settlement", dict(smap, lines=lines), "donor"),
        "bad-key", "a settlement line's creator as did:key text")
    add("donor-missing", envelope("receipt", {k: v for k, v in rmap.items() if k != "donor"},
                                  "alice"),
        "schema", "a receipt without donor: missing is schema, not bad-key")
    add("origin-integer", envelope("key", dict(kmap, origins=[443]), "alice"), "bad-origin",
        "an integer origin")
    add("payto-bytes", envelope("key", dict(kmap, payto=[b"payto://iban/DE75"]), "alice"),
        "bad-payto", "a payto URI as a byte string")
    # -- step 6: labels and text -----------------------------------------------------
    add("name-c1-control", envelope("key", dict(kmap, name="Alice\u009bs blog"), "alice"),
        "schema", "U+009B (a C1 control) in a name")
    add("name-trailing-nbsp", envelope("key", dict(kmap, name="Alice\u00a0"), "alice"),
        "schema", "a name ending with U+00A0 (White_Space)")
    add("name-leading-ideographic-space", envelope("key", dict(kmap, name="\u3000Alice"),
                                                   "alice"),
        "schema", "a name beginning with U+3000 (White_Space)")
    add("reference-bidi-override", envelope("receipt", dict(rmap, reference="INV-\u202e1234"),
                                            "alice"),
        "schema", "U+202E (right-to-left override) in a receipt reference")
    add("reference-bidi-isolate", envelope("receipt", dict(rmap, reference="\u2066x\u2069"),
                                           "alice"),
        "schema", "U+2066..U+2069 (bidi isolates) in a receipt reference")
    # -- step 6: limits, arrays (count, items, order), table order, unknown fields -----
    add("lines-2001", envelope("settlement", dict(smap, lines=[0] * 2001), "donor"),
        "schema", "2,001 lines (at most 2,000): the count is checked before the items")
    lines = [dict(ln) for ln in smap["lines"]]
    lines[0]["things"] += 10000
    add("line-things-10001", envelope("settlement", dict(
        smap, things=smap["things"] + 10000, lines=lines), "donor"),
        "schema", "a line with k = 10,001 things (at most 10,000)")
    add("settlement-things-20000001", envelope("settlement", dict(smap, things=20_000_001),
                                               "donor"),
        "schema", "n = 20,000,001 (at most 20,000,000)")
    add("origins-17", envelope("key", dict(kmap, origins=[1] * 17), "alice"), "schema",
        "17 origins (at most 16): count before items")
    add("origins-item-before-order", envelope("key", dict(
        kmap, origins=["https://z.example", "https://Alice.example"]), "alice"),
        "bad-origin", "unsorted origins with a bad item: items before the order")
    add("things-item-before-order", envelope("claim", dict(
        cmap, things=[cmap["things"][1], "https://Alice.example/"]), "donor"),
        "bad-thing", "unsorted things with a bad item: items before the order")
    add("table-order-not-map-order", envelope("settlement", dict(smap, currency="EURO",
                                                                 lines="none"), "donor"),
        "bad-currency", "bad currency and bad lines: the table's order (currency before "
                        "lines), not the map's (lines before currency)")
    add("unknown-field-last", envelope("settlement", dict(smap, aaa=1, currency="EURO"),
                                       "donor"),
        "bad-currency", "an unknown field 'aaa' (first in map order) and a bad currency: "
                        "unknown fields are checked after every known field")
    lines = [dict(ln) for ln in smap["lines"]]
    lines[0]["x"] = 1
    lines[1]["creator"] = keys.did_from_key(lines[1]["creator"])
    add("nested-map-checked-at-its-field", envelope("settlement", dict(smap, lines=lines),
                                                    "donor"),
        "schema", "line 0 has an unknown field, line 1 a text creator: a nested map is "
                  "checked completely, its unknown fields included, at its own point")
    add("work-negative", envelope("settlement", dict(smap, work=-1), "donor"), "schema",
        "work = -1 is not a uint")
    add("box-48-bytes", envelope("sealed-claim", {
        "settlement": cmap["settlement"], "month": cmap["month"], "creator": cmap["creator"],
        "claim": claim.id, "box": bytes(48)}, "donor"), "schema",
        "a sealed box of 48 bytes (at least 49)")
    # -- steps 7 and 9: the signature before the type's rules ---------------------------
    click = {"seq": 1, "prev": m.ZERO_HASH, "time": VERIFY_AT - 86400, "kind": "click",
             "data": {"thing": "https://alice.example/"}}
    add("bad-chain", envelope("click", click, "donor"), "bad-chain",
        "seq 1 with an all-zero prev, correctly signed")
    add("bad-signature-before-bad-chain", envelope("click", click, "donor", sign_with="alice"),
        "bad-signature", "seq 1 with an all-zero prev, signed by another key: the signature "
                         "(step 7) is checked before the type's rules (step 9)")
    # -- §7.4 at verify_at: the last month --------------------------------------------
    late = settle(key("donor"), "9999-12", 300, "EUR", m.ZERO_HASH,
                  {"https://alice.example/": alice}, work_bits=0)
    add("settlement-9999-12", late.settlement.raw, "future",
        "valid under §4.4 (month_end = 253402300800); refused by §7.4: not ended at verify_at")
    later = settle(key("donor"), "9999-12", 301, "EUR", m.ZERO_HASH,
                   {"https://alice.example/": alice}, work_bits=0)
    a, b = sorted([late.settlement, later.settlement], key=lambda s: s.id)
    proof = m.sign(m.Equivocation(a.raw, b.raw), key("carol"))
    add("equivocation-9999-12", proof.raw, "future",
        "a valid proof of two 9999-12 settlements: dated by its settlements' month (§7.4)")
    return neg


def statement_vector(claim: m.Signed[Any], receipt: m.Signed[Any]) -> m.Signed[Any]:
    """Alice's statement (SPEC §5.9): her one claim of the month, receipted."""
    from rill.protocol.statement import StatementRow, make_statement

    rows = [StatementRow(claim.id, claim.signer, "EUR", claim.body.amount, "receipted",
                         receipt.id, receipt.body.amount)]
    return m.sign(make_statement(MONTH, month_end(MONTH) + 4 * 86400, rows), key("alice"))


def statement_negatives(statement: m.Signed[Any]) -> list[dict[str, Any]]:
    """One negative per rule of SPEC §5.9 (the statement's rows: its receipted row and an
    owed row in USD added, whose claim ID is any 32 bytes)."""
    from rill.protocol.statement import StatementRow, make_statement

    neg: list[dict[str, Any]] = []
    owed_row = StatementRow(hashlib.sha256(b"another claim").digest(), pub("bob"), "USD",
                            1234, "owed")
    body = statement.body
    smap = make_statement(body.month, body.time, (*body.rows, owed_row)).to_map()

    def add(name: str, body: dict[str, Any], reason: str, note: str) -> None:
        neg.append(negative(name, envelope("statement", body, "alice"), reason, note))

    totals = [dict(t) for t in smap["totals"]]
    totals[0]["amount"] += 1
    add("statement-total-off-by-one", dict(smap, totals=totals), "bad-total",
        "the EUR total is one cent more than its rows")
    add("statement-total-missing", dict(smap, totals=smap["totals"][:1]), "bad-total",
        "no total for USD, which a row uses")
    totals = [*smap["totals"], {"currency": "ZAR", "claims": 1, "amount": 0, "received": 0}]
    add("statement-total-unused", dict(smap, totals=totals), "bad-total",
        "a total for ZAR, which no row uses")
    add("statement-part-after-parts", dict(smap, part=2, parts=1), "bad-total",
        "part 2 of 1")
    add("statement-rows-unsorted", dict(smap, rows=smap["rows"][::-1]), "schema",
        "rows not ascending by claim")
    r = next(i for i, row in enumerate(smap["rows"]) if row["state"] == "receipted")
    o = 1 - r  # the owed row

    def with_row(i: int, row: dict[str, Any]) -> list[Any]:
        rows = list(smap["rows"])
        rows[i] = row
        return rows

    receipted = dict(smap["rows"][r])
    del receipted["receipt"]
    add("statement-receipted-without-receipt", dict(smap, rows=with_row(r, receipted)), "schema",
        "state receipted without 'receipt'")
    owed = dict(smap["rows"][o], receipt=bytes(32), received=0)
    add("statement-owed-with-receipt", dict(smap, rows=with_row(o, owed)), "schema",
        "state owed with 'receipt' and 'received'")
    add("statement-unknown-state",
        dict(smap, rows=with_row(o, dict(smap["rows"][o], state="refunded"))), "schema",
        "state is not owed, paid or receipted")
    add("statement-row-bad-currency",
        dict(smap, rows=with_row(o, dict(smap["rows"][o], currency="usd"))), "bad-currency",
        "a row's currency in lower case")
    totals = [dict(t) for t in smap["totals"]]
    totals[0]["amount"] += 1
    add("statement-row-unknown-field-before-totals",
        dict(smap, rows=with_row(o, dict(smap["rows"][o], note="x")), totals=totals),
        "schema", "an unknown field in a row (step 6) is found before wrong totals (step 9)")
    add("statement-time-before-month-end", dict(smap, time=month_end(MONTH) - 301),
        "bad-time", "signed before its month ended (§7.4)")
    add("statement-time-future", dict(smap, time=VERIFY_AT + 301), "future",
        "signed after verify_at plus the skew (§7.4)")
    return neg


def listing_vectors(pos: list[dict[str, Any]], neg: list[dict[str, Any]]) -> None:
    """SPEC §5.8: an announcement, a withdrawal, and one negative per field decision."""
    t = VERIFY_AT - 86400
    full = m.Listing("https://alice.example/songs/rain", t, "Rain on the roof", "audio",
                     "A field recording, twelve minutes.", ("field-recording", "rain"),
                     "en-GB")
    pos.append(positive("listing", m.sign(full, key("alice")), "alice",
                        "alice lists one of her things (every field)"))
    short = m.Listing("https://alice.example/blog", t, "Alice's blog", "text")
    pos.append(positive("listing-minimal", m.sign(short, key("alice")), "alice",
                        "an announcement with only the required fields"))
    gone = m.Listing("https://alice.example/songs/rain", t + 60)
    pos.append(positive("listing-withdrawal", m.sign(gone, key("alice")), "alice",
                        "a withdrawal: only thing and time"))
    base = full.to_map()

    def add(name: str, body: dict[str, Any], reason: str, note: str) -> None:
        neg.append(negative(name, envelope("listing", body, "alice"), reason, note))

    add("listing-non-web-thing", dict(base, thing="urn:isbn:9780141036144"), "bad-thing",
        "only a web thing has an origin, so only a web thing can be listed")
    add("listing-unnormalised-thing", dict(base, thing="https://Alice.example/songs/rain"),
        "bad-thing", "the thing must be normalised (§6.1)")
    add("listing-bad-kind", dict(base, kind="music"), "schema", "kind is one of six words")
    add("listing-title-white-space", dict(base, title=" Rain"), "schema",
        "a title is a label: no white space at either end")
    add("listing-description-too-long", dict(base, description="x" * 1001), "schema",
        "description: at most 1,000 bytes")
    add("listing-tags-unsorted", dict(base, tags=["rain", "field-recording"]), "schema",
        "tags sorted by their UTF-8 bytes")
    add("listing-tag-capital", dict(base, tags=["Rain"]), "schema",
        "no ASCII capital in a tag")
    add("listing-tag-space", dict(base, tags=["field recording"]), "schema",
        "a tag is one word")
    add("listing-eleven-tags", dict(base, tags=[f"t{i:02d}" for i in range(11)]), "schema",
        "at most 10 tags")
    add("listing-bad-lang", dict(base, lang="EN"), "schema",
        "lang: a lowercase primary subtag of 2 or 3 letters")
    add("listing-half-withdrawal", {"thing": base["thing"], "time": t, "tags": ["rain"]},
        "schema", "tags without a title and kind: neither an announcement nor a withdrawal")
    add("listing-title-without-kind", {"thing": base["thing"], "time": t, "title": "Rain"},
        "schema", "an announcement has both title and kind")
    add("listing-thing-before-kind", dict(base, thing="urn:isbn:9780141036144", kind="music"),
        "bad-thing", "thing is the first row of the table: its code wins over a later field")
    add("listing-future", dict(base, time=VERIFY_AT + 3600), "future",
        "dated an hour after verify_at (§7.4)")


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=False) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = render()
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT} is stale: run `make vectors`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    data = json.loads(text)
    print(f"wrote {OUT}: {len(data['positive'])} positive, {len(data['negative'])} negative")
    return 0


if __name__ == "__main__":
    sys.exit(main())
