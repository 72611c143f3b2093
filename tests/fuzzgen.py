"""Structured fuzzing: validly signed Rill objects of every type with boundary values.

Random bytes never pass a signature check, so they never reach what lies behind it
(time rules, the wallet, the dashboard).  This module builds bodies as plain dicts,
with boundary or just-invalid values in every field (:mod:`fuzzvalues`), and signs
them with a small local signer: the canonical CBOR envelope with a real Ed25519
signature over ``b"rill/1/" + type + b"\\n" + cbor(body)``.  It therefore produces
objects :func:`rill.protocol.messages.sign` would refuse, and body bytes that are
not even canonical CBOR (:meth:`Gen.mutate` flips a byte of the body and signs again).

The core runs on :class:`random.Random` (a soak draws a million inputs);
:func:`samples` and :func:`batches` are hypothesis strategies on top (seeds).
"""

from __future__ import annotations

import hashlib
import hmac
import random
from typing import Any

import nacl.signing
from fuzzsign import (
    TYPES,
    ZERO,
    Bundle,
    Sample,
    World,
    commit,
    files_of,
    seal_box,
    split,
)
from fuzzvalues import (
    INVALID_ORIGINS,
    INVALID_PAYTO,
    INVALID_THINGS,
    MAX_SAFE,
    SMALL_ORDER,
    VALID_ORIGINS,
    VALID_PAYTO,
    WRONG_TYPES,
    Values,
    bad_key,
    month_end,
    text,
)
from hypothesis import strategies as st

# -- the generator ------------------------------------------------------------------------


