"""The key file `rill creator init` writes (.well-known/rill.json) is a first-class object:
`rill verify` checks it on its own and `rill import-object` takes it in."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from clitools import AFTER, OCT, fast_home, js, month_with_claims, rill

from rill.protocol.armour import dearmour


def _keyfile(tmp_path: Path) -> tuple[str, Path]:
    alice = tmp_path / "alice"
    a = fast_home(alice, "Alice")
    path = tmp_path / ".well-known" / "rill.json"
    path.parent.mkdir()
    rill("creator", "init", "--site", "https://alice.example", "--site", "alice.example:8443",
         "--payto", "payto://iban/DE75512108001245126199", "--out", str(path), home=alice)
    return a, path


def test_verify_checks_a_key_file_and_reports_the_sites_it_lists(tmp_path: Path) -> None:
    a, path = _keyfile(tmp_path)
    out = rill("verify", str(path))
    assert out.stdout.startswith(f"ok  {path}: key ")
    assert f"Alice ({a})" in out.stdout
    for site in ("https://alice.example", "https://alice.example:8443"):
        assert f"lists the site {site} (not fetched" in out.stdout
    assert "pays to payto://iban/DE75512108001245126199" in out.stdout
    assert "1 valid, 0 invalid" in out.stderr
    v = js("verify", str(path))[0]
    assert (v["valid"], v["type"], v["signer"]) == (True, "key", a)
    assert v["key"]["origins"] == ["https://alice.example", "https://alice.example:8443"]
    assert v["key"]["name"] == "Alice" and v["key"]["valid_from"] == OCT + 3600
    # it is verified as of a time: a document valid from October is in the future before
    early = rill("verify", "--json", "--at", "2026-09-30T00:00:00Z", str(path), code=1)
    assert early.json()[0]["reason"].startswith("future:")


def test_a_key_file_whose_json_differs_from_the_signed_document_is_refused(
        tmp_path: Path) -> None:
    _, path = _keyfile(tmp_path)
    data = json.loads(path.read_text())
    cases = {
        "renamed.json": {**data, "name": "Mallory"},
        "rerouted.json": {**data, "payto": ["payto://iban/GB33BUKB20201555555555"]},
        "other-site.json": {**data, "origins": ["https://mallory.example"]},
        "no-doc.json": {k: v for k, v in data.items() if k != "document"},
        "bad-doc.json": {**data, "document": data["document"][:-8]},
        "flipped.json": {**data, "document": data["document"][:40] + (
            "A" if data["document"][40] != "A" else "B") + data["document"][41:]},
    }
    files = []
    for name, content in cases.items():
        (tmp_path / name).write_text(json.dumps(content))
        files.append(str(tmp_path / name))
    out = rill("verify", "--json", *files, code=1)
    reasons = {Path(v["file"]).name: v["reason"] for v in out.json()}
    assert all(v["valid"] is False for v in out.json())
    for name in ("renamed.json", "rerouted.json", "other-site.json"):
        assert reasons[name].startswith("mismatch:"), reasons
    assert reasons["no-doc.json"].startswith("bad-json:")
    assert reasons["bad-doc.json"].split(":")[0] in {"bad-json", "malformed", "trailing-bytes"}
    assert reasons["flipped.json"].split(":")[0] in {"bad-signature", "bad-json", "malformed",
                                                     "schema", "non-canonical", "bad-key"}


def test_import_object_takes_the_key_file_in_so_due_knows_how_to_pay(tmp_path: Path) -> None:
    w = month_with_claims(tmp_path)
    due = js("due", home=w["dora"], now=AFTER)
    alice_due = next(p for p in due if p["creator"] == w["a"])
    assert alice_due["payto"] == []
    assert "import its rill.json" in rill("due", home=w["dora"], now=AFTER).stdout
    out = rill("import-object", str(w["keyfile"]), home=w["dora"], now=AFTER)
    assert out.stdout.startswith(f"ok  {w['keyfile']}: key stored")
    assert "None" not in out.stdout
    due = js("due", home=w["dora"], now=AFTER)
    alice_due = next(p for p in due if p["creator"] == w["a"])
    assert alice_due["name"] == "Alice"
    assert len(alice_due["payto"]) == 1
    assert alice_due["payto"][0].startswith("payto://iban/DE75512108001245126199?amount=EUR:5")


def test_import_object_reports_each_file_and_goes_on_after_a_bad_one(tmp_path: Path) -> None:
    w = month_with_claims(tmp_path)
    files = sorted(str(p) for p in w["out"].iterdir())
    truncated = tmp_path / "truncated.rill"
    text = Path(files[0]).read_text()
    truncated.write_text(text[: len(text) // 2])
    junk = tmp_path / "junk.json"
    junk.write_text('{"rill": 1}')
    batch = [str(truncated), str(junk), *files, str(w["keyfile"])]
    out = rill("import-object", "--json", *batch, home=w["alice"], now=AFTER, code=1)
    rows = out.json()
    by_file = {r["file"]: r for r in rows}
    assert set(by_file) == set(batch)
    assert by_file[str(truncated)]["ok"] is False
    assert by_file[str(truncated)]["detail"].startswith("armour")
    assert by_file[str(junk)]["ok"] is False and "document" in by_file[str(junk)]["detail"]
    assert all(by_file[f]["ok"] for f in [*files, str(w["keyfile"])])
    assert [r["action"] for r in rows].count("claim-received") == 1  # the files after it too
    human = rill("import-object", *batch, home=w["alice"], now=AFTER, code=1)
    lines = human.stdout.splitlines()
    assert lines[0].startswith(f"BAD {truncated}: refused: armour")
    assert lines[1].startswith(f"BAD {junk}: refused: bad-json")
    assert "None refused" not in human.stdout
    assert "2 refused" in human.stderr
    # an object that is not a key document inside a rill.json is refused as such
    claim = next(f for f in files if "/claim-" in f)
    fake = tmp_path / "fake.json"
    body = json.loads(w["keyfile"].read_text())
    raw = dearmour(Path(claim).read_text())[0][1]
    body["document"] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    fake.write_text(json.dumps(body))
    v = rill("verify", "--json", str(fake), now=AFTER, code=1).json()[0]
    assert v["valid"] is False and "key document" in v["reason"]
