"""Playwright driving Debian's Chromium (installed by .ci/run) against the live test server."""

from pathlib import Path

import pytest

from tests.support import chromium, page_on

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"


@pytest.fixture(scope="module")
def browser():
    """One Chromium for a module's tests (starting one costs a second); each test has its own page."""
    with pytest.MonkeyPatch.context() as monkeypatch, chromium(monkeypatch) as browser:
        yield browser


@pytest.fixture
def page(browser, live_server):
    with page_on(browser, live_server) as page:
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
