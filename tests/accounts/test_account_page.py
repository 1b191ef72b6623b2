"""Reading an account: the audit trail, the statement, the as-of picker, as staff read them."""

import csv
import io
import re
import uuid
from datetime import timedelta
from urllib.parse import unquote

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from accounts import selectors, services
from accounts.domain import format_money
from accounts.models import Account
from accounts.projections import bank_totals
from eventstore.store import EventStore
from tests.accounts.test_selectors import opened_together
from tests.accounts.test_views import client_for
from tests.factories import AccountFactory, UserFactory
from tests.support import caught_up, insert_event

pytestmark = pytest.mark.django_db


def page(account, **query):
    return client_for("auditor").get(reverse("accounts:detail", args=[account.id]), query, follow=True).content.decode()


def rows(html):
    body = html.split("<h2>Audit trail")[1].split("<tbody>")[1].split("</tbody>")[0]
    return body.split("<tr>")[1:]


def test_the_audit_trail_signs_amounts_names_events_and_counterparties_and_runs_the_balance():
    account = AccountFactory(initial_deposit=10_000)
    zoe = AccountFactory(owner="Zoë Holmes", initial_deposit=5_000)
    services.withdraw(account_id=account.id, amount=2_550, reason="rent")
    services.transfer(from_account_id=zoe.id, to_account_id=account.id, amount=1_000, reference="gift")
    newest, withdrawal, opening = rows(page(account))
    link = f'<a href="{reverse("accounts:detail", args=[zoe.id])}">{escape(zoe.owner)}</a>'
    assert f"Transfer received from\n              {link}" in newest
    assert "+10.00 EUR" in newest and "84.50 EUR" in newest  # the amount, then the balance after it
    assert "Withdrawal" in withdrawal and "\u221225.50 EUR" in withdrawal and "74.50 EUR" in withdrawal
    assert "Account opened" in opening and "+100.00 EUR" in opening
    assert 'href="?version=2"' in withdrawal  # view the account as of this row


def test_an_older_page_of_the_trail_runs_the_balance_from_where_it_starts():
    account = AccountFactory(initial_deposit=0, with_history=30)  # deposits and withdrawals of 10.00 in turn
    first_page = rows(page(account))
    older = rows(page(account, before=first_page[-1].split('href="?version=')[1].split('"')[0]))
    version = int(older[0].split('href="?version=')[1].split('"')[0])
    shown = services.get_account(account.id, version=version)
    assert f"{shown.balance / 100:,.2f} EUR</td>" in older[0]


def test_the_statement_shows_the_month_on_show_and_its_transactions_and_follows_a_past_view():
    account = AccountFactory(initial_deposit=10_000)
    services.deposit(account_id=account.id, amount=1_234, source="salary")
    now = page(account)
    month = EventStore().load(account.id)[-1].created_at.strftime("%Y-%m")
    assert f'name="month" value="{month}"' in now
    statement = now.split("<h2>Statement</h2>")[1]
    assert "Transactions" in statement and "+12.34 EUR" in statement
    past = page(account, version=1).split("<h2>Statement</h2>")[1]
    assert "Transactions up to version 1" in past and "+12.34 EUR" not in past
    assert 'name="version" value="1"' in past  # changing the month keeps the past view


def test_the_as_of_picker_takes_a_time_as_the_page_shows_it_and_gives_that_version():
    account = AccountFactory(initial_deposit=10_000)
    services.deposit(account_id=account.id, amount=500, source="cash")
    deposited = EventStore().load(account.id)[-1].created_at
    shown = deposited.strftime("%Y-%m-%d %H:%M:%S")  # to the second, as the trail shows it
    html = page(account, as_of=shown)
    assert "as it was at version 2" in html and f"as of {shown} UTC" in html
    assert 'placeholder="2026-11-27 14:05:09"' in html and "In UTC" in html


def test_a_backwards_date_range_in_the_audit_log_says_so():
    backwards = {"since": "2026-11-27 10:00:00", "until": "2026-11-26 10:00:00"}
    html = client_for("auditor").get(reverse("accounts:audit"), backwards).content.decode()
    assert "the range is backwards" in html


def test_a_skip_link_leads_to_the_main_content_and_commands_are_a_jump_away():
    account = AccountFactory()
    html = client_for("teller").get(reverse("accounts:detail", args=[account.id]), follow=True).content.decode()
    assert '<a class="skip" href="#main">Skip to main content</a>' in html and '<main id="main"' in html
    assert 'aria-label="Commands on this account">Commands:' in html and 'href="#id_deposit-amount"' in html


