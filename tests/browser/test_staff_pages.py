"""The staff pages as each role uses them in a real browser: reading an account, the dashboard,
finding things, frozen and closed accounts, messages, a form that can no longer be trusted,
the exports and the admin. Each test saves a screenshot of what it checked at the four widths."""

import csv
import io
import re

import pytest

from accounts import services
from accounts.projections import bank_totals
from eventstore import context
from eventstore.store import EventStore
from tests.factories import AccountFactory, UserFactory, approved
from tests.support import at_every_width, caught_up, log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROLES = ["teller", "supervisor", "auditor"]
CHANGERS = ["teller", "supervisor"]
MINUS = "\u2212"


def a_transfer_between(payer_owner, payee_owner, *, actor="sam"):
    payer = AccountFactory(owner=payer_owner, initial_deposit=100_000)
    payee = AccountFactory(owner=payee_owner, initial_deposit=0)
    with context.metadata_context(actor=actor):
        services.withdraw(account_id=payer.id, amount=2_000, reason="cash for the weekend")
        services.transfer(from_account_id=payer.id, to_account_id=payee.id, amount=45_000, reference="rent")
    return payer, payee


@pytest.mark.parametrize("role", ROLES)
def test_an_accounts_trail_reads_in_money_names_and_links(page, shot, role):
    UserFactory(username="staff", role=role)
    payer, payee = a_transfer_between("Zoë Holmes", "Landlord Ltd")
    log_in(page, "staff")

    page.goto(f"/accounts/{payee.id}/")
    received = page.locator("table").first.locator("tbody tr", has_text="Transfer received from")  # the trail
    assert "Zoë Holmes" in received.inner_text() and "+450.00 EUR" in received.inner_text()
    received.locator("a", has_text="Zoë Holmes").click()  # the counterparty is a link to the other account
    page.wait_for_selector("h1:has-text('Zoë Holmes')")

    rows = page.locator("table").first.locator("tbody tr")
    assert rows.count() == 3  # newest first: the transfer, the withdrawal, the opening
    sent, withdrawn = rows.nth(0).inner_text(), rows.nth(1).inner_text()
    assert "Transfer sent to" in sent and "Landlord Ltd" in sent and f"{MINUS}450.00 EUR" in sent
    assert f"{MINUS}20.00 EUR" in withdrawn and "980.00 EUR" in withdrawn  # signed, with the balance after it
    assert "530.00 EUR" in sent

    table = page.locator("table").first
    width_before = table.bounding_box()["width"]
    rows.nth(0).locator("summary").click()  # the row's data, opened
    assert rows.nth(0).locator("pre").first.is_visible()
    assert table.bounding_box()["width"] <= width_before + 1, "opening a row's data widened the table"
    at_every_width(page, shot, f"trail-{role}")

    rows.nth(1).locator("a[title^='View the account as of version']").click()  # the withdrawal's version
    page.wait_for_selector(".past-banner")
    assert "at version 2" in page.inner_text(".past-banner") and "980.00 EUR" in page.inner_text(".balance")
    assert "Transactions up to version 2" in page.inner_text("body")  # the statement follows the past view
    month = page.input_value("#id_month")
    assert re.fullmatch(r"\d{4}-\d\d", month)  # the month picker shows the month displayed
    at_every_width(page, shot, f"past-view-{role}")


@pytest.mark.parametrize("role", ROLES)
def test_the_dashboards_figures_lead_to_the_lists_they_count(page, shot, role):
    UserFactory(username="staff", role=role)
    a_transfer_between("Zoë Holmes", "Landlord Ltd")
    frozen = AccountFactory(owner="Frozen Customer")
    AccountFactory(owner="Yen Saver", currency="JPY", initial_deposit=5_000)
    with context.metadata_context(actor="sam"):
        services.freeze(account_id=frozen.id, reason="suspected fraud")
    caught_up(bank_totals)  # as the runner would, soon after
    log_in(page, "staff")

    latest = page.locator("table").first.inner_text()
    assert f"{MINUS}450.00 EUR" in latest and "Zoë Holmes" in latest and "Landlord Ltd" in latest
    at_every_width(page, shot, f"dashboard-{role}")

    page.click("a.stat:has-text('frozen accounts')")
    page.wait_for_url("**/accounts/?status=frozen")
    listed = page.locator("table tbody tr")
    assert listed.count() == 1 and "Frozen Customer" in listed.first.inner_text()

    page.goto("/")
    page.click("a[href='/accounts/?currency=JPY']")  # the JPY row's count of accounts
    page.wait_for_url("**/accounts/?currency=JPY")
    assert page.locator("table tbody tr").count() == 1 and "Yen Saver" in page.inner_text("table tbody")


