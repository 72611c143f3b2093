"""`rill verify` end to end: a real subprocess on files written from the vectors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import load_vectors

from rill.protocol import armour

DATA = load_vectors()
RILL = str(Path(sys.executable).parent / "rill")


def rill(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``rill`` console script."""
    return subprocess.run([RILL, *args], capture_output=True, text=True, timeout=60)


def _write_all(tmp_path: Path, vecs: list[dict[str, Any]], armoured: bool) -> list[str]:
    paths = []
    for v in vecs:
        raw = bytes.fromhex(v["bytes"])
        if armoured:
            p = tmp_path / f"{v['name']}.txt"
            p.write_text(armour.armour(raw, v["type"]))
        else:
            p = tmp_path / f"{v['name']}.cbor"
            p.write_bytes(raw)
        paths.append(str(p))
    return paths


def test_every_positive_vector_is_accepted_binary_and_armoured(tmp_path: Path) -> None:
    at = str(DATA["verify_at"])
    for armoured in (False, True):
        paths = _write_all(tmp_path, DATA["positive"], armoured)
        proc = rill("verify", "--json", "--at", at, *paths)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = json.loads(proc.stdout)
        assert [o["valid"] for o in out] == [True] * len(paths)
        for o, v in zip(out, DATA["positive"], strict=True):
            assert (o["type"], o["id"], o["signer"], o["reason"]) == (
                v["type"], v["id"], v["signer"], None)
        # claims and sealed claims were checked against the settlement given with them,
        # the receipt against its claim and its creator's key document
        by_name = {Path(o["file"]).stem: o for o in out}
        assert by_name["claim-alice"]["checks"] == ["settlement"]
        assert by_name["sealed-claim-bob"]["checks"] == ["settlement"]
        assert by_name["receipt"]["checks"] == ["claim", "key"]


def test_every_negative_vector_is_rejected_with_its_reason(tmp_path: Path) -> None:
    paths = []
    for v in DATA["negative"]:
        p = tmp_path / f"{v['name']}.cbor"
        p.write_bytes(bytes.fromhex(v["bytes"]))
        paths.append(str(p))
    proc = rill("verify", "--json", "--at", str(DATA["verify_at"]), *paths)
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out) == len(DATA["negative"])
    for o, v in zip(out, DATA["negative"], strict=True):
        assert o["valid"] is False
        assert o["reason"].split(":")[0] == v["reason"], (v["name"], o["reason"])
        assert set(o) >= {"file", "type", "id", "signer", "valid", "reason"}


def test_one_bad_object_among_good_ones_fails_the_run(tmp_path: Path) -> None:
    good = _write_all(tmp_path, DATA["positive"][:3], armoured=True)
    bad = tmp_path / "bad.cbor"
    bad.write_bytes(bytes.fromhex(DATA["negative"][0]["bytes"]))
    proc = rill("verify", *good, str(bad))
    assert proc.returncode == 1
    assert "BAD" in proc.stdout and "bad-signature" in proc.stdout
    assert "3 valid, 1 invalid" in proc.stderr


def test_several_armoured_objects_in_one_file(tmp_path: Path) -> None:
    p = tmp_path / "bundle.txt"
    p.write_text("\n".join(armour.armour(bytes.fromhex(v["bytes"]), v["type"])
                           for v in DATA["positive"]))
    proc = rill("verify", "--json", "--at", str(DATA["verify_at"]), str(p))
    assert proc.returncode == 0, proc.stdout
    assert len(json.loads(proc.stdout)) == len(DATA["positive"])


def test_armour_label_must_match_type(tmp_path: Path) -> None:
    v = DATA["positive"][0]
    p = tmp_path / "x.txt"
    p.write_text(armour.armour(bytes.fromhex(v["bytes"]), "receipt"))
    proc = rill("verify", "--json", str(p))
    assert proc.returncode == 1
    assert json.loads(proc.stdout)[0]["reason"].startswith("armour:")


