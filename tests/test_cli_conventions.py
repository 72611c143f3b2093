"""The CLI's conventions: --json errors, global options before the command, times in and
out, budgets, thing schemes, batch commands, and the node's status as tables with
dialable addresses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clitools import AFTER, OCT, fast_home, js, month_with_claims, rill

from rill.clikit import iso
from rill.node.clock import ManualClock, parse_clock
from rill.node.netaddrs import dialable
from rill.protocol.errors import LocalError
from rill.protocol.months import parse_time
from rill.wallet.wallet import Wallet

RILL = str(Path(sys.executable).parent / "rill")


def proc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, argv exactly as typed (no RILL_HOME unless given)."""
    base = {k: v for k, v in os.environ.items() if k not in ("RILL_HOME", "RILL_NOW")}
    return subprocess.run([RILL, *args], capture_output=True, text=True, timeout=60,
                          env={**base, "RILL_NOW": str(OCT + 3600), **(env or {})})


def test_json_errors_are_json_on_stdout_with_the_same_exit_status(tmp_path: Path) -> None:
    home = tmp_path / "h"
    fast_home(home)
    cases = [  # (args, exit status, code)
        (["click", "javascript:alert(1)"], 1, "bad-scheme"),
        (["budget", "set", "5", "XYZ"], 1, "bad-currency"),
        (["unsubscribe", "https://never.example/"], 1, "not-found"),
        (["claims", "--month", "2026-13"], 1, "bad-month"),
        (["pay", "abc", "--reference", "x"], 1, "bad-id"),
        (["init"], 1, "exists"),
    ]
    for args, status, code in cases:
        out = rill(*args, "--json", home=home, code=status)
        assert out.json() == {"error": out.json()["error"], "code": code}, (args, out)
        assert out.json()["error"] and out.stderr == ""
        text = rill(*args, home=home, code=status)  # without --json: stderr, as before
        assert text.stdout == "" and text.stderr.startswith("rill: error: ")
    assert rill("status", "--json", home=tmp_path / "none", code=1).json()["code"] == "no-home"


def test_usage_errors_are_json_too_when_json_is_on_the_command_line(tmp_path: Path) -> None:
    env = {"RILL_HOME": str(tmp_path / "h")}
    for args in (["--json", "nosuchcommand"], ["budget", "set", "--json"],
                 ["click", "https://a.example/", "--at", "yesterday", "--json"],
                 ["verify", "--json", str(tmp_path / "missing.cbor")],
                 ["--json", "pay", "--nope"]):
        p = proc(*args, env=env)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        err = json.loads(p.stdout)
        assert err["code"] == "usage" and err["error"], args
    p = proc("click", "https://a.example/", "--at", "yesterday", env=env)
    assert p.returncode == 2 and p.stdout == "" and "ISO 8601" in p.stderr
    bad_now = proc("--json", "budget", env={**env, "RILL_NOW": "soon"})
    assert bad_now.returncode == 2 and json.loads(bad_now.stdout)["code"] == "usage"


def test_global_options_before_the_command(tmp_path: Path) -> None:
    home, other = tmp_path / "h", tmp_path / "other"
    p = proc("--home", str(home), "init", "--name", "Dora")
    assert p.returncode == 0, p.stderr
    did = json.loads(proc("--home", str(home), "--json", "id").stdout)["id"]
    assert json.loads(proc("--json", "--home", str(home), "id").stdout)["id"] == did
    assert json.loads(proc("id", "--home", str(home), "--json").stdout)["id"] == did
    # --home before the command wins over RILL_HOME, as after it does
    p = proc("--home", str(home), "--json", "id", env={"RILL_HOME": str(other)})
    assert json.loads(p.stdout)["id"] == did
    assert proc("--json", "id", env={"RILL_HOME": str(other)}).returncode == 1
    # nested groups and subcommands too
    p = proc("--home", str(home), "--json", "budget", "set", "3", "EUR")
    assert json.loads(p.stdout)["amount"] == 300
    assert json.loads(proc("--home", str(home), "budget", "--json").stdout)["amount"] == 300
    p = proc("--home", str(home), "--json", "node", "status")
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == "node"


