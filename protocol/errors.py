"""The one exception hierarchy of rill.protocol.

Every error carries a short machine-readable ``code`` (kebab-case, listed in
SPEC.md §9) and a human-readable message.

* :class:`LocalError` -- the caller asked for something impossible (building a
  message from bad values, normalising a malformed URL typed by the user).
* :class:`RemoteError` -- bytes that came from elsewhere are not a valid Rill
  object.  Callers treat it as "reject and, on a network, penalise the sender".
"""

from __future__ import annotations


class RillError(Exception):
    """Base class of every exception raised by rill.protocol."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def reason(self) -> str:
        """``code: message``, the form printed by ``rill verify``."""
        return f"{self.code}: {self}"


class LocalError(RillError, ValueError):
    """Bad arguments from the local caller."""

    code = "bad-argument"


class RemoteError(RillError):
    """Received bytes are not a valid Rill object."""

    code = "invalid"


class DecodeError(RemoteError):
    """The bytes are not canonical Rill CBOR (RFC 8949 subset of SPEC §3)."""

    code = "malformed"


class TooLarge(RemoteError):
    """The encoded object exceeds the size cap of its type."""

    code = "too-large"


class SchemaError(RemoteError):
    """A field is missing, unknown, or of the wrong type or range."""

    code = "schema"


class BadKey(RemoteError):
    """A public key is not a canonical Ed25519 point of prime order."""

    code = "bad-key"


class BadSignature(RemoteError):
    """A signature does not verify."""

    code = "bad-signature"


class RuleError(RemoteError):
    """The object is well-formed and signed but breaks a rule of its type."""

    code = "rule"


class MismatchError(RemoteError):
    """Two objects that must agree do not (claim vs settlement, receipt vs claim...)."""

    code = "mismatch"


class SealError(RemoteError):
    """A sealed box cannot be opened with the given key."""

    code = "seal"


class ArmourError(RemoteError):
    """Text armour is malformed."""

    code = "armour"
