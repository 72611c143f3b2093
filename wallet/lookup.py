"""IDs and names as people type and read them: unique ID prefixes, display names from
verified key documents, and the home's own display name (config.toml ``name``)."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from ..protocol import keys
from ..protocol import messages as m
from ..protocol.bodies import KeyDocument
from ..protocol.fields import label_problem
from .errors import NotFound, Refused
from .home import Home

#: The shortest ID prefix accepted (8 hex digits: 4 billion values).
MIN_PREFIX = 8
#: Candidates listed when a prefix is ambiguous.
SHOW_CANDIDATES = 10

_HEX = re.compile(r"[0-9a-f]+")


def resolve_claim(db: sqlite3.Connection, text: str) -> bytes:
    """The claim whose ID is ``text`` or starts with it (at least :data:`MIN_PREFIX` hex
    digits).  :class:`NotFound` if none does; :class:`Refused` (``ambiguous``) naming the
    candidates if several do."""
    return resolve_prefix(db, text, "SELECT DISTINCT claim FROM obligations", "claim")


def resolve_object(db: sqlite3.Connection, text: str) -> bytes:
    """The stored object whose ID is ``text`` or starts with it (as :func:`resolve_claim`)."""
    return resolve_prefix(db, text, "SELECT id FROM objects", "object")


def resolve_prefix(db: sqlite3.Connection, text: str, select: str, what: str) -> bytes:
    """``select`` is a query of one BLOB column of IDs; a WHERE clause is added."""
    h = text.strip().lower()
    if not _HEX.fullmatch(h) or len(h) > 64:
        raise Refused(f"not an object ID (hex digits, at least {MIN_PREFIX}): {text!r}",
                      code="bad-id")
    if len(h) == 64:
        return bytes.fromhex(h)
    if len(h) < MIN_PREFIX:
        raise Refused(f"an ID prefix needs at least {MIN_PREFIX} hex digits: {text!r}",
                      code="bad-id")
    lo = bytes.fromhex(h[: len(h) // 2 * 2])
    # a range on the blob column (uses its index), then the odd digit if any
    hi = _successor(lo)
    col = "claim" if "obligations" in select else "id"
    sql = f"{select} WHERE {col} >= ?" + (f" AND {col} < ?" if hi is not None else "")
    args: tuple[Any, ...] = (lo,) if hi is None else (lo, hi)
    found = [r[0] for r in db.execute(sql, args) if r[0].hex().startswith(h)]
    if not found:
        raise NotFound(f"no {what} ID starts with {h}")
    if len(found) > 1:
        shown = ", ".join(f.hex() for f in sorted(found)[:SHOW_CANDIDATES])
        more = f" and {len(found) - SHOW_CANDIDATES} more" if len(found) > SHOW_CANDIDATES \
            else ""
        raise Refused(f"{h} is ambiguous: {len(found)} {what}s start with it ({shown}{more}); "
                      "give more digits", code="ambiguous")
    return bytes(found[0])


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    b = bytearray(prefix)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return None
    b[-1] += 1
    return bytes(b)


def display_names(db: sqlite3.Connection) -> dict[bytes, str]:
    """Key -> name from the newest stored key document of each signer.

    Stored key documents were verified when they arrived (signature and schema); the name
    is the signer's own claim, so it is always shown beside the (short) key."""
    best: dict[bytes, tuple[int, str]] = {}
    for signer, raw in db.execute("SELECT signer, raw FROM objects WHERE type = 'key'"):
        try:
            doc = m.decode(raw, KeyDocument, verify_signature=False)
        except Exception:  # stored objects were checked on the way in; skip a damaged one
            continue
        t = doc.body.valid_from
        if signer not in best or t > best[signer][0]:
            best[signer] = (t, doc.body.name)
    return {k: v[1] for k, v in best.items()}


def names_by_did(db: sqlite3.Connection, own: bytes, own_name: str) -> dict[str, str]:
    """:func:`display_names` keyed by did:key text, with this home's own name."""
    out = {keys.did_from_key(k): v for k, v in display_names(db).items()}
    if own_name:
        out[keys.did_from_key(own)] = own_name
    return out


def check_name(name: str) -> str:
    """A display name: 1-128 bytes of text without white space at either end."""
    name = name.strip()
    problem = label_problem(name, KeyDocument.MAX_NAME_BYTES)
    if problem is not None:
        raise Refused(f"a display name {problem}", code="bad-name")
    return name


def set_name(home: Home, name: str) -> str:
    """Set the home's display name (config.toml ``name``, :meth:`Home.set_name`) after the
    rules of a signed key document's name; return it as stored.

    Key documents already published keep their old name until signed again
    (``rill creator init``)."""
    name = check_name(name)
    home.set_name(name)
    return name
