"""The staff pages and forms, through Django's test client, on real PostgreSQL."""

import re
import uuid

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from accounts import selectors, services
from accounts.models import Approval
from eventstore.models import Event
from eventstore.store import EventStore
from tests.factories import AccountFactory, TransferPairFactory, UserFactory
from tests.support import settle

pytestmark = pytest.mark.django_db
store = EventStore()
ROLES = ["anonymous", "no role", "auditor", "teller", "supervisor"]


def client_for(role):
    client = Client()
    if role != "anonymous":
        client.force_login(UserFactory(role=None if role == "no role" else role))
    return client


def event_count(account_id):
    return len(store.load(account_id))


# --- permission matrix ----------------------------------------------------------------

PAGES = [
    "accounts:dashboard", "accounts:list", "accounts:detail", "accounts:statement_csv", "accounts:transactions_csv",
    "accounts:audit", "accounts:audit_csv", "accounts:open", "accounts:approvals",
]  # fmt: skip
WITH_ACCOUNT = {"accounts:detail", "accounts:statement_csv", "accounts:transactions_csv"}
READERS = {"auditor", "teller", "supervisor"}
PAGE_ALLOWED = {page: READERS for page in PAGES} | {"accounts:open": {"teller", "supervisor"}}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", PAGES)
def test_every_page_admits_exactly_the_roles_that_may_see_it(role, page):
    account = AccountFactory()
    url = reverse(page, args=[account.id] if page in WITH_ACCOUNT else [])
    response = client_for(role).get(url, follow=role != "anonymous")  # pages with forms add a form token
    if role == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    elif role in PAGE_ALLOWED[page]:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert b"not allowed" in response.content


COMMANDS = {
    # command: (roles allowed, AccountFactory arguments for an account it may run on, POST data)
    "deposit": ({"teller", "supervisor"}, {}, {"amount": "12.50", "source": "cash"}),
    "withdraw": ({"teller", "supervisor"}, {}, {"amount": "2.00", "reason": "ATM"}),
    "transfer": ({"teller", "supervisor"}, {}, {"amount": "3.00", "reference": "rent", "to_account": None}),
    "freeze": ({"supervisor"}, {}, {"reason": "fraud check"}),
    "unfreeze": ({"supervisor"}, {"frozen": True}, {"reason": "cleared"}),
    "close": ({"supervisor"}, {"initial_deposit": 0}, {"reason": "customer left"}),
}


def landed_on_form(response, account, command):
    """A refused or invalid form comes back to the account page, at the form: reloading it posts nothing."""
    (url, status), *_ = response.redirect_chain
    detail = reverse("accounts:detail", args=[account.id])
    assert status == 302 and url.startswith(f"{detail}?form=")
    assert "autofocus" in response.content.decode().split(f'id="{command}"')[1].split("</form>")[0]
    assert response.status_code == 200
    return response.content.decode()


def command_post(command, account, data, *, confirmed=True, **extra):
    """The POST of a command form; `confirmed`, as the review step's Confirm sends it."""
    payload = {f"{command}-{k}": v for k, v in data.items()} | ({f"{command}-confirmed": "1"} if confirmed else {})
    payload |= {f"{command}-idempotency_key": str(uuid.uuid4()), f"{command}-expected_version": account.version}
    payload |= {f"{command}-{k}": v for k, v in extra.items()}
    return payload


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_runs_for_exactly_the_roles_allowed_to_run_it(role, command):
    allowed, setup, data = COMMANDS[command]
    account = AccountFactory(**setup)
    if "to_account" in data:
        data = {**data, "to_account": str(AccountFactory().id)}
    before = event_count(account.id)
    response = client_for(role).post(
        reverse("accounts:command", args=[account.id, command]), command_post(command, account, data)
    )
    if role == "anonymous":
        assert response.status_code == 302 and reverse("login") in response["Location"]
    elif role in allowed:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:detail", args=[account.id]) + "?form=")
        waits = command in ("unfreeze", "close")  # four eyes: stored as a request, the account unchanged
        assert event_count(account.id) == before + (0 if waits else 1)
        assert Approval.objects.filter(account_id=account.id).exists() is waits
        return
    else:
        assert response.status_code == 403
    assert event_count(account.id) == before


