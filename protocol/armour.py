"""ASCII armour for signed objects (SPEC.md §8).

::

    -----BEGIN RILL CLAIM-----
    <base64url of the object bytes, no padding, lines of at most 76 characters>
    -----END RILL CLAIM-----

The label is the object's type in upper case.  A text may hold several blocks
separated by whitespace; nothing else may stand outside the blocks.
"""

from __future__ import annotations

import base64
import binascii
import re

from .errors import ArmourError

LINE = 76
_BEGIN = re.compile(r"-----BEGIN RILL ([A-Z-]{1,32})-----")
_B64URL_LINE = re.compile(rf"[A-Za-z0-9_-]{{1,{LINE}}}")
_B64URL_TEXT = re.compile(r"[A-Za-z0-9_-]*")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def label_of(type_name: str) -> str:
    return type_name.upper()


def armour(raw: bytes, type_name: str) -> str:
    """Text armour of one object; ends with a newline."""
    text = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    lines = [text[i:i + LINE] for i in range(0, len(text), LINE)]
    label = label_of(type_name)
    block = [f"-----BEGIN RILL {label}-----", *lines, f"-----END RILL {label}-----"]
    return "\n".join(block) + "\n"


def looks_armoured(data: bytes) -> bool:
    return data.lstrip()[:16] == b"-----BEGIN RILL "


def decode_b64url(data: str, where: int = 1) -> bytes:
    """Strict base64url (RFC 4648 §5): no padding, no other alphabet, no stray bits."""
    if not _B64URL_TEXT.fullmatch(data):
        raise ArmourError(f"line {where}: not base64url (A-Z a-z 0-9 - _, no padding)")
    return _decode_b64url_alphabet_checked(data, where)


def _decode_b64url_alphabet_checked(data: str, where: int) -> bytes:
    rem = len(data) % 4
    if rem == 1:
        raise ArmourError(f"line {where}: base64url data has an impossible length")
    try:
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        raise ArmourError(f"line {where}: bad base64url") from None
    if rem:  # the unused low bits of the last character must be zero (canonical form)
        last = _B64_ALPHABET.index(data[-1].encode("ascii"))
        if last & (0x0F if rem == 2 else 0x03):
            raise ArmourError(f"line {where}: non-canonical base64url (stray bits)")
    return raw


#: One block exactly as :func:`armour` writes it (the fast path of :func:`dearmour`).
_BLOCK = re.compile(rf"-----BEGIN RILL ([A-Z-]{{1,32}})-----\n((?:[A-Za-z0-9_-]{{1,{LINE}}}\n)*)"
                    r"-----END RILL \1-----(?:\n|\Z)")
_GAP = re.compile(r"[ \t\r\n]*")


def dearmour(text: str) -> list[tuple[str, bytes]]:
    """All blocks of ``text`` as (label, bytes); raise :class:`ArmourError`."""
    # Fast path for blocks laid out as armour() writes them; any other layout, and any
    # error, goes through the line-by-line reader, which names the line at fault.
    out: list[tuple[str, bytes]] = []
    pos, n = _GAP.match(text).end(), len(text)  # type: ignore[union-attr]
    try:
        while pos < n:
            m = _BLOCK.match(text, pos)
            if m is None:
                return _dearmour_lines(text)
            # the regex admitted only the base64url alphabet
            out.append((m.group(1),
                        _decode_b64url_alphabet_checked(m.group(2).replace("\n", ""), 1)))
            pos = _GAP.match(text, m.end()).end()  # type: ignore[union-attr]
    except ArmourError:
        return _dearmour_lines(text)
    if not out:
        return _dearmour_lines(text)
    return out


def _dearmour_lines(text: str) -> list[tuple[str, bytes]]:
    lines = text.splitlines()
    out: list[tuple[str, bytes]] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        m = _BEGIN.fullmatch(line)
        if not m:
            raise ArmourError(f"line {i}: expected '-----BEGIN RILL TYPE-----'")
        label, start = m.group(1), i
        end = f"-----END RILL {label}-----"
        body: list[str] = []
        while True:
            if i >= n:
                raise ArmourError(f"line {start}: block has no '{end}' line")
            line = lines[i].strip()
            i += 1
            if line == end:
                break
            if not _B64URL_LINE.fullmatch(line):
                raise ArmourError(f"line {i}: not a base64url line of at most {LINE} characters")
            body.append(line)
        out.append((label, decode_b64url("".join(body), start)))
    if not out:
        raise ArmourError("no armoured object found")
    return out
