"""`rill` commands of the node daemon: run, install-service, status, clock, sync, publish
and peers (the blocklist).  Registered on :data:`rill.cli.main`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from . import clikit
from .cli import _emit_json, _fail, _home_path, _leaf, _money, _table, main, wallet_command
from .clikit import EXIT_FAIL, EXIT_OK, TIME, home_option, iso, json_option, who
from .protocol.shard import OWN_PROVIDERS_ENOUGH

# --------------------------------------------------------------------------------------
# The node daemon


@main.group()
def node() -> None:
    """Run and query the node daemon."""


@node.command("run")
@click.option("--listen", "listen", multiple=True, metavar="MULTIADDR",
              help="Listen address (default /ip4/0.0.0.0/tcp/4741; repeatable).")
@click.option("--bootstrap", "bootstrap", multiple=True, metavar="MULTIADDR",
              help="Peer to connect to at start, /ip4/../tcp/../p2p/.. (repeatable).")
@click.option("--no-listen", is_flag=True, help="Listen on nothing: a node behind NAT "
              "reached through a relay peer ([node] listen = []).")
@click.option("--mdns/--no-mdns", default=None, help="Find peers on the LAN (default on, "
              "only when listening on a non-loopback address).")
@click.option("--rendezvous/--no-rendezvous", default=None,
              help="Look for Rill peers in the DHT (default on).")
@click.option("--reachable", type=click.Choice(["auto", "public", "private"]), default=None,
              help="Whether others can dial this node (default auto: private when it "
              "listens on nothing); private nodes keep a slot on a relay peer.")
@click.option("--relay/--no-relay", default=None,
              help="Relay for nodes behind NAT while public (default on).")
@click.option("--clock", "clock_spec", default="wall", show_default=True,
              help="wall, manual:START or fast:START:RATE (tests and demos).")
@click.option("--grace", type=click.IntRange(0), default=None,
              help="Seconds after a month's end before settling it (default 3600).")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=None,
              help="Port of the local dashboard on 127.0.0.1 (default 4742; 0: off).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="Least important messages logged.")
@click.option("--log-file", type=click.Path(dir_okay=False, writable=True), default=None,
              metavar="PATH", help="Append the log to PATH instead of stderr (reopened "
              "when logrotate moves it).")
@home_option
@json_option
@wallet_command
def node_run(listen: Sequence[str], bootstrap: Sequence[str], no_listen: bool,
             mdns: bool | None, rendezvous: bool | None, reachable: str | None,
             relay: bool | None, clock_spec: str, grace: int | None,
             dashboard_port: int | None, log_level: str, log_file: str | None,
             home: str | None, as_json: bool) -> None:
    """Run the daemon until SIGINT/SIGTERM (creates the home if it has none)."""
    import logging
    import logging.handlers
    import signal
    from pathlib import Path

    from .node import footprint

    footprint.skip_unused_imports()  # before libp2p is imported (node/footprint.py)

    import trio

    from .node.clock import parse_clock
    from .node.daemon import Daemon, NodeConfig
    from .node.host import route_libp2p_logs
    from .wallet.home import Home, user_name
    from .wallet.wallet import Wallet

    path = _home_path(home)
    if not Home(path).exists():  # asks nothing: named after the login, renamed any time
        name = user_name()
        with Wallet.create(path, name, os.urandom(32)) as w:
            click.echo(f"Created a new home at {path}\n  identity {w.did}, named \"{name}\" "
                       "after your login; change the name with: rill id --name NAME",
                       err=True)
    try:
        clock = parse_clock(clock_spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--clock") from None
    try:
        cfg = NodeConfig.from_toml(Home(path).config().raw)
    except ValueError as exc:
        _fail(f"config.toml: {exc}")
    if listen:
        cfg.listen = list(listen)
    if bootstrap:
        cfg.bootstrap = list(bootstrap)
    if no_listen:
        cfg.listen = []
    if mdns is not None:
        cfg.mdns = mdns
    if rendezvous is not None:
        cfg.rendezvous = rendezvous
    if reachable is not None:
        cfg.nat.reachable = reachable
    if relay is not None:
        cfg.nat.relay = relay
    if grace is not None:
        cfg.grace = grace
    if dashboard_port is not None:
        cfg.dashboard_port = dashboard_port
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    if log_file is not None:
        from .node.logfile import LogFile

        try:
            handler = LogFile(log_file)
        except OSError as exc:
            _fail(f"cannot write the log file {log_file}: {exc.strerror}")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = getattr(logging, log_level.upper())
    rill_log = logging.getLogger("rill")
    rill_log.handlers[:] = [handler]
    rill_log.setLevel(level)
    rill_log.propagate = False
    route_libp2p_logs(handler, level)

    async def main_task() -> None:
        daemon = Daemon(Path(path), cfg, clock)
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                await nursery.start(daemon.run)
                footprint.after_start()
                nursery.start_soon(footprint.trim_every)
                status = await daemon.status()
                if as_json:
                    click.echo(json.dumps({"event": "started", **status}), nl=True)
                else:
                    click.echo(f"Rill node {status['id']}\n  peer {status['peer_id']}")
                    for a in status["addrs"]:
                        click.echo(f"  listening on {a}")
                    if not status["addrs"]:
                        click.echo("  listening on nothing: reached through a relay peer "
                                   "(rill node status shows which)")
                    if status["dashboard"]:
                        click.echo(f"  dashboard   {status['dashboard']}")
                    if log_file is not None:
                        click.echo(f"  log         {os.path.abspath(log_file)}")
                sys.stdout.flush()
                async for signum in signals:
                    logging.getLogger("rill.node").info("signal %d: shutting down", signum)
                    nursery.cancel_scope.cancel()
                    break

    from .node.daemon import StartupError

    def cannot_start(why: BaseException) -> None:
        import re

        message = f"the node could not start: {why}"
        flag = re.search(r"choose another with (--[a-z-]+ \S+)", message)
        if flag and os.environ.get("MAKELEVEL"):  # under make, flags go through ARGS
            message += f'\n(with make: make run ARGS="{flag[1]}")'
        _fail(message)

    try:
        trio.run(main_task)
    except (StartupError, RuntimeError, OSError) as exc:  # port in use, a second daemon
        cannot_start(_leaf(exc))
    except BaseExceptionGroup as group:
        leaf = _leaf(group)
        if isinstance(leaf, StartupError | RuntimeError | OSError):
            cannot_start(leaf)
        raise
    if as_json:
        click.echo(json.dumps({"event": "stopped"}))


@node.command("install-service")
@click.option("--print", "print_only", is_flag=True,
              help="Only print the unit; write nothing.")
@click.option("--force", is_flag=True, help="Replace a different rill.service.")
@click.option("--listen", "listen", multiple=True, metavar="MULTIADDR",
              help="Passed to `rill node run` (repeatable).")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=None,
              help="Passed to `rill node run`.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="Passed to `rill node run`.")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Passed to `rill node run` (default: the journal).")
@home_option
@json_option
def node_install_service(print_only: bool, force: bool, listen: Sequence[str],
                         dashboard_port: int | None, log_level: str | None,
                         log_file: str | None, home: str | None, as_json: bool) -> None:
    """Write a systemd user unit that runs this node, and say how to start it.

    The unit, rill.service, goes to $XDG_CONFIG_HOME/systemd/user/ (by default
    ~/.config/systemd/user/) and runs `rill node run --home HOME`. Then:

    \b
      systemctl --user daemon-reload && systemctl --user enable --now rill
      loginctl enable-linger     # keep it running when you log out
    """
    import shutil
    from pathlib import Path

    from .node import service

    run_args = [a for addr in listen for a in ("--listen", addr)]
    if dashboard_port is not None:
        run_args += ["--dashboard-port", str(dashboard_port)]
    if log_level is not None:
        run_args += ["--log-level", log_level]
    if log_file is not None:
        run_args += ["--log-file", os.path.abspath(log_file)]
    home_dir = Path(_home_path(home)).expanduser().absolute()
    if print_only:
        text = service.render_unit(home_dir, run_args)
        if as_json:
            _emit_json({"path": str(service.unit_dir() / service.UNIT_NAME), "unit": text,
                        "written": False})
        else:
            click.echo(text, nl=False)
        return
    try:
        path, text, written = service.install(home_dir, run_args, force)
    except FileExistsError as exc:
        _fail(f"{exc.args[0]} exists and differs; --force replaces it "
              "(--print shows the new one)")
    except OSError as exc:
        _fail(f"cannot write the unit: {exc}")
    steps = service.next_steps(path)
    if as_json:
        _emit_json({"path": str(path), "unit": text, "written": written,
                    "steps": [cmd for _, cmd in steps]})
        return
    click.echo(f"{'Wrote' if written else 'Unchanged:'} {path}  (node on {home_dir})")
    for why, cmd in steps:
        click.echo(f"To {why}:\n  {cmd}")
    if shutil.which("systemctl") is None:
        click.echo("(systemctl is not on PATH here: this system may not run systemd)",
                   err=True)


def _control(home: str | None, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
    from pathlib import Path

    from .node import control

    try:
        return control.call(Path(_home_path(home)) / control.SOCKET_NAME, cmd, timeout,
                            **args)
    except ConnectionError as exc:
        _fail(str(exc), "node")
    except OSError as exc:
        _fail(f"cannot reach the node: {exc}", "node")


@node.command("status")
@home_option
@json_option
def node_status(home: str | None, as_json: bool) -> None:
    """The running daemon's identity, addresses, peers, mesh and counters."""
    s = _control(home, "status")
    if as_json:
        _emit_json(s)
        return
    st = s["store"]
    clikit.kv_table("Rill node", [
        ("identity", who(s["id"])),
        ("id", s["id"]),
        ("peer id", s["peer_id"]),
        ("dial me at", "\n".join(s.get("dialable") or s["addrs"]) or "-"),
        ("listening on", "\n".join(a for a in s["addrs"] if "/p2p-circuit" not in a)
         or "nothing"),
        ("reachability", _reach_row(s.get("reachability"))),
        ("clock", f"{s['clock']}, now {iso(s.get('now'))}"),
        ("peers", s["peers"] if not s.get("blocked") else
         f"{s['peers']} ({s['blocked']} blocked: rill peers blocked)"),
        *([("sync rounds", _rounds_row(s["sync_rounds"]))] if s.get("sync_rounds") else []),
        *([("shards", _shards_row(s["shards"]))]
          if s.get("shards", {}).get("bits") or s.get("shards", {}).get("pending") else []),
        ("mesh peers", "\n".join(f"{t.removeprefix('rill/1/')}: {n}"
                                  for t, n in sorted(s["mesh"].items())) or "-"),
        ("settled months", ", ".join(s["settled"]) or "-"),
        *([("held back", _held_back_rows(s["held_back"]))] if s.get("held_back") else []),
        ("store", f"{clikit.human_bytes(st['own_bytes'])} of yours, "
                  f"{clikit.human_bytes(st['relay_bytes'])} of others "
                  f"(cap {clikit.human_bytes(st['cap_bytes'])})"),
        ("disk", _disk_row(s.get("disk"))),
        ("events", _events_row(s.get("events"))),
        ("counters", "\n".join(f"{k}: {v}" for k, v in sorted(s["counters"].items())) or "-"),
        ("dashboard", s.get("dashboard") or "off"),
    ])


