"""The daemon process's memory: what it never loads, and what it gives back after start.

``rill node run`` calls :func:`skip_unused_imports` before anything imports libp2p, then
:func:`after_start` once the node runs and :func:`trim_every` while it runs
(docs/BENCHMARKS.md, "node resources": idle RSS).
Both act on the whole process, so only the daemon's entry point calls them, never the
Daemon class (tests run many daemons in one process).

py-libp2p 0.8.1 imports every transport and extra it ships (QUIC, WebSocket, AutoTLS,
mDNS...) whether used or not: most of a daemon's memory is that import.  A few modules
in that import are optional for the libraries that import them, which fall back to a
documented alternative when they are missing; the daemon never uses what they provide.
Marking them missing (``sys.modules[name] = None``, which makes an import of them raise
ImportError) keeps them out of the process.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import sys
import warnings
from collections.abc import Callable
from typing import cast

import trio

#: modules the daemon does without: name -> why it is not needed, what the importer does
#: instead, and about how much memory it saves (measured on x86_64, Python 3.11)
UNUSED: dict[str, str] = {
    "httpx._main": "httpx's command-line client (rich, pygments; ~3 MB): httpx defines a "
                   "stub `main` instead; the daemon only uses httpx.AsyncClient",
    "charset_normalizer": "requests' guess of a response's encoding (~2.4 MB): requests is "
                          "only imported by libp2p's AutoTLS, which Rill does not use",
    "cffi": "pycryptodome's cffi backend (~0.9 MB): it uses its ctypes backend instead; "
            "libp2p needs pycryptodome only for RSA and secio keys, never used by Rill",
}


def skip_unused_imports() -> None:
    """Keep :data:`UNUSED` modules out of this process (call before importing libp2p;
    a module already imported stays)."""
    for name in UNUSED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    # requests says once, at import, that it found no charset_normalizer/chardet
    warnings.filterwarnings("ignore", message="Unable to find acceptable character detection")


@functools.cache
def _trim_function() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast(Callable[[int], int], trim)


def malloc_trim() -> None:
    """Give the C heap's free pages back to the system (~2 ms; glibc only)."""
    trim = _trim_function()
    if trim is not None:
        trim(0)


def after_start() -> None:
    """Once the node runs: collect start-up garbage, move what is left (modules, classes:
    ~100,000 tracked objects that live as long as the process) out of the collector's
    reach (``gc.freeze``: later collections skip them), and return the freed C heap to
    the system."""
    gc.collect()
    gc.freeze()
    malloc_trim()


#: seconds between two :func:`malloc_trim` calls while the node runs
TRIM_INTERVAL = 30.0


async def trim_every(seconds: float = TRIM_INTERVAL) -> None:
    """:func:`malloc_trim` every ``seconds``: what site checks (a TLS context each), sync
    and month end free stays in glibc's heap otherwise."""
    while True:
        await trio.sleep(seconds)
        malloc_trim()
