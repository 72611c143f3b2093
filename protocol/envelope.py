"""The signed envelope: signing, and the decoding procedure of SPEC.md §4.4.

Every object on the wire is a *signed envelope*::

    {"v": 1, "t": TYPE, "body": BODY, "signer": KEY, "sig": SIG [, "cosig": SIG]}

encoded as canonical CBOR (:mod:`rill.protocol.cbor`).  ``sig`` is the
Ed25519 signature by ``signer`` over ``b"rill/1/" + TYPE + b"\\n" + cbor(BODY)``.
The object ID is SHA-256 of the whole encoded envelope.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import nacl.signing

from . import cbor, keys
from .bodies import BODY_TYPES, MAX_OBJECT_SIZE, Body, BodyT, KeyDocument
from .errors import BadKey, BadSignature, LocalError, RemoteError, SchemaError, TooLarge
from .fields import check_key_field

VERSION = 1

_BodyOut = TypeVar("_BodyOut")
_MISSING = object()


def signing_input(type_name: str, body_bytes: bytes) -> bytes:
    """The exact bytes an envelope's ``sig`` covers."""
    return b"rill/%d/" % VERSION + type_name.encode("ascii") + b"\n" + body_bytes


def rotation_input(body_bytes: bytes) -> bytes:
    """What the previous key signs in a key rotation (``cosig``)."""
    return signing_input("key-rotation", body_bytes)


def parse_object_id(text: str) -> bytes:
    """Text form of an object ID: 64 lowercase hex digits."""
    text = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise LocalError(f"not an object ID (64 hex digits): {text!r}", code="bad-id")
    return bytes.fromhex(text)


@dataclass(frozen=True)
class Signed(Generic[BodyT]):
    """A decoded, verified signed object."""

    body: BodyT
    signer: bytes
    signature: bytes
    raw: bytes = field(repr=False)
    cosignature: bytes | None = None

    @property
    def type(self) -> str:
        return self.body.TYPE

    @functools.cached_property
    def id(self) -> bytes:
        """SHA-256 of the encoded envelope."""
        return hashlib.sha256(self.raw).digest()

    @property
    def id_hex(self) -> str:
        return self.id.hex()

    @property
    def signer_did(self) -> str:
        return keys.did_from_key(self.signer)


def encode(obj: Signed[Any]) -> bytes:
    """The canonical bytes of a signed object."""
    return obj.raw


def _envelope_map(body: Body, signer: bytes, sig: bytes, cosig: bytes | None) -> dict[str, Any]:
    env: dict[str, Any] = {"v": VERSION, "t": body.TYPE, "body": body.to_map(),
                           "signer": signer, "sig": sig}
    if cosig is not None:
        env["cosig"] = cosig
    return env


def sign(body: _BodyOut, signing_key: nacl.signing.SigningKey,
         previous_key: nacl.signing.SigningKey | None = None) -> Signed[Any]:
    """Sign ``body``; ``previous_key`` co-signs a key rotation.

    The result is decoded again before it is returned, so an invalid body
    raises :class:`LocalError` here instead of reaching the network.
    """
    b = cast(Body, body)
    body_bytes = cbor.encode(b.to_map())
    signer = keys.public_key(signing_key)
    sig = keys.sign(signing_key, signing_input(b.TYPE, body_bytes))
    cosig = None
    if previous_key is not None:
        cosig = keys.sign(previous_key, rotation_input(body_bytes))
    raw = cbor.encode(_envelope_map(b, signer, sig, cosig))
    try:
        # everything but our own fresh signature is checked (a key document's
        # co-signature is checked too: it may come from a wrong previous key)
        return decode(raw, verify_signature=isinstance(body, KeyDocument))
    except RemoteError as exc:
        raise LocalError(f"refusing to sign an invalid {b.TYPE}: {exc.reason}",
                         code=exc.code) from None


def peek_type(raw: bytes) -> str | None:
    """Best-effort type name of possibly invalid bytes (for reports only)."""
    try:
        env = cbor.decode(raw, exact=False) if len(raw) <= MAX_OBJECT_SIZE else None
    except RemoteError:
        return None
    if isinstance(env, dict) and isinstance(env.get("t"), str) and env["t"] in BODY_TYPES:
        return cast(str, env["t"])
    return None


def _body_slice(raw: bytes, type_name: str, has_cosig: bool) -> bytes:
    """The bytes of ``body`` inside a canonical envelope, without re-encoding it.

    Canonical key order is t, v, sig, body, [cosig,] signer; every other field
    has a fixed size, so the body is what lies between them.
    """
    tlen = len(type_name)  # ASCII, < 24: one-byte text header
    prefix = 1 + 2 + 1 + tlen + 2 + 1 + 4 + 2 + keys.SIG_BYTES + 5
    suffix = (6 + 2 + keys.SIG_BYTES if has_cosig else 0) + 7 + 2 + keys.KEY_BYTES
    return raw[prefix:len(raw) - suffix]


def _signed(body: Any, signer: bytes, sig: bytes, raw: bytes, cosig: bytes | None
            ) -> Signed[Any]:
    """``Signed(...)`` without the frozen dataclass's per-field ``__setattr__`` calls
    (decode's hot path; the fields are the same)."""
    obj: Signed[Any] = Signed.__new__(Signed)
    obj.__dict__.update(body=body, signer=signer, signature=sig, raw=raw, cosignature=cosig)
    return obj


