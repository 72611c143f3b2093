"""The ``sync`` section of tests/vectors/rill_v1.json (SPEC.md §10, §11.3): requests
and responses of ``/rill/sync/1.0.0`` as canonical CBOR, by objects and by IDs, and
requests and responses refused, each with its reason."""

from __future__ import annotations

import hashlib
from typing import Any

from rill.protocol import cbor
from rill.protocol.errors import RemoteError
from rill.protocol.network import SyncRequest, SyncResponse

#: the objects a server answers with (positive vectors concerning the subject, alice)
PAGE = ["settlement", "sealed-claim-alice"]


def _exchange(name: str, req: SyncRequest, resp: SyncResponse, note: str) -> dict[str, Any]:
    raw, answer = req.encode(), resp.encode()
    assert SyncRequest.decode(raw) == req and SyncResponse.decode(answer) == resp
    return {"name": name, "note": note, "request": raw.hex(), "response": answer.hex()}


def _refused(name: str, value: Any, reason: str, decode: Any) -> dict[str, Any]:
    raw = cbor.encode(value)
    try:
        decode(raw)
    except RemoteError as exc:
        assert exc.code == reason, (name, exc.code)
    else:
        raise AssertionError(f"{name} decodes")
    return {"name": name, "bytes": raw.hex(), "reason": reason}


def sync_section(pos: list[dict[str, Any]], subject: bytes) -> dict[str, Any]:
    by_name = {v["name"]: v for v in pos}
    objects = tuple(bytes.fromhex(by_name[n]["bytes"]) for n in PAGE)
    ids = tuple(hashlib.sha256(o).digest() for o in objects)
    exchanges = [
        _exchange("objects", SyncRequest(subject, 0, 1000),
                  SyncResponse(objects, 2, False),
                  "from the start: both objects, in the order the server received them"),
        _exchange("ids", SyncRequest(subject, 0, 1000, ids=True),
                  SyncResponse(ids, 2, False, ids=True),
                  "the same by IDs: the objects' IDs in place of the objects"),
        _exchange("ids-paged", SyncRequest(subject, 0, 1, ids=True),
                  SyncResponse(ids[:1], 1, True, ids=True),
                  "one at a time: the first ID, more to come from cursor 1"),
        _exchange("empty", SyncRequest(subject, 2, 1000),
                  SyncResponse((), 2, False), "nothing after cursor 2"),
    ]
    base = {"v": 1, "subject": subject, "after": 0, "limit": 1000}
    requests = [
        _refused(n, v, r, SyncRequest.decode) for n, v, r in (
            ("ids-0", {**base, "ids": 0}, "schema"),
            ("ids-2", {**base, "ids": 2}, "schema"),
            ("ids-true", {**base, "ids": True}, "simple-value"),  # §3.1: no booleans
            ("ids-as-bytes", {**base, "ids": b"\x01"}, "schema"),
            ("unknown-field", {**base, "objects": 1}, "schema"),
            ("no-limit", {"v": 1, "subject": subject, "after": 0}, "schema"),
            ("limit-0", {**base, "limit": 0}, "schema"),
            ("limit-1001", {**base, "limit": 1001}, "schema"),
            ("cursor-2-63", {**base, "after": 2**63}, "schema"),
            ("subject-31-bytes", {**base, "subject": subject[:31]}, "bad-key"),
            ("version-2", {**base, "v": 2}, "unsupported-version"),
            # two faults: the fields' order of SPEC §11.3's table
            ("version-2-and-ids-0", {**base, "v": 2, "ids": 0}, "unsupported-version"),
            ("limit-0-and-ids-0", {**base, "limit": 0, "ids": 0}, "schema"),
        )]
    one = {"v": 1, "next": 1, "more": 0}
    responses = [
        _refused(n, v, r, SyncResponse.decode) for n, v, r in (
            ("objects-and-ids", {**one, "objects": [], "ids": []}, "schema"),
            ("neither", one, "schema"),
            ("id-31-bytes", {**one, "ids": [ids[0][:31]]}, "schema"),
            ("id-as-text", {**one, "ids": ["00" * 32]}, "schema"),
            ("more-2", {**one, "ids": [], "more": 2}, "schema"),
            ("version-2", {**one, "v": 2, "ids": []}, "schema"),
        )]
    return {"subject": subject.hex(), "objects": PAGE, "exchanges": exchanges,
            "negative_requests": requests, "negative_responses": responses}
