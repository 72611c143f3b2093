"""`rill demo`: a small Rill network on 127.0.0.1, a month of clicks in about a minute.

Creators get a home, a site served locally with its /.well-known/rill.json and a page
with a button; donors get a home and a budget; every one of them runs `rill node run`
as a separate process with a manual clock.  The demo clicks through October (some
clicks name the creator, some are resolved from the creators' sites), moves every
clock past the month's end, and watches settlements, sealed claims and receipts flow,
then verifies everything every node stored.  Before each step it says in one line
what happens and why (node/demo_text.py); its dashboard links open on the settled
month.  The dashboards stay open until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol import sitekeys
from ..protocol.keys import key_from_did
from ..protocol.months import month_end, month_start
from ..protocol.verify import verify_files
from ..wallet.wallet import Wallet
from . import control
from .demo_text import STEPS, TEXT, print_step, print_summary, split_line

MONTH = "2026-10"
START = month_start(MONTH) + 3600
RILL = str(Path(sys.executable).parent / "rill")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Member:
    name: str
    home: Path
    port: int = field(default_factory=free_port)
    dashboard: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    addr: str = ""
    did: str = ""
    site_port: int = 0

    @property
    def sock(self) -> Path:
        return self.home / control.SOCKET_NAME

    def call(self, cmd: str, **args: Any) -> Any:
        return control.call(self.sock, cmd, 30.0, **args)


class Demo:
    def __init__(self, base: Path, donors: int, creators: int,
                 say: Callable[[str], None]) -> None:
        self.base = base
        self.say = say
        self.creators = [Member(f"creator{i}", base / f"creator{i}")
                         for i in range(creators)]
        self.donors = [Member(f"donor{i}", base / f"donor{i}") for i in range(donors)]
        self.servers: list[http.server.ThreadingHTTPServer] = []

    @property
    def members(self) -> list[Member]:
        return self.creators + self.donors

    # -- set-up -------------------------------------------------------------------------

    def setup(self) -> None:
        names = ["Ada's notes", "Brook & Co podcast", "Cascade comics", "Delta photo",
                 "Eddy essays"]
        for i, c in enumerate(self.creators):
            seed = hashlib.sha256(f"rill demo {c.name}".encode()).digest()
            w = Wallet.create(c.home, names[i % len(names)], seed)
            c.did = w.did
            site = self.base / f"{c.name}-site"
            (site / ".well-known").mkdir(parents=True)
            c.site_port = self._serve(site)
            origin = f"http://127.0.0.1:{c.site_port}"
            from ..protocol import messages as m

            doc = m.sign(m.KeyDocument(names[i % len(names)], (origin,),
                                       (f"payto://iban/DE{75 + i}512108001245126199",
                                        f"payto://bitcoin/bc1qdemo{i}xyz"), START - 86400),
                         w.key)
            w.import_object(doc.raw, START)
            w.close()
            (site / ".well-known" / "rill.json").write_text(sitekeys.render(doc))
            button = subprocess.run(
                [RILL, "creator", "button", f"{origin}/posts/1.html", "--json", "--home",
                 str(c.home)], capture_output=True, text=True, check=True)
            (site / "posts").mkdir()
            (site / "posts" / "1.html").write_text(
                f"<!doctype html><meta charset=utf-8><title>{names[i % len(names)]}</title>"
                f"<h1>{names[i % len(names)]}</h1><p>A post worth a flattr.</p>"
                f"{json.loads(button.stdout)['html']}")
        for i, d in enumerate(self.donors):
            seed = hashlib.sha256(f"rill demo {d.name}".encode()).digest()
            w = Wallet.create(d.home, f"Donor {i}", seed)
            d.did = w.did
            w.set_budget(500 + 250 * i, "EUR", START)
            w.close()

    def _serve(self, root: Path) -> int:
        handler = functools.partial(_Quiet, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return int(server.server_address[1])

    def start_nodes(self, progress: Callable[[int], None]) -> None:
        previous: list[str] = []
        for k, mb in enumerate(self.members):
            args = [RILL, "node", "run", "--json", "--home", str(mb.home),
                    "--listen", f"/ip4/127.0.0.1/tcp/{mb.port}",
                    "--clock", f"manual:{START}", "--grace", "60",
                    "--dashboard-port", str(mb.dashboard), "--log-level", "warning"]
            for addr in previous[-2:]:
                args += ["--bootstrap", addr]
            with open(self.base / f"{mb.name}.log", "a") as log:
                mb.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
            assert mb.proc.stdout is not None
            line = mb.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{mb.name} did not start; see {self.base}/{mb.name}.log")
            mb.addr = json.loads(line)["addrs"][0]
            previous.append(mb.addr)
            progress(k + 1)

    # -- the month ----------------------------------------------------------------------

    def click_through_the_month(self, progress: Callable[[int], None]) -> int:
        n = 0
        for i, d in enumerate(self.donors):
            w = Wallet.open(d.home)
            for j, c in enumerate(self.creators):
                if (i + j) % 4 == 3:
                    continue  # not everyone likes everything
                site = f"http://127.0.0.1:{c.site_port}"
                t = START + 86400 * (1 + 3 * j + i)
                # the first post names its creator (the button does); the second is a
                # plain URL, resolved from the creator's site before month end
                w.click(f"{site}/posts/1.html", t, creator=key_from_did(c.did))
                w.click(f"{site}/posts/{2 + i}", t + 60)
                n += 2
                progress(n)
            w.click("https://unknown.example.org/not-in-rill", START + 86400 * 20)
            w.close()
        return n

    def end_month(self) -> None:
        for t in (month_end(MONTH) + 1, month_end(MONTH) + 61, month_end(MONTH) + 125):
            for mb in self.members:
                mb.call("clock", set=t)
            time.sleep(0.2)

    def wait(self, what: str, pred: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.25)
        raise RuntimeError(f"timed out waiting for {what}; logs in {self.base}")

    def obligations(self, mb: Member, direction: str) -> list[Any]:
        with Wallet.open(mb.home) as w:
            return w.obligations(direction=direction)

    def receipts(self) -> int:
        """Two days after month end: creators acknowledge every payment."""
        later = month_end(MONTH) + 2 * 86400
        for mb in self.members:
            mb.call("clock", set=later)
        n = 0
        for c in self.creators:
            with Wallet.open(c.home) as w:
                for o in w.obligations(direction="in"):
                    if o.state != "receipted":
                        w.sign_receipt(o.claim, later, f"SEPA-DEMO-{o.claim.hex()[:8]}")
                        n += 1
            with contextlib.suppress(ConnectionError, OSError):
                c.call("publish-new")
        return n

    def verify_all(self) -> tuple[int, int]:
        files = []
        for mb in self.members:
            with Wallet.open(mb.home) as w:
                for i, (raw,) in enumerate(w.db.execute("SELECT raw FROM objects")):
                    files.append((f"{mb.name}#{i}", raw))
        verdicts = verify_files(files, month_end(MONTH) + 4 * 86400)
        return sum(v.valid for v in verdicts), len(verdicts)

    def summary(self) -> dict[str, Any]:
        donors, creators = [], []
        for d in self.donors:
            with Wallet.open(d.home) as w:
                res = w.stored_settlement(MONTH)
                out = w.obligations(direction="out")
                body = res.settlement.body if res else None
                left_out = len(w.month_view(MONTH).pending)
                donors.append({
                    "name": d.name, "did": d.did,
                    "dashboard": f"http://127.0.0.1:{d.dashboard}/?month={MONTH}",
                    "budget": body.budget if body else None,
                    "things": body.things if body else 0,
                    "split": (split_line(body.budget, body.currency, body.things, left_out)
                              if body else "not settled"),
                    "claims": len(out), "receipted": sum(o.state == "receipted" for o in out),
                    "pending_left_out": left_out})
        for c in self.creators:
            with Wallet.open(c.home) as w:
                e = w.earnings(MONTH)
                creators.append({
                    "name": c.name, "did": c.did,
                    "dashboard": f"http://127.0.0.1:{c.dashboard}/creator?month={MONTH}",
                    "site": f"http://127.0.0.1:{c.site_port}/posts/1.html",
                    "income": e[0]["total"] if e else 0, "supporters": e[0]["supporters"] if e
                    else 0, "receipted": e[0]["receipted"] if e else 0})
        return {"month": MONTH, "steps": [{"step": k, "text": TEXT[k]} for k, _, _ in STEPS],
                "donors": donors, "creators": creators}

    # -- teardown -----------------------------------------------------------------------

    def stop(self) -> None:
        for mb in self.members:
            if mb.proc is not None and mb.proc.poll() is None:
                mb.proc.send_signal(signal.SIGTERM)
        for mb in self.members:
            if mb.proc is not None:
                try:
                    mb.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    mb.proc.kill()
                    mb.proc.wait()
        for server in self.servers:
            server.shutdown()
            server.server_close()


@contextlib.contextmanager
def demo_dir(path: str | None, keep: bool) -> Iterator[Path]:
    if path is not None:
        base = Path(path)
        base.mkdir(parents=True, exist_ok=True)
        yield base
        return
    base = Path(tempfile.mkdtemp(prefix="rill-demo-"))
    try:
        yield base
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def run(donors: int, creators: int, path: str | None, keep: bool, wait: bool,
        quiet: bool, announce: Callable[[dict[str, Any]], None] | None = None
        ) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    console = Console(stderr=True, quiet=quiet, emoji=False, highlight=False)
    say = functools.partial(print_step, console)
    with demo_dir(path, keep) as base:
        demo = Demo(base, donors, creators, console.print)
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(
                    "{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
                    transient=False) as bar:
                say("sites")
                say("budget")
                t = bar.add_task("homes, budgets and creator sites", total=1)
                demo.setup()
                bar.update(t, completed=1)
                say("nodes")
                t = bar.add_task("starting nodes", total=len(demo.members))
                demo.start_nodes(lambda k: bar.update(t, completed=k))
                clicks = 2 * sum(1 for i in range(donors) for j in range(creators)
                                 if (i + j) % 4 != 3)
                say("flattr")
                t = bar.add_task("clicking through October", total=clicks)
                demo.click_through_the_month(lambda k: bar.update(t, completed=k))
                say("split")
                say("settlement")
                t = bar.add_task("month end: settle and gossip", total=donors)
                demo.end_month()
                demo.wait("settlements", lambda: bar.update(t, completed=sum(
                    bool(demo.obligations(d, "out")) for d in demo.donors)) or all(
                    demo.obligations(d, "out") for d in demo.donors))
                for d in demo.summary()["donors"]:
                    console.print(Text(f"  {d['name']}: {d['split']}"))
                expected = sum(len(demo.obligations(d, "out")) for d in demo.donors)
                say("claim")
                t = bar.add_task("sealed claims reach creators", total=expected)

                def arrived() -> bool:
                    n = sum(len(demo.obligations(c, "in")) for c in demo.creators)
                    bar.update(t, completed=n)
                    return n == expected

                demo.wait("claims at creators", arrived)
                say("receipt")
                t = bar.add_task("receipts back to donors", total=expected)
                demo.receipts()

                def receipted() -> bool:
                    n = sum(o.state == "receipted" for d in demo.donors
                            for o in demo.obligations(d, "out"))
                    bar.update(t, completed=n)
                    return n == expected

                demo.wait("receipts", receipted)
                say("verify")
                t = bar.add_task("verifying everything stored", total=1)
                valid, total = demo.verify_all()
                bar.update(t, completed=1)
            result = demo.summary()
            result["verified"] = {"valid": valid, "total": total}
            print_summary(console, result)
            if announce is not None:
                announce(result)
            if wait:
                console.print("\nDashboards stay open; press Ctrl-C to stop the demo.")
                while True:
                    time.sleep(3600)
            return result
        except KeyboardInterrupt:
            console.print("\nStopping the demo ...")
            return {}
        finally:
            demo.stop()
            signal.signal(signal.SIGTERM, previous)
            if path is None and keep:
                console.print(f"Homes and logs kept in {base}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


__all__ = ["run"]
