"""The JSON a creator publishes at ``https://ORIGIN/.well-known/rill.json`` (SPEC §12.1).

::

    {"rill": 1, "creator": "did:key:z6Mk...", "name": "...", "origins": [...],
     "payto": [...], "document": "<base64url, no padding, of the signed key envelope>"}

The signed ``document`` is the authority; the other members repeat it for
people and tools that read JSON, and MUST equal it.  Pure: the fetching lives
in rill.node.sites.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from . import keys
from . import messages as m
from .armour import decode_b64url
from .errors import ArmourError, DecodeError, MismatchError, RemoteError, RuleError
from .things import normalise_origin

WELL_KNOWN_PATH = "/.well-known/rill.json"
MAX_WELL_KNOWN = 64 * 1024


def render(doc: m.Signed[m.KeyDocument]) -> str:
    b = doc.body
    return json.dumps({
        "rill": 1,
        "creator": doc.signer_did,
        "name": b.name,
        "origins": list(b.origins),
        "payto": list(b.payto),
        "document": base64.urlsafe_b64encode(doc.raw).decode("ascii").rstrip("="),
    }, indent=2, ensure_ascii=False) + "\n"


def looks_like_key_file(data: bytes) -> bool:
    """True if ``data`` is JSON text (a well-known key file) rather than CBOR or armour."""
    return data.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"{"


def unwrap(text: bytes | str) -> tuple[dict[str, Any], bytes]:
    """The JSON members of a well-known key file and the bytes of its signed ``document``
    (not decoded yet); raise :class:`DecodeError` if it is not such a file."""
    if len(text) > MAX_WELL_KNOWN:
        raise DecodeError(f"larger than {MAX_WELL_KNOWN} bytes", code="too-large")
    try:
        data: Any = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DecodeError("not JSON", code="bad-json") from None
    if not isinstance(data, dict) or type(data.get("rill")) is not int or data["rill"] != 1:
        raise DecodeError("not a Rill well-known document (missing \"rill\": 1)",
                          code="bad-json")
    encoded = data.get("document")
    if not isinstance(encoded, str):
        raise DecodeError("missing \"document\"", code="bad-json")
    try:
        raw = decode_b64url(encoded)
    except ArmourError:
        raise DecodeError("\"document\" is not canonical base64url (no padding)",
                          code="bad-json") from None
    return data, raw


def check_echo(data: dict[str, Any], doc: m.Signed[m.KeyDocument]) -> None:
    """The JSON members must repeat the signed document exactly (:class:`MismatchError`)."""
    b = doc.body
    echo = {"creator": doc.signer_did, "name": b.name, "origins": list(b.origins),
            "payto": list(b.payto)}
    for k, v in echo.items():
        if data.get(k) != v:
            raise MismatchError(f"the JSON member {k!r} differs from the signed document")


def parse_file(text: bytes | str) -> m.Signed[m.KeyDocument]:
    """Check a well-known key file on its own (SPEC §12.1): the signed document verifies
    and the JSON members repeat it.  Which origins really serve it cannot be known from
    the file: :func:`parse` checks that for the origin it was fetched from."""
    data, raw = unwrap(text)
    doc = m.decode(raw, m.KeyDocument)
    check_echo(data, doc)
    return doc


def parse(text: bytes | str, origin: str) -> m.Signed[m.KeyDocument]:
    """Check a fetched well-known document for ``origin``; raise :class:`RemoteError`.

    The signed document must verify (SPEC §4.4), the JSON members must repeat it
    exactly, and the document must list ``origin`` among the origins it speaks for.
    """
    doc = parse_file(text)
    b = doc.body
    if normalise_origin(origin) not in b.origins:
        raise RuleError(f"the document does not speak for {origin} (it lists "
                        f"{', '.join(b.origins)})", code="wrong-origin")
    return doc


def creator_of(doc: m.Signed[m.KeyDocument]) -> str:
    return keys.did_from_key(doc.signer)


__all__ = ["MAX_WELL_KNOWN", "WELL_KNOWN_PATH", "RemoteError", "check_echo", "creator_of",
           "looks_like_key_file", "parse", "parse_file", "render", "unwrap"]
