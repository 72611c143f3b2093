"""Sealed boxes to an Ed25519 identity (SPEC.md §5.5).

The format is libsodium's ``crypto_box_seal`` to the X25519 form of the
recipient's Ed25519 key: ``epk || crypto_box(m, nonce, rpk, esk)`` with
``nonce = BLAKE2b-192(epk || rpk)``.  The ephemeral secret is passed in (this
package has no randomness); it MUST never be reused for another message.
"""

from __future__ import annotations

import nacl.bindings as b
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.signing

from .errors import LocalError, SealError


def seal(message: bytes, recipient: bytes, ephemeral_secret: bytes) -> bytes:
    """Encrypt ``message`` to the Ed25519 key ``recipient``."""
    if len(ephemeral_secret) != 32:
        raise LocalError("ephemeral secret must be 32 bytes")
    try:
        rpk = b.crypto_sign_ed25519_pk_to_curve25519(recipient)
    except (nacl.exceptions.RuntimeError, ValueError, TypeError):
        raise LocalError("recipient is not a usable Ed25519 key", code="bad-key") from None
    epk = b.crypto_scalarmult_base(ephemeral_secret)
    nonce = nacl.hash.blake2b(epk + rpk, digest_size=24, encoder=nacl.encoding.RawEncoder)
    return epk + b.crypto_box(message, nonce, rpk, ephemeral_secret)


def unseal(box: bytes, recipient: nacl.signing.SigningKey) -> bytes:
    """Open a box sealed to ``recipient``; raise :class:`SealError`."""
    pk = b.crypto_sign_ed25519_pk_to_curve25519(bytes(recipient.verify_key))
    sk = b.crypto_sign_ed25519_sk_to_curve25519(recipient._signing_key)
    try:
        return b.crypto_box_seal_open(box, pk, sk)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise SealError("cannot open the sealed box with this key") from None