@pytest.mark.parametrize("role", ROLES)
def test_opening_an_account_is_for_tellers_and_supervisors(role):
    data = {
        "owner": "Grace Hopper",
        "currency": "EUR",
        "initial_deposit": "100.00",
        "idempotency_key": str(uuid.uuid4()),
    }
    response = client_for(role).post(reverse("accounts:open"), data)
    from accounts.models import Account

    opened = Account.objects.filter(owner="Grace Hopper")
    if role in {"teller", "supervisor"}:
        assert response.status_code == 302
        assert opened.get().balance == 10_000
    else:
        assert response.status_code in (302, 403) and not opened.exists()


def test_a_command_get_is_not_allowed():
    account = AccountFactory()
    response = client_for("supervisor").get(reverse("accounts:command", args=[account.id, "deposit"]))
    assert response.status_code == 405


def test_an_unknown_command_or_account_is_a_404():
    account = AccountFactory()
    client = client_for("supervisor")
    assert client.post(reverse("accounts:command", args=[account.id, "launder"])).status_code == 404
    assert client.post(reverse("accounts:command", args=[uuid.uuid4(), "deposit"])).status_code == 404
    assert client.get(reverse("accounts:detail", args=[uuid.uuid4()]), follow=True).status_code == 404


# --- validation and business errors ----------------------------------------------------


@pytest.mark.parametrize(
    "amount, message",
    [
        ("12.505", "EUR has 2 decimal places"),
        ("-5", "is negative"),
        ("12,50", "“12,50” has a comma that is not a thousands separator"),
        ("1,2,3", "“1,2,3” has a comma that is not a thousands separator"),
        ("0", "greater than zero"),
        ("0.00", "greater than zero"),
        ("abc", "is not an amount"),
        ("1e5", "is not an amount"),
        ("NaN", "is not an amount"),
        ("", "This field is required"),
        ("100000000000", "must be below"),
        ("9" * 41, "Ensure this value has at most 40 characters"),
    ],
)
def test_bad_amounts_are_refused_at_the_field_and_store_nothing(amount, message):
    account = AccountFactory()
    response = client_for("teller").post(
        reverse("accounts:command", args=[account.id, "deposit"]),
        command_post("deposit", account, {"amount": amount, "source": "cash"}),
        follow=True,
    )
    page = landed_on_form(response, account, "deposit")
    assert message in page and "Nothing was done" in page
    assert 'class="error-summary" role="alert"' in page and 'href="#id_deposit-amount"' in page
    assert 'aria-invalid="true"' in page and "autofocus" in page.split('name="deposit-amount"')[1].split(">")[0]
    assert event_count(account.id) == 1


def test_a_business_error_shows_on_the_page_and_keeps_the_form():
    account = AccountFactory(initial_deposit=10_000)
    response = client_for("teller").post(
        reverse("accounts:command", args=[account.id, "withdraw"]),
        command_post("withdraw", account, {"amount": "5000.00", "reason": "new car"}),
        follow=True,
    )
    page = landed_on_form(response, account, "withdraw")
    link = f'<a href="{reverse("accounts:detail", args=[account.id])}">{escape(account.owner)}</a>'
    refused = "Withdraw refused: Insufficient funds: balance 100.00 EUR; cannot withdraw 5,000.00 EUR"
    assert f"{refused} from the account of {link}." in page
    assert 'value="5000.00"' in page and 'value="new car"' in page
    assert event_count(account.id) == 1


