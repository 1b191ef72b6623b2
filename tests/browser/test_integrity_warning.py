"""An account with an event that cannot be read, as a teller sees it on a desk and on a phone."""

import pytest

from accounts import services
from tests.factories import AccountFactory, UserFactory
from tests.support import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.mark.parametrize("width", [1366, 390])
def test_the_integrity_warning_is_seen_whole_and_no_command_is_offered(page, shot, tamper, width):
    UserFactory(username="tina", role="teller")
    account = AccountFactory(owner="Held Account", initial_deposit=1_000)
    tamper(account.id, "Deposited", {"source": "no amount"})  # removed after the test: the log outlives it
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, "tina")
    page.goto(f"/accounts/{account.id}/")
    banner = page.locator(".integrity-banner[role=alert]")
    banner.wait_for()
    assert "Version 2 of this account (Deposited) cannot be read" in banner.inner_text()
    assert "Nothing was done" not in banner.inner_text()  # said of refused commands, not of a page view
    box = banner.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width  # readable without scrolling sideways
    assert page.locator("#id_deposit-amount").count() == 0
    assert "10.00 EUR" in page.inner_text(".balance")
    shot(page, f"integrity-warning-{width}")
    assert services.get_account(account.id, version=1).balance == 1_000
