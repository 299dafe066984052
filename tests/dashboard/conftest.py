"""A real headless Chromium (Debian's package, driven by Playwright) for dashboard tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from tests.dashboard.chromium import CHROMIUM, CHROMIUM_ARGS, chromium_installed


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not chromium_installed():
        pytest.fail("Chromium is missing: `apt-get install chromium` (.ci/run installs it)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()
