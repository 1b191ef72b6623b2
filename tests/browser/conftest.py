"""Playwright driving Debian's Chromium (installed by .ci/run) against the live test server."""

from pathlib import Path

import pytest

from tests.support import chromium_page

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"


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
