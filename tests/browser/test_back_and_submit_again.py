"""Back, then submit again: whatever the browser shows, the same form stores nothing twice.

Chromium runs once with its back-forward cache (the page comes back as it was
left, typed values and all) and once without it (Playwright's default: the page
is loaded again, from the browser's cache or the server, without the amount
typed). Either way the form carries the keys of the page it was on.
"""

import pytest

from accounts import services
from accounts.models import Account
from eventstore.store import EventStore
from tests.factories import AccountFactory, UserFactory
from tests.support import chromium, log_in, page_on

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module", params=["back-forward cache on", "back-forward cache off"])
def cache_and_browser(request):
    """A Chromium with its back-forward cache on, and one with it off, each started once for the module."""
    cache_on = request.param == "back-forward cache on"
    with pytest.MonkeyPatch.context() as monkeypatch, chromium(monkeypatch, back_forward_cache=cache_on) as browser:
        yield cache_on, browser


@pytest.fixture
def browser_page(cache_and_browser, live_server):
    cache_on, browser = cache_and_browser
    with page_on(browser, live_server) as page:
        yield page, cache_on


def mark(page):
    """Leave a mark in the form page's memory: only the back-forward cache brings it back."""
    page.evaluate("window.__form_page = true")


def go_back(page, cache_on):
    """Back to the marked page, and check it came back the way this run means it to."""
    page.go_back(wait_until="commit")  # a page restored from the cache fires no load event
    page.wait_for_function("document.readyState === 'complete'")
    restored = page.evaluate("window.__form_page === true")
    assert restored == cache_on, "the back-forward cache did not behave as this run expects"


def test_opening_an_account_then_back_and_submit_again_opens_one(browser_page, shot):
    page, cache_on = browser_page
    UserFactory(username="tina", role="teller")
    log_in(page, "tina")
    page.click("text=Open account")
    page.fill("#id_owner", "Back Button Customer")
    page.fill("#id_initial_deposit", "100.00")
    mark(page)
    page.click("button:has-text('Open account')")
    page.wait_for_selector("text=Opened an account for Back Button Customer")

    go_back(page, cache_on)
    shot(page, "after-back")
    if page.locator("#id_owner").count():
        assert page.input_value("#id_owner") == "Back Button Customer"
        page.click("button:has-text('Open account')")
        page.wait_for_selector("text=Already done: an account was opened for Back Button Customer")
    else:
        page.wait_for_selector("text=Already done: this form opened an account for Back Button Customer")
    shot(page, "after-the-second-submit")
    assert Account.objects.filter(owner="Back Button Customer").count() == 1


@pytest.mark.parametrize("command", ["deposit", "transfer"])
def test_a_money_command_then_back_and_submit_again_moves_money_once(browser_page, command, shot):
    page, cache_on = browser_page
    UserFactory(username="tina", role="teller")
    account = AccountFactory(owner="Payer", initial_deposit=10_000)
    payee = AccountFactory(owner="Payee", initial_deposit=0)
    log_in(page, "tina")
    page.goto(f"/accounts/{account.id}/")
    if command == "transfer":
        page.fill("#id_transfer-to_account", str(payee.id))
        page.fill("#id_transfer-reference", "rent")
    else:
        page.fill("#id_deposit-source", "cash")
    page.fill(f"#id_{command}-amount", "25.50")
    if command == "deposit":
        mark(page)
    page.click(f"form[action$='/{command}/'] button[type=submit]")
    if command == "transfer":  # every transfer is reviewed first
        page.wait_for_selector("text=Nothing has been done yet")
        mark(page)
        page.click("button:has-text('Confirm')")
    done = "Deposited 25.50 EUR into" if command == "deposit" else "Transferred 25.50 EUR"
    page.wait_for_selector(f"text={done}")

    go_back(page, cache_on)
    shot(page, "after-back")
    if command == "transfer":  # Back on the review page, whose Confirm sends the same key again
        page.click("button:has-text('Confirm')")
        page.wait_for_selector(f"text=Already done: {done}")
    elif page.locator(f"#id_{command}-amount").count():
        # The cache keeps what was typed; a page loaded again does not restore an amount
        # (autocomplete is off for money), so the member of staff types it again.
        assert page.input_value(f"#id_{command}-amount") == ("25.50" if cache_on else "")
        page.fill(f"#id_{command}-amount", "25.50")
        page.click(f"form[action$='/{command}/'] button[type=submit]")
        page.wait_for_selector(f"text=Already done: {done}")
    else:
        page.wait_for_selector(f"text=Already done: this page's {command} form was submitted")
    shot(page, "after-the-second-submit")
    expected = 10_000 + 2_550 if command == "deposit" else 10_000 - 2_550
    assert services.get_account(account.id).balance == expected
    moved = [e for e in EventStore().load(account.id) if e.event_type in ("Deposited", "TransferSent")]
    assert len(moved) == 1
