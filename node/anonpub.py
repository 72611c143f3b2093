"""Gossip of a pseudonym's objects under the pseudonym's own libp2p author (SPEC §13).

With strict signing every GossipSub message carries its author's peer ID (``from``)
and signature, unchanged as it is forwarded: published like our other objects, a
month's settlement and claims signed by the donor's pseudonym would reach every node
labelled with the donor's own peer ID, which is its identity.  So they are published
with ``from`` = the peer ID of the pseudonym key, signed by that key (libp2p's
``"libp2p-pubsub:"`` signature, domain-separated from Rill's), and with a sequence
number taken from the object's hash instead of this host's counter (which would tie
the message to our other messages).  What remains visible: our direct mesh peers
receive it from us first, as with any gossip; SPEC §13 states it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

from ..protocol.network import (
    MAX_RESPONSE,
    MAX_SYNC_OBJECTS,
    SYNC_PROTOCOL,
    SyncRequest,
    SyncResponse,
)
from .host import keypair_from_seed, request

#: Pages asked per pseudonym and sync session (as for the identity, rill.node.syncing).
MAX_SYNC_PAGES = 20


def pseudonym_message(topic: str, raw: bytes, seed: bytes) -> rpc_pb2.Message:
    """A GossipSub message carrying ``raw``, authored and signed by the key of ``seed``."""
    kp = keypair_from_seed(seed)
    msg = rpc_pb2.Message(data=raw, topicIDs=[topic],
                          from_id=ID.from_pubkey(kp.public_key).to_bytes(),
                          seqno=hashlib.sha256(raw).digest()[:8])
    msg.signature = kp.private_key.sign(PUBSUB_SIGNING_PREFIX.encode()
                                        + msg.SerializeToString())
    msg.key = kp.public_key.serialize()
    return msg


async def publish_as(pubsub: Any, topic: str, raw: bytes, seed: bytes) -> None:
    """Publish ``raw`` on ``topic`` as the author of ``seed`` (see the module text)."""
    await pubsub.push_msg(pubsub.my_id, pseudonym_message(topic, raw, seed))


async def sync_pseudonyms(node: Any, peer: ID, state: Any) -> int:
    """Catch up on the objects concerning our pseudonyms whose months still have
    unreceipted claims (receipts above all), as :meth:`Syncing.sync_with` does for our
    identity.  Asking names the pseudonym to ``peer``: SPEC §13 says what that reveals."""
    subjects = await node.db(node.wallet.pseudonyms_to_sync)
    new = 0
    for subject in subjects:
        cursor = state.pseudonym_cursors.get(subject, 0)
        for _page in range(MAX_SYNC_PAGES):
            req = SyncRequest(subject, cursor, MAX_SYNC_OBJECTS)
            raw = await request(node.p2p.host, peer, SYNC_PROTOCOL, req.encode(),
                                MAX_RESPONSE + 1024 * 1024)
            resp = SyncResponse.decode(raw)
            taken, full, _future = await node._take_synced(peer, resp.objects)
            new += taken
            progressed = resp.next > cursor
            cursor = max(cursor, resp.next)
            if full or not resp.more or not resp.objects or not progressed:
                break
        state.pseudonym_cursors[subject] = cursor
    return new