def test_the_audit_csv_has_money_owners_and_counterparties_and_no_cell_runs_as_a_formula():
    payer = AccountFactory(owner='=HYPERLINK("http://evil")', initial_deposit=10_000)
    payee = AccountFactory(owner="@Payee", initial_deposit=0)
    services.transfer(from_account_id=payer.id, to_account_id=payee.id, amount=2_550, reference="+rent")
    response = client_for("auditor").get(reverse("accounts:audit_csv"), {"account": str(payer.id)})
    lines = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    sent = lines[0]
    assert (sent["event_type"], sent["amount"], sent["currency"]) == ("TransferSent", "-25.50", "EUR")
    assert sent["owner"] == '\'=HYPERLINK("http://evil")' and sent["counterparty"] == str(payee.id)
    assert sent["counterparty_owner"] == "'@Payee" and lines[1]["amount"] == "100.00"


def test_the_audit_log_offers_the_staff_as_actors():
    UserFactory(username="zoe.teller", role="teller")
    html = client_for("auditor").get(reverse("accounts:audit")).content.decode()
    assert '<datalist id="actors">' in html and '<option value="zoe.teller">' in html and 'list="actors"' in html


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_links_its_figures_to_the_filtered_lists_and_signs_its_latest_activity():
    account = AccountFactory(owner="Dash Board", initial_deposit=10_000)
    services.withdraw(account_id=account.id, amount=1_000, reason="cash")
    caught_up(bank_totals)
    client = client_for("auditor")
    html = client.get(reverse("accounts:dashboard")).content.decode()
    assert 'href="/accounts/?status=frozen"' in html and 'href="/accounts/?currency=EUR"' in html
    assert "\u221210.00 EUR" in html and '<td title="Withdrawn">Withdrawal</td>' in html and "Dash Board" in html
    listed = client.get(reverse("accounts:list"), {"currency": "USD"}).content.decode()
    assert "Dash Board" not in listed


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_shows_the_totals_the_runner_keeps_and_says_how_far_behind_they_are():
    caught_up(bank_totals)  # every event of earlier tests counted: what follows adds to them
    before = {row.currency: row for row in selectors.bank_figures().currencies}.get("CHF")
    rich = AccountFactory(initial_deposit=120_000, currency="CHF")
    frozen = AccountFactory(initial_deposit=30_000, currency="CHF")
    services.freeze(account_id=frozen.id, reason="court order")
    client = client_for("auditor")
    behind = client.get(reverse("accounts:dashboard")).content.decode()
    assert "The figures below leave out the latest 3 events" in behind
    caught_up(bank_totals)
    html = client.get(reverse("accounts:dashboard")).content.decode()
    assert "leave out" not in html
    accounts, money, frozen_money = (before.accounts, before.balance, before.frozen) if before else (0, 0, 0)
    row = re.search(r"<tr><td>CHF</td>(.*?)</tr>", html, re.S)[1]
    assert re.findall(r'<td class="num">(?:<a [^>]*>)?([^<]*)', row) == [
        f"{accounts + 2:,}",
        format_money(int(money) + 150_000, "CHF"),
    ]
    assert f"of which {format_money(int(frozen_money) + 30_000, 'CHF')} frozen" in row
    services.deposit(account_id=rich.id, amount=100, source="cash")
    assert "leave out the latest 1 event," in client.get(reverse("accounts:dashboard")).content.decode()


def test_the_account_list_counts_one_page_and_estimates_more_labelled_so_and_pages_on_by_keyset():
    for n in range(3):
        AccountFactory(owner=f"Counted Customer {n}")
    client = client_for("auditor")
    html = client.get(reverse("accounts:list"), {"q": "counted customer"}).content.decode()
    assert "3 accounts" in html and "estimate" not in html and "Next →" not in html
    opened_together([f"Paged Customer {n}" for n in range(selectors.PAGE_SIZE + 2)], timezone.now())
    first = client.get(reverse("accounts:list"), {"q": "paged customer"}).content.decode()
    assert re.search(r"About [\d,]+ accounts? \(an estimate\); 25 on this page, more follow", first)
    after = re.search(r'href="\?q=paged%20customer&status=&currency=&after=([^"&]+)">Next', first)[1]
    rest = client.get(reverse("accounts:list"), {"q": "paged customer", "after": unquote(after)}).content.decode()
    assert rest.count("Paged Customer") == 2 and ">First page</a>" in rest and "Next →" not in rest


