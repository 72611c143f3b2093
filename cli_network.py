"""`rill peers add`: remember a peer in config.toml and connect a running node to it
(README "Finding the network").  Registered on the `peers` group of cli_node.py."""

from __future__ import annotations

import click

from .cli import _emit_json, _fail, _home_path, wallet_command
from .cli_node import _tell_node, peers
from .clikit import home_option, json_option


@peers.command("add")
@click.argument("addr", metavar="MULTIADDR")
@home_option
@json_option
@wallet_command
def peers_add(addr: str, home: str | None, as_json: bool) -> None:
    """Remember a peer: written to config.toml ([node] bootstrap, dialled at every start
    and again whenever its connection closes); a running node connects to it now.

    MULTIADDR names the peer: /ip4/192.0.2.7/tcp/4741/p2p/12D3KooW..., or a relayed
    address /ip4/.../tcp/.../p2p/RELAY/p2p-circuit/p2p/12D3KooW... (`rill node status`
    of the other node shows its own under "dial me at"), or a DNS name
    /dnsaddr/NAME/p2p/ID or /dns4/HOST/tcp/PORT/p2p/ID (resolved at each dial)."""
    from .node.discovery import check_peer_addr
    from .wallet.home import Home

    try:
        addr = check_peer_addr(addr)
    except ValueError as exc:
        _fail(str(exc), "bad-addr")
    h = Home(_home_path(home))
    if not h.exists():
        _fail(f"no Rill home at {h.path}: run `rill init` first", "no-home")
    remembered = h.remember_peer(addr)
    node, result = _tell_node(home, "add-peer", addr=addr)
    if node == "refused":
        _fail(f"config.toml was changed, but the running node refused: {result}", "node")
    out = {"addr": addr, "remembered": remembered, "node": node,
           "peer_id": result.get("peer_id") if result else addr.rsplit("/p2p/", 1)[1],
           "connected": bool(result and result.get("connected")),
           "error": result.get("error") if result else None}
    if as_json:
        _emit_json(out)
        return
    click.echo(("Remembered " if remembered else "Already remembered: ") + addr)
    if node == "not running":
        click.echo("No node is running on this home: it dials the peer when it starts.")
    elif out["connected"]:
        click.echo(f"The running node is connected to {out['peer_id']}.")
    else:
        click.echo(f"The running node could not connect yet ({out['error']}); it keeps "
                   "trying.")
