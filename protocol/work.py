"""Proof of work on settlements (SPEC.md §5.3, §11.2, §13).

A settlement may carry ``work``, a nonce (uint 0..2**64-1).  Its *work hash* is::

    SHA-256("rill/1/work" || 0x0A || signer (32 bytes) || month (7 ASCII bytes)
            || uint64 big-endian(work))

and its *work bits* the number of leading zero bits of that hash (0 without
``work``).  The stamp is bound to the donor and the month, not to the content:
it can be computed during the month, and a re-settled month (or both settlements
of an equivocator) share it.  Gossip admits a settlement only with at least
:data:`NETWORK_WORK_BITS` bits (``insufficient-work``); the object's validity
(SPEC §4.4) does not depend on it.
"""

from __future__ import annotations

import functools
import hashlib

from .errors import LocalError
from .months import is_month

WORK_DOMAIN = b"rill/1/work\n"
#: The difficulty of the public network: about 2**20 SHA-256 attempts per donor and month.
NETWORK_WORK_BITS = 20
#: The most bits a node may ask for (config ``[network] work_bits``).
MAX_WORK_BITS = 32
MAX_NONCE = 2**64 - 1


def _prefix(signer: bytes, month: str) -> bytes:
    if len(signer) != 32:
        raise LocalError("a work stamp is bound to a 32-byte signer key")
    if not is_month(month):
        raise LocalError(f"a work stamp is bound to a month YYYY-MM, not {month!r}",
                         code="bad-month")
    return WORK_DOMAIN + signer + month.encode("ascii")


def work_hash(signer: bytes, month: str, work: int) -> bytes:
    """The work hash of nonce ``work`` for ``signer`` and ``month``."""
    if not 0 <= work <= MAX_NONCE:
        raise LocalError(f"work nonce out of range 0..2**64-1: {work}")
    return hashlib.sha256(_prefix(signer, month) + work.to_bytes(8, "big")).digest()


def leading_zero_bits(digest: bytes) -> int:
    n = int.from_bytes(digest, "big")
    return len(digest) * 8 - n.bit_length()


def work_bits(signer: bytes, month: str, work: int | None) -> int:
    """How many leading zero bits the stamp ``work`` has (0 when there is none)."""
    if work is None:
        return 0
    return leading_zero_bits(work_hash(signer, month, work))


@functools.lru_cache(maxsize=256)
def find_work(signer: bytes, month: str, bits: int) -> int:
    """The smallest nonce >= 0 whose work hash has at least ``bits`` leading zero bits.

    Deterministic, so settling a month again gives identical bytes; cached, since it
    depends on (signer, month, bits) only.  Expected cost: 2**bits SHA-256 attempts.
    """
    if not 0 <= bits <= MAX_WORK_BITS:
        raise LocalError(f"work bits must be 0..{MAX_WORK_BITS}, not {bits}")
    if bits == 0:
        return 0
    prefix = _prefix(signer, month)
    # leading zero bits >= bits  <=>  hash < 2**(256 - bits), compared as 32 big-endian bytes
    limit = (1 << (256 - bits)).to_bytes(32, "big")
    sha256 = hashlib.sha256
    nonce = 0
    while True:
        if sha256(prefix + nonce.to_bytes(8, "big")).digest() < limit:
            return nonce
        nonce += 1