class Gen:
    """Objects of every type.  ``p`` is the chance each field is bent out of its rule
    (drawn per object when None: many objects stay valid and reach deep code)."""

    def __init__(self, rnd: random.Random, world: World, p: float | None = None) -> None:
        self.r = rnd
        self.w = world
        self.fixed_p = p
        self.ids: list[bytes] = []  # IDs of objects generated so far (for references)

    def _values(self) -> Values:
        p = self.fixed_p if self.fixed_p is not None else self.r.choice(
            [0.0, 0.0, 0.02, 0.1, 0.3, 1.0])
        return Values(self.r, p)

    def _done(self, s: Sample, v: Values, structural: bool = True) -> Sample:
        if structural and isinstance(s.body, dict) and v.bend("structure"):
            self._restructure(s.body)
        s.bent = v.bent
        self.ids.append(hashlib.sha256(s.raw).digest())
        del self.ids[:-64]
        return s

    def _restructure(self, body: dict[str, Any]) -> None:
        """Remove a field, add an unknown one, or give one a value of another type."""
        r = self.r
        kind = r.randrange(3)
        if kind == 0 and body:
            del body[r.choice(sorted(body))]
        elif kind == 1:
            body[r.choice(["x", "zz", "", "\u00e9", "v", "work", "sig"])] = r.choice(
                [0, "", b"", [], {}, 2**64 - 1])
        elif body:
            body[r.choice(sorted(body))] = r.choice(WRONG_TYPES)

    def donor(self) -> nacl.signing.SigningKey:
        return self.r.choice(self.w.donors)

    def creators(self, n: int) -> list[nacl.signing.SigningKey]:
        return self.r.sample(self.w.creators, n) if n <= len(self.w.creators) else []

    def own_things(self, prefix: str, k: int) -> list[str]:
        width = max(1, len(str(k)))
        return [f"https://{prefix}.example/t/{i:0{width}d}" for i in range(k)]

    # -- one object of each type ------------------------------------------------------

    def obj(self, t: str | None = None) -> Sample:
        t = t or self.r.choice(TYPES)
        return getattr(self, t.replace("-", "_"))()

    def click(self) -> Sample:
        v, r = self._values(), self.r
        seq = v.uint("seq", 0, MAX_SAFE) if r.random() < 0.6 else 0
        prev = ZERO if seq == 0 else r.randbytes(32)
        if v.bend("chain"):
            prev = r.randbytes(32) if seq == 0 else ZERO
        kind = v.either("kind", lambda: r.choice(["click", "subscribe", "unsubscribe", "budget"]),
                        lambda: r.choice(["", "Click", "budget\x00", "x" * 17, 1]))
        data: dict[str, Any] = {}
        if kind == "budget":
            data = {"amount": v.uint("amount"), "currency": v.currency("currency")}
        else:
            if kind != "unsubscribe" or r.random() < 0.5:
                data["thing"] = v.thing("thing", [])
            if r.random() < 0.5 or (kind == "unsubscribe" and not data):
                data["creator"] = v.key("creator", bytes(r.choice(self.w.creators).verify_key))
            if kind == "subscribe" and r.random() < 0.5:
                data["months"] = v.uint("months", 1, 1200)
        body = {"seq": seq, "prev": v.hash("prev") if v.bend("prev-hash") else prev,
                "time": v.time("time", self.w.near_times), "kind": kind, "data": data}
        return self._done(Sample("click", body, self.donor()), v)

    def key(self) -> Sample:
        v, r = self._values(), self.r
        # often one of the creators the wallet owes (their documents reach its views)
        sk = r.choice(self.w.creators[:3] if r.random() < 0.3 else self.w.creators)
        origins = [f"https://c{i}.example" for i in range(24)] + VALID_ORIGINS
        payto = VALID_PAYTO + [f"payto://iban/DE{i:020d}" for i in range(12)]
        body: dict[str, Any] = {
            "name": v.label("name", 128),
            "origins": v.strings("origins", origins, INVALID_ORIGINS, 1, 16, ordered=True),
            "payto": v.strings("payto", payto, INVALID_PAYTO, 0, 8, ordered=False),
            "valid_from": v.time("valid_from", self.w.near_times),
        }
        cosig_sk = None
        if r.random() < 0.3:
            prev = r.choice(self.w.creators)
            body["prev"] = v.key("prev", bytes(prev.verify_key))
            if v.bend("prev-is-signer"):
                body["prev"], prev = bytes(sk.verify_key), sk
            cosig_sk = prev
        if v.bend("cosig"):
            cosig_sk = None if cosig_sk is not None else r.choice(self.w.creators)
        return self._done(Sample("key", body, sk, cosig_sk=cosig_sk), v)

    def listing(self) -> Sample:
        """A listing (SPEC §5.8) of a thing on one of the sites the creators' key
        documents name (c0..c23.example), an announcement or a withdrawal."""
        v, r = self._values(), self.r
        sk = r.choice(self.w.creators)
        body: dict[str, Any] = {
            "thing": v.either("thing", lambda: f"https://c{r.randrange(24)}.example/p/"
                                               f"{r.randrange(40)}",
                              lambda: r.choice([*INVALID_THINGS, "urn:isbn:9780141036144",
                                                "did:key:z6Mk", "https://C1.example/p"])),
            "time": v.time("time", self.w.near_times)}
        announce = r.random() < 0.8
        if announce or v.bend("half-withdrawal"):
            body["title"] = v.label("title", 200)
            if announce:
                body["kind"] = v.either("kind", lambda: r.choice(
                    ["text", "audio", "video", "image", "software", "other"]),
                    lambda: r.choice(["Text", "music", "", 3]))
            if r.random() < 0.6:
                body["description"] = v.either(
                    "description", lambda: text(r, 1000, clean=True, allow_empty=True),
                    lambda: r.choice(["x" * 1001, "a\nb", "\u202e"]))
            if r.random() < 0.6:
                pool = ["rain", "essay", "field-recording", "music", "été", "日本", "x" * 32]
                body["tags"] = v.either(
                    "tags", lambda: sorted(r.sample(pool, r.randint(0, 5)),
                                           key=lambda t: t.encode()),
                    lambda: r.choice([["b", "a"], ["Rain"], ["two words"], ["x" * 33],
                                      [f"t{i:02d}" for i in range(11)], [""], [1], "rain"]))
            if r.random() < 0.5:
                body["lang"] = v.either("lang", lambda: r.choice(["en", "pt-BR", "gsw",
                                                                  "zh-Hant-TW"]),
                                        lambda: r.choice(["EN", "english", "e", "en_GB",
                                                          "en-", ""]))
        return self._done(Sample("listing", body, sk), v)

    def bundle(self, *, donor: nacl.signing.SigningKey | None = None, month: Any = None,
               max_lines: int | None = None, claims: int = 3, seal: bool = True,
               work: bool = True) -> Bundle:
        """A settlement with the claims and sealed claims of up to ``claims`` of its lines
        (the wallet's line first)."""
        v, r = self._values(), self.r
        sk = donor or self.donor()
        c = r.random()
        if max_lines is not None:
            n_lines = r.randint(0, max_lines)
        elif c < 0.1:
            n_lines = 0
        elif c < 0.998:
            n_lines = r.randint(1, 6)
        else:
            n_lines = r.choice([1999, 2000, 2001])
        creators = sorted(self.creators(min(n_lines, 2000)), key=lambda k: bytes(k.verify_key))
        if n_lines == 2001:
            creators.append(creators[0])  # one too many, and a duplicate
        if r.random() < 0.3 and creators and n_lines < 100 and self.w.home not in creators:
            creators[r.randrange(len(creators))] = self.w.home  # a claim for the wallet
            creators.sort(key=lambda k: bytes(k.verify_key))
        counts = [r.choice([1, 1, 2, 3, 5]) if r.random() < 0.997 else r.choice([10000, 10001])
                  for _ in creators]
        month = month or v.month("month", self.w.RECENT)
        currency = v.currency("currency")
        budget = v.uint("budget")
        amounts = split(budget if type(budget) is int and budget >= 0 else 0, counts)
        secret = hashlib.sha256(bytes(sk) + b"salt").digest()
        salts = [hmac.new(secret, month.encode("utf-8", "replace") if isinstance(month, str)
                          else b"?", hashlib.sha256).digest()[:16] + bytes(c.verify_key)[:16]
                 for c in creators]
        thing_lists = [self.own_things(f"c{bytes(c.verify_key)[:3].hex()}", k)
                       if k <= 10000 else [] for c, k in zip(creators, counts, strict=True)]
        lines = [{"creator": bytes(c.verify_key), "amount": a, "things": k,
                  "commit": commit(s, ts)}
                 for c, a, k, s, ts in zip(creators, amounts, counts, salts, thing_lists,
                                           strict=True)]
        if lines and v.bend("split"):
            line = r.choice(lines)
            line["amount"] = r.choice([line["amount"] + 1, max(0, line["amount"] - 1), 0,
                                       MAX_SAFE])
        if lines and v.bend("line"):
            line = r.choice(lines)
            field_ = r.choice(["creator", "amount", "things", "commit"])
            line[field_] = {"creator": lambda: v.key("creator*", line["creator"]),
                            "amount": lambda: v.uint("amount*"),
                            "things": lambda: v.uint("things*", 1, MAX_SAFE),
                            "commit": lambda: v.hash("commit*")}[field_]()
            if r.random() < 0.3:
                self._restructure(line)
        if len(lines) > 1 and v.bend("line-order"):
            i = r.randrange(len(lines) - 1)
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        n = sum(counts)
        if v.bend("n"):
            n = r.choice([n + 1, max(0, n - 1), 0, MAX_SAFE, 20_000_001])
        body = {"month": month, "currency": currency, "budget": budget, "things": n,
                "head": v.hash("head", self.ids), "lines": lines}
        if work and r.random() < 0.1:
            body["work"] = v.uint("work", 0, 2**64 - 1)  # optional field being added
        settlement = self._done(Sample("settlement", body, sk), v)
        sid = hashlib.sha256(settlement.raw).digest()
        claim_list: list[Sample] = []
        sealed: list[Sample] = []
        picks = [i for i in range(len(creators)) if creators[i] is self.w.home]
        picks += r.sample(range(len(creators)), min(len(creators), r.randint(1, 3)))
        for i in list(dict.fromkeys(picks))[:claims]:
            if counts[i] > 10000:
                continue
            cl = self._claim(sk, sid, month, creators[i], currency, amounts[i], thing_lists[i],
                             salts[i])
            claim_list.append(cl)
            if seal:
                sealed.append(self._sealed(cl, sk))
        return Bundle(settlement, claim_list, sealed)

    def _claim(self, sk: nacl.signing.SigningKey, sid: bytes, month: Any,
               creator: nacl.signing.SigningKey, currency: Any, amount: int,
               things: list[str], salt: bytes) -> Sample:
        v, r = self._values(), self.r
        things = list(things)
        if v.bend("things"):
            kind = r.randrange(4)
            if kind == 0 and len(things) > 1:
                things.reverse()
            elif kind == 1:
                things.append(things[-1] if things else "x:y")
            elif kind == 2:
                things = []
            else:
                things[r.randrange(len(things))] = r.choice(INVALID_THINGS)
        body = {"settlement": v.hash("settlement", [sid]) if v.bend("settlement-id") else sid,
                "month": v.month("month", self.w.RECENT) if v.bend("month-mismatch") else month,
                "creator": v.key("creator", bytes(creator.verify_key)),
                "currency": v.currency("currency") if v.bend("currency-mismatch") else currency,
                "amount": v.uint("amount") if v.bend("amount-mismatch") else amount,
                "things": things,
                "salt": v.hash("salt") if v.bend("salt-mismatch") else salt}
        signer = self.donor() if v.bend("claim-signer") else sk
        return self._done(Sample("claim", body, signer), v)

    def _sealed(self, claim: Sample, sk: nacl.signing.SigningKey) -> Sample:
        v, r = self._values(), self.r
        body = dict(claim.body) if isinstance(claim.body, dict) else {}
        creator = body.get("creator")
        inner = claim.raw
        if v.bend("content"):
            inner = r.choice([b"", b"\xa0", inner[:-1], self.key().raw, inner + b"\x00"])
        esk = hashlib.sha256(b"esk" + inner).digest()
        try:
            box = seal_box(inner, creator, esk)  # type: ignore[arg-type]
        except (TypeError, ValueError, RuntimeError, Exception):  # a bad key: no X25519 form
            box = r.randbytes(r.choice([48, 49, 200]))
        if v.bend("box"):
            box = r.choice([box[:48], box[:-1], b"\x00" * len(box), r.randbytes(262193)])
        out = {"settlement": body.get("settlement", ZERO), "month": body.get("month", "2026-09"),
               "creator": creator, "claim": hashlib.sha256(claim.raw).digest(), "box": box}
        if v.bend("cover"):
            out[r.choice(["settlement", "month", "creator", "claim"])] = r.choice(
                [ZERO, "2026-08", bytes(self.donor().verify_key), r.randbytes(32)])
        return self._done(Sample("sealed-claim", out, sk), v)

    def settlement(self) -> Sample:
        return self.bundle(claims=0).settlement

    def claim(self) -> Sample:
        b = self.bundle(claims=1, max_lines=None if self.r.random() < 0.1 else 6, seal=False)
        return b.claims[0] if b.claims else b.settlement  # no line: no claim

    def sealed_claim(self) -> Sample:
        b = self.bundle(claims=1, max_lines=None if self.r.random() < 0.1 else 6)
        return b.sealed[0] if b.sealed else b.settlement

    def receipt(self, claim: Sample | None = None) -> Sample:
        v, r = self._values(), self.r
        if claim is not None and isinstance(claim.body, dict):
            cid = hashlib.sha256(claim.raw).digest()
            month, currency = claim.body.get("month"), claim.body.get("currency")
            creator = self.w.key(claim.body.get("creator")) or r.choice(self.w.creators)
            donor = bytes(claim.sk.verify_key)
        elif self.w.home_claims and r.random() < 0.6:
            cid, month, cpub, currency = r.choice(self.w.home_claims)
            creator = self.w.key(cpub) or r.choice(self.w.creators)
            donor = self.w.home_pub
        else:
            cid, month, currency = r.randbytes(32), v.month("month", self.w.RECENT), "EUR"
            creator, donor = r.choice(self.w.creators), bytes(self.donor().verify_key)
        if v.bend("month"):
            month = v.month("month*", self.w.RECENT)
        end = month_end(month) if isinstance(month, str) else None
        near = [end] if end is not None else self.w.near_times
        body = {"claim": v.hash("claim", [cid]) if v.bend("claim-id") else cid,
                "donor": v.key("donor", donor), "month": month,
                "currency": v.currency("currency") if v.bend("currency") else currency,
                "amount": v.uint("amount"), "reference": v.reference("reference"),
                "time": v.time("time", near)}
        if v.bend("self-receipt"):
            body["donor"] = bytes(creator.verify_key)
        return self._done(Sample("receipt", body, creator), v)

    def equivocation(self) -> Sample:
        v, r = self._values(), self.r
        donor = self.donor()
        month = v.month("month", self.w.RECENT)
        a = self.bundle(donor=donor, month=month, max_lines=3, claims=0).settlement
        b = self.bundle(donor=self.donor() if v.bend("donors") else donor,
                        month=v.month("month-b", self.w.RECENT) if v.bend("months") else month,
                        max_lines=3, claims=0).settlement
        ra, rb = a.raw, b.raw
        if (hashlib.sha256(ra).digest() > hashlib.sha256(rb).digest()) != v.bend("order"):
            ra, rb = rb, ra
        if v.bend("same"):
            rb = ra
        body = {"a": ra, "b": rb}
        return self._done(Sample("equivocation", body, r.choice(self.w.creators + self.w.donors)),
                          v)

    # -- raw mutation, still validly signed ----------------------------------------------

    def mutate(self, s: Sample) -> Sample:
        """Change the body's bytes (flip, replace, insert, delete, truncate) and sign again."""
        r = self.r
        data = bytearray(s.body_bytes)
        for _ in range(r.choice([1, 1, 1, 2, 4])):
            op = r.randrange(6)
            at = r.randrange(len(data)) if data else 0
            if op == 0 and data:
                data[at] ^= 1 << r.randrange(8)
            elif op == 1 and data:
                data[at] = r.choice([0x00, 0x17, 0x18, 0x1F, 0x3F, 0x5F, 0x7F, 0x9F, 0xBF, 0xC2,
                                     0xF4, 0xF5, 0xF6, 0xF7, 0xF9, 0xFB, 0xFF, r.randrange(256)])
            elif op == 2:
                data[at:at] = bytes([r.randrange(256)])
            elif op == 3 and data:
                del data[at]
            elif op == 4 and data:
                data = data[:at]
            elif data:
                end = min(len(data), at + r.randint(1, 8))
                data[at:at] = data[at:end]
        out = Sample(s.t, bytes(data), s.sk, s.cosig_sk, s.signer, [*s.bent, "mutated"])
        return out

    def sample(self, t: str | None = None) -> Sample:
        """An object, sometimes mutated, sometimes with a bad signer key."""
        s = self.obj(t)
        c = self.r.random()
        if c < 0.15:
            return self.mutate(s)
        if c < 0.17:
            signer = bad_key(self.r, bytes(s.sk.verify_key))
            if not isinstance(signer, bytes) or len(signer) != 32:
                signer = SMALL_ORDER[0]
            s = Sample(s.t, s.body, s.sk, s.cosig_sk, signer, [*s.bent, "signer"])
        return s

    # -- batches for `rill verify` ---------------------------------------------------------

    def batch(self) -> list[Sample]:
        """Objects that refer to each other (a settlement, its claims, receipts, keys)."""
        r = self.r
        b = self.bundle()
        out = [b.settlement, *b.claims, *b.sealed]
        for c in b.claims[:2]:
            out.append(self.receipt(c))
            if r.random() < 0.5 and isinstance(c.body, dict):
                doc = self.key()
                creator = self.w.key(c.body.get("creator"))
                if creator is not None:
                    doc = Sample("key", doc.body, creator, doc.cosig_sk, None, doc.bent)
                out.append(doc)
        out += [self.sample() for _ in range(r.randint(0, 3))]
        if r.random() < 0.2 and out:
            i = r.randrange(len(out))
            out[i] = self.mutate(out[i])
        r.shuffle(out)
        return out


# -- hypothesis strategies -------------------------------------------------------------

_WORLD: World | None = None


def world() -> World:
    """The shared world (its 2,049 keys are made once per process)."""
    global _WORLD
    if _WORLD is None:
        _WORLD = World()
    return _WORLD


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**64 - 1)


def sample_from_seed(seed: int, t: str | None = None) -> Sample:
    """What :func:`samples` draws: replay a reported failure with this call."""
    return Gen(random.Random(seed), world()).sample(t)


def batch_from_seed(seed: int) -> list[Sample]:
    return Gen(random.Random(seed), world()).batch()


def samples(t: str | None = None) -> st.SearchStrategy[Sample]:
    """Validly signed objects (of type ``t``, or any), from a seed."""
    return st.builds(sample_from_seed, seeds(), st.just(t))


def batches() -> st.SearchStrategy[list[Sample]]:
    return st.builds(batch_from_seed, seeds())


def gen_from(seed: int, p: float | None = None) -> Gen:
    return Gen(random.Random(seed), world(), p)


__all__ = ["TYPES", "Gen", "Sample", "World", "batches", "files_of", "samples", "seeds",
           "world"]
