"""Export and import of a whole home as one portable file (README "Export and import").

The file is one canonical CBOR map::

    {"format": "rill-export", "version": 1, "identity": did, ["seed": bytes32,]
     "config": text, "log": [entry bytes...], "objects": [object bytes...],
     "obligations": [{"claim", "direction", "state", "reference", "paid_at",
                      "receipt", "sealed"}...],
     ["anonymous": [{"month", ["only": [creator key...]]}...]]}

``anonymous`` lists the months given under a pseudonym (only when there are some):
import derives each pseudonym from the key and takes that month's settlement as ours.

The private key (``seed``) is included only when asked.  Import verifies every
signature, the whole chain and every cross-reference before it writes anything,
and then writes everything in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing

from ..protocol import cbor, checks, keys
from ..protocol import messages as m
from ..protocol.disclosure import pseudonym_key
from ..protocol.errors import RemoteError
from ..protocol.months import check_month
from ..protocol.settle import blind_head
from . import store
from .errors import Refused
from .home import Home
from .wallet import Wallet

FORMAT = "rill-export"
VERSION = 1
Progress = Callable[[str, int, int], None]


def export_home(w: Wallet, with_key: bool = False) -> bytes:
    w.verify_log()
    log = [raw for (raw,) in w.db.execute("SELECT raw FROM log ORDER BY seq")]
    objects = [raw for (raw,) in w.db.execute("SELECT raw FROM objects ORDER BY rowid")]
    obligations = []
    for row in w.db.execute("SELECT claim, direction, state, reference, paid_at, receipt, sealed "
                            "FROM obligations ORDER BY rowid"):
        claim, direction, state, reference, paid_at, receipt, sealed = row
        item: dict[str, Any] = {"claim": claim, "direction": direction, "state": state}
        for k, v in (("reference", reference), ("paid_at", paid_at), ("receipt", receipt),
                     ("sealed", sealed)):
            if v is not None:
                item[k] = v
        obligations.append(item)
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "identity": w.did,
        "config": w.home.config_path.read_text() if w.home.config_path.exists() else "",
        "log": log, "objects": objects, "obligations": obligations,
    }
    anonymous = [{"month": a.month, **({} if a.only is None else {"only": list(a.only)})}
                 for a in w.anonymous_months().values()]
    if anonymous:  # months given under a pseudonym (rill.wallet.pseudonyms)
        doc["anonymous"] = anonymous
    if with_key:
        doc["seed"] = bytes(w.key)
    return cbor.encode(doc)


def _read(data: bytes) -> dict[str, Any]:
    try:
        doc = cbor.decode(data)
    except RemoteError as exc:
        raise Refused(f"not a Rill export: {exc.reason}", code="bad-export") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise Refused("not a Rill export file", code="bad-export")
    if doc.get("version") != VERSION:
        raise Refused(f"unsupported export version {doc.get('version')}", code="bad-export")
    for name, typ in (("identity", str), ("config", str), ("log", list), ("objects", list),
                      ("obligations", list)):
        if not isinstance(doc.get(name), typ):
            raise Refused(f"export field {name!r} is missing or malformed", code="bad-export")
    return doc


def import_home(path: Path | str, data: bytes, now: int,
                progress: Progress | None = None) -> Wallet:
    """Restore an export into ``path``: a new home, or the same identity's home.

    Nothing is written unless every object verifies.
    """
    doc = _read(data)
    identity = keys.key_from_did(doc["identity"])
    seed = doc.get("seed")
    home = Home(path)
    if home.exists():
        key = home.signing_key()
        if keys.public_key(key) != identity:
            raise Refused("this export belongs to another identity than the home's",
                          code="wrong-identity")
    elif seed is None:
        raise Refused("the export holds no private key and the home has none: restore the "
                      "key first (`rill init --seed-file`) or export with --with-key",
                      code="no-key")
    else:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise Refused("the export's key is malformed", code="bad-export")
        key = nacl.signing.SigningKey(seed)
        if keys.public_key(key) != identity:
            raise Refused("the export's key does not match its identity", code="bad-export")

    # -- verify everything before writing anything ----------------------------------------
    log: list[m.Signed[m.ClickEntry]] = []
    total = len(doc["log"])
    for i, raw in enumerate(doc["log"]):
        try:
            entry = m.decode(raw, m.ClickEntry)
        except (RemoteError, TypeError) as exc:
            raise Refused(f"log entry {i} does not verify: {exc}", code="bad-export") from None
        log.append(entry)
        if progress and (i % 2000 == 0 or i + 1 == total):
            progress("verifying the click log", i + 1, total)
    try:
        checks.check_chain(log, signer=identity)
    except RemoteError as exc:
        raise Refused(f"the exported click log is broken: {exc}", code="bad-export") from None
    objects: list[m.Signed[Any]] = []
    total = len(doc["objects"])
    for i, raw in enumerate(doc["objects"]):
        try:
            objects.append(m.decode(raw))
        except (RemoteError, TypeError) as exc:
            raise Refused(f"object {i} does not verify: {exc}", code="bad-export") from None
        if progress and (i % 2000 == 0 or i + 1 == total):
            progress("verifying objects", i + 1, total)
    by_id = {o.id: o for o in objects}
    anonymous = _anonymous(doc.get("anonymous", []))
    pseudonyms = {mo: pseudonym_key(key, mo) for mo in anonymous}
    signer_of = {mo: keys.public_key(k) for mo, k in pseudonyms.items()}
    obligations = _check_obligations(doc["obligations"], by_id, identity,
                                     {identity, *signer_of.values()})
    own_settled = {o.body.month: o for o in objects
                   if isinstance(o.body, m.Settlement)
                   and o.signer == signer_of.get(o.body.month, identity)}
    log_ids = {e.id for e in log}
    for month, s in own_settled.items():
        heads = log_ids if month not in pseudonyms else {
            blind_head(pseudonyms[month], i) for i in log_ids}
        if s.body.head != m.ZERO_HASH and s.body.head not in heads:
            raise Refused(f"the {month} settlement covers a click-log entry the export lacks",
                          code="bad-export")

    # -- write -----------------------------------------------------------------------------
    new_home = not home.exists()
    before = home.before_create()
    try:
        if new_home:
            assert isinstance(seed, bytes)
            home.create("", seed)
            if doc["config"]:
                home.write_config(doc["config"])
        w = Wallet.open(path)
    except BaseException as exc:
        if new_home:  # nothing half-way: a home this import began is removed again
            home.undo_create(before)
        if isinstance(exc, OSError) and store.is_disk_full(exc):
            raise store.disk_full(home.path, "nothing was imported") from None
        raise
    try:
        with store.transaction(w.db):
            existing = [raw for (raw,) in w.db.execute("SELECT raw FROM log ORDER BY seq")]
            if existing != [e.raw for e in log[:len(existing)]]:
                raise Refused("the home's click log is not a prefix of the export's: refusing "
                              "to mix two histories", code="diverged")
            for e in log[len(existing):]:
                w.db.execute("INSERT INTO log (seq, id, time, kind, target, raw) "
                             "VALUES (?,?,?,?,?,?)",
                             (e.body.seq, e.id, e.body.time, e.body.kind, e.body.target, e.raw))
            for o in objects:
                w._store(o, now)
            for month, only in anonymous.items():
                w.db.execute("INSERT OR IGNORE INTO anonymous (month, pseudonym, only, since) "
                             "VALUES (?,?,?,?)", (month, signer_of[month], None if only is None
                                                  else " ".join(c.hex() for c in only), now))
            for month, s in own_settled.items():
                w.db.execute("INSERT OR IGNORE INTO settled (month, settlement) VALUES (?,?)",
                             (month, s.id))
            for item, claim in obligations:
                w.db.execute("INSERT OR IGNORE INTO obligations (claim, direction, month, donor,"
                             " creator, amount, currency, settlement, sealed, state) "
                             "VALUES (?,?,?,?,?,?,?,?,?, 'owed')",
                             (claim.id, item["direction"], claim.body.month, claim.signer,
                              claim.body.creator, claim.body.amount, claim.body.currency,
                              claim.body.settlement, item.get("sealed")))
                row = w.db.execute("SELECT state FROM obligations WHERE claim = ?",
                                   (claim.id,)).fetchone()
                if row[0] != "receipted" and item["state"] != "owed":
                    w.db.execute("UPDATE obligations SET state = ?, reference = ?, paid_at = ?,"
                                 " receipt = ? WHERE claim = ?",
                                 (item["state"], item.get("reference"), item.get("paid_at"),
                                  item.get("receipt"), claim.id))
            w.verify_log()
    except BaseException:
        w.close()
        if new_home:
            home.undo_create(before)
        raise
    return w


def _anonymous(items: Any) -> dict[str, tuple[bytes, ...] | None]:
    """The export's anonymous months: month -> the creators hidden from (None: all)."""
    out: dict[str, tuple[bytes, ...] | None] = {}
    if not isinstance(items, list):
        raise Refused("export field 'anonymous' is malformed", code="bad-export")
    for item in items:
        try:
            month = check_month(item["month"])
            only = item.get("only")
            out[month] = None if only is None else tuple(keys.admit_key(c) for c in only)
        except (RemoteError, TypeError, KeyError, AttributeError):
            raise Refused("export field 'anonymous' is malformed", code="bad-export") from None
    return out


