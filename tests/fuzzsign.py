"""The local signer for structured fuzzing, and what it signs.

:func:`envelope` writes the canonical envelope around any body bytes (canonical CBOR or
not) with a real Ed25519 signature over ``b"rill/1/" + type + b"\\n" + body``, so a
fuzzer can sign what :func:`rill.protocol.messages.sign` would refuse.  A
:class:`Sample` keeps a body as a dict (or exact bytes) with its key, so a failing
input can be changed and signed again (shrinking).  :class:`World` holds the keys and
times every generated object shares.  Also: text armour and files for `rill verify`.
Nothing here imports rill.
"""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import cbor2
import nacl.bindings as nb
import nacl.signing
from fuzzvalues import month_end, month_start, signing_key

TYPES = ("click", "key", "settlement", "claim", "sealed-claim", "receipt", "equivocation",
         "listing")
ZERO = bytes(32)

# -- the local signer ------------------------------------------------------------------


def _item(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


def envelope(t: str, body_bytes: bytes, sk: nacl.signing.SigningKey, *,
             cosig: bytes | None = None, signer: bytes | None = None) -> bytes:
    """A canonical envelope around ``body_bytes`` (used as they are, canonical or not),
    signed by ``sk``; ``signer`` overrides the key written in it."""
    pub = bytes(sk.verify_key) if signer is None else signer
    sig = sk.sign(b"rill/1/" + t.encode("utf-8") + b"\n" + body_bytes).signature
    parts = [_item("t"), _item(t), _item("v"), _item(1), _item("sig"), _item(sig),
             _item("body"), body_bytes]
    if cosig is not None:
        parts += [_item("cosig"), _item(cosig)]
    parts += [_item("signer"), _item(pub)]
    return bytes([0xA0 + len(parts) // 2]) + b"".join(parts)


def rotation_sig(prev: nacl.signing.SigningKey, body_bytes: bytes) -> bytes:
    return prev.sign(b"rill/1/key-rotation\n" + body_bytes).signature


def seal_box(message: bytes, recipient: bytes, esk: bytes) -> bytes:
    """crypto_box_seal with a given ephemeral secret (SPEC §5.5), deterministic."""
    rpk = nb.crypto_sign_ed25519_pk_to_curve25519(recipient)
    epk = nb.crypto_scalarmult_base(esk)
    nonce = hashlib.blake2b(epk + rpk, digest_size=24).digest()
    return epk + nb.crypto_box(message, nonce, rpk, esk)


def commit(salt: bytes, things: list[str]) -> bytes:
    return hashlib.sha256(b"rill/1/things\n" + salt + _item(things)).digest()


def split(budget: int, counts: list[int]) -> list[int]:
    """Equal-share amounts of lines with ``counts`` things (SPEC §6.3)."""
    n = sum(counts)
    if n == 0:
        return [0] * len(counts)
    q, r = divmod(budget, n)
    out, before = [], 0
    for k in counts:
        out.append(k * q + min(k, max(0, r - before)))
        before += k
    return out


# -- the world the objects live in -------------------------------------------------------


class World:
    """Keys and times shared by every generated object (deterministic)."""

    #: "Now" for the fuzz: 2026-10-15 00:00 UTC; the acceptance window is 2026-07..10.
    NOW = month_start(2026, 10) + 14 * 86400
    RECENT: ClassVar[list[str]] = ["2026-07", "2026-08", "2026-09"]

    def __init__(self, n_creators: int = 2048) -> None:
        self.home_seed = hashlib.sha256(b"rill fuzz home").digest()
        self.home = nacl.signing.SigningKey(self.home_seed)
        self.home_pub = bytes(self.home.verify_key)
        self.donors = [signing_key(f"donor{i}") for i in range(6)]
        creators = [signing_key(f"creator{i}") for i in range(n_creators)]
        creators.append(self.home)
        creators.sort(key=lambda k: bytes(k.verify_key))
        self.creators = creators
        self.by_pub = {bytes(k.verify_key): k for k in [*creators, *self.donors]}
        self.near_times = [self.NOW, month_end("2026-09") or 0, month_end("2026-07") or 0,
                           month_start(2026, 7)]
        #: Claims the home owes (filled in by a fixture that settles a month in the wallet):
        #: (claim ID, month, creator key, currency).
        self.home_claims: list[tuple[bytes, str, bytes, str]] = []

    def key(self, pub: object) -> nacl.signing.SigningKey | None:
        return self.by_pub.get(pub) if isinstance(pub, bytes) else None


@dataclass
class Sample:
    """One generated object: enough to sign it again after a change (shrinking)."""

    t: str
    body: Any  # a map (encoded canonically) or bytes (the exact body bytes)
    sk: nacl.signing.SigningKey
    cosig_sk: nacl.signing.SigningKey | None = None
    signer: bytes | None = None
    bent: list[str] = field(default_factory=list)

    @cached_property
    def body_bytes(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else _item(self.body)

    @cached_property
    def raw(self) -> bytes:
        cosig = rotation_sig(self.cosig_sk, self.body_bytes) if self.cosig_sk else None
        return envelope(self.t, self.body_bytes, self.sk, cosig=cosig, signer=self.signer)

    def __repr__(self) -> str:
        return f"<Sample {self.describe(300)}>"

    def describe(self, width: int = 400) -> str:
        if isinstance(self.body, bytes):
            body = f"body bytes {self.body.hex()[:120]}"
        else:
            body = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.body.items()))
        extra = f" bent={self.bent}" if self.bent else ""
        signer = f" signer={self.signer.hex() if isinstance(self.signer, bytes) else None}"
        return f"{self.t}: {body}{extra}{signer if self.signer else ''}"[:width]


def _short(v: Any) -> str:
    if isinstance(v, bytes):
        return f"b[{len(v)}]" + v[:4].hex()
    if isinstance(v, str):
        return repr(v) if len(v) <= 40 else repr(v[:30]) + f"...({len(v.encode())}B)"
    if isinstance(v, list):
        return f"[{len(v)}: " + ", ".join(_short(x) for x in v[:3]) + (", ...]" if len(v) > 3
                                                                        else "]")
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_short(x)}" for k, x in sorted(v.items())) + "}"
    return repr(v)