def test_a_page_link_past_the_end_or_not_of_ours_says_so_and_leads_back_to_the_first_page():
    AccountFactory(owner="Counted Customer")
    client = client_for("auditor")
    beyond = client.get(
        reverse("accounts:list"), {"q": "counted", "after": f"2000-01-01T00:00:00+00:00_{uuid.uuid4()}"}
    )
    html = beyond.content.decode()
    assert "No account matches." in html and ">First page</a>" in html and "Next →" not in html
    for forged in ("yesterday_1", "2026-01-01T00:00:00_" + str(uuid.uuid4()), "x" * 101):
        response = client.get(reverse("accounts:list"), {"q": "counted", "after": forged})
        assert response.status_code == 200
        assert "Correct the search above." in response.content.decode()
        assert any(word in response.content.decode() for word in ("not one the list made", "at most 100"))


def test_a_refused_opening_comes_back_to_its_page_with_its_values_and_posts_nothing_on_reload():
    client = client_for("teller")
    data = {"owner": "Ada Lovelace", "currency": "EUR", "initial_deposit": "12,50", "idempotency_key": "k"}
    response = client.post(reverse("accounts:open"), data, follow=True)
    (url, status), *_ = response.redirect_chain
    assert status == 302 and url.startswith(reverse("accounts:open") + "?form=")
    html = response.content.decode()
    assert 'class="error-summary" role="alert"' in html and "has a comma that is not a thousands separator" in html
    assert 'value="Ada Lovelace"' in html and "autofocus" in html.split('name="initial_deposit"')[1].split(">")[0]
    assert not Account.objects.filter(owner="Ada Lovelace").exists()


def test_the_transactions_csv_lists_the_month_with_the_balance_after_each_line():
    account, payee = uuid.uuid4(), AccountFactory(owner="=Payee", initial_deposit=0)
    last_month = timezone.now().replace(day=1) - timedelta(days=3)  # opened last month, with 50.00 paid in then
    insert_event(account, "Opened", {"account_id": str(account), "owner": "Month Holder", "currency": "EUR",
                                     "initial_balance": 0, "schema_version": 2}, created_at=last_month)  # fmt: skip
    insert_event(account, "Deposited", {"amount": 5_000, "source": "old", "schema_version": 2}, created_at=last_month)
    account = services.get_account(account)
    services.deposit(account_id=account.id, amount=1_000, source="salary")
    services.transfer(from_account_id=account.id, to_account_id=payee.id, amount=2_550, reference="rent")
    response = client_for("auditor").get(reverse("accounts:transactions_csv", args=[account.id]))
    lines = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(line["event"], line["amount"], line["balance_after"]) for line in lines] == [
        ("Deposit", "10.00", "60.00"), ("Transfer sent", "-25.50", "34.50")]  # fmt: skip
    assert lines[1]["counterparty_owner"] == "'=Payee" and lines[1]["why"] == "rent"


MONTH_LINES = selectors.month_lines


def transactions_failing_after(monkeypatch, rows: int):
    """Make the transactions export's query fail in the database after its first `rows` lines."""
    from accounts import exports

    def failing(*args, **kwargs):
        before, events = MONTH_LINES(*args, **kwargs)
        boundary = list(events.values_list("version", flat=True)[: rows + 1])[-1]
        return before, events.extra(where=[f"1 / (version - {boundary}) IS NOT NULL"])

    monkeypatch.setattr(exports, "CSV_CHUNK", 2)
    monkeypatch.setattr(selectors, "month_lines", failing)


# Transactional: as in production, a failed query must not poison the page that reports it.
@pytest.mark.django_db(transaction=True)
def test_a_transactions_export_that_fails_at_once_is_an_error_page_and_midway_says_it_is_incomplete(monkeypatch):
    account = AccountFactory(initial_deposit=100)
    for _ in range(4):
        services.deposit(account_id=account.id, amount=100, source="cash")
    address = reverse("accounts:transactions_csv", args=[account.id])
    transactions_failing_after(monkeypatch, rows=0)
    response = client_for("auditor").get(address)
    assert response.status_code == 503  # not a file of no lines, which would read as a quiet month
    shown = response.content.decode()
    assert "Nothing was exported" in shown and f'href="{reverse("accounts:detail", args=[account.id])}"' in shown

    transactions_failing_after(monkeypatch, rows=2)
    response = client_for("auditor").get(address)
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert len(lines) == 1 + 2 + 1
    assert lines[-1].startswith("# INCOMPLETE EXPORT: the database failed after 2 rows;")
    assert "this file is not the whole month" in lines[-1]
