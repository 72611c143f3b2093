"""The node and anonymous months: gossip under the pseudonym's own libp2p author, and two
`rill node run` processes where a creator receives and receipts a pseudonym's claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from helpers import signing_key
from libp2p.peer.id import ID
from libp2p.pubsub.validators import signature_validator
from procnet import ProcNode, wait_for

from rill.node.anonpub import pseudonym_message
from rill.node.daemon import NodeConfig
from rill.node.host import peer_id_from_seed
from rill.protocol import keys
from rill.protocol.disclosure import pseudonym_seed
from rill.protocol.months import month_end, month_start
from rill.protocol.settle import settle
from rill.wallet.wallet import Wallet

OCT = month_start("2026-10")
END = month_end("2026-10")


def test_a_pseudonyms_gossip_is_authored_by_the_pseudonym() -> None:
    identity = signing_key("donor")
    seed = pseudonym_seed(bytes(identity), "2026-10")
    res = settle(nacl.signing.SigningKey(seed), "2026-10", 100, "EUR",
                 bytes(32), {"https://a.example/": keys.public_key(signing_key("alice"))},
                 work_bits=0)
    msg = pseudonym_message("rill/1/settlements", res.settlement.raw, seed)
    author = ID(msg.from_id)
    assert author == peer_id_from_seed(seed) != peer_id_from_seed(bytes(identity))
    assert author.extract_public_key().to_bytes() == res.settlement.signer
    assert signature_validator(msg)  # what every receiving node checks (strict signing)
    # the sequence number comes from the object, not from this host's message counter
    again = pseudonym_message("rill/1/settlements", res.settlement.raw, seed)
    assert again.seqno == msg.seqno and again.SerializeToString() == msg.SerializeToString()
    other = pseudonym_message("rill/1/settlements", res.sealed[0].raw, seed)
    assert other.seqno != msg.seqno
    # tampering with the author or the data breaks the libp2p signature
    msg.data = res.sealed[0].raw
    assert not signature_validator(msg)


def test_two_daemons_a_pseudonyms_claim_is_received_and_receipted(tmp_path: Path) -> None:
    creator = ProcNode(tmp_path, "creator", OCT + 3600)
    donor = ProcNode(tmp_path, "donor", OCT + 3600)
    homes = {}
    for n in (creator, donor):  # a test network: no proof of work, a short jitter
        w = Wallet.create(n.home, n.name, bytes(signing_key(n.name)))
        w.home.config_path.write_text("[network]\nwork_bits = 0\n\n[node]\n"
                                      "pseudonym_jitter = 2\n")
        homes[n.name] = w
    d, c = homes["donor"], homes["creator"]
    d.set_budget(500, "EUR", OCT + 60)
    pseudonym = d.set_anonymous("2026-10", True, OCT + 60)
    assert pseudonym is not None and pseudonym.pseudonym != d.identity
    # a thing with no web site to check before settling
    d.click("urn:isbn:9780306406157", OCT + 7200, creator=c.identity)
    d.close()
    c.close()

    def claims(n: ProcNode, direction: str) -> list[Any]:
        with Wallet.open(n.home) as w:
            return w.obligations(None, direction)

    try:
        creator.start([])
        peer = peer_id_from_seed(bytes(signing_key("creator")))
        donor.start([f"/ip4/127.0.0.1/tcp/{creator.port}/p2p/{peer}"])
        creator.wait_started()
        donor.wait_started()
        # the creator's clock passes the month end first, so that it takes the claim in
        for n in (creator, donor):
            n.rill("node", "clock", str(END + 61))
        wait_for(lambda: len(claims(donor, "out")) == 1, 60,
                 "the donor's daemon settles October under its pseudonym")
        claim = claims(donor, "out")[0]
        assert claim.donor == pseudonym.pseudonym
        wait_for(lambda: len(claims(creator, "in")) == 1, 60, "the creator receives the claim")
        got = claims(creator, "in")[0]
        assert (got.claim, got.donor) == (claim.claim, pseudonym.pseudonym)
        with Wallet.open(creator.home) as w:
            assert w.disclosed_identities() == {}  # anonymous towards every creator
        creator.rill("receipt", claim.claim.hex(), "--reference", "LN-1", now=END + 180)
        wait_for(lambda: claims(donor, "out")[0].state == "receipted", 60,
                 "the receipt reaches the donor's wallet")
        wait_for(lambda: donor.rill("node", "status")["counters"]["published"] >= 2, 30,
                 "the donor's node publishing the settlement and its claim (jittered)")
        # the settlement and sealed claim went out as gossip authored by the pseudonym;
        # nothing was refused on either side (a bad libp2p envelope would be)
        c_counters = creator.rill("node", "status")["counters"]
        d_counters = donor.rill("node", "status")["counters"]
        assert d_counters["settled"] == 1
        assert c_counters["rejected"] == d_counters["rejected"] == 0
        assert c_counters["accepted"] + c_counters["synced"] >= 2
    finally:
        codes = [n.stop() for n in (donor, creator)]
    assert codes == [0, 0]


def test_pseudonym_jitter_is_configured_in_node_table() -> None:
    assert NodeConfig.from_toml({}).pseudonym_jitter == 30.0
    assert NodeConfig.from_toml({"node": {"pseudonym_jitter": 0}}).pseudonym_jitter == 0.0
    for bad in (-1, 3601, "10", True):
        with pytest.raises(ValueError, match="pseudonym_jitter"):
            NodeConfig.from_toml({"node": {"pseudonym_jitter": bad}})