@dataclass
class Bundle:
    """A settlement and what refers to it: claims, sealed claims (consistent or not)."""

    settlement: Sample
    claims: list[Sample]
    sealed: list[Sample]


def armour(raw: bytes, label: str) -> bytes:
    text = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    lines = [text[i:i + 76] for i in range(0, len(text), 76)]
    return ("\n".join([f"-----BEGIN RILL {label}-----", *lines, f"-----END RILL {label}-----"])
            + "\n").encode("ascii")


def files_of(rnd: random.Random, batch: list[Sample]) -> list[tuple[str, bytes]]:
    """The batch as files: binary, armoured one per file, or several blocks in one."""
    files: list[tuple[str, bytes]] = []
    i = 0
    while i < len(batch):
        s = batch[i]
        c = rnd.random()
        if c < 0.6:
            files.append((f"f{i}.bin", s.raw))
            i += 1
        elif c < 0.9:
            label = s.t.upper() if rnd.random() < 0.9 else rnd.choice(["CLAIM", "KEY", "X"])
            files.append((f"f{i}.txt", armour(s.raw, label)))
            i += 1
        else:
            group = batch[i:i + 3]
            files.append((f"f{i}.txt", b"\n".join(armour(x.raw, x.t.upper()) for x in group)))
            i += len(group)
    if files and rnd.random() < 0.15:
        k = rnd.randrange(len(files))
        files[k] = (files[k][0], mutate_armour(rnd, files[k][1]))
    return files


def mutate_armour(rnd: random.Random, data: bytes) -> bytes:
    """Text armour bent one way (SPEC §8 lists what a reader must refuse)."""
    text = armour(data, "SETTLEMENT") if not data.startswith(b"-----") else data
    lines = text.split(b"\n")
    body = [i for i, ln in enumerate(lines) if ln and not ln.startswith(b"-----")]
    op = rnd.randrange(8)
    if op == 0 and body:  # padding
        lines[body[-1]] += b"=="
    elif op == 1 and body:  # a character outside base64url
        i = rnd.choice(body)
        bad = rnd.choice([b"+", b"/", b"\xc3\xa9", b"\x00", b" "])
        lines[i] = lines[i][:1] + bad + lines[i][2:]
    elif op == 2 and len(body) > 1:  # a line longer than 76 characters
        i = body[0]
        lines[i] += lines.pop(i + 1)
    elif op == 3:  # no END line
        lines = [ln for ln in lines if not ln.startswith(b"-----END")]
    elif op == 4:
        return text.replace(b"\n", b"\r\n")  # CRLF: allowed
    elif op == 5 and body:  # length = 1 (mod 4) or stray bits
        lines[body[-1]] = lines[body[-1]][:-1] if len(lines[body[-1]]) > 1 else b"A"
    elif op == 6:
        return b"garbage before\n" + text
    else:
        return text + b"-----BEGIN RILL KEY-----\n-----END RILL KEY-----\n"
    return b"\n".join(lines)