def _check_obligations(items: list[Any], by_id: dict[bytes, m.Signed[Any]], identity: bytes,
                       own: set[bytes]) -> list[tuple[dict[str, Any], m.Signed[m.Claim]]]:
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise Refused(f"obligation {i} is malformed", code="bad-export")
        claim = by_id.get(item.get("claim", b""))
        if claim is None or not isinstance(claim.body, m.Claim):
            raise Refused(f"obligation {i} names a claim the export lacks", code="bad-export")
        direction, state = item.get("direction"), item.get("state")
        mine = claim.signer in own if direction == "out" else claim.body.creator == identity
        if direction not in ("out", "in") or not mine:
            raise Refused(f"obligation {i} has a wrong direction", code="bad-export")
        if state not in ("owed", "paid", "receipted"):
            raise Refused(f"obligation {i} has an unknown state", code="bad-export")
        settlement = by_id.get(claim.body.settlement)
        if settlement is None:
            raise Refused(f"obligation {i}: the export lacks its settlement", code="bad-export")
        try:
            checks.check_claim(claim, settlement)
            if state == "receipted":
                receipt = by_id.get(item.get("receipt", b""))
                if receipt is None or not isinstance(receipt.body, m.Receipt):
                    raise Refused(f"obligation {i} is receipted but its receipt is missing",
                                  code="bad-export")
                checks.check_receipt(receipt, claim)
        except RemoteError as exc:
            raise Refused(f"obligation {i}: {exc}", code="bad-export") from None
        out.append((item, claim))
    return out


