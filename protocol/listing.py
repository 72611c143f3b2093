"""The ``listing`` body: a creator announces (or withdraws) one of its things in the
catalogue (SPEC.md §5.8).

An *announcement* has a title and a kind (and optionally a description, tags and a
language); a *withdrawal* has only the thing and the time.  For one signer and one thing
the listing with the greatest ``time`` wins, ties going to the greater object ID
(:func:`newer`).  Only web things (http, https) can be listed: a listing is trusted only
as far as its signer's key document names the thing's origin (SPEC §11.2), and only a
web thing has an origin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import SchemaError
from .fields import MAX_TIME, WHITE_SPACE, Reader
from .months import month_of
from .things import origin_of

#: Flattr's categories.
LISTING_KINDS = ("text", "audio", "video", "image", "software", "other")
MAX_TITLE_BYTES = 200
MAX_DESCRIPTION_BYTES = 1000
MAX_TAGS = 10
MAX_TAG_BYTES = 32
#: ``lang``: a primary language subtag of 2 or 3 lowercase ASCII letters, then at most
#: two subtags of 1 to 8 ASCII letters or digits, each after a hyphen (so ``en``,
#: ``pt-BR``, ``zh-Hant-TW``, ``gsw``); at most 21 bytes by construction.
LANG_RE = re.compile(r"\A[a-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,2}\Z")
_ASCII_UPPER = re.compile("[A-Z]")
#: The fields only an announcement has.
ANNOUNCE_FIELDS = ("title", "kind", "description", "tags", "lang")


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not a tag, or None: 1..32 bytes of UTF-8 under the text rule, no
    White_Space code point anywhere (one word) and no ASCII capital A-Z."""
    if not tag:
        return "must not be empty"
    if len(tag.encode("utf-8")) > MAX_TAG_BYTES:
        return f"longer than {MAX_TAG_BYTES} bytes"
    if any(c in WHITE_SPACE for c in tag):
        return "must not contain white space"
    if _ASCII_UPPER.search(tag):
        return "must not contain capitals A-Z (write tags in lower case)"
    from .fields import text_problem

    return text_problem(tag)


def _web_thing(r: Reader, name: str) -> str:
    thing: str = r.thing(name)
    if origin_of(thing) is None:
        raise SchemaError(f"{r.where(name)}: only a web thing (http or https) can be listed",
                          code="bad-thing")
    return thing


@dataclass(frozen=True)
class Listing:
    """A thing in the catalogue (SPEC §5.8); ``title is None`` for a withdrawal."""

    TYPE: ClassVar[str] = "listing"
    MAX_SIZE: ClassVar[int] = 4096

    thing: str
    time: int
    title: str | None = None
    kind: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    lang: str | None = None

    @property
    def withdrawn(self) -> bool:
        return self.title is None

    @property
    def month(self) -> str:
        """The month of ``time``: what the acceptance window and pruning go by."""
        return month_of(min(self.time, MAX_TIME))

    @property
    def origin(self) -> str:
        origin = origin_of(self.thing)
        assert origin is not None  # a listing's thing is a web thing
        return origin

    def to_map(self) -> dict[str, Any]:
        m: dict[str, Any] = {"thing": self.thing, "time": self.time}
        for name in ANNOUNCE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                m[name] = list(value) if name == "tags" else value
        return m

    @classmethod
    def from_map(cls, m: object) -> Listing:
        r = Reader(m, "listing")
        thing = _web_thing(r, "thing")
        time = r.uint("time", hi=MAX_TIME)
        present = m if isinstance(m, dict) else {}
        title = kind = description = lang = None
        tags = None
        if "title" in present:
            title = r.label("title", max_bytes=MAX_TITLE_BYTES)
        if "kind" in present:
            kind = r.choice("kind", LISTING_KINDS)
        if "description" in present:
            description = r.text("description", max_bytes=MAX_DESCRIPTION_BYTES)
        if "tags" in present:
            items = r.array("tags", hi=MAX_TAGS)
            for i, v in enumerate(items):
                problem = "expected text" if type(v) is not str else tag_problem(v)
                if problem is not None:
                    raise SchemaError(f"{r.where('tags')}[{i}]: {problem}")
            for i in range(1, len(items)):
                if not items[i - 1] < items[i]:
                    raise SchemaError(f"{r.where('tags')}: items must be strictly ascending "
                                      "(sorted, no duplicates)")
            tags = tuple(items)
        if "lang" in present:
            lang = r.text("lang", max_bytes=21)
            if LANG_RE.match(lang) is None:
                raise SchemaError(f"{r.where('lang')}: expected a language tag such as "
                                  "'en' or 'pt-BR'")
        if title is None and kind is None:
            if description is not None or tags is not None or lang is not None:
                raise SchemaError("listing: a withdrawal (no title, no kind) has only "
                                  "'thing' and 'time'")
        elif title is None or kind is None:
            raise SchemaError("listing: an announcement has both 'title' and 'kind'")
        r.done()
        return cls(thing, time, title, kind, description, tags, lang)

    def check_rules(self, signer: bytes) -> None:
        return None


def newer(a_time: int, a_id: bytes, b_time: int, b_id: bytes) -> bool:
    """Whether listing a (``time``, object ID) replaces listing b of the same signer and
    thing: a greater time wins; at equal times the greater ID (bytewise)."""
    return (a_time, a_id) > (b_time, b_id)


__all__ = ["LANG_RE", "LISTING_KINDS", "Listing", "newer", "tag_problem"]