def _rounds_row(r: dict[str, Any]) -> str:
    """``rill node status``'s periodic sync + reconciliation rounds (SPEC §11.4)."""
    k = r["peers_per_round"] or "all"
    nxt = "" if r["next_in_s"] is None else f", next in {r['next_in_s']:.0f} s"
    return f"{k} peers every {r['interval_s']:.0f} s{nxt} ({r['rounds']} run)"


def _shards_row(sh: dict[str, Any]) -> str:
    """``rill node status``'s shards row: the shards joined at the bits in force, a
    growth's overlap (both bits' topics accepted), the backbone shards' own members found
    announced, and the next scheduled change."""
    bits = sh["bits"]
    row = (f"{', '.join(map(str, sh['joined']))} of {2 ** bits} (shard_bits {bits})" if bits
           else "none (shard_bits 0)")
    accepted = sh.get("accepted_bits") or [bits]
    if len(accepted) > 1:
        row += f"\nbits {' and '.join(map(str, accepted))} both accepted (growth overlap)"
    counted = sh.get("backbone_own_providers") or {}
    if counted:  # SPEC §11.6: a backbone shard is announced while it has too few
        row += "\nbackbone shards' own members announced: " + ", ".join(
            f"{shard} {'lookup failed' if n is None else n}"
            f"{' (announced by this node too)' if n is None or n < OWN_PROVIDERS_ENOUGH else ''}"
            for shard, n in counted.items())
    pending = sh.get("pending")
    if pending:
        row += f"\nshard_bits {pending['bits']} from {iso(pending['from'])} ({pending['month']})"
    return row


