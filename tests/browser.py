"""A headless Chromium for the tests of pages the central serves: Debian's `chromium`,
driven by playwright with `executable_path` (playwright's own browser downloads are not
reachable here). `.ci/run` installs the package; without it the browser tests are skipped,
saying why, unless TILLPOINT_REQUIRE_BROWSER is set (CI sets it): then they fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest

CHROMIUM = os.environ.get("TILLPOINT_CHROMIUM", "/usr/bin/chromium")


def chromium_problem() -> str | None:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
async def browser_page() -> AsyncIterator[object]:
    """A new page in a headless Chromium of its own, closed afterwards."""
    if problem := chromium_problem():
        if os.environ.get("TILLPOINT_REQUIRE_BROWSER"):
            pytest.fail(problem)
        pytest.skip(problem)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            # Root in a container has no user namespaces for Chromium's sandbox.
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = await browser.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            await browser.close()
