"""Playwright driving Debian's Chromium (installed by .ci/run) against the live test server."""

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Root in a container needs --no-sandbox; the machine's closed network needs the
# background services off, or Chromium keeps trying to reach Google.
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"



@contextmanager
def chromium_page(live_server, monkeypatch, *, back_forward_cache: bool = False):
    """A Chromium page on the live test server, started after (and stopped before) the database.

    Playwright turns Chromium's back-forward cache off; `back_forward_cache` keeps it on.
    """
    if not shutil.which(CHROMIUM):
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(f"REQUIRE_BROWSER is set but there is no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium package (as .ci/run does)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the test's
    # own ORM calls (set-up and checks) are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=FLAGS,
            ignore_default_args=["--disable-back-forward-cache"] if back_forward_cache else None,
        )  # fmt: skip
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        browser.close()
        # ORM calls made while the loop ran opened connections of their own context.
        connections.close_all()


@pytest.fixture
def page(live_server, monkeypatch):
    with chromium_page(live_server, monkeypatch) as page:
        yield page


@pytest.fixture
def shot(request):
    """shot(page, "name"): a full-page screenshot under test-output/browser/<test>/."""
    folder = SCREENSHOTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 100))

    def take(page, name):
        page.screenshot(path=str(folder / f"{next(counter):02d}-{name}.png"), full_page=True)

    return take