def _events_row(e: dict[str, Any] | None) -> str:
    """``rill node status``'s events row: unread events, each hook's deliveries."""
    if not e:
        return "-"
    lines = [f"{e['unread']} unread (rill events)"
             + ("" if not e.get("config_error") else f"; [hooks] broken: {e['config_error']}")]
    for name, h in e["hooks"].items():
        lines.append(f"{name}: {h['delivered']} delivered, {h['waiting']} waiting, "
                     f"{h['dropped']} dropped, {h['failed']} given up"
                     + (f" (last error: {h['last_error']})" if h["last_error"] else ""))
    return "\n".join(lines)


def _held_back_rows(rows: list[dict[str, Any]]) -> str:
    """Months settled while outside the gossip window (the node was off): they travel
    only as files (SPEC §13)."""
    lines = [f"{r['month']}: {r['claims']} claim(s), {_money(r['amount'], r['currency'])} "
             "not receipted; settled outside the gossip window, so not published"
             for r in rows]
    return "\n".join([*lines, f"hand each over: {rows[0]['advice']}"])


def _reach_row(r: dict[str, Any] | None) -> str:
    """``rill node status``'s reachability row: public (relaying or not) or private with
    the relay used."""
    if not r:
        return "-"
    probe = r.get("probe") or {}
    said = ""
    if r.get("setting") == "auto" and probe.get("verdict"):
        answers = list(probe.get("answers", {}).values())
        said = (f" (peers dialled port {', '.join(map(str, probe.get('ports', [])))}: "
                f"{sum(1 for a in answers if a)} of {len(answers)} could)")
    if r["reachability"] == "public":
        lim = r.get("relay_limits")
        if not r["relaying"] or not lim:
            return "public (not relaying)" + said
        return (f"public; relaying for {r['relaying_for']} of {lim['slots']} peers "
                f"({lim['circuit_s']} s, {clikit.human_bytes(lim['circuit_bytes'])} "
                "per circuit)" + said)
    if r["relay"]:
        return (f"private: through relay {r['relay']} until {iso(r['reserved_until'])}"
                + said)
    return ("private: looking for a relay" + (f" ({r['error']})" if r.get("error") else "")
            + said)