def test_same_account_transfer_and_frozen_account_errors_are_shown():
    account = AccountFactory()
    client = client_for("supervisor")
    response = client.post(
        reverse("accounts:command", args=[account.id, "transfer"]),
        command_post("transfer", account, {"amount": "1.00", "reference": "self", "to_account": str(account.id)}),
        follow=True,
    )
    assert "cannot transfer money to itself" in landed_on_form(response, account, "transfer")
    services.freeze(account_id=account.id, reason="check")
    frozen = services.get_account(account.id)
    response = client.post(
        reverse("accounts:command", args=[account.id, "deposit"]),
        command_post("deposit", frozen, {"amount": "1.00", "source": "cash"}),
    )
    assert response.status_code == 302  # refused: the deposit form is not offered on a frozen account
    page = client.get(response["Location"]).content.decode()
    assert "is frozen: no money can be paid in until a supervisor unfreezes it. Nothing was done." in page


def test_a_double_submitted_form_stores_one_event():
    account = AccountFactory(initial_deposit=10_000)
    client = client_for("teller")
    payload = command_post("deposit", account, {"amount": "7.00", "source": "cash"})
    url = reverse("accounts:command", args=[account.id, "deposit"])
    first, second = client.post(url, payload), client.post(url, payload)
    assert first.status_code == second.status_code == 302
    assert event_count(account.id) == 2
    assert services.get_account(account.id).balance == 10_700


def test_a_stale_form_still_runs_and_says_what_changed():
    account = AccountFactory(initial_deposit=10_000)
    payload = command_post("withdraw", account, {"amount": "1.00", "reason": "ATM"})
    services.deposit(account_id=account.id, amount=2_500, source="salary")
    response = client_for("teller").post(
        reverse("accounts:command", args=[account.id, "withdraw"]), payload, follow=True
    )
    page = response.content.decode()
    assert "This account had changed since you opened the page (1 event: Deposit 25.00 EUR" in page
    assert "the balance is now 124.00 EUR" in page
    assert services.get_account(account.id).balance == 12_400


def test_owner_names_and_reasons_stay_text():
    client = client_for("supervisor")
    response = client.post(
        reverse("accounts:open"),
        {"owner": "<script>alert(1)</script>", "currency": "EUR", "initial_deposit": "1", "idempotency_key": "x1"},
    )
    account_url = response["Location"]
    account_id = account_url.split("?")[0].rstrip("/").split("/")[-1]
    services.withdraw(account_id=account_id, amount=1, reason='<img src=x onerror="alert(2)">')
    for url in (account_url, reverse("accounts:list"), reverse("accounts:dashboard"), reverse("accounts:audit")):
        page = client.get(url).content.decode()
        assert "<script>alert(1)" not in page and "<img src=x" not in page
    page = client.get(account_url).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page


def test_every_form_post_needs_a_csrf_token():
    account = AccountFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory(role="supervisor"))
    response = client.post(
        reverse("accounts:command", args=[account.id, "deposit"]),
        command_post("deposit", account, {"amount": "1.00", "source": "cash"}),
    )
    assert response.status_code == 403
    assert event_count(account.id) == 1
    assert client.post(reverse("accounts:open"), {"owner": "X"}).status_code == 403


def test_command_forms_carry_a_fresh_idempotency_key_and_the_version():
    account = AccountFactory()
    client = client_for("supervisor")
    first = client.get(reverse("accounts:detail", args=[account.id]), follow=True)
    second = client.get(reverse("accounts:detail", args=[account.id]), follow=True).content.decode()
    token = first.redirect_chain[0][0].split("?form=")[1]
    first = first.content.decode()
    key = 'name="deposit-idempotency_key" value="'
    assert f'{key}{token}:deposit"' in first
    assert first.split(key)[1][:36] != second.split(key)[1][:36]
    assert 'name="deposit-expected_version" value="1"' in first
    assert "csrfmiddlewaretoken" in first


# --- pages -------------------------------------------------------------------------------


def test_the_past_view_shows_the_state_history_and_label_of_then():
    account = AccountFactory(initial_deposit=10_000)
    services.deposit(account_id=account.id, amount=500, source="cash")
    services.withdraw(account_id=account.id, amount=300, reason="ATM")
    page = client_for("auditor").get(reverse("accounts:detail", args=[account.id]), {"version": 2}).content.decode()
    assert "Past view" in page and "at version 2" in page
    assert "105.00 EUR" in page  # the balance then
    assert "Withdrawn" not in page.split("Audit trail")[1]
    assert 'name="deposit-amount"' not in page  # no commands on the past


