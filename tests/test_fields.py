"""SPEC §4.4 and §5: one reason code and one check order for every decoded value."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import signing_key
from hypothesis import given, settings
from hypothesis import strategies as st

from rill.protocol import cbor, keys
from rill.protocol import messages as m
from rill.protocol.errors import LocalError, RemoteError
from rill.protocol.fields import WHITE_SPACE, label_problem, text_problem
from rill.protocol.settle import settle

DONOR, ALICE = signing_key("donor"), signing_key("alice")
D, A = keys.public_key(DONOR), keys.public_key(ALICE)
RES = settle(DONOR, "2026-10", 1000, "EUR", bytes(32),
             {"https://alice.example/1": A, "https://alice.example/2": A}, work_bits=0)
CLAIM = RES.claims[0]
S_MAP = RES.settlement.body.to_map()
C_MAP = CLAIM.body.to_map()
R_MAP = m.Receipt(CLAIM.id, D, "2026-10", "EUR", 1000, "ref", 1793577600).to_map()
K_MAP = m.KeyDocument("Alice", ("https://alice.example",), ("payto://iban/DE75",), 0).to_map()


def envelope(t: str, body: Any, key: Any = DONOR, /, **fields: Any) -> bytes:
    """A canonical envelope with a correct signature; ``fields`` replace envelope keys
    (``None`` removes one)."""
    sig = keys.sign(key, m.signing_input(t, cbor.encode(body)))
    env: dict[str, Any] = {"v": 1, "t": t, "body": body, "signer": keys.public_key(key),
                           "sig": sig}
    for k, v in fields.items():
        if v is None:
            env.pop(k)
        else:
            env[k] = v
    return cbor.encode(env)


def reason(raw: bytes) -> str:
    with pytest.raises(RemoteError) as info:
        m.decode(raw)
    return info.value.code


# -- step 3 -------------------------------------------------------------------------------


def test_top_level_version_and_type() -> None:
    assert reason(cbor.encode([1, 2])) == "schema"
    assert reason(cbor.encode("receipt")) == "schema"
    for v in (2, 2**32, 2**40, 2**64 - 1, 0):
        assert reason(envelope("receipt", R_MAP, ALICE, v=v)) == "unsupported-version"
    for v in (-1, "1", b"\x01", [1], {"v": 1}):
        assert reason(envelope("receipt", R_MAP, ALICE, v=v)) == "schema"
    assert reason(envelope("receipt", R_MAP, ALICE, v=None)) == "schema"
    for t in ("invoice", "x" * 40, "", "Receipt", "receipt\x00"):
        assert reason(envelope("receipt", R_MAP, ALICE, t=t)) == "unknown-type"
    for t in (b"receipt", 7, ["receipt"]):
        assert reason(envelope("receipt", R_MAP, ALICE, t=t)) == "schema"
    assert reason(envelope("receipt", R_MAP, ALICE, t=None)) == "schema"
    # v before t: both bad -> the version's code
    assert reason(envelope("receipt", R_MAP, ALICE, v=2, t="nope")) == "unsupported-version"


# -- step 5 -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [A[:31], A + b"\x00", b"", "did:key:z6Mk", 5, [A], {"k": A},
                                   bytes(32), bytes([1] + [0] * 31)])
def test_any_invalid_signer_is_bad_key(value: Any) -> None:
    assert reason(envelope("receipt", R_MAP, ALICE, signer=value)) == "bad-key"


@pytest.mark.parametrize("value", [bytes(63), bytes(65), "sig", 0, [bytes(64)]])
def test_any_invalid_sig_is_bad_signature(value: Any) -> None:
    assert reason(envelope("receipt", R_MAP, ALICE, sig=value)) == "bad-signature"


@pytest.mark.parametrize("value", [bytes(63), "cosig", 0])
def test_any_invalid_cosig_is_bad_rotation(value: Any) -> None:
    assert reason(envelope("key", K_MAP, ALICE, cosig=value)) == "bad-rotation"


def test_envelope_field_order() -> None:
    # missing fields are schema, whatever their kind
    for name in ("signer", "sig", "body"):
        assert reason(envelope("receipt", R_MAP, ALICE, **{name: None})) == "schema"
    # signer, sig, cosig, body, unknown keys, then the body
    assert reason(envelope("receipt", R_MAP, ALICE, signer="x", sig="y")) == "bad-key"
    assert reason(envelope("receipt", R_MAP, ALICE, sig="y", cosig="z")) == "bad-signature"
    assert reason(envelope("receipt", R_MAP, ALICE, cosig="z", body=None)) == "bad-rotation"
    assert reason(envelope("receipt", dict(R_MAP, currency="EURO"), ALICE, extra=1)) == "schema"
    assert reason(envelope("receipt", [R_MAP], ALICE)) == "schema"
    # a cosig of the right form on a receipt: step 8 (after the signature)
    assert reason(envelope("receipt", R_MAP, ALICE, cosig=bytes(64))) == "bad-rotation"


# -- step 6: per-kind codes --------------------------------------------------------------

KIND_CASES = [
    # (type, body, key, field, bad values, code)
    ("receipt", R_MAP, ALICE, "month",
     ["２０２６-10", "2026-1", "1999-12", "10000-01", "2026-13", "2026-00", 202610, b"2026-10",
      "2026-10 ", "٢٠٢٦-10", ["2026-10"]], "bad-month"),
    ("receipt", R_MAP, ALICE, "currency",
     ["EURO", "EU", "eur", "EÜR", "ＥＵＲ", b"EUR", 978, ["EUR"], ""], "bad-currency"),
    ("receipt", R_MAP, ALICE, "donor", [D[:31], "did:key:z6Mk", 1, bytes(32)], "bad-key"),
    ("claim", C_MAP, DONOR, "creator", [A[:31], A + b"\x00", "x"], "bad-key"),
]


@pytest.mark.parametrize("case", KIND_CASES, ids=lambda c: f"{c[0]}.{c[3]}")
def test_field_kinds_have_their_code_for_any_value(case: tuple[Any, ...]) -> None:
    t, body, key, name, values, code = case
    for v in values:
        assert reason(envelope(t, dict(body, **{name: v}), key)) == code, v
    assert reason(envelope(t, {k: x for k, x in body.items() if k != name}, key)) == "schema"


def test_things_origins_payto_codes() -> None:
    for v in (7, b"https://a.example/", "https://A.example/", "https://a.example/" + "a" * 3000,
              ["https://a.example/"]):
        assert reason(envelope("claim", dict(C_MAP, things=[C_MAP["things"][0], v]))) \
            == "bad-thing", v
    click = {"seq": 0, "prev": bytes(32), "time": 5, "kind": "click",
             "data": {"thing": "https://a.example/" + "a" * 3000}}
    assert reason(envelope("click", click)) == "bad-thing"  # not schema: any length
    for v in (443, b"https://a.example", "https://a.example/", "https://A.example"):
        assert reason(envelope("key", dict(K_MAP, origins=[v]), ALICE)) == "bad-origin", v
    for v in (1, b"payto://iban/X", "PAYTO://iban/X", "payto://iban/a b"):
        assert reason(envelope("key", dict(K_MAP, payto=[v]), ALICE)) == "bad-payto", v
    for v in ("x", 5, {"a": 1}):  # not an array: schema
        assert reason(envelope("key", dict(K_MAP, origins=v), ALICE)) == "schema"


def test_settlement_line_keys_and_limits() -> None:
    lines = [dict(S_MAP["lines"][0], creator="did:key:x")]
    assert reason(envelope("settlement", dict(S_MAP, lines=lines))) == "bad-key"
    lines = [dict(S_MAP["lines"][0], things=10_001)]
    assert reason(envelope("settlement", dict(S_MAP, lines=lines, things=10_001))) == "schema"
    assert reason(envelope("settlement", dict(S_MAP, things=20_000_001))) == "schema"
    # 20,000,000 itself is in range: the split rule then fails (step 9)
    assert reason(envelope("settlement", dict(S_MAP, things=20_000_000))) == "bad-split"
    assert reason(envelope("settlement", dict(S_MAP, lines=[0] * 2001))) == "schema"


# -- step 6: order ------------------------------------------------------------------------


def test_body_fields_in_table_order_not_map_order() -> None:
    # canonical map order puts `lines` before `currency`; the table puts currency first
    assert reason(envelope("settlement", dict(S_MAP, currency="EURO", lines="x"))) \
        == "bad-currency"
    # month (3rd in the receipt's table) before currency (4th); `donor` before both
    assert reason(envelope("receipt", dict(R_MAP, month=1, currency=1), ALICE)) == "bad-month"
    assert reason(envelope("receipt", dict(R_MAP, donor=1, month=1), ALICE)) == "bad-key"
    # a missing field is reported where its row is
    no_month = {k: v for k, v in R_MAP.items() if k != "month"}
    assert reason(envelope("receipt", dict(no_month, currency="x"), ALICE)) == "schema"
    # unknown fields come after every known field
    assert reason(envelope("settlement", dict(S_MAP, aaa=1, currency="EURO"))) == "bad-currency"
    assert reason(envelope("settlement", dict(S_MAP, aaa=1))) == "schema"


def test_arrays_count_then_items_then_order() -> None:
    assert reason(envelope("key", dict(K_MAP, origins=[1] * 17), ALICE)) == "schema"
    assert reason(envelope("key", dict(K_MAP, origins=[]), ALICE)) == "schema"
    unsorted_bad = ["https://z.example", "https://Alice.example"]
    assert reason(envelope("key", dict(K_MAP, origins=unsorted_bad), ALICE)) == "bad-origin"
    unsorted = ["https://z.example", "https://alice.example"]
    assert reason(envelope("key", dict(K_MAP, origins=unsorted), ALICE)) == "schema"
    twice = ["payto://iban/X", "payto://iban/X"]
    assert reason(envelope("key", dict(K_MAP, payto=twice), ALICE)) == "schema"
    assert reason(envelope("key", dict(K_MAP, payto=[*twice, 5]), ALICE)) == "bad-payto"
    things = list(reversed(C_MAP["things"]))
    assert reason(envelope("claim", dict(C_MAP, things=things))) == "schema"
    assert reason(envelope("claim", dict(C_MAP, things=[*things, 1]))) == "bad-thing"
    # settlement lines: each line completely, then the order; then `work`
    lines = list(reversed(S_MAP["lines"])) if len(S_MAP["lines"]) > 1 else S_MAP["lines"] * 2
    assert reason(envelope("settlement", dict(S_MAP, lines=lines))) == "schema"
    bad_line = [dict(S_MAP["lines"][0], creator=1), *S_MAP["lines"]]
    assert reason(envelope("settlement", dict(S_MAP, lines=bad_line, work="w"))) == "bad-key"


def test_nested_maps_are_checked_at_their_field() -> None:
    # a click's data (field 5 of 5) is read completely before the click's unknown fields
    click = {"seq": 0, "prev": bytes(32), "time": 5, "kind": "click",
             "data": {"thing": "https://a.example/", "creator": b"x"}, "zzz": 1}
    assert reason(envelope("click", click)) == "bad-key"
    # data fields in the kind's order (thing, creator, months), the presence rule, unknown
    sub = {"seq": 0, "prev": bytes(32), "time": 5, "kind": "subscribe",
           "data": {"months": 0, "creator": 1}}
    assert reason(envelope("click", sub)) == "bad-key"
    sub["data"] = {"months": 1}
    assert reason(envelope("click", sub)) == "schema"
    unsub = dict(sub, kind="unsubscribe", data={"thing": "https://a.example/", "creator": b"x"})
    assert reason(envelope("click", unsub)) == "bad-key"
    budget = dict(sub, kind="budget", data={"amount": 5, "currency": "EURO"})
    assert reason(envelope("click", budget)) == "bad-currency"
    click_without_thing = dict(sub, kind="click", data={"creator": b"x"})
    assert reason(envelope("click", click_without_thing)) == "schema"  # missing first


def test_signature_before_the_types_rules() -> None:
    chain = {"seq": 1, "prev": bytes(32), "time": 5, "kind": "click",
             "data": {"thing": "https://a.example/"}}
    assert reason(envelope("click", chain)) == "bad-chain"
    forged = cbor.encode({"v": 1, "t": "click", "body": chain, "signer": D,
                          "sig": keys.sign(ALICE, m.signing_input("click", cbor.encode(chain)))})
    assert reason(forged) == "bad-signature"
    split = dict(S_MAP, budget=S_MAP["budget"] + 1)
    assert reason(envelope("settlement", split)) == "bad-split"
    assert reason(envelope("settlement", split, ALICE, signer=D)) == "bad-signature"


# -- texts -------------------------------------------------------------------------------

FORBIDDEN = [*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0x2028, 0x202F),
             *range(0x2066, 0x206A)]


def test_text_rule_exact_code_points() -> None:
    for cp in range(0x3100):
        assert (text_problem(f"a{chr(cp)}b") is not None) == (cp in FORBIDDEN), hex(cp)
    assert text_problem("") is None
    for cp in (0x200B, 0x200E, 0x200F, 0x2060, 0xFEFF, 0x1F600):  # allowed in text
        assert text_problem(chr(cp)) is None


def test_label_ends() -> None:
    assert sorted(ord(c) for c in WHITE_SPACE) == [
        *range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
        0x202F, 0x205F, 0x3000]
    for c in WHITE_SPACE:
        assert label_problem(c + "x", 128) is not None
        assert label_problem("x" + c, 128) is not None
    # not White_Space, so allowed at the ends (Python's strip() would remove U+001C..1F)
    assert label_problem("\u200bx\u180e", 128) is None
    assert label_problem("Alice's blog", 128) is None
    assert label_problem("", 128) is not None
    assert label_problem("é" * 64, 128) is None and label_problem("é" * 65, 128) is not None


@pytest.mark.parametrize("name", ["Alice\u0085", "A\u009bB", "\u00a0A", "A\u3000", "A\u202eB",
                                  "A\u2066B", "A\tB", "A\nB", " A", "A\u2028"])
def test_bad_names_and_references(name: str) -> None:
    assert reason(envelope("key", dict(K_MAP, name=name), ALICE)) == "schema"
    if name.strip() == name and name[0] not in WHITE_SPACE and name[-1] not in WHITE_SPACE:
        assert reason(envelope("receipt", dict(R_MAP, reference=name), ALICE)) == "schema"
    with pytest.raises(LocalError):
        m.sign(m.KeyDocument(name, ("https://a.example",), (), 0), ALICE)


def test_reference_may_be_empty_or_spaced() -> None:
    for ref in ("", " x ", "\u00a0", "x" * 256):
        m.decode(envelope("receipt", dict(R_MAP, reference=ref), ALICE))
    assert reason(envelope("receipt", dict(R_MAP, reference="x" * 257), ALICE)) == "schema"
    assert reason(envelope("receipt", dict(R_MAP, reference="é" * 129), ALICE)) == "schema"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_labels_decode_exactly_when_the_rule_says(name: str) -> None:
    raw = envelope("key", dict(K_MAP, name=name), ALICE)
    if label_problem(name, 128) is None:
        assert m.decode(raw).body.name == name
    else:
        assert reason(raw) == "schema"


# -- work ---------------------------------------------------------------------------------


def test_work_field() -> None:
    for w in (0, 1, 2**53, 2**64 - 1):
        obj = m.decode(envelope("settlement", dict(S_MAP, work=w)))
        assert obj.body.work == w
        assert obj.body.to_map()["work"] == w
    assert m.decode(envelope("settlement", S_MAP)).body.work is None
    for w in (-1, "1", b"\x01", [1]):
        assert reason(envelope("settlement", dict(S_MAP, work=w))) == "schema"
    # `work` is a settlement field only
    assert reason(envelope("claim", dict(C_MAP, work=1))) == "schema"