def _disk_row(d: dict[str, Any] | None) -> str:
    """``rill node status``'s disk row: room left, or full since when and what was lost."""
    if not d:
        return "-"
    free = clikit.human_bytes(d["free_bytes"]) if d["free_bytes"] is not None else "?"
    if d["full"]:
        return (f"FULL since {iso(d['full_since'])}: {d['not_stored']} object(s) not stored "
                f"({free} free; free some space: the node carries on by itself)")
    text = f"ok, {free} free"
    last = d.get("last_full")
    if last:
        text += (f"\nwas full {iso(last['since'])} to {iso(last['until'])}: "
                 f"{last['not_stored']} object(s) not stored (sync fetches again those that "
                 "concern you)")
    return text


@node.command("clock")
@click.argument("when", metavar="TIME", type=TIME)
@home_option
@json_option
def node_clock(when: int, home: str | None, as_json: bool) -> None:
    """Move a daemon's manual clock (started with --clock manual:START) forward.

    TIME is ISO 8601 (UTC without a zone) or Unix seconds."""
    now = _control(home, "clock", set=when)
    if as_json:
        _emit_json({"now": now})
    else:
        click.echo(f"clock set to {iso(now)}")


@node.command("sync")
@home_option
@json_option
def node_sync(home: str | None, as_json: bool) -> None:
    """Pull from every connected peer now; print how many new objects each gave."""
    result = _control(home, "sync", timeout=120)
    if as_json:
        _emit_json(result)
    elif not result:
        click.echo("No connected peers to sync with.")
    else:
        _table("Synced", ["peer", "new objects"], [[p, n] for p, n in result.items()])


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@home_option
@json_option
def publish(files: Sequence[str], home: str | None, as_json: bool) -> None:
    """Gossip objects (settlements, sealed claims, receipts, key documents) through the daemon.

    Each file is reported; a bad one does not stop the others (exit 1 if any failed).
    Plain claims are skipped (they travel by hand only, SPEC §11.2)."""
    from pathlib import Path

    from .node import control

    items, unreadable = clikit.objects_in(files)
    sock = Path(_home_path(home)) / control.SOCKET_NAME
    if not sock.exists():
        _fail("no node is running on this home (start one with `rill node run`)", "node")
    from .protocol import messages as m

    results = [{"file": name, "ok": False, "id": None, "detail": reason}
               for name, reason in unreadable]
    for name, raw in items:
        if m.peek_type(raw) == "claim":  # what `rill settle --out` writes beside sealed ones
            results.append({"file": name, "ok": False, "skipped": True, "id": None,
                            "detail": "skipped: a plain claim lists its things in clear and "
                            "travels by hand only (give the file to its creator); its sealed "
                            "form is what goes by gossip"})
            continue
        try:
            ids = control.call(sock, "publish", 60, objects=[raw.hex()])
            results.append({"file": name, "ok": True, "id": ids[0], "detail": ""})
        except (ConnectionError, OSError, ValueError) as exc:
            results.append({"file": name, "ok": False, "id": None, "detail": str(exc)})
    failed = sum(not r["ok"] and not r.get("skipped") for r in results)
    if as_json:
        _emit_json({"published": [r["id"] for r in results if r["ok"]], "files": results})
    else:
        for r in results:
            if r["ok"]:
                click.echo(f"ok  {r['file']}: published {r['id']}")
            elif r.get("skipped"):
                click.echo(f"--  {r['file']}: {r['detail']}")
            else:
                click.echo(f"BAD {r['file']}: {r['detail']}")
    sys.exit(EXIT_FAIL if failed else EXIT_OK)


