"""Helpers for browser tests: a static site on 127.0.0.1; checks of a page (horizontal
scroll, axe-core's WCAG 2.1 AA rules) and screenshots."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(os.environ.get("RILL_ARTIFACTS", Path(__file__).parent / "artifacts"))
DOCS_SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"


def need_browser() -> None:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (`.ci/run` and `make test` install it as root)")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def static_site(root: Path) -> Iterator[int]:
    """Serve ``root`` on 127.0.0.1 (an ephemeral port) in a thread."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- checks of a page in the browser (Playwright's sync API) --------------------------------

def horizontal_overflow(page: Any) -> str | None:
    """None if the page fits its viewport's width, else what is wider and by how much."""
    got = page.evaluate("""() => {
        const d = document.documentElement, w = window.innerWidth;
        if (d.scrollWidth <= w) return null;
        const wide = Array.from(document.querySelectorAll('body *'))
            .filter(e => e.getBoundingClientRect().right > w + 0.5)
            .filter(e => !e.closest('.scroll'))
            .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')
                              + ' right=' + Math.round(e.getBoundingClientRect().right));
        return 'scrollWidth ' + d.scrollWidth + ' > ' + w + ': ' + wide.join(', ');
    }""")
    return None if got is None else str(got)


#: axe-core's rule tags for WCAG 2.0 and 2.1, levels A and AA
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_violations(page: Any) -> list[str]:
    """axe-core's WCAG 2.1 A/AA violations on the page (contrast, labels, names...), one
    line each: rule, impact, and the first offending elements.

    Where axe cannot decide a text's contrast (a cell scrolled out of its table's box,
    text in an SVG) it is computed here instead (:data:`CONTRAST_JS`: the WCAG formula on
    the computed colour and the nearest opaque background); below AA, or over a
    background image, it is a violation too."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_AA},
                                       "resultTypes": ["violations", "incomplete"]})
    out = []
    for v in results.response["violations"]:
        nodes = "; ".join(f"{n['target']}: {n.get('failureSummary', '')[:160]}"
                          for n in v["nodes"][:3])
        out.append(f"{v['id']} ({v['impact']}): {nodes}")
    for v in results.response["incomplete"]:
        if v["id"] != "color-contrast":
            continue
        for n in v["nodes"]:
            got = page.evaluate(CONTRAST_JS, n["target"][0])
            if not got["ok"]:
                out.append(f"color-contrast (computed): {n['target']}: {got}")
    return out


#: The contrast of one element's text against the nearest opaque background behind it
#: (WCAG 2.1: relative luminance; AA wants 4.5:1, or 3:1 for large text).
CONTRAST_JS = """(selector) => {
  const el = document.querySelector(selector);
  if (!el) return {ok: false, why: 'not found'};
  const rgba = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3]));
  const lum = (c) => {
    const [r, g, b] = c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92
                                     : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const s = getComputedStyle(e);
    if (s.backgroundImage !== 'none') return {ok: false, why: 'background image on ' + e.tagName};
    const b = rgba(s.backgroundColor);
    if (b && b[3] > 0) { layers.push(b); if (b[3] >= 1) break; }
  }
  let bg = [255, 255, 255];
  for (const l of layers.reverse()) bg = over(l, bg);
  const s = getComputedStyle(el);
  const fg = rgba(el instanceof SVGElement ? s.fill : s.color);
  if (!fg) return {ok: false, why: 'no colour'};
  const text = over(fg, bg);
  const [hi, lo] = [lum(text), lum(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  const size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight) >= 700;
  const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
  return {ok: ratio >= need, ratio: Math.round(ratio * 100) / 100, need: need};
}"""


def screenshot(page: Any, name: str) -> None:
    """A full-page screenshot into tests/artifacts, and into docs/screenshots when
    RILL_DOCS_SCREENSHOTS=1 (those are committed and shown in README)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
    if os.environ.get("RILL_DOCS_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOTS / f"dashboard-{name}.png"), full_page=True)