def test_the_past_view_by_time_before_the_account_existed():
    account = AccountFactory()
    page = (
        client_for("auditor")
        .get(reverse("accounts:detail", args=[account.id]), {"as_of": "2000-01-01T00:00"})
        .content.decode()
    )
    assert "did not exist yet" in page


def test_account_search_by_owner_id_and_status():
    ada = AccountFactory(owner="Ada Lovelace", frozen=True)
    AccountFactory(owner="Charles Babbage")
    client = client_for("auditor")
    assert "Ada Lovelace" in client.get(reverse("accounts:list"), {"q": "lovel"}).content.decode()
    assert "Charles" not in client.get(reverse("accounts:list"), {"q": "lovel"}).content.decode()
    assert "Ada Lovelace" in client.get(reverse("accounts:list"), {"q": str(ada.id)}).content.decode()
    frozen = client.get(reverse("accounts:list"), {"status": "frozen"}).content.decode()
    assert "Ada Lovelace" in frozen and "Charles Babbage" not in frozen


def test_the_dashboard_counts_statuses_and_totals_currencies():
    AccountFactory(initial_deposit=1_000, currency="GBP")
    page = client_for("auditor").get(reverse("accounts:dashboard")).content.decode()
    assert "active accounts" in page
    assert "GBP" in page and "Latest activity" in page


def test_the_audit_log_filters_and_its_csv_streams_the_same_rows():
    account = AccountFactory()
    services.deposit(account_id=account.id, amount=100, source="cash")
    client = client_for("auditor")
    page = client.get(reverse("accounts:audit"), {"event_type": "Deposited", "account": str(account.id)})
    assert page.status_code == 200
    assert page.content.decode().count('<td title="Deposited">Deposit</td>') == 1
    response = client.get(reverse("accounts:audit_csv"), {"account": str(account.id)})
    assert response.streaming
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert lines[0].startswith("id,created_at,aggregate_id")
    assert [line.split(",")[5] for line in lines[1:]] == ["Deposited", "Opened"]


def test_the_audit_log_by_correlation_id_finds_both_sides_of_a_transfer():
    payer, payee = TransferPairFactory()
    correlation = store.load(payer.id)[-1].metadata["correlation_id"]
    page = client_for("auditor").get(reverse("accounts:audit"), {"correlation_id": correlation}).content.decode()
    assert '<td title="TransferSent">Transfer sent to</td>' in page
    assert '<td title="TransferReceived">Transfer received from</td>' in page


def test_bad_audit_filters_are_reported_not_crashed():
    client = client_for("auditor")
    response = client.get(reverse("accounts:audit"), {"account": "not-a-uuid", "since": "yesterday"})
    assert response.status_code == 200 and "Enter a valid UUID" in response.content.decode()
    assert client.get(reverse("accounts:audit_csv"), {"account": "nope"}).status_code == 302


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", PAGES)
def test_pages_refuse_other_methods(role, page):
    account = AccountFactory()
    url = reverse(page, args=[account.id] if page in WITH_ACCOUNT else [])
    response = client_for(role).delete(url)
    assert response.status_code == 405


def test_logout_is_a_post_and_ends_the_session():
    client = client_for("teller")
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("accounts:dashboard")).status_code == 302


@pytest.mark.django_db(transaction=True)
def test_the_statement_csv_gives_the_months_days():
    account = AccountFactory(initial_deposit=10_000)
    from eventstore import projections

    settle()  # runners read only what every transaction on the server has moved past
    while projections.catch_up(projections.registry["daily_statements"]):
        pass
    response = client_for("auditor").get(reverse("accounts:statement_csv", args=[account.id]))
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert lines[0] == "day,currency,opening_balance,credits,debits,closing_balance,events"
    assert lines[-1].endswith(",EUR,0.00,100.00,0.00,100.00,1")
    for month in ("13-2026", "9999-12"):
        bad = client_for("auditor").get(reverse("accounts:statement_csv", args=[account.id]), {"month": month})
        assert bad.status_code == 400 and "Nothing was exported" in bad.content.decode()