@main.group(invoke_without_command=True)
@home_option
@json_option
@click.pass_context
def peers(ctx: click.Context, home: str | None, as_json: bool) -> None:
    """The running daemon's peers: addresses, scores, topics, last sync.

    `rill peers block PEER` blocks a peer, `rill peers unblock PEER` lifts it, `rill peers
    blocked` lists the blocklist (config.toml [network] blocked)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _control(home, "peers")
    if as_json:
        _emit_json(rows)
        return
    _table("Peers", ["peer", "identity", "score", "topics", "last sync (UTC)", "addresses"],
           [[p["peer_id"], p.get("id") or "-",
             f"{p['score']:.1f}" + (" (blacklisted)" if p["blacklisted"] else ""),
             len(p["topics"]), iso(p["last_sync"]) if p["last_sync"] else "never",
             "\n".join(p["addrs"])] for p in rows])


def _tell_node(home: str | None, cmd: str, **args: Any) -> tuple[str, Any]:
    """Ask a running daemon, if any: ("applied", result), ("not running", None) or
    ("refused", reason)."""
    from pathlib import Path

    from .node import control

    sock = Path(_home_path(home)) / control.SOCKET_NAME
    try:
        return "applied", control.call(sock, cmd, 15, **args)
    except ConnectionError as exc:
        if not sock.exists() or "no node is running" in str(exc):
            return "not running", None
        return "refused", str(exc)
    except (OSError, ValueError) as exc:
        return "refused", f"cannot reach the node: {exc}"


def _peer_arg(text: str) -> str:
    from .protocol.keys import parse_peer

    return parse_peer(text)  # LocalError (code bad-peer): a refusal via wallet_command


def _peer_identity(peer_id: str) -> str | None:
    """The did:key behind an Ed25519 peer ID (a Rill node's identity), or None."""
    import base58

    from .protocol.keys import did_from_key

    raw = base58.b58decode(peer_id)
    return did_from_key(raw[6:]) if raw[:6] == b"\x00\x24\x08\x01\x12\x20" else None


def _block_change(home: str | None, peer: str, block: bool, as_json: bool) -> None:
    from .wallet.home import Home

    h = Home(_home_path(home))
    if not h.exists():
        _fail(f"no Rill home at {h.path}: run `rill init` first", "no-home")
    if block and peer == _own_peer_id(h):
        _fail("that is this node's own peer ID", "bad-peer")
    changed = h.block(peer) if block else h.unblock(peer)
    node, result = _tell_node(home, "block" if block else "unblock", peer=peer)
    out = {"peer_id": peer, "id": _peer_identity(peer), "blocked": block, "changed": changed,
           "node": node, "disconnected": bool(result and result.get("disconnected")),
           "dialling": bool(result and result.get("dialling"))}
    if node == "refused":
        _fail(f"config.toml was changed, but the running node refused: {result}", "node")
    if as_json:
        _emit_json(out)
        return
    word = "Blocked" if block else "Unblocked"
    if not changed:
        word = "Already blocked:" if block else "Not blocked:"
    click.echo(f"{word} {peer}" + (f" ({who(out['id'])})" if out["id"] else ""))
    if node == "not running":
        click.echo("No node is running on this home: it applies when the node starts.")
    elif block:
        click.echo("The running node disconnected it." if out["disconnected"] else
                   "The running node applies it now (it was not connected).")
    elif out["dialling"]:
        click.echo("The running node is dialling it again.")


def _own_peer_id(h: Any) -> str:
    from .protocol.keys import peer_id_from_key, public_key

    return peer_id_from_key(public_key(h.signing_key()))


@peers.command("block")
@click.argument("peer", metavar="PEER_ID")
@home_option
@json_option
@wallet_command
def peers_block(peer: str, home: str | None, as_json: bool) -> None:
    """Never talk to a peer: its connections are closed, it is not dialled nor let in,
    its gossip is ignored and nothing is synced with it.

    PEER_ID is a libp2p peer ID (12D3KooW..., as `rill peers` shows) or a Rill identity
    (did:key:...).  Written to config.toml ([network] blocked); a running node applies it
    at once."""
    _block_change(home, _peer_arg(peer), True, as_json)


@peers.command("unblock")
@click.argument("peer", metavar="PEER_ID")
@home_option
@json_option
@wallet_command
def peers_unblock(peer: str, home: str | None, as_json: bool) -> None:
    """Lift a block: a running node dials the peer again if it knows an address of it."""
    _block_change(home, _peer_arg(peer), False, as_json)


@peers.command("blocked")
@home_option
@json_option
@wallet_command
def peers_blocked(home: str | None, as_json: bool) -> None:
    """The blocklist (config.toml [network] blocked), and whether the running node
    applies each entry."""
    from .wallet.home import Home

    h = Home(_home_path(home))
    blocked = h.config().blocked
    node, live = _tell_node(home, "blocked")
    rows = [{"peer_id": p, "id": _peer_identity(p),
             "in_force": (p in live) if node == "applied" else None} for p in blocked]
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("No peer is blocked.")
        return
    state = {True: "yes", False: "no (restart the node)", None: "no node running"}
    _table("Blocked peers", ["peer", "identity", "in force"],
           [[r["peer_id"], r["id"] or "-", state[r["in_force"]]] for r in rows])
