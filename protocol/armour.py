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
import re

from .errors import ArmourError

LINE = 76
_BEGIN = re.compile(r"-----BEGIN RILL ([A-Z-]{1,32})-----")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


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


def dearmour(text: str) -> list[tuple[str, bytes]]:
    """All blocks of ``text`` as (label, bytes); raise :class:`ArmourError`."""
    lines = text.splitlines()
    out: list[tuple[str, bytes]] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        m = _BEGIN.fullmatch(line)
        if not m:
            raise ArmourError(f"line {i}: expected '-----BEGIN RILL TYPE-----'")
        label, start = m.group(1), i
        body: list[str] = []
        end = f"-----END RILL {label}-----"
        while True:
            if i >= len(lines):
                raise ArmourError(f"line {start}: block has no '{end}' line")
            line = lines[i].strip()
            i += 1
            if line == end:
                break
            if len(line) > LINE or not _B64URL.fullmatch(line):
                raise ArmourError(f"line {i}: not a base64url line of at most {LINE} characters")
            body.append(line)
        data = "".join(body)
        if len(data) % 4 == 1:
            raise ArmourError(f"line {start}: base64url data has an impossible length")
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except ValueError:
            raise ArmourError(f"line {start}: bad base64url") from None
        if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != data:
            raise ArmourError(f"line {start}: non-canonical base64url (stray bits)")
        out.append((label, raw))
    if not out:
        raise ArmourError("no armoured object found")
    return out
