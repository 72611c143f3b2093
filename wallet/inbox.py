"""Objects from other people: verified intake, storage with a protection class, and the
claims, receipts and equivocation proofs that concern this wallet.

Every stored object gets a protection class (``objects.keep``):

* 2 -- it concerns us: signed by us, naming us (a claim to us, a settlement line for
  us, a receipt to us...), or a key document we rely on (our creators', verified sites);
* 1 -- it is signed by or names a key we stand in a relation with (table ``relations``:
  creators we pay, donors who paid us, donors our creators acknowledged, long-connected
  peers), or it is an equivocation proof;
* 0 -- everything else: other people's objects a node carries for the network.

The node keeps class 2 always and evicts class 0 before class 1, newest signers first
(:mod:`rill.node.relay`).  A class-0 object is refused when its signer already holds
``relay_quota`` bytes of class 0.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import nacl.signing

from ..protocol import checks, keys
from ..protocol import messages as m
from ..protocol.errors import RemoteError
from ..protocol.settle import open_claim
from . import listings, store
from .errors import Corrupt, NotFound, Refused, WalletError
from .home import Config
from .results import ImportResult, format_amount_safe

OWN, RELATED, OTHER = 2, 1, 0


def subjects_of(obj: m.Signed[Any]) -> set[bytes]:
    """The keys an object concerns: whoever may ask for it by sync."""
    b = obj.body
    out = {obj.signer}
    if isinstance(b, m.Settlement):
        out.update(line.creator for line in b.lines)
    elif isinstance(b, m.Claim | m.SealedClaim):
        out.add(b.creator)
    elif isinstance(b, m.Receipt | m.Equivocation):
        out.add(b.donor)
    return out


class Inbox:
    """Mixin of :class:`rill.wallet.wallet.Wallet`: what arrives from elsewhere."""

    db: sqlite3.Connection
    key: nacl.signing.SigningKey
    identity: bytes
    #: Largest number of class-0 bytes one signer may hold (None: no limit; the node
    #: sets it from its disk cap).
    relay_quota: int | None = None

    @property
    def config(self) -> Config:  # provided by Wallet
        raise NotImplementedError

    def own_keys(self) -> set[bytes]:  # provided by Wallet (rill.wallet.pseudonyms)
        return {self.identity}

    def take_disclosure(self, claim: m.Signed[m.Claim]) -> bytes | None:  # idem
        return None

    # -- storage ------------------------------------------------------------------------

    def _keep_of(self, obj: m.Signed[Any], subjects: set[bytes]) -> int:
        if subjects & self.own_keys():  # our identity or one of our month pseudonyms
            return OWN
        if isinstance(obj.body, m.KeyDocument) and self.db.execute(
                "SELECT 1 FROM obligations WHERE direction = 'out' AND creator = ? UNION ALL "
                "SELECT 1 FROM sites WHERE creator = ? LIMIT 1",
                (obj.signer, obj.signer)).fetchone():
            return OWN
        if isinstance(obj.body, m.Equivocation):
            return RELATED
        marks = ",".join("?" * len(subjects))
        if self.db.execute(f"SELECT 1 FROM relations WHERE key IN ({marks}) LIMIT 1",
                           tuple(subjects)).fetchone():
            return RELATED
        return OTHER

    def _store(self, obj: m.Signed[Any], now: int, private: bool = False,
               keep: int | None = None) -> bool:
        """Store a verified object once; record whom it concerns.  True if new.

        ``private`` objects (claims in clear that were sealed on the wire, our own
        claims) are never served to peers.  Raises :class:`Refused` (``quota``) for a
        class-0 object whose signer already holds its quota.
        """
        subjects = subjects_of(obj)
        if keep is None:
            keep = self._keep_of(obj, subjects)
        if keep == OTHER and self.relay_quota is not None:
            held = self.db.execute(
                "SELECT coalesce(sum(length(raw)), 0) FROM objects WHERE keep = 0 AND "
                "signer = ?", (obj.signer,)).fetchone()[0]
            if held + len(obj.raw) > self.relay_quota:
                raise Refused(f"{obj.signer_did} already holds {held} bytes here (quota "
                              f"{self.relay_quota})", code="quota")
        month = getattr(obj.body, "month", None)
        if isinstance(obj.body, m.Equivocation):
            month = obj.body.month
        cur = self.db.execute(
            "INSERT OR IGNORE INTO objects (id, type, signer, month, raw, received, private, "
            "keep) VALUES (?,?,?,?,?,?,?,?)",
            (obj.id, obj.type, obj.signer, month, obj.raw, now, int(private), keep))
        if cur.rowcount != 1:
            if keep == OWN:  # known before, concerns us now (e.g. a key we now rely on)
                self.db.execute("UPDATE objects SET keep = 2 WHERE id = ?", (obj.id,))
            return False
        n = cur.lastrowid
        self.db.executemany("INSERT OR IGNORE INTO subjects (object, subject, n) VALUES (?,?,?)",
                            [(obj.id, s, n) for s in subjects])
        self.db.execute("INSERT OR IGNORE INTO signers (key, first_seen) VALUES (?, ?)",
                        (obj.signer, n))
        return True

    def has_object(self, oid: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM objects WHERE id = ?", (oid,)).fetchone() is not None

    def _object(self, oid: bytes, expect: Any = None) -> m.Signed[Any]:
        row = self.db.execute("SELECT raw FROM objects WHERE id = ?", (oid,)).fetchone()
        if row is None:
            raise NotFound(f"no object {oid.hex()}")
        try:
            return m.decode(row[0], expect)
        except RemoteError as exc:
            raise Corrupt(f"stored object {oid.hex()} does not verify: {exc.reason}") from None

    def key_document(self, creator: bytes) -> m.Signed[m.KeyDocument] | None:
        """The newest key document we hold for ``creator``."""
        best = None
        for (raw,) in self.db.execute(
                "SELECT raw FROM objects WHERE type = 'key' AND signer = ?", (creator,)):
            doc = m.decode(raw, m.KeyDocument)
            if best is None or doc.body.valid_from > best.body.valid_from:
                best = doc
        return best

    # -- relations ----------------------------------------------------------------------

    def add_relation(self, key: bytes, reason: str, now: int) -> bool:
        """Remember a standing relation with ``key``; its objects move to class 1.

        Call inside a transaction.  Returns True if the relation is new.
        """
        if key == self.identity:
            return False
        cur = self.db.execute("INSERT OR IGNORE INTO relations (key, reason, since) "
                              "VALUES (?, ?, ?)", (key, reason, now))
        if cur.rowcount != 1:
            return False
        self.db.execute(
            "UPDATE objects SET keep = 1 WHERE keep = 0 AND (signer = ? OR id IN "
            "(SELECT object FROM subjects WHERE subject = ?))", (key, key))
        if reason == "paid-us":
            self.db.execute("DELETE FROM newcomers WHERE donor = ?", (key,))
        return True

    def relations(self) -> dict[bytes, str]:
        return {k: r for k, r in self.db.execute("SELECT key, reason FROM relations")}

    def _reclassify(self) -> None:
        """Give every stored object its protection class (after a schema upgrade)."""
        with store.transaction(self.db):
            for oid, raw in self.db.execute("SELECT id, raw FROM objects").fetchall():
                obj = m.decode(raw, verify_signature=False)
                keep = self._keep_of(obj, subjects_of(obj))
                if keep == OTHER and self.db.execute(
                        "SELECT 1 FROM obligations WHERE claim = ?1 OR settlement = ?1 OR "
                        "sealed = ?1 OR receipt = ?1 UNION ALL SELECT 1 FROM settled WHERE "
                        "settlement = ?1 LIMIT 1", (oid,)).fetchone():
                    keep = OWN
                self.db.execute("UPDATE objects SET keep = ? WHERE id = ?", (keep, oid))
            self.db.execute("DELETE FROM meta WHERE key = 'reclassify'")

    # -- intake -------------------------------------------------------------------------

    def import_object(self, raw: bytes, now: int, *, signature_checked: bool = False
                      ) -> ImportResult:
        """Verify and take in one object received by other means (USB stick, mail...).

        Raises :class:`RemoteError` for an invalid object and :class:`Refused` for a
        valid one that contradicts what we hold (a receipt by the wrong key...) or that
        the store will not keep (``quota``); either way nothing is written.
        ``signature_checked``: the caller verified these exact bytes already (the node's
        gossip gate), so the signature is not checked twice.
        """
        obj = m.decode(raw, verify_signature=not signature_checked)
        checks.check_time(obj, now)
        with store.transaction(self.db):
            return self._route(obj, now)

    def import_objects(self, raws: list[bytes], now: int
                       ) -> list[ImportResult | RemoteError | WalletError]:
        """:meth:`import_object` for several objects, all in one transaction: each one's
        result, or the refusal that kept it out (a refused object changes nothing, the
        others are taken in).  If the store itself fails (a full disk:
        :class:`DiskFull`) none of them is kept."""
        out: list[ImportResult | RemoteError | WalletError] = []
        with store.transaction(self.db):
            for raw in raws:
                try:
                    obj = m.decode(raw)
                    checks.check_time(obj, now)
                except (RemoteError, WalletError) as exc:
                    out.append(exc)
                    continue
                self.db.execute("SAVEPOINT one_object")
                try:
                    out.append(self._route(obj, now))
                except (RemoteError, WalletError) as exc:
                    self.db.execute("ROLLBACK TO one_object")
                    out.append(exc)
                self.db.execute("RELEASE one_object")
        return out

    def _route(self, obj: m.Signed[Any], now: int) -> ImportResult:
        body = obj.body
        known = self.db.execute("SELECT 1 FROM objects WHERE id = ?", (obj.id,)).fetchone()
        if isinstance(body, m.ClickEntry):
            raise Refused("click-log entries travel only inside an export (`rill import`)")
        if isinstance(body, m.Listing):
            return listings.take(self, obj, now, known is not None)
        if isinstance(body, m.Statement):
            raise Refused("a statement is a creator's document for its accountant: "
                          "`rill verify` checks it; a home does not keep it")
        if isinstance(body, m.SealedClaim) and body.creator == self.identity:
            claim = open_claim(obj, self.key)
            result = self._take_claim(claim, now, obj.id)
            self._store(obj, now)
            return result
        if isinstance(body, m.Claim) and body.creator == self.identity:
            return self._take_claim(obj, now, None)
        if isinstance(body, m.Receipt) and body.donor in self.own_keys():
            return self._take_receipt(obj, now)
        if isinstance(body, m.Settlement) and not known:
            if any(line.creator == self.identity for line in body.lines):
                self._new_donor_room(obj.signer, body.month)
            proof = self._check_equivocation(obj, now)
            self._store(obj, now)
            taken = self._take_pending(obj, now)
            if proof is not None:
                return ImportResult(obj.id, obj.type, "equivocation",
                                    f"{obj.signer_did} signed two settlements for "
                                    f"{body.month}; proof {proof.id_hex}")
            return ImportResult(obj.id, obj.type, "stored",
                                f"{taken} waiting claim(s) taken in" if taken else "")
        if isinstance(body, m.SealedClaim) and not known:
            row = self.db.execute("SELECT raw FROM objects WHERE id = ?",
                                  (body.settlement,)).fetchone()
            if row is not None:  # a cover must fit its settlement (SPEC §7.2)
                checks.check_sealed(obj, m.decode(row[0], m.Settlement,
                                                  verify_signature=False))
        if isinstance(body, m.Equivocation) and not known:
            if self._proof_of(body.donor, body.month) is not None:
                return ImportResult(obj.id, obj.type, "duplicate",
                                    "this donor and month are proven already")
            self._store(obj, now)
            self._mark(body.donor, body.month, obj)
            return ImportResult(obj.id, obj.type, "stored")
        if isinstance(body, m.Receipt) and not known and self.db.execute(
                "SELECT 1 FROM relations WHERE key = ? AND reason = 'paid-by-us'",
                (obj.signer,)).fetchone():
            self.add_relation(body.donor, "our-creators-donor", now)
        stored = self._store(obj, now)
        return ImportResult(obj.id, obj.type, "stored" if stored and not known else "duplicate")

    def _add_obligation(self, claim: m.Signed[m.Claim], direction: str,
                        sealed: bytes | None) -> None:
        c = claim.body
        self.db.execute(
            "INSERT INTO obligations (claim, direction, month, donor, creator, amount, currency,"
            " settlement, sealed, state) VALUES (?,?,?,?,?,?,?,?,?, 'owed')",
            (claim.id, direction, c.month, claim.signer, c.creator, c.amount, c.currency,
             c.settlement, sealed))

    def _new_donor_room(self, donor: bytes, month: str) -> None:
        """Bound a month's claims, and settlements naming us, from donors who never paid
        us: they are kept whatever the relay cap (they concern us), and fake IOUs cost a
        stranger only a proof of work each; they should not bury real supporters.

        Table ``newcomers`` lists, per month, the donors who never paid us that we took
        something from; a donor leaves it when it pays (:meth:`add_relation`)."""
        if donor == self.identity or self.db.execute(
                "SELECT 1 FROM newcomers WHERE month = ? AND donor = ? UNION ALL "
                "SELECT 1 FROM relations WHERE key = ? AND reason = 'paid-us'",
                (month, donor, donor)).fetchone():
            return
        count = self.db.execute("SELECT count(*) FROM newcomers WHERE month = ?",
                                (month,)).fetchone()[0]
        limit = self.config.new_donors_per_month
        if count >= limit:
            raise Refused(f"{month}: already {limit} claims from donors who never paid you "
                          "(config [creator] new_donors_per_month)", code="new-donor-limit")
        self.db.execute("INSERT INTO newcomers (month, donor) VALUES (?, ?)", (month, donor))

    def _take_claim(self, claim: m.Signed[m.Claim], now: int, sealed: bytes | None
                    ) -> ImportResult:
        row = self.db.execute("SELECT raw FROM objects WHERE id = ?",
                              (claim.body.settlement,)).fetchone()
        if row is None:
            # keep it; it is checked and taken in when its settlement arrives
            self._new_donor_room(claim.signer, claim.body.month)
            if sealed is None:  # a claim in clear is never served to peers (SPEC §11.2)
                self._store(claim, now, private=True)
            return ImportResult(claim.id, "claim", "pending",
                                "waiting for its settlement to arrive")
        checks.check_claim(claim, m.decode(row[0], m.Settlement))
        if self.db.execute("SELECT 1 FROM obligations WHERE claim = ?",
                           (claim.id,)).fetchone():
            if sealed is not None:
                self.db.execute("UPDATE obligations SET sealed = coalesce(sealed, ?) "
                                "WHERE claim = ?", (sealed, claim.id))
            return ImportResult(claim.id, "claim", "duplicate")
        self._new_donor_room(claim.signer, claim.body.month)
        self._store(claim, now, private=True)  # in clear: never served (SPEC §11.2)
        self._add_obligation(claim, "in", sealed)
        c = claim.body
        who = claim.signer_did
        identity = self.take_disclosure(claim)
        if identity is not None:
            who = f"{keys.did_from_key(identity)} (disclosed pseudonym {who})"
        return ImportResult(claim.id, "claim", "claim-received",
                            f"{format_amount_safe(c.amount, c.currency)} for {len(c.things)} "
                            f"thing(s) from {who}")

    def _take_pending(self, settlement: m.Signed[m.Settlement], now: int) -> int:
        """Claims to us that arrived before their settlement: check and take them in now."""
        if all(line.creator != self.identity for line in settlement.body.lines):
            return 0
        taken = 0
        for (raw,) in self.db.execute(
                "SELECT o.raw FROM objects o JOIN subjects s ON s.object = o.id "
                "WHERE s.subject = ? AND o.type IN ('claim', 'sealed-claim') AND o.month = ? "
                "AND o.signer = ?", (self.identity, settlement.body.month, settlement.signer)
        ).fetchall():
            obj = m.decode(raw)
            if obj.body.settlement != settlement.id or obj.body.creator != self.identity:
                continue
            claim = open_claim(obj, self.key) if isinstance(obj.body, m.SealedClaim) else obj
            sealed = obj.id if isinstance(obj.body, m.SealedClaim) else None
            try:
                if self._take_claim(claim, now, sealed).action == "claim-received":
                    taken += 1
            except (RemoteError, Refused):
                continue  # a claim that does not match its settlement stays out
        return taken

    def _take_receipt(self, receipt: m.Signed[m.Receipt], now: int) -> ImportResult:
        r = receipt.body
        row = self.db.execute("SELECT state, receipt FROM obligations WHERE claim = ? AND "
                              "direction = 'out'", (r.claim,)).fetchone()
        if row is None:
            raise NotFound(f"the receipt is for claim {r.claim.hex()}, which is not one of "
                           "yours")
        claim = self._object(r.claim, m.Claim)
        try:
            checks.check_receipt(receipt, claim, self.key_document(claim.body.creator))
        except RemoteError as exc:
            raise Refused(f"receipt refused: {exc}", code=exc.code) from None
        if row[1] is not None:
            return ImportResult(receipt.id, "receipt", "duplicate")
        self._store(receipt, now)
        self.db.execute("UPDATE obligations SET state = 'receipted', receipt = ? "
                        "WHERE claim = ?", (receipt.id, r.claim))
        return ImportResult(receipt.id, "receipt", "receipted",
                            f"{format_amount_safe(r.amount, r.currency)} acknowledged by "
                            f"{receipt.signer_did}")

    # -- equivocation: one proof per donor and month ------------------------------------

    def _proof_of(self, donor: bytes, month: str) -> bytes | None:
        row = self.db.execute("SELECT proof FROM equivocators WHERE donor = ? AND month = ?",
                              (donor, month)).fetchone()
        return None if row is None else bytes(row[0])

    def _check_equivocation(self, s: m.Signed[m.Settlement], now: int
                            ) -> m.Signed[m.Equivocation] | None:
        """Sign a proof if ``s`` contradicts a settlement we hold and nobody proved this
        donor's month yet (the first proof wins; others are not kept)."""
        if self._proof_of(s.signer, s.body.month) is not None:
            return None
        for (raw,) in self.db.execute(
                "SELECT raw FROM objects WHERE type = 'settlement' AND signer = ? AND month = ?",
                (s.signer, s.body.month)).fetchall():
            other = m.decode(raw, m.Settlement)
            if other.id != s.id:
                a, b = sorted([s, other], key=lambda x: x.id)
                proof = m.sign(m.Equivocation(a.raw, b.raw), self.key)
                self._store(proof, now)
                self._mark(s.signer, s.body.month, proof)
                return proof
        return None

    def _mark(self, donor: bytes, month: str, proof: m.Signed[m.Equivocation]) -> None:
        self.db.execute("INSERT OR IGNORE INTO equivocators (donor, month, proof) VALUES (?,?,?)",
                        (donor, month, proof.id))

    def equivocators(self) -> dict[bytes, str]:
        """Proven donors, each with the first month proven."""
        out: dict[bytes, str] = {}
        for d, mo in self.db.execute("SELECT donor, month FROM equivocators ORDER BY month"):
            out.setdefault(d, mo)
        return out

    def equivocation_proofs(self) -> list[tuple[bytes, str, bytes]]:
        """(donor, month, proof ID) of every proven donor month."""
        return [(d, mo, p) for d, mo, p in self.db.execute(
            "SELECT donor, month, proof FROM equivocators ORDER BY month, donor")]
