"""The code under structured fuzzing, each behind one function that returns the crashes.

A *crash* is any exception that is not one of the project's own
(:class:`~rill.protocol.errors.RillError`, :class:`~rill.wallet.errors.WalletError`),
or an HTTP 500 from the dashboard, or an object of a batch left without a verdict.
Targets never raise: they return :class:`~fuzzcrash.Crash` records, so a soak keeps
going and collects every distinct failure.
"""

from __future__ import annotations

import base64
import json
import random
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cbor2
import trio
from fuzzcrash import Crash, crash
from fuzzsign import Sample, World
from fuzzvalues import INT_EDGES, INT_OUTSIDE, INVALID_THINGS, VALID_THINGS, month_end

from rill.protocol.errors import RemoteError, RillError
from rill.protocol.network import TOPIC_OF, TOPICS, SyncResponse, check_gossip
from rill.protocol.verify import verify_files
from rill.wallet.errors import WalletError
from rill.wallet.wallet import Wallet

#: What may come out of each surface: the exceptions its callers in the node catch.
#: The gossip validator, `sync_with` and verify_one catch RemoteError only (a LocalError
#: from them would escape into py-libp2p or the CLI); the daemon's store loop catches
#: RemoteError and WalletError around Wallet.import_object.
REMOTE = (RemoteError,)
WALLET = (RemoteError, WalletError)
#: Any project error (the brief's property) for surfaces with no narrower caller.
ALLOWED = (RillError, WalletError)
#: `now` values every gossip check is tried with (besides one just after the month).
NOWS = [0, World.NOW, 2**31, 253402300800, 2**53 - 1]


def _guard(out: list[Crash], target: str, what: str, raw: bytes, fn: Callable[[], Any],
           allowed: tuple[type[Exception], ...] = ALLOWED) -> Any:
    try:
        return fn()
    except allowed:
        return None
    except Exception as exc:  # the point of the fuzz: record, keep going
        out.append(crash(target, exc, what, raw))
        return None


def nows_for(s: Sample) -> list[int]:
    month = s.body.get("month") if isinstance(s.body, dict) else None
    end = month_end(month) if isinstance(month, str) else None
    return NOWS + ([end + 300, end - 1] if end is not None else [])


# -- (a) gossip ---------------------------------------------------------------------------


def gossip(s: Sample, *, thorough: bool = True, rnd: random.Random | None = None
           ) -> list[Crash]:
    """check_gossip on every topic and several `now`s (``thorough``) or a random few."""
    out: list[Crash] = []
    raw, what = s.raw, s.describe()
    own = TOPIC_OF.get(s.t, "rill/1/settlements")
    if thorough:
        runs = [(topic, now) for topic in [*TOPICS, "rill/1/nope"] for now in
                (nows_for(s) if topic == own else [World.NOW])]
    else:
        r = rnd or random.Random(0)
        nows = nows_for(s)
        runs = [(own, r.choice(nows)), (own, World.NOW), (r.choice(list(TOPICS)), World.NOW)]
    for topic, now in runs:
        _guard(out, "gossip", f"topic={topic} now={now} {what}", raw,
               lambda t=topic, n=now: check_gossip(t, raw, n), REMOTE)
    return out


# -- (b) rill.protocol.verify and `rill verify` -----------------------------------------------