def test_times_in_iso_8601_or_unix_seconds_and_out_in_iso_8601(tmp_path: Path) -> None:
    assert parse_time("1790000000") == 1790000000
    assert parse_time("2026-09-21T14:13:20Z") == 1790000000
    assert parse_time("2026-09-21T14:13:20") == 1790000000  # no zone: UTC
    assert parse_time("2026-09-21T16:13:20+02:00") == 1790000000
    assert parse_time(" 2026-09-21 ") == parse_time("2026-09-21T00:00:00Z")
    for bad in ("yesterday", "", "-5", "1.5", "2026-13-01"):
        with pytest.raises(LocalError):
            parse_time(bad)
    assert iso(1790000000) == "2026-09-21T14:13:20Z"
    assert iso(2**64) == f"{2**64} (Unix seconds)"
    home = tmp_path / "h"
    fast_home(home)
    js("budget", "set", "1", "EUR", home=home)
    # RILL_NOW and --at take either form, with the same result
    t = OCT + 4 * 86400
    c1 = js("click", "https://a.example/1", home=home, now="2026-10-05T00:00:00Z")
    c2 = js("click", "https://a.example/2", "--at", str(t), home=home, now=t + 60)
    c3 = js("click", "https://a.example/3", "--at", "2026-10-05", home=home, now=t + 60)
    assert c1["month"] == c2["month"] == c3["month"] == "2026-10"
    with Wallet.open(home) as w:
        times = {e.thing: e.time for e in w.entries() if e.kind == "click"}
    assert times == {"https://a.example/1": t, "https://a.example/2": t,
                     "https://a.example/3": t}
    # verify --at takes ISO 8601 now, as it took Unix seconds
    w = month_with_claims(tmp_path / "m")
    files = [str(p) for p in w["out"].iterdir()]
    assert all(v["valid"] for v in js("verify", "--at", "2026-11-01T02:00:00Z", *files))
    assert not any(v["valid"] for v in rill("verify", "--json", "--at", "2026-10-20", *files,
                                            code=1).json() if v["type"] == "settlement")
    # the daemon's manual clock
    clock = parse_clock("manual:2026-10-01T00:00:00Z")
    assert isinstance(clock, ManualClock) and clock.now() == OCT
    assert parse_clock(f"manual:{OCT}").now() == OCT
    assert parse_clock("fast:2026-10-01T00:00:00Z:60").now() >= OCT
    with pytest.raises(ValueError):
        parse_clock("manual:later")


def test_budgets_zero_pauses_negative_and_absurd_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "h"
    fast_home(home)
    out = rill("budget", "set", "-5", "EUR", home=home, code=1)
    assert "negative" in out.stderr and "No such option" not in out.stderr
    assert rill("budget", "set", "-5", "EUR", "--json", home=home, code=1).json()["code"] == \
        "bad-amount"
    out = rill("budget", "set", "1000000000000", "EUR", home=home, code=1)
    assert "largest budget (1000000.00 EUR)" in out.stderr
    assert js("budget", "set", "1000000", "EUR", home=home)["amount"] == 100000000
    rill("budget", "set", "1000000.01", "EUR", home=home, code=1)
    assert js("budget", "set", "1000000", "JPY", home=home)["amount"] == 1000000
    out = rill("budget", "set", "0", "EUR", home=home)
    assert "paused" in out.stdout
    assert js("budget", "set", "0", "EUR", home=home)["paused"] is True
    assert rill("budget", home=home).stdout.startswith("Paused")
    with Wallet.open(home) as w, pytest.raises(Exception) as exc:
        w.set_budget(-1, "EUR", OCT + 3600)
    assert getattr(exc.value, "code", None) == "bad-amount"
    # a paused month settles with nothing owed
    creator = fast_home(tmp_path / "creator")
    js("click", "https://a.example/x", "--creator", creator, home=home)
    with Wallet.open(home) as w:
        result, _ = w.settle("2026-10", AFTER)
    assert result.settlement.body.budget == 0
    assert all(c.body.amount == 0 for c in result.claims)


@pytest.mark.parametrize("uri", ["javascript:alert(1)", "JavaScript:alert(1)",
                                 "data:text/plain,hello", "file:///etc/passwd",
                                 "mailto:alice@example.org", "ftp://example.org/x"])
def test_things_of_schemes_spec_does_not_name_are_refused(tmp_path: Path, uri: str) -> None:
    home = tmp_path / "h"
    fast_home(home)
    for args in (["click", uri], ["subscribe", uri]):
        err = rill(*args, "--json", home=home, code=1).json()
        assert err["code"] == "bad-scheme" and "cannot be flattred" in err["error"], err
    with Wallet.open(home) as w:
        with pytest.raises(LocalError) as exc:
            w.click(uri, OCT + 3600)
        assert exc.value.code == "bad-scheme"
        assert w.verify_log().size == 0


def test_things_of_the_named_schemes_are_accepted(tmp_path: Path) -> None:
    home = tmp_path / "h"
    fast_home(home)
    for uri in ("https://a.example/", "http://a.example/", "urn:isbn:0451450523",
                "did:web:alice.example", "doi:10.1000/182", "ipfs://bafybeigdyrzt",
                "ipns://k51qzi5uqu5d", "at://did:plc:abc/app.bsky.feed.post/3k"):
        assert js("click", uri, home=home)["new"], uri


