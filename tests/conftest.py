from __future__ import annotations

from typing import Any

import pytest
from helpers import load_vectors


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return load_vectors()


@pytest.fixture
def browser() -> Any:
    """A headless Chromium (playwright), for the browser tests; skipped without one."""
    from playwright.sync_api import sync_playwright
    from webenv import CHROMIUM, CHROMIUM_ARGS, need_browser

    need_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
