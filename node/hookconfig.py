"""config.toml's ``[hooks]``: what to run or call for each event (README "Notifications").

```toml
[hooks]
desktop = true        # notify-send; default: on when it exists and a display is set
timeout = 10          # seconds per command run or webhook request
retries = 8           # attempts after the first, then the event is given up (counted)
backoff = 2           # seconds before the first retry, doubled each time...
max_backoff = 3600    # ...up to this
queue = 1000          # deliveries waiting per hook; when full the oldest is dropped

[hooks.on_claim]
command = ["/usr/local/bin/on-claim", "--quiet"]   # argv, no shell; event JSON on stdin
url = "https://example.org/rill"                   # POST the event JSON, signed
```

A ``command`` given as one string is split like a shell would split words
(:func:`shlex.split`) but never run by a shell.  Event contents reach a command only
on its standard input and as two environment variables of fixed form
(``RILL_EVENT``, ``RILL_EVENT_ID``), never on its command line.
"""

from __future__ import annotations

import os
import shlex
import shutil
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

#: Event kinds, and the config key of each.
KINDS = ("claim", "receipt", "new_supporter", "month_settled")
HOOK_KEYS = {f"on_{k}": k for k in KINDS}

MAX_QUEUE = 100_000
MAX_RETRIES = 50
MAX_DELAY = 3600.0


class HookConfigError(ValueError):
    """``[hooks]`` is not valid (the message names the setting)."""


@dataclass(frozen=True)
class Target:
    """One place events of one kind go: ``on_claim.command`` or ``on_claim.url``."""

    name: str
    kind: str
    argv: tuple[str, ...] = ()
    url: str = ""


@dataclass(frozen=True)
class HookConfig:
    targets: dict[str, tuple[Target, ...]] = field(default_factory=dict)  # kind -> targets
    timeout: float = 10.0
    retries: int = 8
    backoff: float = 2.0
    queue: int = 1000
    desktop: bool = False
    max_backoff: float = MAX_DELAY

    def all_targets(self) -> list[Target]:
        return [t for k in KINDS for t in self.targets.get(k, ())]

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return float(min(self.backoff * 2 ** min(max(attempts - 1, 0), 40), self.max_backoff))


def desktop_available() -> bool:
    return shutil.which("notify-send") is not None and bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def parse_hooks(raw: dict[str, Any]) -> HookConfig:
    """``[hooks]`` of a parsed config.toml; :class:`HookConfigError`."""
    hooks = raw.get("hooks", {})
    if not isinstance(hooks, dict):
        raise HookConfigError("[hooks] must be a table")
    unknown = set(hooks) - set(HOOK_KEYS) - {"desktop", "timeout", "retries", "backoff",
                                              "max_backoff", "queue"}
    if unknown:
        raise HookConfigError(f"hooks: unknown setting(s) {', '.join(sorted(unknown))} "
                              f"(events: {', '.join(HOOK_KEYS)})")
    timeout = _number(hooks, "timeout", 10.0, 0.1, 600.0)
    backoff = _number(hooks, "backoff", 2.0, 0.01, MAX_DELAY)
    max_backoff = _number(hooks, "max_backoff", MAX_DELAY, 0.01, 86400.0)
    retries = _integer(hooks, "retries", 8, 0, MAX_RETRIES)
    queue = _integer(hooks, "queue", 1000, 1, MAX_QUEUE)
    desktop = hooks.get("desktop")
    if desktop is not None and not isinstance(desktop, bool):
        raise HookConfigError("hooks.desktop must be true or false")
    targets: dict[str, tuple[Target, ...]] = {}
    for key, kind in HOOK_KEYS.items():
        if key not in hooks:
            continue
        spec = hooks[key]
        if not isinstance(spec, dict):
            raise HookConfigError(f"hooks.{key} must be a table with command and/or url")
        extra = set(spec) - {"command", "url"}
        if extra or not spec:
            raise HookConfigError(f"hooks.{key}: give command and/or url"
                                  + (f" (not {', '.join(sorted(extra))})" if extra else ""))
        out = []
        if "command" in spec:
            out.append(Target(f"{key}.command", "command", argv=_argv(key, spec["command"])))
        if "url" in spec:
            out.append(Target(f"{key}.url", "url", url=_url(key, spec["url"])))
        targets[kind] = tuple(out)
    return HookConfig(targets, timeout, retries, backoff, queue,
                      desktop_available() if desktop is None else desktop, max_backoff)


def _argv(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise HookConfigError(f"hooks.{key}.command: {exc}") from None
    elif isinstance(value, list) and all(isinstance(a, str) for a in value):
        argv = list(value)
    else:
        raise HookConfigError(f"hooks.{key}.command must be a list of strings (argv) or "
                              "a string")
    if not argv or not argv[0] or any("\0" in a for a in argv):
        raise HookConfigError(f"hooks.{key}.command names no program")
    return tuple(argv)


def _url(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise HookConfigError(f"hooks.{key}.url must be a string")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HookConfigError(f"hooks.{key}.url must be an http:// or https:// URL, "
                              f"not {value!r}")
    return value


def _number(table: dict[str, Any], name: str, default: float, lo: float, hi: float
            ) -> float:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise HookConfigError(f"hooks.{name} must be a number of seconds {lo:g}..{hi:g}")
    return float(value)


def _integer(table: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = table.get(name, default)
    if type(value) is not int or not lo <= value <= hi:
        raise HookConfigError(f"hooks.{name} must be an integer {lo}..{hi}")
    return value
