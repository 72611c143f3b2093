"""The daemon process's memory (node/footprint.py): modules it does without, and an idle
`rill node run` under 100 MB (docs/BENCHMARKS.md measures the same on ten nodes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nodes import free_port
from procnet import ProcNode

from rill.node import footprint
from rill.node.footprint import UNUSED
from rill.protocol.months import month_start

PROBE = """
import hashlib, json, sys
from rill.node import footprint
footprint.skip_unused_imports()
import rill.node.daemon  # libp2p and everything the daemon imports

loaded = sorted({m for m in ("rich", "pygments", "charset_normalizer", "cffi", "pycparser",
                             *footprint.UNUSED) if sys.modules.get(m) is not None})
# what the importers fall back to still works
from Crypto.Hash import SHA256
from Crypto.Cipher import AES
import httpx, requests
digest_ok = SHA256.new(b"rill").hexdigest() == hashlib.sha256(b"rill").hexdigest()
aes = AES.new(bytes(16), AES.MODE_ECB).encrypt(bytes(16)).hex()
print(json.dumps({"loaded": loaded, "digest_ok": digest_ok, "aes": aes,
                  "httpx_client": type(httpx.AsyncClient()).__name__,
                  "requests": requests.__name__}))
"""


def test_the_daemon_process_does_without_unused_modules() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120, check=True)
    import json

    out = json.loads(proc.stdout)
    assert out["loaded"] == []
    assert out["digest_ok"]
    assert out["aes"] == "66e94bd4ef8a2c3b884cfa59ca342b2e"  # FIPS-197 zero key/block
    assert out["httpx_client"] == "AsyncClient" and out["requests"] == "requests"
    assert "character detection" not in proc.stderr  # requests' warning is silenced
    assert set(UNUSED) >= {"httpx._main", "charset_normalizer", "cffi"}


@pytest.mark.skipif(footprint._trim_function() is None, reason="not glibc")
def test_malloc_trim_gives_freed_heap_back() -> None:
    """Blocks below glibc's mmap threshold, nine in ten freed: the holes stay resident
    until malloc_trim."""
    blocks = [b"\x01" * 65536 for _ in range(800)]
    kept = blocks[::10]
    del blocks
    before = _rss_mb(os.getpid())
    footprint.malloc_trim()
    after = _rss_mb(os.getpid())
    assert before - after > 20, (before, after)
    assert all(b[0] == 1 for b in kept)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_an_idle_daemon_stays_under_100_mb(tmp_path: Path) -> None:
    """One `rill node run` with its dashboard on, as `make bench` runs ten of them."""
    node = ProcNode(tmp_path, "solo", month_start("2026-10") + 3600)
    try:
        node.start([], dashboard_port=free_port())
        node.wait_started()
        assert node.rill("node", "status")["peers"] == 0  # the daemon answers
        assert node.proc is not None
        rss = _rss_mb(node.proc.pid)
        assert rss < 100, f"idle daemon RSS {rss:.1f} MB"
    finally:
        assert node.stop() == 0