def verify(files: list[tuple[str, bytes]], now: int | None, what: str,
           batch: list[Sample] | None = None) -> list[Crash]:
    out: list[Crash] = []
    verdicts = _guard(out, "verify_files", f"now={now} {what}", b"",
                      lambda: verify_files(files, now), REMOTE)
    if out:  # name the one file that is enough to crash it, and keep its bytes
        for name, data in files:
            alone: list[Crash] = []
            _guard(alone, "verify_files", f"now={now} file {name}", data,
                   lambda n=name, d=data: verify_files([(n, d)], now), REMOTE)
            if alone and alone[0].key == out[0].key:
                desc = f"{data[:80]!r}"
                for s in [s for s in batch or [] if _holds(data, s.raw)]:
                    one: list[Crash] = []
                    _guard(one, "verify_files", "", s.raw,
                           lambda s=s: verify_files([("x.bin", s.raw)], now), REMOTE)
                    if one and one[0].key == out[0].key:
                        desc, data = s.describe(), s.raw
                        break
                out[0] = Crash(out[0].target, out[0].exc_type, out[0].message, out[0].where,
                               f"now={now} file {name}: {desc}", data, out[0].exc)
                break
    if verdicts is not None:
        seen = {v.source.split("#")[0] for v in verdicts}
        missing = [name for name, _ in files if name not in seen]
        if missing:
            out.append(Crash("verify_files", "NoVerdict", f"files without a verdict: {missing}",
                             "verify.py", what))
    return out


def _holds(data: bytes, raw: bytes) -> bool:
    """Whether a file (binary or armoured) holds the object ``raw``."""
    b64 = base64.urlsafe_b64encode(raw).rstrip(b"=")
    return raw == data or b64[:64] in data.replace(b"\n", b"").replace(b"\r", b"")