# --- forms bound to the page: a second submit after Back stores nothing -------------------


def page_token(response) -> str:
    return response.redirect_chain[0][0].split("?form=")[1]


def test_a_deposit_form_submitted_again_after_back_stores_nothing_and_says_what_it_did():
    account = AccountFactory()
    client = client_for("teller")
    page = client.get(reverse("accounts:detail", args=[account.id]), follow=True)
    token = page_token(page)
    payload = command_post("deposit", account, {"amount": "25.50", "source": "cash"})
    payload["deposit-idempotency_key"] = f"{token}:deposit"
    url = reverse("accounts:command", args=[account.id, "deposit"])
    first = client.post(url, payload, follow=True)
    assert "Deposited 25.50 EUR into the account of" in first.content.decode()
    assert page_token(first) != token  # the next page gets keys of its own

    again = client.post(url, payload, follow=True).content.decode()  # Back (from the browser's cache), submit
    assert "Already done: Deposited 25.50 EUR into the account of" in again
    assert "This form had been submitted before; nothing new was stored." in again
    assert event_count(account.id) == 2

    back = client.get(
        reverse("accounts:detail", args=[account.id]), {"form": token}
    ).content.decode()  # Back, re-rendered
    assert "Already done: this page's deposit form was submitted (Deposit 25.50 EUR by" in back
    assert 'name="deposit-amount"' not in back and 'name="withdraw-amount"' in back
    assert f'value="{token}:withdraw"' in back


def test_an_open_account_form_submitted_again_after_back_opens_one_account():
    client = client_for("teller")
    page = client.get(reverse("accounts:open"), follow=True)
    token = page_token(page)
    assert f'name="idempotency_key" value="{token}"' in page.content.decode()
    data = {"owner": "Grace Hopper", "currency": "EUR", "initial_deposit": "100.00", "idempotency_key": token}
    opened = client.post(reverse("accounts:open"), data, follow=True).content.decode()
    assert "Opened an account for Grace Hopper." in opened

    again = client.post(reverse("accounts:open"), data, follow=True).content.decode()
    assert "Already done: an account was opened for Grace Hopper by this form before" in again
    back = client.get(reverse("accounts:open"), {"form": token}).content.decode()
    assert "Already done: this form opened an account for" in back and 'name="owner"' not in back
    from accounts.models import Account

    assert Account.objects.filter(owner="Grace Hopper").count() == 1


def test_another_person_submitting_the_same_key_runs_their_own_command():
    account = AccountFactory(initial_deposit=10_000)
    payload = command_post("deposit", account, {"amount": "1.00", "source": "cash"})
    for role in ("teller", "supervisor"):
        client_for(role).post(reverse("accounts:command", args=[account.id, "deposit"]), payload)
    assert services.get_account(account.id).balance == 10_200


def test_the_stale_form_notice_loads_only_what_it_names():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    account = AccountFactory(with_history=12)
    payload = command_post("deposit", account, {"amount": "1.00", "source": "cash"}, expected_version=0)
    with CaptureQueriesContext(connection) as queries:
        response = client_for("teller").post(reverse("accounts:command", args=[account.id, "deposit"]), payload)
    assert response.status_code == 302
    history = [q["sql"] for q in queries if 'FROM "events"' in q["sql"]]
    assert history and all("LIMIT 5" in sql for sql in history)
    notice = client_for("teller").get(response["Location"])  # another session: no message
    assert notice.status_code == 200


