"""Crash records of the structured fuzz: what failed, where, on which (shrunk) input.

A crash is told apart from another by (target, exception type, innermost frame inside
rill), so a soak that meets one bug a thousand times reports it once.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fuzzsign import Sample

import rill


@dataclass(frozen=True)
class Crash:
    target: str
    exc_type: str
    message: str
    where: str  # the innermost frame inside rill (or the last frame)
    input: str  # a description of the input
    raw: bytes = b""
    exc: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.target, self.exc_type, self.where)

    def line(self) -> str:
        return f"[{self.target}] {self.exc_type}: {self.message[:160]} at {self.where}"

    def __getstate__(self) -> dict[str, Any]:  # exceptions with tracebacks do not pickle
        return {**self.__dict__, "exc": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def raise_it(self) -> None:
        """Raise the original exception (its traceback points into the product, so
        hypothesis tells distinct crashes apart), with the input as a note."""
        exc = self.exc or AssertionError(self.line())
        exc.add_note(f"target: {self.target}\ninput: {self.input}")
        raise exc


_ROOT = Path(rill.__file__).resolve().parent
_NOT_OURS = (str(_ROOT / "tests"), str(_ROOT / ".venv"))


def _ours(filename: str) -> bool:
    return filename.startswith(str(_ROOT)) and not filename.startswith(_NOT_OURS)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if _ours(f.filename)]
    f = (ours or frames or [None])[-1]
    if f is None:
        return "?"
    return f"{Path(f.filename).name}:{f.lineno} {f.name}"


def crash(target: str, exc: BaseException, what: str, raw: bytes = b"") -> Crash:
    return Crash(target, type(exc).__name__, str(exc), _where(exc), what, raw, exc)


# -- shrinking ---------------------------------------------------------------------------------


def shrink(s: Sample, fails: Callable[[Sample], bool], rounds: int = 2) -> Sample:
    """Make ``s`` smaller while ``fails`` holds: shorter lists, small ints, short texts."""
    if not isinstance(s.body, dict):
        return s
    best = s
    for _ in range(rounds):
        changed = False
        for key in sorted(best.body):
            value = best.body[key]
            for simpler in _simpler(value):
                trial = replace(best, body={**best.body, key: simpler})
                trial.__dict__.pop("raw", None)
                trial.__dict__.pop("body_bytes", None)
                if fails(trial):
                    best, changed = trial, True
                    break
        if not changed:
            break
    return best


def _simpler(value: Any) -> list[Any]:
    if isinstance(value, list) and len(value) > 1:
        return [value[:1], value[: len(value) // 2]]
    if type(value) is int and value > 1:
        return [0, 1]
    if isinstance(value, str) and len(value) > 1 and not value[:1].isdigit():
        return ["a", value[:1]]
    return []


def save(directory: Path, c: Crash, n: int) -> Path:
    """Write a crash's input (bytes) and description where a person can replay it."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"crash{n:03d}-{c.target.replace(' ', '_')}-{c.exc_type}"
    stem.with_suffix(".txt").write_text(f"{c.line()}\ninput: {c.input}\n")
    if c.raw:
        stem.with_suffix(".bin").write_bytes(c.raw)
    return stem


def dedupe(crashes: Iterable[Crash]) -> dict[tuple[str, str, str], Crash]:
    out: dict[tuple[str, str, str], Crash] = {}
    for c in crashes:
        out.setdefault(c.key, c)
    return out
