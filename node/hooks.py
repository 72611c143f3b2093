"""Notifications (README "Notifications"): the daemon's event scanner and the delivery of
events to ``[hooks]`` commands and webhooks, plus desktop notifications.

* The scanner (node/events.py) runs after every import the daemon makes (poked) and
  every ``SCAN_INTERVAL`` seconds (objects written by another process: ``rill
  import-object`` while the node runs), twice as long after each scan that found nothing,
  at most ``SCAN_MAX_S`` (three database calls in worker threads every 2 s were ~10% of an
  idle daemon's CPU).
* One delivery loop per configured hook takes that hook's queue in order: a delivery is
  removed only once it succeeded (a command exits 0, a webhook answers 2xx), so every
  event is delivered at least once, in order per hook, across restarts.  A failure is
  retried after ``backoff`` seconds, doubled each time (at most an hour), ``retries``
  times; then the event is given up for that hook (counted as failed) and the next one
  goes.
* A stopping daemon lets a delivery under way finish and be noted, for at most
  ``STOP_GRACE_S`` seconds: a command that already ran is not run again at the next start
  (past the grace it is cut off and, not noted, delivered again then: at least once).
* Desktop notifications (``notify-send``) are best effort: one per scan (several new
  events are summed up in one), never queued.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import nacl.signing
import trio

from .. import __version__
from ..protocol.webhook import HEADER, sign_header
from . import events
from .hookconfig import HookConfig, Target, parse_hooks

log = logging.getLogger("rill.node.hooks")

#: Seconds between scans for objects stored by other processes.
SCAN_INTERVAL = 2.0
SCAN_MAX_S = 16.0
#: Seconds a stopping daemon gives a delivery under way to finish and be noted.
STOP_GRACE_S = 5.0
#: Most bytes of a failing command's stderr kept as its error.
ERROR_BYTES = 300

Db = Callable[..., Awaitable[Any]]


async def run_command(target: Target, body: bytes, kind: str, eid: str, timeout: float
                      ) -> str | None:
    """Run a hook's command with the event on stdin; None when it exited 0, else why not.

    No shell: argv as configured.  Event data goes only to stdin; the environment gets
    ``RILL_EVENT`` (the kind) and ``RILL_EVENT_ID`` (64 hex digits)."""
    env = {**os.environ, "RILL_EVENT": kind, "RILL_EVENT_ID": eid}
    try:
        with trio.move_on_after(timeout) as scope:
            proc = await trio.run_process(list(target.argv), stdin=body + b"\n", env=env,
                                          stdout=subprocess.DEVNULL, capture_stderr=True,
                                          check=False)
    except OSError as exc:
        return f"cannot run {target.argv[0]}: {exc.strerror or exc}"
    if scope.cancelled_caught:
        return f"{target.argv[0]} did not finish within {timeout:g} s (killed)"
    if proc.returncode != 0:
        err = proc.stderr[-ERROR_BYTES:].decode("utf-8", "replace").strip()
        return f"{target.argv[0]} exited with status {proc.returncode}" + (
            f": {err}" if err else "")
    return None


async def post(target: Target, body: bytes, kind: str, eid: str, timeout: float,
               key: nacl.signing.SigningKey, client: httpx.AsyncClient) -> str | None:
    """POST the event to a webhook, signed (SPEC §12.3); None on a 2xx answer."""
    headers = {"Content-Type": "application/json", "User-Agent": f"rill/{__version__}",
               "Rill-Event": kind, "Rill-Event-Id": eid,
               HEADER: sign_header(key, int(time.time()), body)}
    try:
        with trio.fail_after(timeout):
            r = await client.post(target.url, content=body, headers=headers, timeout=timeout,
                                  follow_redirects=False)
    except trio.TooSlowError:
        return f"no answer within {timeout:g} s"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:ERROR_BYTES] or type(exc).__name__
    if not 200 <= r.status_code < 300:
        return f"answered HTTP {r.status_code}"
    return None


async def deliver(target: Target, body: bytes, timeout: float,
                  key: nacl.signing.SigningKey, client: httpx.AsyncClient) -> str | None:
    """One attempt to deliver one event; None on success, else the reason.  ``client``
    is shared by every webhook (one costs ~0.2 s to make: its TLS context)."""
    try:
        head = json.loads(body)
        kind, eid = str(head["event"]), str(head["id"])
    except (ValueError, KeyError, TypeError):
        return "the stored event is not JSON"
    try:
        if target.kind == "command":
            return await run_command(target, body, kind, eid, timeout)
        return await post(target, body, kind, eid, timeout, key, client)
    except Exception as exc:  # a boundary: whatever the hook does, a failure, not a crash
        return f"{type(exc).__name__}: {exc}"[:ERROR_BYTES]


def _markup(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary(event: dict[str, Any], key: Callable[[str], str] = str) -> tuple[str, str]:
    """A title and one line for a person (desktop notifications, the dashboard);
    ``key`` shows a did:key (e.g. shortened)."""
    d = event.get("data", {})
    kind = event.get("event")
    if kind == "claim":
        return "New claim", (f"{d.get('amount_text')} for {d.get('month')} from "
                             f"{key(str(d.get('donor')))}")
    if kind == "new_supporter":
        return "New supporter", f"{key(str(d.get('donor')))} supports you ({d.get('month')})"
    if kind == "receipt":
        return "Receipt", (f"{key(str(d.get('creator')))} acknowledged "
                           f"{d.get('amount_text')} ({d.get('month')})")
    if kind == "month_settled":
        return "Month settled", (f"{d.get('month')}: {d.get('budget_text')} to "
                                 f"{len(d.get('creators', []))} creator(s)")
    return str(kind), ""


async def desktop(new: list[dict[str, Any]]) -> None:
    """One notify-send for these events (best effort, 5 s at most)."""
    if len(new) == 1:
        title, text = summary(new[0])
    else:
        title = f"{len(new)} new events"
        text = "; ".join(summary(e)[0] for e in new[:5]) + ("…" if len(new) > 5 else "")
    argv = ["notify-send", "--app-name=Rill", "--", f"Rill: {title}", _markup(text)]
    try:
        with trio.move_on_after(5):
            await trio.run_process(argv, check=False, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    except Exception as exc:  # best effort: never the daemon's end
        log.info("desktop notification failed: %s", exc)


class Hooks:
    """The daemon's notifications: scanning, queues, delivery loops, desktop."""

    def __init__(self, db: Db, wallet: Any, now: Callable[[], int]) -> None:
        self.db = db
        self.wallet = wallet
        self.now = now
        self.config = HookConfig()
        self._config_error: str | None = None
        self._scan_error: str | None = None
        self.unread = 0
        self._poke = trio.Event()
        self._wake: dict[str, trio.Event] = {}
        self._running: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._client: httpx.AsyncClient | None = None
        #: the shielded scopes of the deliveries under way (cut short by a stop's grace)
        self._attempts: set[trio.CancelScope] = set()

    def load_config(self) -> HookConfig:
        """``[hooks]`` as config.toml says now; a broken one keeps the last good one."""
        try:
            cfg = parse_hooks(self.wallet.config.raw)
        except Exception as exc:  # HookConfigError, or a config.toml that no longer parses
            if str(exc) != self._config_error:
                self._config_error = str(exc)
                log.error("config.toml [hooks]: %s (keeping the previous hooks)", exc)
            return self.config
        self._config_error = None
        return cfg

    def poke(self) -> None:
        """Something was stored: scan soon."""
        self._poke.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.config = await self.db(self.load_config)
                await self._apply(self.config)
                await self.scan()
                task_status.started()
                try:
                    await self._scan_loop()
                finally:  # stopping: what is being delivered gets a grace, not forever
                    for attempt in self._attempts:
                        attempt.deadline = min(attempt.deadline,
                                               trio.current_time() + STOP_GRACE_S)
        finally:
            if self._client is not None:
                with trio.move_on_after(5) as scope:
                    scope.shield = True
                    await self._client.aclose()
                self._client = None

    async def _scan_loop(self) -> None:
        delay = SCAN_INTERVAL
        while True:
            with trio.move_on_after(delay) as idle:
                await self._poke.wait()
            self._poke = trio.Event()
            cfg = await self.db(self.load_config)
            changed = cfg != self.config
            if changed:
                self.config = cfg
                await self._apply(cfg)
            found = await self.scan()
            quiet = idle.cancelled_caught and not changed and not found
            delay = min(2 * delay, SCAN_MAX_S) if quiet else SCAN_INTERVAL

    def _http(self) -> httpx.AsyncClient:
        """The client every webhook shares, made at the first delivery: its TLS context
        and CA bundle take ~2 MB that a node without hooks never needs."""
        if self._client is None:
            self._client = httpx.AsyncClient()
        return self._client

    async def _apply(self, cfg: HookConfig) -> None:
        names = {t.name for t in cfg.all_targets()}
        try:
            dropped = await self.db(events.forget_targets, self.wallet.db, names)
        except Exception as exc:  # a full disk: dropped at the next change or start
            log.warning("hooks: could not drop the deliveries of removed hooks: %s", exc)
            dropped = 0
        if dropped:
            log.warning("hooks: %d waiting deliveries dropped (their hooks were removed)",
                        dropped)
        assert self._nursery is not None
        for t in cfg.all_targets():
            if t.name not in self._running:
                self._running.add(t.name)
                self._nursery.start_soon(self._deliver_loop, t.name)

    async def scan(self) -> list[dict[str, Any]]:
        try:
            new: list[dict[str, Any]] = await self.db(
                events.scan, self.wallet.db, self.wallet.identity, self.now(), self.config)
            self.unread = await self.db(events.unread_count, self.wallet.db)
        except Exception as exc:  # a full disk, a locked db: the next scan tries again
            why = f"{type(exc).__name__}: {exc}"
            if why != self._scan_error:  # logged once, not every scan
                self._scan_error = why
                log.warning("events: could not scan (%s); trying again", why)
            return []
        self._scan_error = None
        if new:
            log.info("events: %d new (%s)", len(new), ", ".join(e["event"] for e in new))
            for ev in self._wake.values():
                ev.set()
            if self.config.desktop and self._nursery is not None:
                self._nursery.start_soon(desktop, new)
        return new

    def _target(self, name: str) -> Target | None:
        return next((t for t in self.config.all_targets() if t.name == name), None)

    async def _deliver_loop(self, name: str) -> None:
        """Deliver ``name``'s queue in order, one event at a time."""
        while True:
            target = self._target(name)
            if target is None:  # removed from the config
                self._running.discard(name)
                return
            try:
                item = await self.db(events.head, self.wallet.db, name)
            except Exception as exc:  # the next loop tries again
                log.warning("hooks: cannot read the queue of %s: %s", name, exc)
                item = None
            if item is None:
                wake = self._wake.setdefault(name, trio.Event())
                with trio.move_on_after(SCAN_INTERVAL):
                    await wake.wait()
                self._wake[name] = trio.Event()
                continue
            n, attempts, body = item
            # shielded: a stop lets it finish and be noted (within STOP_GRACE_S), so a
            # command that ran is not run again at the next start; none starts once a
            # stop has begun
            await trio.lowlevel.checkpoint_if_cancelled()
            gave_up: bool | None = None  # None: not noted
            with trio.CancelScope(shield=True) as attempt:
                self._attempts.add(attempt)
                try:
                    error = await deliver(target, body, self.config.timeout,
                                          self.wallet.key, self._http())
                    gave_up = await self._note(name, n, attempts, error)
                finally:
                    self._attempts.discard(attempt)
            if attempt.cancelled_caught or gave_up is None:  # cut short, or not noted
                await trio.sleep(SCAN_INTERVAL)
                continue
            if error is None:
                continue
            if gave_up:
                log.error("hooks: %s: gave up an event after %d attempts: %s", name,
                          attempts + 1, error)
            else:
                delay = self.config.delay(attempts + 1)
                log.warning("hooks: %s failed (%s); retrying in %g s", name, error, delay)
                await trio.sleep(delay)

    async def _note(self, name: str, n: int, attempts: int, error: str | None
                    ) -> bool | None:
        """Note one attempt: whether the event was given up; None if it could not be
        noted (it is tried again: at least once)."""
        give_up = error is not None and attempts >= self.config.retries
        try:
            if error is None:
                await self.db(events.delivered, self.wallet.db, name, n, self.now())
            else:
                await self.db(events.attempt_failed, self.wallet.db, name, n, error, give_up)
        except Exception as exc:
            log.warning("hooks: cannot note a delivery of %s: %s", name, exc)
            return None
        return give_up

    async def status(self) -> dict[str, Any]:
        hooks: dict[str, Any] = {}
        try:
            hooks = await self.db(events.stats, self.wallet.db)
        except Exception as exc:  # a damaged or locked database: status still answers
            log.debug("hooks: no statistics: %s", exc)
        return {"unread": self.unread, "desktop": self.config.desktop,
                "config_error": self._config_error, "hooks": hooks}


