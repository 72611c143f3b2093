"""The daemon's settings (config.toml ``[node]`` and ``[network]``, and the flags of
``rill node run``), with their defaults and the reasons for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..protocol.errors import SchemaError
from ..protocol.network import DEFAULT_WINDOW_MONTHS, MAX_SHARD_BITS
from ..protocol.shard import ShardSchedule
from ..wallet.errors import HomeError
from ..wallet.home import parse_blocked
from .dnsaddr import parse_servers
from .natrelay import NatSettings


@dataclass
class NodeConfig:
    listen: list[str] = field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/4741"])
    bootstrap: list[str] = field(default_factory=list)
    #: Nameservers ("IP:PORT") for /dnsaddr and /dns* bootstrap addresses (node/dnsaddr.py);
    #: empty: the system's (/etc/resolv.conf).
    dns_servers: list[str] = field(default_factory=list)
    #: mDNS on the LAN (only while listening on a non-loopback address: node/discovery.py)
    mdns: bool = True
    #: Look for Rill peers under the rendezvous key in the DHT (node/discovery.py).
    rendezvous: bool = True
    #: Reachability and relaying (``[node] reachable``, ``relay``...: node/natrelay.py).
    nat: NatSettings = field(default_factory=NatSettings)
    #: Settle a month this long (clock seconds) after it ended.
    grace: int = 3600
    #: Republish unreceipted claims this long (clock seconds) after each attempt.
    republish: tuple[int, ...] = (3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400)
    window_months: int = DEFAULT_WINDOW_MONTHS
    disk_cap: int = 256 * 1024 * 1024
    #: The periodic sync + reconciliation round (SPEC §11.4, node/rounds.py): every
    #: ``sync_interval`` real seconds it asks ``sync_peers`` peers (0: all), least recently
    #: asked first; after a round that found nothing new the wait doubles, up to
    #: ``sync_interval_max``.  Every peer is still asked on connect and after month end.
    sync_interval: float = 600.0
    sync_interval_max: float = 3600.0
    sync_peers: int = 2
    #: Housekeeping period (real seconds): new receipts to publish, pruning.
    housekeeping: float = 5.0
    #: How often (real seconds) pending things' sites are checked in the background.
    resolve_interval: float = 900.0
    #: Accept creator sites over plain HTTP (loopback hosts always are).
    allow_http: bool = False
    #: The local dashboard's port on 127.0.0.1 (0: no dashboard).
    dashboard_port: int = 4742
    #: Proof of work asked of settlements (SPEC §11.2); None: the home's [network]
    #: work_bits, which its own settlements carry too.
    work_bits: int | None = None
    #: Peers never connected with (config.toml ``[network] blocked``; ``rill peers
    #: block`` changes it, and a running node at once), as peer ID text.
    blocked: list[str] = field(default_factory=list)
    #: Reconcile with each peer after syncing (``/rill/reconcile/1.0.0``, SPEC §11.4):
    #: fetch every public object of the window that the peer holds and we lack.
    reconcile: bool = True
    #: Largest random delay (real seconds) before a pseudonym's object is published, so
    #: that it does not leave in the same burst as our identity's (SPEC §13).
    pseudonym_jitter: float = 30.0
    #: Shard bits of the network (SPEC §11.6, ``[network] shard_bits``): 2**bits shards;
    #: 0 is one shard on the four topics of §11.2.  Every node of a network alike.
    shard_bits: int = 0
    #: Backbone shards joined besides the key's own (``[network] shard_backbone``).
    shard_backbone: int = 2
    #: Scheduled growth (``[network] shard_bits_from = { "2027-02" = 5 }``): from the
    #: first instant of each month, the network's shard bits; one more than before each.
    shard_bits_from: dict[str, int] = field(default_factory=dict)

    def shard_schedule(self) -> ShardSchedule:
        return ShardSchedule(self.shard_bits, tuple(sorted(self.shard_bits_from.items())))

    @classmethod
    def from_toml(cls, data: dict[str, Any]) -> NodeConfig:
        node = data.get("node", {})
        if not isinstance(node, dict):
            raise ValueError("[node] must be a table")
        cfg = cls()
        for name, typ in (("listen", list), ("bootstrap", list), ("mdns", bool),
                          ("grace", int), ("window_months", int),
                          ("dashboard_port", int), ("allow_http", bool),
                          ("reconcile", bool), ("rendezvous", bool)):
            if name in node:
                if not isinstance(node[name], typ):
                    raise ValueError(f"node.{name} must be a {typ.__name__}")
                setattr(cfg, name, node[name])
        if "pseudonym_jitter" in node:
            if type(node["pseudonym_jitter"]) not in (int, float) or \
                    not 0 <= node["pseudonym_jitter"] <= 3600:
                raise ValueError("node.pseudonym_jitter must be a number of seconds 0..3600")
            cfg.pseudonym_jitter = float(node["pseudonym_jitter"])
        for name, lo, hi in (("sync_interval", 10, 86400), ("sync_interval_max", 10, 86400)):
            if name in node:
                if type(node[name]) not in (int, float) or not lo <= node[name] <= hi:
                    raise ValueError(f"node.{name} must be a number of seconds {lo}..{hi}")
                setattr(cfg, name, float(node[name]))
        if cfg.sync_interval_max < cfg.sync_interval:
            # the wait doubles from sync_interval up to sync_interval_max (node/rounds.py)
            raise ValueError(f"node.sync_interval_max ({cfg.sync_interval_max:g}) must not be "
                             f"less than node.sync_interval ({cfg.sync_interval:g})")
        if "sync_peers" in node:
            if type(node["sync_peers"]) is not int or not 0 <= node["sync_peers"] <= 1000:
                raise ValueError("node.sync_peers must be an integer 0..1000 (0: every peer)")
            cfg.sync_peers = node["sync_peers"]
        if "disk_cap_mb" in node:
            if not isinstance(node["disk_cap_mb"], int) or node["disk_cap_mb"] < 1:
                raise ValueError("node.disk_cap_mb must be a positive integer")
            cfg.disk_cap = node["disk_cap_mb"] * 1024 * 1024
        if "dns_servers" in node:
            parse_servers(node["dns_servers"])  # ValueError naming the key
            cfg.dns_servers = list(node["dns_servers"])
        cfg.nat = NatSettings.from_toml(node)
        network = data.get("network", {})
        for name, hi in (("shard_bits", MAX_SHARD_BITS), ("shard_backbone", 8)):
            if isinstance(network, dict) and name in network:
                value = network[name]
                if type(value) is not int or not 0 <= value <= hi:
                    raise ValueError(f"network.{name} must be an integer 0..{hi}")
                setattr(cfg, name, value)
        if isinstance(network, dict) and "shard_bits_from" in network:
            cfg.shard_bits_from = _shard_bits_from(network["shard_bits_from"], cfg.shard_bits)
        if isinstance(network, dict) and "blocked" in network:
            try:
                cfg.blocked = list(parse_blocked(network["blocked"], "config.toml"))
            except HomeError as exc:
                raise ValueError(str(exc).removeprefix("config.toml: ")) from None
        return cfg


def _shard_bits_from(value: Any, bits: int) -> dict[str, int]:
    """``[network] shard_bits_from``: a table of months to shard bits, checked as a whole
    (each month's bits one more than the month before's, the first one more than
    ``shard_bits``)."""
    if not isinstance(value, dict):
        raise ValueError('network.shard_bits_from must be a table of months to shard bits, '
                         'e.g. { "2027-02" = 5 }')
    try:
        ShardSchedule(bits, tuple(sorted(value.items())))
    except SchemaError as exc:
        raise ValueError(f"network.shard_bits_from: {exc} (network.shard_bits is {bits})"
                         ) from None
    return dict(value)
