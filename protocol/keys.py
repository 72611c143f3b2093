"""Identities: Ed25519 keys, their text form, admission and signatures (SPEC.md §2).

A Rill identity is an Ed25519 public key.  On the wire it is the raw 32-byte
key; in text (CLI, JSON, documents) it is always a ``did:key`` string:
``did:key:z`` + base58btc(0xED 0x01 || key).
"""

from __future__ import annotations

import functools

import base58
import nacl.bindings
import nacl.exceptions
import nacl.signing

from .errors import BadKey, BadSignature, LocalError

KEY_BYTES = 32
SIG_BYTES = 64
_MULTICODEC_ED25519 = b"\xed\x01"
DID_PREFIX = "did:key:z"


@functools.lru_cache(maxsize=65536)
def admit_key(key: bytes) -> bytes:
    """Return ``key`` if it is a canonical Ed25519 point of prime order.

    Raises :class:`BadKey` otherwise (wrong length, non-canonical encoding,
    not on the curve, small order, or mixed order).  Verdicts are cached:
    the check costs about as much as a signature verification.
    """
    if type(key) is not bytes or len(key) != KEY_BYTES:
        raise BadKey(f"public key must be {KEY_BYTES} bytes")
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(key):
        raise BadKey("public key is not a canonical Ed25519 point of prime order")
    return key


def verify_signature(key: bytes, message: bytes, signature: bytes) -> None:
    """Strict Ed25519 verification; raise :class:`BadKey` or :class:`BadSignature`.

    Uses libsodium's ``crypto_sign_open`` (rejects non-canonical S
    and small-order R) after :func:`admit_key`.
    """
    admit_key(key)
    if type(signature) is not bytes or len(signature) != SIG_BYTES:
        raise BadSignature(f"signature must be {SIG_BYTES} bytes")
    try:
        nacl.bindings.crypto_sign_open(signature + message, key)
    except (nacl.exceptions.BadSignatureError, ValueError):
        raise BadSignature("signature does not verify") from None


def sign(signing_key: nacl.signing.SigningKey, message: bytes) -> bytes:
    """Detached Ed25519 signature (64 bytes)."""
    return signing_key.sign(message).signature


def public_key(signing_key: nacl.signing.SigningKey) -> bytes:
    return bytes(signing_key.verify_key)


@functools.lru_cache(maxsize=65536)
def did_from_key(key: bytes) -> str:
    """Text form of a 32-byte key: ``did:key:z6Mk...``."""
    if len(key) != KEY_BYTES:
        raise LocalError(f"public key must be {KEY_BYTES} bytes", code="bad-key")
    return DID_PREFIX + base58.b58encode(_MULTICODEC_ED25519 + key).decode("ascii")


def key_from_did(text: str) -> bytes:
    """Parse and admit a ``did:key`` Ed25519 identity; raise :class:`LocalError`."""
    text = text.strip()
    if not text.startswith(DID_PREFIX):
        raise LocalError(f"not a Rill identity (expected did:key:z6Mk...): {text!r}",
                         code="bad-key")
    try:
        raw = base58.b58decode(text[len(DID_PREFIX):].encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise LocalError(f"bad base58 in identity {text!r}", code="bad-key") from None
    if not raw.startswith(_MULTICODEC_ED25519) or len(raw) != 2 + KEY_BYTES:
        raise LocalError(f"identity {text!r} is not an Ed25519 did:key", code="bad-key")
    key = raw[2:]
    if did_from_key(key) != text:
        raise LocalError(f"identity {text!r} is not in canonical form", code="bad-key")
    try:
        return admit_key(key)
    except BadKey as exc:
        raise LocalError(f"identity {text!r}: {exc}", code="bad-key") from None




#: A libp2p peer ID of an Ed25519 key: the identity multihash (0x00, length 36) of the
#: protobuf-encoded public key (type 1 = Ed25519, 32 bytes); its text starts "12D3KooW".
_PEER_ID_ED25519 = b"\x00\x24\x08\x01\x12\x20"
#: Longest peer ID text accepted (an identity multihash of a key up to 42 bytes).
MAX_PEER_ID_TEXT = 64


def peer_id_from_key(key: bytes) -> str:
    """The libp2p peer ID (text) of a node whose identity is the Ed25519 ``key``."""
    if len(key) != KEY_BYTES:
        raise LocalError(f"public key must be {KEY_BYTES} bytes", code="bad-key")
    return base58.b58encode(_PEER_ID_ED25519 + key).decode("ascii")


def parse_peer(text: str) -> str:
    """A peer named by its libp2p peer ID (``12D3KooW...``, or any identity or SHA-256
    multihash peer ID) or by its Rill identity (``did:key:z6Mk...``, a node's peer ID is
    its identity key): the peer ID in canonical text.  Raises :class:`LocalError`
    (code ``bad-peer``)."""
    if not isinstance(text, str):
        raise LocalError(f"a peer is named by text, not {type(text).__name__}",
                         code="bad-peer")
    text = text.strip()
    if text.startswith(DID_PREFIX):
        try:
            return peer_id_from_key(key_from_did(text))
        except LocalError as exc:
            raise LocalError(str(exc), code="bad-peer") from None
    why = f"not a peer ID (12D3KooW...) or identity (did:key:z6Mk...): {text[:80]!r}"
    if not text or len(text) > MAX_PEER_ID_TEXT:
        raise LocalError(why, code="bad-peer")
    try:
        raw = base58.b58decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise LocalError(why, code="bad-peer") from None
    # identity multihash of a protobuf PublicKey {1: key type 0..3, 2: key bytes}
    identity = (len(raw) >= 7 and raw[0] == 0x00 and raw[1] == len(raw) - 2
                and raw[2] == 0x08 and raw[3] <= 3 and raw[4] == 0x12 and raw[5] == len(raw) - 6)
    sha256 = len(raw) == 34 and raw[:2] == b"\x12\x20"
    if not (identity or sha256):
        raise LocalError(why, code="bad-peer")
    canonical = base58.b58encode(raw).decode("ascii")
    if canonical != text:
        raise LocalError(why, code="bad-peer")
    return canonical
