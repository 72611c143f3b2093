"""`rill anonymous`, `rill disclose`, and how `rill settle`, `rill claims` and `rill verify`
show a month given anonymously (--json and text)."""

from __future__ import annotations

from pathlib import Path

from clitools import AFTER, fast_home, js, rill


def test_an_anonymous_month_through_the_cli(tmp_path: Path) -> None:
    dora, alice, bob = tmp_path / "dora", tmp_path / "alice", tmp_path / "bob"
    d, a, b = fast_home(dora, "Dora"), fast_home(alice, "Alice"), fast_home(bob, "Bob")
    assert js("anonymous", home=dora) == []
    assert "under your own identity" in rill("anonymous", home=dora).stdout
    on = js("anonymous", "on", "--month", "2026-10", "--from", a, home=dora)
    assert on["month"] == "2026-10" and on["towards"] == [a] and not on["settled"]
    p = on["pseudonym"]
    assert p.startswith("did:key:z6Mk") and p != d
    # on again without --from: anonymous towards every creator (same pseudonym)
    again = js("anonymous", "on", "--month", "2026-10", home=dora)
    assert again == {"month": "2026-10", "pseudonym": p, "towards": "all", "settled": False}
    assert js("anonymous", "off", "--month", "2026-10", home=dora) == {
        "month": "2026-10", "anonymous": False}
    assert js("anonymous", home=dora) == []
    js("anonymous", "on", "--month", "2026-10", "--from", a, home=dora)
    text = rill("anonymous", home=dora).stdout
    assert "2026-10" in text and "every creator" not in text
    js("budget", "set", "10", "EUR", home=dora)
    assert js("status", "--month", "2026-10", home=dora)["anonymous"]["pseudonym"] == p
    assert "is given anonymously" in rill("status", "--month", "2026-10", home=dora).stdout
    assert js("status", "--month", "2026-11", home=dora)["anonymous"] is None
    js("click", "https://alice.example/a", "--creator", a, home=dora)
    js("click", "https://bob.example/b", "--creator", b, home=dora)
    s = js("settle", "--month", "2026-10", "--yes", home=dora, now=AFTER)
    assert s["anonymous"] is True and s["signer"] == p
    assert {c["creator"]: c["discloses"] for c in s["claims"]} == {a: False, b: True}
    assert "anonymously, as the pseudonym" in rill("settle", "--month", "2026-10",
                                                   home=dora, now=AFTER).stdout
    due = js("due", home=dora, now=AFTER)
    assert {d_["pseudonym"] for d_ in due} == {p}
    assert "anonymous (pseudonym" in rill("due", home=dora, now=AFTER).stdout
    out = js("claims", "--outgoing", home=dora, now=AFTER)
    assert {(c["donor"], c["anonymous"]) for c in out} == {(p, True)}
    assert "anonymous (pseudonym" in rill("claims", home=dora, now=AFTER).stdout
    # refused once settled, with a code
    err = rill("anonymous", "off", "--month", "2026-10", "--json", home=dora, now=AFTER,
               code=1).json()
    assert err["code"] == "settled"
    assert js("anonymous", home=dora, now=AFTER)[0]["settled"] is True
    # the creators take in the month: bob learns who the donor is, alice does not
    out_dir = tmp_path / "objs"
    js("settle", "--month", "2026-10", "--out", str(out_dir), home=dora, now=AFTER)
    files = sorted(str(f) for f in out_dir.iterdir() if "sealed" in f.name
                   or "settlement" in f.name)
    for home in (alice, bob):
        js("import-object", *files, home=home, now=AFTER)
    got_a = js("claims", "--incoming", home=alice, now=AFTER)
    got_b = js("claims", "--incoming", home=bob, now=AFTER)
    assert [(c["donor"], c["disclosed"]) for c in got_a] == [(p, None)]
    assert [(c["donor"], c["disclosed"]) for c in got_b] == [(p, d)]
    assert "(disclosed)" in rill("claims", home=bob, now=AFTER).stdout
    # a disclosure to a friend, checked by `rill verify`
    friend = fast_home(tmp_path / "friend")
    f = tmp_path / "d.rill"
    dj = js("disclose", "--month", "2026-10", "--to", friend, "--out", str(f), home=dora,
            now=AFTER)
    assert (dj["identity"], dj["pseudonym"], dj["to"]) == (d, p, friend)
    armoured = rill("disclose", "--month", "2026-10", home=dora, now=AFTER).stdout
    assert armoured.startswith("-----BEGIN RILL DISCLOSURE-----")
    v = js("verify", str(f), now=AFTER)
    assert v[0]["valid"] and v[0]["type"] == "disclosure"
    assert v[0]["disclosure"] == {"identity": d, "pseudonym": p, "month": "2026-10",
                                  "to": friend}
    assert f"is the 2026-10 pseudonym of {d}" in rill("verify", str(f), now=AFTER).stdout
    err = rill("disclose", "--month", "2026-11", "--json", home=dora, now=AFTER, code=1).json()
    assert err["code"] == "not-anonymous"
    err = rill("anonymous", "on", "--month", "2026-13", "--json", home=dora, code=1).json()
    assert err["code"] == "bad-month"
