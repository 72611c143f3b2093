"""`rill catalogue` from the command line, with --json (no daemon running)."""

from __future__ import annotations

import json
from pathlib import Path

from clitools import js, rill

from rill.protocol.months import month_start

NOW = month_start("2026-11") + 86400


def test_announce_search_show_withdraw(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    js("init", "--name", "Alice", home=home, now=NOW)
    # no key document naming the site yet: refused with the reason code
    out = rill("catalogue", "announce", "https://alice.example/rain", "--title", "Rain",
               "--kind", "audio", "--json", home=home, now=NOW, code=1)
    assert json.loads(out.stdout)["code"] == "unlisted-origin"
    rill("creator", "init", "--site", "https://alice.example", "--out",
         str(tmp_path / "rill.json"), home=home, now=NOW)
    made = js("catalogue", "announce", "alice.example/rain", "--title", " Rain on the roof ",
              "--kind", "audio", "--tag", "Rain", "--tag", "field-recording", "--tag", "rain",
              "--description", "Twelve minutes", "--lang", "en-GB", home=home, now=NOW)
    assert made["thing"] == "https://alice.example/rain" and made["action"] == "listed"
    assert made["published"] is False  # no daemon: it publishes at its next start
    found = js("catalogue", "search", "roof", home=home, now=NOW)
    [hit] = found["results"]
    assert hit["title"] == "Rain on the roof"
    assert hit["tags"] == ["field-recording", "rain"]  # lower case, sorted, once
    assert hit["lang"] == "en-GB" and hit["site"] == "unverified"
    assert hit["flattr"].startswith("/flattr?url=https%3A%2F%2Falice.example%2Frain&creator=")
    assert js("catalogue", "search", "--kind", "video", home=home, now=NOW)["results"] == []
    # other nodes take one update per thing per 10 minutes: sooner is refused here
    out = rill("catalogue", "announce", "https://alice.example/rain", "--title", "Rain",
               "--kind", "audio", "--json", home=home, now=NOW + 599, code=1)
    assert json.loads(out.stdout)["code"] == "too-soon"
    again = js("catalogue", "announce", "https://alice.example/rain", "--title", "Rain",
               "--kind", "audio", home=home, now=NOW + 600)
    assert again["action"] == "updated"
    [shown] = js("catalogue", "show", again["listing"], home=home, now=NOW + 600)
    assert shown["title"] == "Rain" and shown["time"] == "2026-11-02T00:10:00Z"
    later = NOW + 1200
    gone = js("catalogue", "withdraw", "https://alice.example/rain", home=home, now=later)
    assert gone["action"] == "withdrawn"
    assert js("catalogue", "search", "rain", home=home, now=later)["results"] == []
    [shown] = js("catalogue", "show", "https://alice.example/rain", home=home, now=later)
    assert shown["withdrawn"] is True


def test_bad_input_is_refused_with_a_reason(tmp_path: Path) -> None:
    home = tmp_path / "h"
    js("init", home=home, now=NOW)
    for args, why in ((["urn:isbn:9780141036144"], "only a web page"),
                      (["https://x.example/", "--tag", "two words"], "white space"),
                      (["https://x.example/", "--lang", "English"], "language tag")):
        out = rill("catalogue", "announce", *args, "--title", "T", "--kind", "text",
                   "--json", home=home, now=NOW, code=2)
        err = json.loads(out.stdout)
        assert err["code"] == "usage" and why in err["error"]
    out = rill("catalogue", "withdraw", "https://x.example/", "--json", home=home, now=NOW,
               code=1)
    assert json.loads(out.stdout)["code"] == "not-found"
    out = rill("catalogue", "show", "https://x.example/", "--json", home=home, now=NOW,
               code=1)
    assert json.loads(out.stdout)["code"] == "not-found"
    assert rill("catalogue", "search", home=home, now=NOW).stdout.strip() == \
        "No listings held yet."