@pytest.mark.parametrize("role", ROLES)
def test_search_finds_names_without_their_accents_and_ids_by_their_first_characters(page, shot, role):
    UserFactory(username="staff", role=role)
    zoe = AccountFactory(owner="Zoë Holmes")
    AccountFactory(owner="ZOE LIMA"), AccountFactory(owner="Arthur Dent")
    log_in(page, "staff")

    def search(text):
        page.goto("/accounts/")
        page.fill("#q", text)
        page.click("form[role=search] button[type=submit]")
        page.wait_for_selector("table tbody tr")
        return page.locator("table tbody tr td:first-child").all_inner_texts()

    assert sorted(search("zoe")) == ["ZOE LIMA", "Zoë Holmes"]
    assert "2 accounts" in page.inner_text("body")  # a count, where one page holds them all
    at_every_width(page, shot, f"search-{role}")
    assert search("holmes ZOË") == ["Zoë Holmes"]  # several words, in any order
    assert search(str(zoe.id)[:8]) == ["Zoë Holmes"]  # the first characters of the id
    page.goto(f"/accounts/?q=zoe&after=2000-01-01T00:00:00%2B00:00_{zoe.id}")  # past the last page: a way back
    assert page.locator("a:has-text('Next')").count() == 0 and page.locator("a:has-text('First page')").count() == 1


@pytest.mark.parametrize("role", ROLES)
def test_the_audit_log_offers_the_staff_who_acted_and_says_when_a_range_is_backwards(page, shot, role):
    UserFactory(username="staff", role=role)
    UserFactory(username="sam", role="supervisor")
    payer, _ = a_transfer_between("Zoë Holmes", "Landlord Ltd", actor="sam")
    log_in(page, "staff")
    page.goto("/audit/")
    offered = page.locator("datalist#actors option").evaluate_all("options => options.map(o => o.value)")
    assert {"sam", "staff"} <= set(offered) and page.get_attribute("#id_actor", "list") == "actors"
    page.fill("#id_actor", "sam")
    page.click("button:has-text('Filter')")
    page.wait_for_selector("tbody tr")
    assert page.locator("tbody tr").count() == 3  # the withdrawal and both sides of the transfer

    written = EventStore().load(payer.id)[-1].created_at.strftime("%Y-%m-%d %H:%M:%S")  # as the pages show times
    page.goto("/audit/")
    page.fill("#id_since", written)
    page.fill("#id_until", written)
    page.click("button:has-text('Filter')")
    page.wait_for_selector("tbody tr")
    assert "Transfer sent to" in page.inner_text("tbody")

    page.fill("#id_since", "2026-02-01 00:00:00")
    page.fill("#id_until", "2026-01-01 00:00:00")
    page.click("button:has-text('Filter')")
    page.wait_for_selector(".errorlist")
    assert "before" in page.inner_text(".errorlist").lower() and "UTC" in page.inner_text("label[for=id_since]")
    at_every_width(page, shot, f"audit-backwards-{role}")


@pytest.mark.parametrize("role", ROLES)
def test_a_frozen_or_closed_account_says_since_when_by_whom_why_and_who_can_lift_it(page, shot, role):
    UserFactory(username="staff", role=role)
    frozen, closed = AccountFactory(owner="Frozen Customer"), AccountFactory(owner="Closed Customer", initial_deposit=0)
    with context.metadata_context(actor="sam"):
        services.freeze(account_id=frozen.id, reason="suspected fraud")
    approved("close_account", account_id=closed.id, reason="customer moved abroad", checker="sam")
    log_in(page, "staff")

    page.goto(f"/accounts/{frozen.id}/")
    banner = page.inner_text(".status-banner")
    assert re.search(r"Frozen since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by sam: “suspected fraud”", banner)
    assert "Blocked: deposits, withdrawals, and transfers" in banner and "supervisor can unfreeze it" in banner
    assert "Your role can read this account but not change it" not in page.inner_text("body")
    assert page.locator("#id_deposit-amount").count() == 0  # nothing is offered that the freeze blocks
    assert (page.locator("#id_unfreeze-reason").count() == 1) is (role == "supervisor")
    at_every_width(page, shot, f"frozen-{role}")

    page.goto(f"/accounts/{closed.id}/")
    banner = page.inner_text(".status-banner")
    assert "Closed since" in banner and "by sam: “customer moved abroad”" in banner and "never reopened" in banner
    at_every_width(page, shot, f"closed-{role}")


@pytest.mark.parametrize("role", CHANGERS)
def test_messages_give_money_in_its_currency_and_name_accounts_with_a_link(page, shot, role):
    UserFactory(username="staff", role=role)
    account = AccountFactory(owner="Zoë Holmes", initial_deposit=136_500)
    log_in(page, "staff")
    page.goto(f"/accounts/{account.id}/")
    page.fill("#id_withdraw-amount", "1,000,000.00")
    page.fill("#id_withdraw-reason", "a yacht")
    page.click("form[action$='/withdraw/'] button[type=submit]")
    page.wait_for_selector(".error-summary, ul.messages li.error")
    refused = page.locator(".error-summary, ul.messages li.error").first
    assert (
        "balance 1,365.00 EUR; cannot withdraw 1,000,000.00 EUR from the account of Zoë Holmes" in refused.inner_text()
    )
    assert refused.locator("a", has_text="Zoë Holmes").get_attribute("href") == f"/accounts/{account.id}/"
    assert str(account.id) not in refused.inner_text() and "100000000" not in refused.inner_text()
    at_every_width(page, shot, f"refused-{role}")

    page.fill("#id_deposit-amount", "12.50")
    page.fill("#id_deposit-source", "cash")
    page.click("form[action$='/deposit/'] button[type=submit]")
    page.wait_for_selector("ul.messages li.success")
    done = page.locator("ul.messages li.success")
    assert "Deposited 12.50 EUR into the account of Zoë Holmes" in done.inner_text()
    assert done.locator("a", has_text="Zoë Holmes").get_attribute("href") == f"/accounts/{account.id}/"


