"""Hypothesis properties of the wallet's money logic on real homes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from helpers import signing_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rill.protocol import keys
from rill.protocol.months import month_end, month_start
from rill.wallet.errors import Refused
from rill.wallet.wallet import Wallet

OCT = month_start("2026-10")
AFTER = month_end("2026-10") + 60
CREATORS = [keys.public_key(signing_key(f"c{i}")) for i in range(4)]

# (thing number, named: does the click name the thing's creator?)
clicks = st.lists(st.tuples(st.integers(0, 30), st.booleans()), min_size=0, max_size=14)


def _settle(budget: int, seq: list[tuple[int, bool]]) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        w = Wallet.create(Path(tmp) / "h", "p", bytes(signing_key("prop")))
        w.set_budget(budget, "EUR", OCT - 100)
        for i, (thing, named) in enumerate(seq):
            w.click(f"https://t{thing}.example/", OCT + i,
                    creator=CREATORS[thing % 4] if named else None)
        res, _ = w.settle("2026-10", AFTER)
        again, new = w.settle("2026-10", AFTER + 1)
        assert not new and again.settlement.raw == res.settlement.raw  # idempotent
        w.close()
        return res


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**7), clicks, st.randoms())
def test_settlement_properties(budget: int, seq: list[tuple[int, bool]], rnd: Any) -> None:
    res = _settle(budget, seq)
    s = res.settlement.body
    named = {t for t, n in seq if n}
    assert s.things == len(named)  # repeat clicks count once; unnamed ones are pending
    amounts = [line.amount for line in s.lines]
    assert all(a >= 0 for a in amounts)
    assert sum(amounts) == (budget if named else 0)
    # the same clicks in another order, each thing clicked again: the same settlement
    shuffled = list(seq) + list(seq)
    rnd.shuffle(shuffled)
    other = _settle(budget, shuffled).settlement.body
    assert (other.things, other.budget, other.lines) == (s.things, s.budget, s.lines)


class Obligations(RuleBasedStateMachine):
    """Random pay / receipt / re-import sequences: receipted never goes back."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        base = Path(self.tmp.name)
        self.donor = Wallet.create(base / "d", "d", bytes(signing_key("sm-donor")))
        self.creator = Wallet.create(base / "c", "c", bytes(signing_key("sm-creator")))
        self.donor.set_budget(900, "EUR", OCT)
        for i in range(3):
            self.donor.click(f"https://s{i}.example/", OCT + i, creator=self.creator.identity)
        res, _ = self.donor.settle("2026-10", AFTER)
        self.claim = res.claims[0].id
        self.creator.import_object(res.settlement.raw, AFTER)
        self.creator.import_object(res.sealed[0].raw, AFTER)
        self.receipt: bytes | None = None
        self.was_receipted = False
        self.paid_ref: str | None = None
        self.t = AFTER + 10

    def teardown(self) -> None:
        self.donor.close()
        self.creator.close()
        self.tmp.cleanup()

    @rule(ref=st.text(alphabet="ABC123-", min_size=1, max_size=8), force=st.booleans())
    def pay(self, ref: str, force: bool) -> None:
        try:
            self.donor.pay([self.claim], ref, self.t, force=force)
            assert self.donor.obligation(self.claim).reference == ref
            self.paid_ref = ref
        except Refused:
            # receipted is final; a recorded reference changes only with force
            assert self.was_receipted or (not force and self.paid_ref not in (None, ref))

    @rule()
    def creator_signs(self) -> None:
        self.t += 1
        self.receipt = self.creator.sign_receipt(self.claim, self.t, "r").raw

    @precondition(lambda self: self.receipt is not None)
    @rule()
    def donor_imports_receipt(self) -> None:
        assert self.receipt is not None
        self.donor.import_object(self.receipt, self.t + 1)
        self.was_receipted = True

    @invariant()
    def receipted_is_final(self) -> None:
        state = self.donor.obligation(self.claim).state
        if self.was_receipted:
            assert state == "receipted"
        else:
            assert state in ("owed", "paid")


TestObligations = Obligations.TestCase
TestObligations.settings = settings(max_examples=15, stateful_step_count=8, deadline=None)
