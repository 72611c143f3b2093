"""The node and anonymous months: gossip under the pseudonym's own libp2p author, and two
`rill node run` processes where a creator receives and receipts a pseudonym's claim."""

from __future__ import annotations

from pathlib import Path

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
    donor.rill("init")
    with open(donor.home / "config.toml", "a") as cfg:  # jitter kept short for the test
        cfg.write("\n[node]\npseudonym_jitter = 2\n")
    try:
        creator.start([])
        creator.wait_started()
        donor.start([creator.addr])
        donor.wait_started()
        a = creator.id
        donor.rill("budget", "set", "5.00", "EUR", now=OCT + 60)
        on = donor.rill("anonymous", "on", "--month", "2026-10", now=OCT + 60)
        pseudonym = on["pseudonym"]
        assert pseudonym != donor.id
        donor.rill("click", "https://creator.example/post", "--creator", a, now=OCT + 7200)
        for t in (END + 1, END + 61, END + 121):
            for n in (creator, donor):
                n.rill("node", "clock", str(t))

        def outgoing() -> list:  # type: ignore[type-arg]
            return donor.rill("claims", "--outgoing", now=END + 121) or []

        wait_for(lambda: len(outgoing()) == 1, 60, "the donor's daemon settles October")
        claim = outgoing()[0]
        assert claim["donor"] == pseudonym and claim["anonymous"] is True

        def incoming() -> list:  # type: ignore[type-arg]
            return creator.rill("claims", "--incoming", now=END + 121) or []

        wait_for(lambda: len(incoming()) == 1, 60, "the creator receives the claim")
        got = incoming()[0]
        assert got["id"] == claim["id"] and got["donor"] == pseudonym
        assert got["disclosed"] is None  # anonymous towards every creator
        creator.rill("receipt", claim["id"], "--reference", "LN-1", now=END + 180)
        wait_for(lambda: outgoing()[0]["state"] == "receipted", 60,
                 "the receipt reaches the donor's wallet")
        # the settlement and sealed claim went out as gossip authored by the pseudonym;
        # nothing was refused on either side (a bad libp2p envelope would be)
        wait_for(lambda: donor.rill("node", "status")["counters"]["published"] >= 2, 30,
                 "the donor's node publishing the settlement and its claim (jittered)")
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