def test_settlement_for_a_month_not_yet_ended_is_refused(tmp_path: Path) -> None:
    v = next(v for v in DATA["positive"] if v["type"] == "settlement")
    p = tmp_path / "s.cbor"
    p.write_bytes(bytes.fromhex(v["bytes"]))
    proc = rill("verify", "--json", "--at", "1790000000", str(p))  # 2026-09
    assert proc.returncode == 1
    assert json.loads(proc.stdout)[0]["reason"].startswith("future:")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert rill("verify").returncode == 2
    proc = rill("verify", str(tmp_path / "missing.cbor"))
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr
    assert rill("verify", "--nope", str(tmp_path)).returncode == 2


def test_garbage_and_empty_files_are_invalid_not_crashes(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "junk").write_bytes(b"\xff\x00 hello")
    (tmp_path / "arm").write_text("-----BEGIN RILL CLAIM-----\n!!!\n-----END RILL CLAIM-----\n")
    proc = rill("verify", "--json", *(str(tmp_path / n) for n in ("empty", "junk", "arm")))
    assert proc.returncode == 1
    reasons = [o["reason"].split(":")[0] for o in json.loads(proc.stdout)]
    assert reasons == ["empty", "malformed", "armour"]


def test_big_batches_run_in_parallel_with_the_same_verdicts(tmp_path: Path) -> None:
    """Over 256 KiB of input is cut at block boundaries and verified in worker processes:
    the verdicts, their order and their numbering are those of the sequential run."""
    blocks = [armour.armour(bytes.fromhex(v["bytes"]), v["type"]) for v in DATA["positive"]]
    bad = DATA["negative"][0]
    bad_block = armour.armour(bytes.fromhex(bad["bytes"]), "settlement")
    text = "".join(blocks * 40) + bad_block + "".join(blocks * 40)
    assert len(text) > 256 * 1024
    p = tmp_path / "big.txt"
    p.write_text(text)
    runs = {}
    for jobs in ("1", "2"):
        proc = rill("verify", "--json", "--at", str(DATA["verify_at"]), "-j", jobs, str(p))
        assert proc.returncode == 1
        runs[jobs] = json.loads(proc.stdout)
    assert runs["1"] == runs["2"]
    out = runs["2"]
    n = len(blocks) * 80 + 1
    assert [o["file"] for o in out] == [f"{p}#{k}" for k in range(1, n + 1)]
    assert [o["valid"] for o in out].count(False) == 1
    assert out[len(blocks) * 40]["reason"].startswith("bad-signature")
    # cross-checks still happen after the parallel run
    assert any(o["checks"] == ["claim", "key"] for o in out)


def test_a_bug_on_one_input_leaves_every_other_verdict(tmp_path: Path,
                                                        monkeypatch: Any) -> None:
    """`rill verify` is a trust boundary: if checking one object hits a bug (simulated
    here: the decoder raising something no input should make it raise), that object's
    verdict says so and every other object still gets its own."""
    from click.testing import CliRunner

    from rill import cli
    from rill.protocol import verify

    paths = _write_all(tmp_path, DATA["positive"][:4], armoured=False)
    poison = Path(paths[1]).read_bytes()
    real = verify.decode

    def buggy(raw: bytes, *a: Any, **kw: Any) -> Any:
        if raw == poison:
            raise ValueError("year 10000 is out of range")
        return real(raw, *a, **kw)

    monkeypatch.setattr(verify, "decode", buggy)
    result = CliRunner().invoke(cli.main, ["verify", "--json", "-j", "1", "--at",
                                           str(DATA["verify_at"]), *paths])
    assert result.exit_code == 1, result.output
    verdicts = json.loads(result.stdout)
    assert [v["valid"] for v in verdicts] == [True, False, True, True]
    assert verdicts[1]["reason"].startswith("internal-error: ValueError: year 10000")
    assert "Traceback" not in result.output
