"""Four eyes in a real browser: a teller asks for a large withdrawal, a supervisor finds it in the
approvals queue, sees what it will do and approves it; the maker is never offered the approval."""

import pytest
from axe_playwright_python.sync_playwright import Axe

from accounts import services
from tests.factories import AccountFactory, UserFactory
from tests.support import at_every_width, log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def log_out(page):
    page.click("text=Log out")
    page.wait_for_selector("#id_username")


def check_page(page, shot, name):
    """No serious accessibility violation, no sideways scrolling at any width, and a screenshot of each."""
    violations = [v["id"] for v in Axe().run(page).response["violations"] if v["impact"] in {"serious", "critical"}]
    assert violations == [], name
    at_every_width(page, shot, name)


def test_a_teller_asks_and_a_supervisor_who_is_not_the_maker_approves(page, shot):
    UserFactory(username="tina", role="teller")
    UserFactory(username="sam", role="supervisor")
    account = AccountFactory(owner="Zoë Holmes", initial_deposit=5_000_000)

    log_in(page, "tina")
    page.goto(f"/accounts/{account.id}/")
    page.fill("#id_withdraw-amount", "20,000.00")
    page.fill("#id_withdraw-reason", "new car")
    page.click("form[action$='/withdraw/'] button[type=submit]")
    page.click("button:has-text('Confirm')")  # the review step: the amount is above REVIEW_AT
    page.wait_for_selector("text=is waiting for a second person's approval")
    assert "would take the balance to 30,000.00 EUR" in page.inner_text(".waiting")
    assert "50,000.00 EUR" in page.inner_text(".balance")  # nothing has moved
    check_page(page, shot, "teller-asked")
    page.click(".waiting a")  # the request's page
    page.wait_for_selector("text=You asked for this")
    assert page.locator("button:has-text('Approve')").count() == 0
    log_out(page)

    log_in(page, "sam")
    page.click("#site-nav >> text=Approvals")
    page.wait_for_selector("table tbody tr")
    assert "Zoë Holmes" in page.inner_text("table tbody") and "pending" in page.inner_text("table tbody")
    check_page(page, shot, "queue")
    page.click("table tbody tr a >> nth=0")
    page.wait_for_selector("text=Waiting for a second person")
    assert "50,000.00 EUR now → 30,000.00 EUR if approved" in page.inner_text(".review")
    check_page(page, shot, "request")
    page.click("button:has-text('Approve')")
    page.wait_for_selector("text=Approved: Withdrawal of 20,000.00 EUR has run.")
    check_page(page, shot, "approved")
    assert services.get_account(account.id).balance == 3_000_000
