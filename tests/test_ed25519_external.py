"""Public Ed25519 vectors through Rill's verify path (keys.verify_signature)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import TESTS

from rill.protocol import keys
from rill.protocol.errors import BadKey, BadSignature, RemoteError

EXTERNAL = TESTS / "vectors" / "external"
SHARED = TESTS.parent.parent / "shared" / "vectors"


def _load(name: str) -> Any:
    return json.loads((EXTERNAL / name).read_text())


def _wycheproof() -> list[tuple[str, bytes, bytes, bytes, bool]]:
    data = _load("wycheproof_ed25519_test.json")
    cases = []
    for group in data["testGroups"]:
        pk = bytes.fromhex(group["publicKey"]["pk"])
        for t in group["tests"]:
            cases.append((f"tc{t['tcId']}", pk, bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"]),
                          t["result"] == "valid"))
    return cases


WYCHEPROOF = _wycheproof()
SPECCHECK = _load("ed25519_speccheck_cases.json")


def test_copies_match_the_shared_folder() -> None:
    if not SHARED.is_dir():
        pytest.skip("../shared/vectors is absent here; the copies are used alone")
    for name in ("wycheproof_ed25519_test.json", "ed25519_speccheck_cases.json"):
        assert (SHARED / name).read_bytes() == (EXTERNAL / name).read_bytes()


def test_case_counts() -> None:
    assert len(WYCHEPROOF) == 151
    assert len(SPECCHECK) == 10


@pytest.mark.parametrize(("name", "pk", "msg", "sig", "valid"), WYCHEPROOF,
                         ids=[c[0] for c in WYCHEPROOF])
def test_wycheproof(name: str, pk: bytes, msg: bytes, sig: bytes, valid: bool) -> None:
    if valid:
        keys.verify_signature(pk, msg, sig)
    else:
        with pytest.raises((BadSignature, BadKey)):
            keys.verify_signature(pk, msg, sig)


@pytest.mark.parametrize("case", SPECCHECK, ids=[f"case{i}" for i in range(len(SPECCHECK))])
def test_speccheck_cases_are_all_rejected(case: dict[str, str]) -> None:
    with pytest.raises(RemoteError):
        keys.verify_signature(bytes.fromhex(case["pub_key"]), bytes.fromhex(case["message"]),
                              bytes.fromhex(case["signature"]))


def test_wrong_length_signature_is_our_error_not_valueerror() -> None:
    pk = WYCHEPROOF[0][1]
    for sig in (b"", b"\x00" * 63, b"\x00" * 65):
        with pytest.raises(BadSignature):
            keys.verify_signature(pk, b"", sig)
