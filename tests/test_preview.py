"""The gossip gate's preview (SPEC §11.2 step 2) never refuses what the full check
accepts, agrees with it on time, window and work, and costs far less on junk."""

from __future__ import annotations

import cbor2
import pytest
from fuzzgen import World, samples
from fuzztargets import nows_for
from helpers import signing_key
from hypothesis import HealthCheck, given, settings

from rill.protocol.errors import RemoteError
from rill.protocol.network import TOPIC_OF, TOPICS, check_gossip
from rill.protocol.preview import check_preview, preview


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(samples())
def test_the_preview_refuses_nothing_the_full_check_accepts(s: object) -> None:
    raw = s.raw  # type: ignore[attr-defined]
    for topic in TOPICS:
        for now in (*nows_for(s), World.NOW):  # type: ignore[arg-type]
            for bits in (0, 8):
                try:
                    obj = check_gossip(topic, raw, now, 3, bits)
                except RemoteError:
                    continue
                p = preview(topic, raw)  # must not raise: the object is valid here
                check_preview(p, now, 3, bits)
                assert (p.id, p.type, p.signer) == (obj.id, obj.type, obj.signer)
                assert p.month == getattr(obj.body, "month", None) or obj.type == "equivocation"


def test_dense_junk_is_refused_on_its_header() -> None:
    """The largest valid CBOR a topic carries, as dense as it gets (empty maps): the
    preview refuses it on the header it lacks, without walking its items (what that
    saves is measured by `make bench`, docs/BENCHMARKS.md)."""
    signer = bytes(signing_key("dense").verify_key)
    dense = cbor2.dumps({"t": "settlement", "v": 1, "sig": bytes(64),
                         "body": {"lines": [{}] * 130_000}, "signer": signer},
                        canonical=True)
    assert len(dense) <= 266_240
    with pytest.raises(RemoteError) as info:
        preview("rill/1/settlements", dense)
    assert info.value.code == "bad-month"
    body = {"month": "2026-10", "lines": [{}] * 2001}
    with pytest.raises(RemoteError, match="at most 2000 lines"):
        preview("rill/1/settlements", cbor2.dumps({"t": "settlement", "v": 1,
                                                   "sig": bytes(64), "body": body,
                                                   "signer": signer}))


def test_topic_and_type() -> None:
    from helpers import signing_key

    from rill.protocol import messages as m

    doc = m.sign(m.KeyDocument("K", ("https://k.example",), (), 10), signing_key("k"))
    assert preview(TOPIC_OF["key"], doc.raw).type == "key"
    with pytest.raises(RemoteError) as info:
        preview("rill/1/settlements", doc.raw)
    assert info.value.code == "wrong-topic"
