"""Rill's signed objects (SPEC.md §4 and §5): one import for the whole message layer.

The layer is three modules, imported from here by the rest of Rill
(``from rill.protocol import messages as m``; ``m.decode``, ``m.sign``,
``m.Settlement``...):

* :mod:`rill.protocol.fields` -- reading one field of a decoded map: the field
  kinds, their reason codes, the text rule, the check order inside a map;
* :mod:`rill.protocol.bodies` -- the seven body types and their field tables;
* :mod:`rill.protocol.envelope` -- the signed envelope: :func:`sign` and
  :func:`decode`, the decoding procedure of SPEC §4.4.

:func:`decode` returns a :class:`Signed` only when the bytes are canonical,
within the type's size cap, schema-valid, correctly signed and obey the
type's own rules; it raises a :class:`~rill.protocol.errors.RemoteError`
otherwise.  Rules that need another object (a claim against its settlement,
a receipt against its claim) live in :mod:`rill.protocol.checks`.
"""

from __future__ import annotations

from . import cbor
from .bodies import (
    BODY_TYPES,
    CLICK_KINDS,
    MAX_LINE_THINGS,
    MAX_OBJECT_SIZE,
    MAX_REFERENCE_BYTES,
    MAX_SETTLEMENT_THINGS,
    MAX_SUBSCRIPTION_MONTHS,
    MAX_WORK,
    Body,
    BodyT,
    Claim,
    ClickEntry,
    Disclosure,
    Equivocation,
    KeyDocument,
    Receipt,
    SealedClaim,
    Settlement,
    SettlementLine,
)
from .envelope import (
    VERSION,
    Signed,
    _envelope_map,
    decode,
    encode,
    parse_object_id,
    peek_type,
    rotation_input,
    sign,
    signing_input,
)
from .errors import DecodeError
from .fields import HASH_BYTES, MAX_TIME, ZERO_HASH
from .listing import LISTING_KINDS, Listing
from .statement import Statement, StatementRow, StatementTotal

__all__ = [
    "BODY_TYPES",
    "CLICK_KINDS",
    "HASH_BYTES",
    "LISTING_KINDS",
    "MAX_LINE_THINGS",
    "MAX_OBJECT_SIZE",
    "MAX_REFERENCE_BYTES",
    "MAX_SETTLEMENT_THINGS",
    "MAX_SUBSCRIPTION_MONTHS",
    "MAX_TIME",
    "MAX_WORK",
    "VERSION",
    "ZERO_HASH",
    "Body",
    "BodyT",
    "Claim",
    "ClickEntry",
    "DecodeError",
    "Disclosure",
    "Equivocation",
    "KeyDocument",
    "Listing",
    "Receipt",
    "SealedClaim",
    "Settlement",
    "SettlementLine",
    "Signed",
    "Statement",
    "StatementRow",
    "StatementTotal",
    "_envelope_map",
    "cbor",
    "decode",
    "encode",
    "parse_object_id",
    "peek_type",
    "rotation_input",
    "sign",
    "signing_input",
]