# --- bad input that once gave a 500 ---------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["2026-11-27T10:00:00+16:00", "2026-11-27T10:00:00-16:30", "9999-12-31T23:59:59-14:00",
              "0001-01-01T00:00:00+14:00", "2026-02-30T10:00:00"],
)  # fmt: skip
def test_odd_moments_are_refused_or_read_in_utc_never_a_500(value):
    account = AccountFactory()
    client = client_for("auditor")
    page = client.get(reverse("accounts:detail", args=[account.id]), {"as_of": value})
    assert page.status_code == 200
    for field in ("since", "until"):
        assert client.get(reverse("accounts:audit"), {field: value}).status_code == 200
        exported = client.get(reverse("accounts:audit_csv"), {field: value})
        assert exported.status_code in (200, 302)
        if exported.status_code == 200:
            b"".join(exported.streaming_content)


def test_an_offset_beyond_what_postgresql_stores_is_read_in_utc():
    account = AccountFactory()
    page = client_for("auditor").get(
        reverse("accounts:detail", args=[account.id]), {"as_of": "2099-01-01T10:00:00+16:00"}
    )
    assert "Past view" in page.content.decode() and "as of 2098-12-31 18:00:00 UTC" in page.content.decode()


def test_a_month_past_the_calendars_end_is_refused_on_the_account_page():
    account = AccountFactory()
    page = client_for("auditor").get(
        reverse("accounts:detail", args=[account.id]), {"month": "9999-12", "form": str(uuid.uuid4())}
    )
    assert page.status_code == 200 and "Choose a month up to 9999-11." in page.content.decode()


@pytest.mark.parametrize(
    "url", ["/admin/accounts/account/?status=%00", "/admin/accounts/account/?currency=%00",
            "/admin/eventstore/event/?event_type=%00", "/admin/eventstore/commandlog/%00/change/",
            "/admin/accounts/account/%00/change/", "/accounts/?q=%00", "/audit/?actor=a%00b"],
)  # fmt: skip
def test_a_nul_byte_anywhere_in_a_request_is_a_400_that_says_so(url, admin_client):
    response = admin_client.get(url)
    assert response.status_code == 400
    assert "NUL character" in response.content.decode()


def test_a_nul_byte_in_a_posted_form_is_a_400_and_stores_nothing():
    account = AccountFactory()
    response = client_for("teller").post(
        reverse("accounts:command", args=[account.id, "deposit"]),
        command_post("deposit", account, {"amount": "1.00", "source": "ca\x00sh"}),
    )
    assert response.status_code == 400 and event_count(account.id) == 1


@pytest.mark.django_db(transaction=True)
def test_a_command_on_an_account_held_by_a_stuck_transaction_says_busy_and_does_nothing(settings, raw_connect):
    import time

    from django.db import connections

    from eventstore.snapshots import lock_key

    settings.WEB_LOCK_TIMEOUT_MS = 300
    account = AccountFactory()
    client = client_for("teller")
    holder = raw_connect()
    holder.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(account.id)])
    connections.close_all()  # the request opens its own connection, as a web worker's would
    started = time.monotonic()
    response = client.post(
        reverse("accounts:command", args=[account.id, "withdraw"]),
        command_post("withdraw", account, {"amount": "1.00", "reason": "ATM"}),
        follow=True,
    )
    waited = time.monotonic() - started
    holder.rollback()
    page = landed_on_form(response, account, "withdraw")
    assert waited < 5
    assert "The account is busy: another command on it is still running. Nothing was done; try again" in page
    assert event_count(account.id) == 1


# --- the audit export when the database fails -------------------------------------------------


def failing_after(monkeypatch, rows: int, chunk: int):
    """Make the export's query fail in the database after its `rows` newest rows."""
    from accounts import exports

    original = selectors.audit_events
    boundary = list(Event.objects.order_by("-id").values_list("id", flat=True)[: rows + 1])[-1]
    monkeypatch.setattr(exports, "CSV_CHUNK", chunk)
    monkeypatch.setattr(
        selectors, "audit_events", lambda f: original(f).extra(where=[f"1 / (id - {boundary}) IS NOT NULL"])
    )


