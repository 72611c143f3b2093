"""The catalogue across two `rill node run` processes, through the CLI: a listing announced
on one node is found by search on the other, and so is its withdrawal."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import signing_key
from procnet import ProcNode, wait_for

from rill.protocol import keys
from rill.protocol.months import month_start
from rill.protocol.settle import settle

NOV = month_start("2026-11") + 5 * 86400


@pytest.mark.soak  # ~18 s; tests/test_catalogue_gossip.py does the same in-process
def test_announce_on_one_node_search_finds_it_on_the_other(tmp_path: Path) -> None:
    alice = ProcNode(tmp_path, "alice", NOV)
    reader = ProcNode(tmp_path, "reader", NOV)
    try:
        for n in (alice, reader):
            n.rill("init", "--name", n.name, now=NOV)
        alice.rill("creator", "init", "--site", "https://alice.example", "--out",
                   str(tmp_path / "alice.json"), now=NOV)
        # the reader holds a settlement that pays Alice (she has a supporter), not her
        # key document: gossip brings it with her listing
        res = settle(signing_key("donor"), "2026-10", 500, "EUR", bytes(32),
                     {"https://alice.example/old": keys.key_from_did(
                         alice.rill("id", now=NOV)["id"])}, work_bits=0)
        (tmp_path / "settlement.bin").write_bytes(res.settlement.raw)
        reader.rill("import-object", str(tmp_path / "settlement.bin"), now=NOV)
        alice.start([])
        alice.wait_started()
        reader.start([alice.addr])
        reader.wait_started()
        wait_for(lambda: alice.rill("node", "status", now=NOV)["mesh"]["rill/1/catalogue"] > 0,
                 30, "a catalogue mesh peer")
        started = time.monotonic()
        out = alice.rill("catalogue", "announce", "https://alice.example/songs/rain",
                         "--title", "Rain on the roof", "--kind", "audio", "--tag", "rain",
                         "--tag", "field-recording", "--description",
                         "Twelve minutes of rain on a tin roof", "--lang", "en", now=NOV + 10)
        assert out["published"] is True and out["action"] == "listed"

        def found() -> list[dict[str, object]]:
            res: list[dict[str, object]] = reader.rill(
                "catalogue", "search", "tin roof", now=NOV + 800)["results"]
            return res

        wait_for(lambda: found(), 30, "the listing on the reader's node")
        latency = time.monotonic() - started
        [hit] = found()
        assert hit["thing"] == "https://alice.example/songs/rain"
        assert hit["creator"] == alice.id and hit["name"] == "alice"
        assert hit["site"] == "unverified"  # the reader never fetched alice.example
        assert reader.rill("catalogue", "search", "--kind", "video", now=NOV + 20)[
            "results"] == []
        assert [r["thing"] for r in reader.rill("catalogue", "search", "--tag", "rain",
                                                 now=NOV + 20)["results"]] == [hit["thing"]]
        # an update within 10 minutes of the last is not forwarded (rate bound), later is
        later = NOV + 700
        for n in (alice, reader):
            n.rill("node", "clock", str(later), now=later)
        alice.rill("catalogue", "withdraw", "https://alice.example/songs/rain", now=later)
        wait_for(lambda: not found(), 30, "the withdrawal on the reader's node")
        [shown] = reader.rill("catalogue", "show", "https://alice.example/songs/rain",
                              now=later)
        assert shown["withdrawn"] is True
        print(f"listing reached the other node in {latency:.2f} s")
    finally:
        assert reader.stop() == 0
        assert alice.stop() == 0
