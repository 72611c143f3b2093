"""Monthly pseudonyms and the signed disclosure that links one to its donor (SPEC.md §2.4,
§5.10).

A donor giving anonymously signs a month's settlement and claims with a key derived
from its identity seed for that month (:func:`pseudonym_seed`): deterministic, so a
month settled again gives the same bytes, and unrelated to the identity or to other
months for anyone without the seed.  A ``disclosure`` is the donor's proof of the link,
signed by both keys: the identity signs the envelope, the pseudonym signs ``proof``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, ClassVar

import nacl.signing

from . import cbor, keys
from .errors import LocalError, RemoteError, RuleError
from .fields import Reader
from .months import check_month

#: HKDF-SHA256 salt of the pseudonym derivation (SPEC §2.4).
PSEUDONYM_SALT = b"rill/1/pseudonym-salt"
#: HKDF-SHA256 info prefix; the month's 7 ASCII bytes follow.
PSEUDONYM_INFO = b"rill/1/pseudonym\n"
#: What the pseudonym signs in a disclosure (``proof``).
LINK_DOMAIN = b"rill/1/disclosure-link\n"
SEED_BYTES = 32


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with SHA-256 (extract, then expand to ``length`` bytes)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def pseudonym_seed(identity_seed: bytes, month: str) -> bytes:
    """The Ed25519 seed of the donor's pseudonym for ``month`` (SPEC §2.4)."""
    if len(identity_seed) != SEED_BYTES:
        raise LocalError("an identity seed is 32 bytes")
    try:
        check_month(month, "month")
    except RemoteError as exc:
        raise LocalError(str(exc), code=exc.code) from None
    return hkdf_sha256(identity_seed, PSEUDONYM_SALT, PSEUDONYM_INFO + month.encode("ascii"))


def pseudonym_key(identity: nacl.signing.SigningKey, month: str) -> nacl.signing.SigningKey:
    """The month's pseudonym signing key of the donor ``identity``."""
    return nacl.signing.SigningKey(pseudonym_seed(bytes(identity), month))


@dataclass(frozen=True)
class Disclosure:
    """The donor's statement that ``pseudonym`` is its key for ``month`` (SPEC §5.10).

    The envelope's signer is the identity; ``proof`` is the pseudonym's signature
    over :func:`link_input`, so the link holds only if both keys agreed."""

    TYPE: ClassVar[str] = "disclosure"
    MAX_SIZE: ClassVar[int] = 1024

    pseudonym: bytes
    month: str
    proof: bytes
    to: bytes | None = None

    def link_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pseudonym": self.pseudonym, "month": self.month}
        if self.to is not None:
            out["to"] = self.to
        return out

    def to_map(self) -> dict[str, Any]:
        return {**self.link_map(), "proof": self.proof}

    @classmethod
    def from_map(cls, m: object) -> Disclosure:
        r = Reader(m, "disclosure")
        pseudonym = r.key("pseudonym")
        month = r.month()
        to = r.key("to", optional=True)
        proof = r.hash("proof", length=keys.SIG_BYTES)
        r.done()
        return cls(pseudonym, month, proof, to)

    def check_rules(self, signer: bytes) -> None:
        if self.pseudonym == signer:
            raise RuleError("disclosure: the pseudonym is the identity itself",
                            code="bad-disclosure")
        try:
            keys.verify_signature(self.pseudonym, link_input(signer, self), self.proof)
        except RemoteError:
            raise RuleError("disclosure: the pseudonym's proof does not verify",
                            code="bad-disclosure") from None


def link_input(identity: bytes, d: Disclosure) -> bytes:
    """``"rill/1/disclosure-link" || 0x0A || identity || cbor(body without proof)``."""
    return LINK_DOMAIN + identity + cbor.encode(d.link_map())


def make_disclosure(identity: nacl.signing.SigningKey, month: str,
                    to: bytes | None = None) -> Any:
    """Sign the disclosure of ``identity``'s pseudonym for ``month`` (both keys sign).

    Returns a :class:`~rill.protocol.envelope.Signed` disclosure."""
    from .envelope import sign  # local import: the envelope module imports this one

    pkey = pseudonym_key(identity, month)
    unsigned = Disclosure(keys.public_key(pkey), month, b"\0" * keys.SIG_BYTES, to)
    proof = keys.sign(pkey, link_input(keys.public_key(identity), unsigned))
    return sign(Disclosure(unsigned.pseudonym, month, proof, to), identity)


__all__ = ["Disclosure", "hkdf_sha256", "link_input", "make_disclosure", "pseudonym_key",
           "pseudonym_seed"]