# Transactional: as in production, a failed query must not poison the page that reports it.
@pytest.mark.django_db(transaction=True)
def test_an_export_that_fails_before_its_first_row_is_an_error_page_not_an_empty_file(monkeypatch):
    AccountFactory()
    failing_after(monkeypatch, rows=0, chunk=2)
    response = client_for("auditor").get(reverse("accounts:audit_csv"))
    assert response.status_code == 503
    assert (
        "The export could not start" in response.content.decode()
        and "Nothing was exported" in response.content.decode()
    )


@pytest.mark.django_db(transaction=True)
def test_an_export_that_fails_midway_ends_with_a_line_saying_it_is_incomplete(monkeypatch):
    AccountFactory.create_batch(4)
    failing_after(monkeypatch, rows=2, chunk=2)
    response = client_for("auditor").get(reverse("accounts:audit_csv"))
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert len(lines) == 1 + 2 + 1
    assert lines[-1].startswith("# INCOMPLETE EXPORT: the database failed after 2 rows")


def test_an_export_longer_than_one_fetch_has_every_row_once(monkeypatch):
    from accounts import exports

    AccountFactory.create_batch(3)
    monkeypatch.setattr(exports, "CSV_CHUNK", 2)
    response = client_for("auditor").get(reverse("accounts:audit_csv"))
    ids = [line.split(",")[0] for line in b"".join(response.streaming_content).decode().strip().splitlines()[1:]]
    assert ids == [str(i) for i in Event.objects.order_by("-id").values_list("id", flat=True)]


@pytest.mark.parametrize(
    "event_type, data, reason",
    [
        ("Deposited", {"source": "no amount"}, "no 'amount'"),
        ("Deposited", {"amount": "1e9", "source": "text"}, "is not a whole number"),
        ("Withdrawn", {"amount": 10**9, "reason": "more than there is"}, "below zero"),
        ("Renamed", {"owner": "Mallory"}, "is not a bank account event"),
    ],
)
def test_an_unreadable_event_shows_a_warning_never_a_500_and_refuses_commands(tamper, event_type, data, reason):
    account = AccountFactory(initial_deposit=1_000)
    readable = services.deposit(account_id=account.id, amount=500, source="cash")
    tamper(account.id, event_type, data, metadata={})
    bad = readable.version + 1
    teller = client_for("teller")
    page = teller.get(reverse("accounts:detail", args=[account.id]), follow=True)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Integrity warning" in text and f"Version {bad} of this account" in text and escape(reason) in text
    assert "No command can run on this account" in text
    assert "15.00" in text  # the account as it was before the unreadable event
    posted = teller.post(
        reverse("accounts:command", args=[account.id, "deposit"]),
        command_post(
            "deposit", services.get_account(account.id, version=bad - 1), {"amount": "1.00", "source": "cash"}
        ),
    )
    assert posted.status_code == 302
    refused = teller.get(posted["Location"]).content.decode()
    print("MSG", refused.split('<ul class="messages">')[1].split("</ul>")[0])
    detail = reverse("accounts:detail", args=[account.id])
    assert f'Deposit refused: Version {bad} of the account of <a href="{detail}">{escape(account.owner)}</a>' in refused
    shown = re.sub(r"<[^>]+>", "", refused.split("Deposit refused")[1].split("</li>")[0])
    assert str(account.id) not in shown and shown.count("Nothing was done") == 1  # named, never by its id
    assert event_count(account.id) == bad
    for name, args in [("accounts:dashboard", []), ("accounts:audit", []), ("accounts:audit_csv", []),
                       ("accounts:statement_csv", [account.id])]:  # fmt: skip
        assert teller.get(reverse(name, args=args)).status_code == 200, name


def test_the_audit_trail_links_each_side_of_a_transfer_to_the_other_account():
    payer, payee = TransferPairFactory()
    client = client_for("auditor")
    for one, other in ((payer, payee), (payee, payer)):
        page = client.get(reverse("accounts:detail", args=[one.id]), {"form": str(uuid.uuid4())}).content.decode()
        assert f'href="{reverse("accounts:detail", args=[other.id])}"' in page
