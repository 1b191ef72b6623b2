"""axe-core on every staff page, for each role, before and after a command: no violation a screen
reader user or a keyboard user would be stopped by (impact serious or critical)."""

import pytest
from axe_playwright_python.sync_playwright import Axe

from accounts import services
from tests.factories import AccountFactory, UserFactory
from tests.support import log_in

BLOCKING = {"serious", "critical"}


def blocking(page):
    found = Axe().run(page).response["violations"]
    return [(v["id"], [node["target"] for node in v["nodes"]][:3]) for v in found if v["impact"] in BLOCKING]


@pytest.mark.parametrize("role", ["teller", "supervisor", "auditor"])
def test_no_page_has_a_serious_accessibility_violation_for_any_role(page, shot, role):
    UserFactory(username="staff", role=role)
    account = AccountFactory(owner="Zoë Holmes", initial_deposit=100_000, with_history=4)
    AccountFactory(owner="Zoë Ferreira")
    frozen = AccountFactory(owner="Frozen Customer")
    services.freeze(account_id=frozen.id, reason="suspected fraud")
    log_in(page, "staff")
    pages = [
        "/",
        "/accounts/?q=zoe",
        f"/accounts/{account.id}/",
        f"/accounts/{frozen.id}/",
        f"/accounts/{account.id}/?version=2",
        "/audit/?until=2000-01-01 00:00:00&since=2001-01-01 00:00:00",
    ]
    if role != "auditor":
        pages.append("/accounts/open/")
    for path in pages:
        page.goto(path)
        assert blocking(page) == [], path
    if role == "auditor":
        return
    page.goto(f"/accounts/{account.id}/")
    page.fill("#id_withdraw-amount", "lots")  # a form sent back with its errors
    page.fill("#id_withdraw-reason", "x")
    page.click("form[action$='/withdraw/'] button[type=submit]")
    page.wait_for_selector(".error-summary")
    assert blocking(page) == [], "a form sent back"
    page.fill("#id_transfer-to_account", "zoe ferr")
    page.fill("#id_transfer-amount", "12.50")
    page.fill("#id_transfer-reference", "rent")
    page.click("form[action$='/transfer/'] button[type=submit]")
    page.wait_for_selector("text=Nothing has been done yet")
    assert blocking(page) == [], "the review step"
    page.click("button:has-text('Confirm')")
    page.wait_for_selector("text=Transferred 12.50 EUR")
    shot(page, f"after-a-command-{role}")
    assert blocking(page) == [], "after a command"


def test_a_teller_reaches_the_deposit_form_in_a_few_key_presses(page):
    UserFactory(username="tina", role="teller")
    account = AccountFactory()
    log_in(page, "tina")
    page.goto(f"/accounts/{account.id}/")
    for key in ("Tab", "Enter", "Tab", "Enter"):  # the skip link, then the first command's link
        page.keyboard.press(key)
    assert page.evaluate("document.activeElement.id") == "id_deposit-amount"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_the_health_pages_have_no_serious_accessibility_violation(page, path):
    page.goto(path)  # anyone may ask: no login
    assert page.title(), path
    assert blocking(page) == [], path
