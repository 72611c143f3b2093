"""The signature on a node's webhook requests (SPEC §12.3): sans-I/O.

``Rill-Signature: t=T,key=DID,sig=HEX`` where ``sig`` is the Ed25519 signature by the
node's identity key over ``b"rill-webhook/1\\n" + T + b"\\n" + BODY``: ``T`` the
sending time in Unix seconds (ASCII decimal), ``BODY`` the request body's exact bytes.
"""

from __future__ import annotations

import re

import nacl.exceptions
import nacl.signing

from . import keys
from .errors import LocalError, RemoteError

#: Domain of the signed input (never the start of an object's signing input, §4.4).
DOMAIN = b"rill-webhook/1\n"
HEADER = "Rill-Signature"
#: How far (seconds) a receiver accepts ``t`` from its own clock, by default.
TOLERANCE = 300
_FORM = re.compile(r"t=(0|[1-9][0-9]{0,11}),key=(did:key:z[1-9A-HJ-NP-Za-km-z]{1,64}),"
                   r"sig=([0-9a-f]{128})")


def signing_input(t: int, body: bytes) -> bytes:
    """The exact bytes signed for a request sent at ``t`` with ``body``."""
    if t < 0:
        raise LocalError("a webhook time is non-negative")
    return DOMAIN + str(t).encode("ascii") + b"\n" + body


def sign_header(key: nacl.signing.SigningKey, t: int, body: bytes) -> str:
    """The ``Rill-Signature`` header value for ``body`` sent at ``t``."""
    sig = key.sign(signing_input(t, body)).signature
    did = keys.did_from_key(bytes(key.verify_key))
    return f"t={t},key={did},sig={sig.hex()}"


def verify_header(value: str, body: bytes, now: int, key: bytes | None = None,
                  tolerance: int = TOLERANCE) -> bytes:
    """Check a ``Rill-Signature`` value against ``body``; return the signer's key.

    ``key``: the node key the receiver expects (None: any key, returned for the caller
    to judge).  Raises :class:`RemoteError` with code ``webhook-format`` (not the form
    above), ``webhook-key`` (another key), ``webhook-time`` (``t`` more than
    ``tolerance`` seconds from ``now``) or ``webhook-signature``.
    """
    found = _FORM.fullmatch(value.strip())
    if found is None:
        raise RemoteError("not t=SECONDS,key=did:key:...,sig=128 hex digits",
                          code="webhook-format")
    t = int(found.group(1))
    try:
        signer = keys.key_from_did(found.group(2))
    except LocalError:
        raise RemoteError("the key is not an Ed25519 did:key", code="webhook-format") from None
    if key is not None and signer != key:
        raise RemoteError(f"signed by {found.group(2)}, not the expected node",
                          code="webhook-key")
    if abs(now - t) > tolerance:
        raise RemoteError(f"signed at {t}, {abs(now - t)} s from now (at most {tolerance})",
                          code="webhook-time")
    try:
        nacl.signing.VerifyKey(signer).verify(signing_input(t, body),
                                              bytes.fromhex(found.group(3)))
    except (nacl.exceptions.BadSignatureError, ValueError):
        raise RemoteError("the signature does not match the body", code="webhook-signature"
                          ) from None
    return signer