def sample(kind: str, me: bytes, now: int) -> bytes:
    """A made-up event of ``kind`` (``rill hooks test``): marked ``"test": true``."""
    from ..protocol import keys

    fake = keys.did_from_key(bytes(32 * [7]))
    month = events.iso(now)[:7]
    money = {"amount": 150, "currency": "EUR", "amount_text": "1.50 EUR"}
    data: dict[str, Any] = {
        "claim": {"claim": "00" * 32, "month": month, "donor": fake, **money,
                  "things": ["https://example.org/a-thing"], "settlement": "11" * 32,
                  "sealed": True},
        "new_supporter": {"donor": fake, "claim": "00" * 32, "month": month, **money},
        "receipt": {"receipt": "22" * 32, "claim": "00" * 32, "month": month,
                    "creator": fake, **money},
        "month_settled": {"month": month, "settlement": "11" * 32, "things": 1,
                          "budget": 150, "currency": "EUR", "budget_text": "1.50 EUR",
                          "paid": 150, "creators": [{"creator": fake, "things": 1, **money}]},
    }[kind]
    _eid, _kind, body = events._event(kind, b"sample" + now.to_bytes(8, "big"), now, me, data)
    ev = json.loads(body)
    ev["test"] = True
    return json.dumps(ev, ensure_ascii=False, separators=(",", ":")).encode()


async def send_sample(cfg: HookConfig, kind: str, key: nacl.signing.SigningKey, now: int
                      ) -> list[dict[str, Any]]:
    """Deliver a sample event of ``kind`` once to each hook of that kind (no queue, no
    retry) and to the desktop if on; each hook's outcome."""
    body = sample(kind, bytes(key.verify_key), now)
    out = []
    async with httpx.AsyncClient() as client:
        for t in cfg.targets.get(kind, ()):
            error = await deliver(t, body, cfg.timeout, key, client)
            out.append({"hook": t.name, "ok": error is None, "error": error})
    if cfg.desktop:
        await desktop([json.loads(body)])
        out.append({"hook": "desktop", "ok": True, "error": None})
    return out