def test_verify_and_publish_report_each_file_and_go_on(tmp_path: Path) -> None:
    w = month_with_claims(tmp_path)
    files = sorted(str(p) for p in w["out"].iterdir())
    truncated = tmp_path / "cut.cbor"
    truncated.write_bytes(b"\xa4\x61\x76\x01")
    out = rill("verify", files[0], str(truncated), *files[1:], str(w["keyfile"]), now=AFTER,
               code=1)
    lines = [ln for ln in out.stdout.splitlines() if not ln.startswith("    ")]
    assert len(lines) == len(files) + 2
    assert lines[1].startswith(f"BAD {truncated}")
    assert all(ln.startswith("ok ") for i, ln in enumerate(lines) if i != 1)
    assert f"{len(files) + 1} valid, 1 invalid" in out.stderr
    # publish needs a node; without one it says so (and the JSON form is an error object)
    err = rill("publish", "--json", *files, home=w["dora"], now=AFTER, code=1).json()
    assert err["code"] == "node" and "rill node run" in err["error"]


def test_dialable_addresses_replace_the_wildcard_by_each_interface() -> None:
    ifs = (["192.168.1.20", "127.0.0.1"], ["2001:db8::5", "::1"])
    got = dialable(["/ip4/0.0.0.0/tcp/4741", "/ip6/::/tcp/4741",
                    "/ip4/10.0.0.7/tcp/4741/p2p/12D3KooWX"], "12D3KooWX", ifs)
    assert got == ["/ip4/192.168.1.20/tcp/4741/p2p/12D3KooWX",
                   "/ip4/127.0.0.1/tcp/4741/p2p/12D3KooWX",
                   "/ip6/2001:db8::5/tcp/4741/p2p/12D3KooWX",
                   "/ip6/::1/tcp/4741/p2p/12D3KooWX",
                   "/ip4/10.0.0.7/tcp/4741/p2p/12D3KooWX"]
    real = dialable(["/ip4/0.0.0.0/tcp/1"], "P")
    assert "/ip4/127.0.0.1/tcp/1/p2p/P" in real and not any("0.0.0.0" in a for a in real)


def test_node_status_peers_and_clock_print_tables_and_iso_times(tmp_path: Path) -> None:
    from nodes import free_port

    home = tmp_path / "n"
    fast_home(home)
    port = free_port()
    env = {"RILL_HOME": str(home)}
    base = {k: v for k, v in os.environ.items() if k not in ("RILL_HOME", "RILL_NOW")}
    node = subprocess.Popen(
        [RILL, "--json", "node", "run", "--listen", f"/ip4/0.0.0.0/tcp/{port}",
         "--clock", f"manual:{OCT}", "--dashboard-port", "0"],
        env={**base, **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert node.stdout is not None
        started = json.loads(node.stdout.readline())
        assert started["event"] == "started"
        status = json.loads(proc("node", "status", "--json", env=env).stdout)
        assert status["dialable"] and not any("0.0.0.0" in a for a in status["dialable"])
        assert f"/ip4/127.0.0.1/tcp/{port}/p2p/{status['peer_id']}" in status["dialable"]
        text = proc("node", "status", env=env).stdout
        assert "{'" not in text and "dial me at" in text
        assert f"127.0.0.1/tcp/{port}/p2p/" in text
        assert "now 2026-10-01T00:00:00Z" in text
        assert "settlements: 0" in text
        assert "2 peers every 600 s, next in " in text  # the periodic rounds' pace
        assert status["sync_rounds"]["peers_per_round"] == 2
        p = proc("node", "clock", "2026-10-02T00:00:00Z", env=env)
        assert p.returncode == 0 and p.stdout.strip() == "clock set to 2026-10-02T00:00:00Z"
        assert json.loads(proc("node", "clock", str(OCT + 2 * 86400), "--json",
                               env=env).stdout)["now"] == OCT + 2 * 86400
        p = proc("peers", env=env)
        assert p.returncode == 0 and "last sync (UTC)" in p.stdout
        # publish: each file reported, a bad one does not stop the others
        keyfile, cut = tmp_path / "rill.json", tmp_path / "cut.rill"
        fast_home(tmp_path / "alice", "Alice")
        rill("creator", "init", "--site", "https://alice.example", "--out", str(keyfile),
             home=tmp_path / "alice")
        cut.write_text("-----BEGIN RILL KEY-----\nAAAA\n")
        p = proc("publish", str(cut), str(keyfile), env=env)
        assert p.returncode == 1, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0].startswith(f"BAD {cut}: armour") and len(lines) == 2
        assert lines[1].startswith(f"ok  {keyfile}: published "), lines
        out = json.loads(proc("publish", "--json", str(keyfile), env=env).stdout)
        assert out["files"][0]["ok"] and len(out["published"]) == 1
    finally:
        node.terminate()
        node.wait(timeout=30)