@pytest.mark.parametrize("role", CHANGERS)
def test_a_form_the_server_cannot_trust_says_nothing_was_done_and_leads_back(page, shot, role):
    UserFactory(username="staff", role=role)
    account = AccountFactory(initial_deposit=1_000)
    log_in(page, "staff")
    page.goto(f"/accounts/{account.id}/")
    page.fill("#id_deposit-amount", "5.00")
    page.fill("#id_deposit-source", "cash")
    page.eval_on_selector(
        "form[action$='/deposit/'] [name=csrfmiddlewaretoken]",
        # A first character other than the token's own: 'x' alone left one token in 62 as it was.
        "input => input.value = (input.value[0] === 'x' ? 'y' : 'x') + input.value.slice(1)",
    )
    page.click("form[action$='/deposit/'] button[type=submit]")
    page.wait_for_selector("h1:has-text('Nothing was done')")
    at_every_width(page, shot, f"csrf-{role}")
    page.click("a:has-text('Back to the page')")
    page.wait_for_selector(f"h1:has-text('{account.owner}')")
    assert services.get_account(account.id).version == account.version

    page.fill("#id_deposit-amount", "5.00")
    page.fill("#id_deposit-source", "cash")
    page.context.clear_cookies()  # the session has ended meanwhile
    page.click("form[action$='/deposit/'] button[type=submit]")
    page.wait_for_selector("text=Your session has ended")
    assert page.locator("a:has-text('Log in again')").count() == 1
    assert services.get_account(account.id).version == account.version


@pytest.mark.parametrize("role", ROLES)
def test_the_csv_exports_carry_money_currency_and_names_and_no_formula_runs(page, shot, role):
    UserFactory(username="staff", role=role)
    payer, payee = a_transfer_between('=HYPERLINK("http://evil")', "Landlord Ltd")
    log_in(page, "staff")

    page.goto(f"/audit/?account={payer.id}")
    with page.expect_download() as download:
        page.click("a:has-text('Download these events as CSV')")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    sent = next(row for row in rows if row["event_type"] == "TransferSent")
    assert (sent["amount"], sent["currency"], sent["counterparty_owner"]) == ("-450.00", "EUR", "Landlord Ltd")
    assert sent["owner"] == '\'=HYPERLINK("http://evil")' and sent["counterparty"] == str(payee.id)
    at_every_width(page, shot, f"audit-csv-{role}")

    page.goto(f"/accounts/{payer.id}/")
    with page.expect_download() as download:
        page.click("a:has-text('Transactions CSV')")
    lines = list(csv.reader(io.StringIO(download.value.path().read_text())))
    assert len(lines) == 4 and any("-450.00" in line and "530.00" in line for line in lines)


@pytest.mark.parametrize("role", ROLES)
def test_the_admin_shows_money_times_and_the_back_office_and_offers_only_what_the_role_may_do(page, shot, role):
    UserFactory(username="staff", role=role, is_staff=True)
    account = AccountFactory(owner="Zoë Holmes", initial_deposit=123_456)
    with context.metadata_context(actor="sam"):
        services.deposit(account_id=account.id, amount=100, source="cash", idempotency_key="till-7")
    log_in(page, "staff")

    page.goto("/admin/accounts/account/")
    listed = page.inner_text("#result_list")
    assert "1,235.56 EUR" in listed and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", listed)
    actions = page.locator("select[name=action] option").evaluate_all("options => options.map(o => o.value)")
    assert ("freeze_accounts" in actions) is (role == "supervisor")
    assert ("unfreeze_accounts" in actions) is (role == "supervisor")
    at_every_width(page, shot, f"admin-accounts-{role}")

    page.click("#result_list a:has-text('Zoë Holmes')")  # the owner links to the account's admin page
    page.click("a.viewsitelink")
    page.wait_for_selector("h1:has-text('Zoë Holmes')")
    assert page.url.endswith(f"/accounts/{account.id}/") or f"/accounts/{account.id}/?" in page.url

    page.goto("/admin/eventstore/commandlog/")
    entry = page.locator("#result_list tbody tr").first.inner_text()
    assert "sam" in entry and "deposit" in entry
    page.click(f"#result_list a:has-text('{account.id}')")
    page.wait_for_selector("h1:has-text('Zoë Holmes')")
