"""Open an HTML report in Debian's headless Chromium through playwright (no downloaded browser), recording console
errors and every network request. Missing Chromium or playwright skips the test locally and fails it on CI."""
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; .ci/run installs it")
    pytest.skip(f"{what} is missing")


@contextmanager
def open_page(html: Path):
    """Yields (page, console errors, requested URLs) for `html` loaded from disk."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package (the test extra)")
    if not CHROMIUM.exists():
        _missing(f"Chromium ({CHROMIUM}, Debian package chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            errors, requests = [], []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(html.resolve().as_uri(), wait_until="load")
            yield page, errors, requests
        finally:
            browser.close()


def assert_shown(page, selector: str, count: int | None = None, min_width: float = 100, min_height: float = 10):
    """Every element matching `selector` is visible with a real size on the rendered page; returns how many."""
    found = page.locator(selector)
    n = found.count()
    assert n >= 1 if count is None else n == count, f"{selector}: {n} found"
    for i in range(n):
        element = found.nth(i)
        element.scroll_into_view_if_needed()
        box = element.bounding_box()
        assert element.is_visible() and box and box["width"] >= min_width and box["height"] >= min_height, \
            f"{selector} #{i} is not shown: {box}"
    return n


def screenshot(page, path: Path) -> Path:
    """A full-page screenshot, also copied to $PERFAGENT_SCREENSHOT_DIR when set."""
    page.screenshot(path=str(path), full_page=True)
    folder = os.environ.get("PERFAGENT_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(folder) / path.name)
    return path