def cli_verify(directory: Path, files: list[tuple[str, bytes]], at: int | None,
               what: str) -> list[Crash]:
    """`rill verify --json` on the files written to ``directory``: every file gets a
    verdict, the exit status is 0 or 1, no traceback."""
    from click.testing import CliRunner

    from rill.cli import main

    paths = []
    for name, data in files:
        p = directory / name
        p.write_bytes(data)
        paths.append(str(p))
    args = ["verify", "--json", "-j", "1", *([] if at is None else ["--at", str(at)]), *paths]
    result = CliRunner().invoke(main, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return [crash("rill verify", result.exception, what)]
    if result.exit_code not in (0, 1):
        return [Crash("rill verify", "ExitStatus", f"exit {result.exit_code}: "
                      f"{result.output[-300:]}", "cli.py", what)]
    try:
        rows = json.loads(result.stdout)
    except ValueError:
        return [Crash("rill verify", "BadJSON", result.stdout[-300:], "cli.py", what)]
    seen = {r["file"].split("#")[0] for r in rows}
    missing = [p for p in paths if p not in seen]
    if missing:
        return [Crash("rill verify", "NoVerdict", f"{len(missing)} file(s) without a verdict",
                      "cli.py", what)]
    return []


# -- (c) the wallet -------------------------------------------------------------------------


def make_home(path: Path, world: World) -> Wallet:
    """A wallet with the world's home key that settled 2026-08 (so it owes claims)."""
    w = Wallet.create(path, "fuzz", world.home_seed)
    aug = World.NOW - 60 * 86400  # 2026-08-16
    w.set_budget(1001, "EUR", aug)
    for i, creator in enumerate(world.creators[:3]):
        w.click(f"https://c{i}.example/t/{i}", aug + 1 + i, bytes(creator.verify_key))
    result, _ = w.settle("2026-08", World.NOW)
    w.db.execute("PRAGMA synchronous = OFF")  # speed only: the fuzz does not test fsync
    world.home_claims = [(c.id, c.body.month, c.body.creator, c.body.currency)
                         for c in result.claims]
    return w


def wallet_import(w: Wallet, samples: Iterable[Sample], now: int = World.NOW) -> list[Crash]:
    out: list[Crash] = []
    for s in samples:
        _guard(out, "import_object", s.describe(), s.raw,
               lambda s=s: w.import_object(s.raw, now), WALLET)
    return out


def wallet_views(w: Wallet) -> list[Crash]:
    """What the wallet shows after imports: obligations, payments, earnings, months."""
    out: list[Crash] = []
    for name, fn in [("obligations", w.obligations), ("due", w.due),
                     ("earnings", w.earnings), ("equivocators", w.equivocators),
                     *[(f"projection {mo}", lambda mo=mo: w.projection(mo))
                       for mo in World.RECENT]]:
        _guard(out, f"wallet.{name.split()[0]}", name, b"", fn)
    return out


# -- (d) sync --------------------------------------------------------------------------------


def sync_request(rnd: random.Random, subjects: list[bytes]) -> tuple[bytes, str]:
    """A sync request frame with fuzzed fields (valid CBOR, sometimes not)."""
    r = rnd
    ints = INT_EDGES + INT_OUTSIDE + [1000, 1001, 999]
    req: dict[str, Any] = {"v": r.choice([1, 1, 1, 0, 2, 2**64 - 1, "1"]),
                           "subject": r.choice(subjects) if r.random() < 0.9 else
                           r.choice([b"", bytes(32), b"\x01" + bytes(31), "x"]),
                           "after": r.choice([*ints, 0, 0, 1, 5]) if r.random() < 0.8
                           else r.choice(["0", b"", [], 0.5]),
                           "limit": r.choice([*ints, 1, 10, 1000])}
    if r.random() < 0.1:
        del req[r.choice(sorted(req))]
    if r.random() < 0.05:
        req["extra"] = 1
    if r.random() < 0.3:
        req["ids"] = r.choice([1, 1, 1, 0, 2, True, b"\x01", -1])
    raw = cbor2.dumps(req, canonical=True)
    if r.random() < 0.1 and raw:
        i = r.randrange(len(raw))
        raw = raw[:i] + bytes([r.randrange(256)]) + raw[i + 1:]
    return raw, f"sync request {req!r}"[:300]


class StubDaemon:
    """What Daemon._serve_sync and the dashboard use of a daemon, without libp2p."""

    def __init__(self, wallet: Wallet, now: int) -> None:
        self.wallet = wallet
        self.identity = wallet.identity
        self.p2p = None
        self.clock = self
        self._now = now
        self.app: Any = None

    def now(self) -> int:
        return self._now

    def is_blocked(self, peer: object) -> bool:
        return False

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    async def _control(self, req: dict[str, Any]) -> Any:
        return {"ok": True}


def _run_now(coro: Any) -> Any:
    """Run a coroutine that never suspends (the stub's db() does not)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("coroutine suspended")


def sync_serve(stub: StubDaemon, raw: bytes, what: str) -> list[Crash]:
    from rill.node.daemon import Daemon

    out: list[Crash] = []
    resp = _guard(out, "sync serve", what, raw,
                  lambda: _run_now(Daemon._serve_sync(stub, None, raw)))  # type: ignore[arg-type]
    if resp is None:
        return out
    decoded = _guard(out, "sync serve", "response of " + what, resp,
                     lambda: SyncResponse.decode(resp))
    if decoded is None and not out:
        out.append(Crash("sync serve", "BadResponse", "the server's own response does not "
                         "decode", "network.py", what, raw))
    elif decoded is not None and decoded.more and not decoded.objects:
        out.append(Crash("sync serve", "EmptyMore", "more=1 with no object", "wallet.py",
                         what, raw))
    return out


def sync_client(samples: list[Sample], nxt: Any, more: Any, now: int) -> list[Crash]:
    """What sync_with does with a peer's response: decode it, check each object."""
    from rill.protocol.messages import peek_type

    out: list[Crash] = []
    raw = cbor2.dumps({"v": 1, "objects": [s.raw for s in samples], "next": nxt, "more": more},
                      canonical=True)
    what = f"sync response next={nxt!r} more={more!r} objects={len(samples)}"
    resp = _guard(out, "sync client", what, raw, lambda: SyncResponse.decode(raw), REMOTE)
    if resp is None:
        return out
    for s in samples:
        _guard(out, "sync client", s.describe(), s.raw,
               lambda s=s: check_gossip(TOPIC_OF.get(peek_type(s.raw) or "", ""), s.raw, now),
               REMOTE)
    return out


# -- (e) the dashboard -------------------------------------------------------------------------

ODD_TEXTS = ["", " ", "%", "%zz", "\x00", "\u202e2026-09", "9999-12", "2000-01", "1999-12",
             "10000-01", "0000-00", "\uff12\uff10\uff12\uff16-09", "\u0662\u0660\u0662\u0666-09",
             "2026-09\n", " 2026-09 ", "x" * 5000, "\ud7ff", "\U0001f600", "2026-9", "2026-13"]
ODD_URLS = VALID_THINGS + INVALID_THINGS + [
    "https://xn--/", "https://xn--a.example/", "https://a\u0300.example/",
    "https://" + "a" * 64 + ".example/", "https://" + ("a." * 130) + "example/",
    "https://\u200d.example/", "https://\u0661.example/", "https://[::ffff:1.2.3.4]/",
    "https://example.org:99999/", "https://%41.example/", "javascript:alert(1)",
    "https://example.org/" + "\U0001f600" * 600, "https://\udfff.example/",
]
ODD_CREATORS = ["", "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd",
                "did:key:z6Mk" + "1" * 100, "did:key:z0OIl", "did:key:z\u00e9", "did:key:",
                "did:web:example.org", "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVe",
                "did:key:z" + "2" * 44]


def dashboard_queries(rnd: random.Random, months: list[Any]) -> list[str]:
    """Paths with query strings: ?month=, /flattr?url=&creator=, /claims?month=..."""
    r = rnd

    def q(**params: str) -> str:
        if r.random() < 0.1:  # raw, possibly badly percent-encoded
            return "&".join(f"{k}={v.encode('utf-8', 'surrogatepass').hex()}%"
                            if r.random() < 0.3 else f"{k}=%{r.choice(['ff', 'c3', 'zz'])}"
                            for k, v in params.items())
        return urllib.parse.urlencode(params, errors="surrogatepass")

    month = r.choice([*ODD_TEXTS, *[m for m in months if isinstance(m, str)]])
    url = r.choice(ODD_URLS)
    creator = r.choice(ODD_CREATORS)
    return [f"/?{q(month=month)}", f"/flattr?{q(url=url, creator=creator)}",
            f"/claims?{q(month=month)}", "/creator", "/settlements", f"/?{q(notice=month)}",
            "/statements", "/statements/" + urllib.parse.quote(month, safe="",
                                                               errors="surrogatepass")
            + r.choice([".csv", ".rill", "-with-claims.rill", ""])]


def dashboard(stub: StubDaemon, paths: list[str]) -> list[Crash]:
    """GET each path through the real Starlette app (httpx ASGI transport, under trio)."""
    import httpx

    from rill.node.dashboard import Dashboard

    out: list[Crash] = []
    if stub.app is None:  # one Dashboard per stub: its templates are compiled once
        stub.app = Dashboard(stub, 4742).app()  # type: ignore[arg-type]
    app = stub.app

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://127.0.0.1:4742") as client:
            for path in paths:
                try:
                    resp = await client.get(path)
                except ALLOWED as exc:  # a project error escaping a handler is a 500 too
                    out.append(crash("dashboard", exc, f"GET {path[:300]}"))
                    continue
                except Exception as exc:
                    out.append(crash("dashboard", exc, f"GET {path[:300]}"))
                    continue
                if resp.status_code >= 500:
                    out.append(Crash("dashboard", f"HTTP{resp.status_code}", resp.text[:200],
                                     "dashboard.py", f"GET {path[:300]}"))

    trio.run(main)
    return out


__all__ = ["ALLOWED", "NOWS", "REMOTE", "WALLET", "StubDaemon", "cli_verify", "dashboard",
           "dashboard_queries", "gossip", "make_home", "sync_client", "sync_request",
           "sync_serve", "verify", "wallet_import", "wallet_views"]