def decode(raw: bytes, expect: type[_BodyOut] | None = None, *,
           verify_signature: bool = True, exact: bool = True) -> Signed[Any]:
    """Decode and fully verify one signed object: SPEC §4.4, steps 1 to 9 in order.

    Returns a :class:`Signed` only when the bytes are canonical, within the type's
    size cap, schema-valid, correctly signed and obey the type's own rules; raises a
    :class:`~rill.protocol.errors.RemoteError` carrying the first failure's reason
    code otherwise.  Rules that need another object (a claim against its settlement)
    or the time live in :mod:`rill.protocol.checks`.

    ``verify_signature=False`` skips steps 7-8.  Use it only for bytes already
    authenticated another way, such as click-log entries whose hash links lead to a
    verified head (:func:`checks.check_chain_links`).
    ``exact=False`` refuses input that is not canonical CBOR as ``malformed``
    without looking for the §3.2 reason (see :func:`cbor.decode`).
    """
    if type(raw) is not bytes:
        raw = bytes(raw)
    # 1. the largest cap
    if len(raw) > MAX_OBJECT_SIZE:
        raise TooLarge(f"{len(raw)} bytes is more than any Rill object ({MAX_OBJECT_SIZE})")
    # 2. strict CBOR
    env = cbor.decode(raw, exact=exact)
    # 3. a map, its version, its type
    if type(env) is not dict:
        raise SchemaError("envelope: expected a map")
    version = env.get("v", _MISSING)
    if type(version) is not int or version < 0:
        raise SchemaError("envelope.v: expected an unsigned integer")
    if version != VERSION:
        raise SchemaError(f"unsupported version {version}", code="unsupported-version")
    type_name = env.get("t", _MISSING)
    if type(type_name) is not str:
        raise SchemaError("envelope.t: expected text")
    cls = BODY_TYPES.get(type_name)
    if cls is None:
        raise SchemaError(f"unknown type {type_name[:40]!r}", code="unknown-type")
    if expect is not None and cls is not expect:
        raise SchemaError(f"expected a {cast(Any, expect).TYPE}, got a {type_name}",
                          code="wrong-type")
    # 4. the type's cap
    if len(raw) > cls.MAX_SIZE:
        raise TooLarge(f"{len(raw)} bytes is more than the {type_name} cap ({cls.MAX_SIZE})")
    # 5. the envelope's fields: signer, sig, cosig, body, then unknown keys
    signer = env.get("signer", _MISSING)
    if signer is _MISSING:
        raise SchemaError("envelope: missing field 'signer'")
    if type(signer) is bytes and len(signer) == keys.KEY_BYTES:
        try:
            keys.admit_key(signer)
        except BadKey:
            check_key_field(signer, "envelope.signer")
    else:
        check_key_field(signer, "envelope.signer")
    sig = env.get("sig", _MISSING)
    if sig is _MISSING:
        raise SchemaError("envelope: missing field 'sig'")
    if type(sig) is not bytes or len(sig) != keys.SIG_BYTES:
        raise BadSignature(f"envelope.sig: expected {keys.SIG_BYTES} bytes")
    cosig = env.get("cosig")
    if cosig is not None and (type(cosig) is not bytes or len(cosig) != keys.SIG_BYTES):
        raise BadSignature(f"envelope.cosig: expected {keys.SIG_BYTES} bytes",
                           code="bad-rotation")
    body_map = env.get("body", _MISSING)
    if body_map is _MISSING:
        raise SchemaError("envelope: missing field 'body'")
    if type(body_map) is not dict:
        raise SchemaError("envelope.body: expected a map")
    if len(env) != (5 if cosig is None else 6):
        extra = sorted(set(env) - {"v", "t", "signer", "sig", "cosig", "body"})
        raise SchemaError(f"envelope: unknown field(s) {extra}")
    # 6. the body's fields
    body = cls.from_map(body_map)
    if verify_signature:
        # 7. the signature
        body_bytes = _body_slice(raw, type_name, cosig is not None)
        try:
            keys.verify_signature(signer, signing_input(type_name, body_bytes), sig)
        except BadSignature as exc:
            raise BadSignature(f"{type_name}: {exc}") from None
        # 8. the co-signature of a key rotation
        prev = body.prev if cls is KeyDocument else None
        if (cosig is None) != (prev is None):
            raise SchemaError("envelope: 'cosig' is present exactly when a key document has "
                              "'prev'", code="bad-rotation")
        if cosig is not None and prev is not None:
            try:
                keys.verify_signature(prev, rotation_input(body_bytes), cosig)
            except BadSignature:
                raise BadSignature("key: the previous key's rotation signature does not "
                                   "verify", code="bad-rotation") from None
    # 9. the type's own rules
    body.check_rules(signer)
    return _signed(body, signer, sig, raw, cosig)


__all__ = [
    "VERSION",
    "Signed",
    "decode",
    "encode",
    "parse_object_id",
    "peek_type",
    "rotation_input",
    "sign",
    "signing_input",
]
