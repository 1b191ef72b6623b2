"""A day at the bank in a real browser: teller, then supervisor, then the past and the audit log."""

import time

import pytest

from accounts import services
from accounts.models import Account
from eventstore.store import EventStore
from tests.factories import AccountFactory, UserFactory
from tests.support import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def log_out(page):
    page.click("text=Log out")
    page.wait_for_selector("#id_username")


def test_teller_and_supervisor_work_an_account_through_the_browser(page, shot):
    UserFactory(username="tina", role="teller")
    UserFactory(username="sam", role="supervisor")
    landlord = AccountFactory(owner="Landlord Ltd", initial_deposit=0)

    log_in(page, "tina")
    shot(page, "teller-dashboard")

    page.click("text=Open account")
    page.fill("#id_owner", "Browser Customer")
    page.select_option("#id_currency", "EUR")
    page.fill("#id_initial_deposit", "100.00")
    shot(page, "open-form")
    page.click("button:has-text('Open account')")
    page.wait_for_selector("text=Opened an account for Browser Customer")
    account = services.get_account(Account.objects.get(owner="Browser Customer").account_id)
    shot(page, "opened")

    page.fill("#id_deposit-amount", "25.50")
    page.fill("#id_deposit-source", "cash")
    page.click("button:has-text('Deposit')")
    page.wait_for_selector("text=Deposited 25.50 EUR into the account of")
    assert "125.50 EUR" in page.inner_text(".balance")
    shot(page, "deposited")
    deposited_at = EventStore().load(account.id)[-1].created_at
    time.sleep(1.1)  # what follows falls in a later second than the deposit, which the past view below names

    page.fill("#id_withdraw-amount", "1000.00")
    page.fill("#id_withdraw-reason", "new car")
    page.click("button:has-text('Withdraw')")
    page.wait_for_selector("text=Withdraw refused: Insufficient funds")
    assert page.input_value("#id_withdraw-amount") == "1000.00"  # the form is kept, on the account page
    assert page.url.split("?")[0].endswith(f"/accounts/{account.id}/")  # F5 posts nothing
    assert page.evaluate("document.activeElement.id") == "id_withdraw-amount"  # the focus is on the form
    shot(page, "withdraw-refused")

    page.fill("#id_withdraw-amount", "20.00")
    page.click("button:has-text('Withdraw')")
    page.wait_for_selector("text=Withdrew 20.00 EUR from the account of")
    shot(page, "withdrew")

    page.fill("#id_transfer-to_account", landlord.owner.split()[-1].lower())  # found by name
    page.fill("#id_transfer-amount", "5.50")
    page.fill("#id_transfer-reference", "rent")
    page.click("button:has-text('Transfer')")
    page.wait_for_selector("text=Nothing has been done yet")
    assert landlord.owner in page.inner_text(".review") and "5.50 EUR" in page.inner_text(".review")
    shot(page, "transfer-review")
    page.click("button:has-text('Confirm')")
    page.wait_for_selector("text=Transferred 5.50 EUR")
    assert "100.00 EUR" in page.inner_text(".balance")
    assert page.locator("button:has-text('Freeze')").count() == 0  # not a teller's command
    shot(page, "transferred")
    log_out(page)

    log_in(page, "sam")
    page.goto(f"/accounts/{account.id}/")
    page.fill("#id_freeze-reason", "fraud check")
    page.click("button:has-text('Freeze')")
    page.click("button:has-text('Confirm')")
    page.wait_for_selector("text=Froze the account of")
    assert services.get_account(account.id).status == "frozen"
    shot(page, "frozen")

    page.fill("#id_as_of", deposited_at.strftime("%Y-%m-%d %H:%M:%S"))  # the deposit's time as the trail shows it
    page.click("button:has-text('Show')")
    page.wait_for_selector("text=Past view")
    assert "125.50 EUR" in page.inner_text(".balance")
    assert "at version 2" in page.inner_text(".past-banner")
    assert page.locator("td:has-text('Withdrawal')").count() == 0
    shot(page, "as-of-after-the-deposit")

    page.click("text=Audit log")
    page.select_option("#id_event_type", "TransferSent")
    page.fill("#id_account", str(account.id))
    page.click("button:has-text('Filter')")
    page.wait_for_selector("td:has-text('Transfer sent to')")
    rows = page.locator("table tbody tr")
    assert rows.count() == 1 and "rent" in rows.first.inner_text()
    shot(page, "audit-filtered")
