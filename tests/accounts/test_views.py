"""The staff pages and forms, through Django's test client, on real PostgreSQL."""

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from accounts import services
from eventstore.store import EventStore
from tests.factories import AccountFactory, UserFactory

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
    "accounts:dashboard", "accounts:list", "accounts:detail", "accounts:statement_csv",
    "accounts:audit", "accounts:audit_csv", "accounts:open",
]  # fmt: skip
WITH_ACCOUNT = {"accounts:detail", "accounts:statement_csv"}
READERS = {"auditor", "teller", "supervisor"}
PAGE_ALLOWED = {page: READERS for page in PAGES} | {"accounts:open": {"teller", "supervisor"}}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", PAGES)
def test_every_page_admits_exactly_the_roles_that_may_see_it(role, page):
    account = AccountFactory()
    url = reverse(page, args=[account.id] if page in WITH_ACCOUNT else [])
    response = client_for(role).get(url)
    if role == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    elif role in PAGE_ALLOWED[page]:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert b"not allowed" in response.content


COMMANDS = {
    # command: (roles allowed, how to prepare the account, POST data)
    "deposit": ({"teller", "supervisor"}, {}, {"amount": "12.50", "source": "cash"}),
    "withdraw": ({"teller", "supervisor"}, {}, {"amount": "2.00", "reason": "ATM"}),
    "transfer": ({"teller", "supervisor"}, {}, {"amount": "3.00", "reference": "rent", "to_account": None}),
    "freeze": ({"supervisor"}, {}, {"reason": "fraud check"}),
    "unfreeze": ({"supervisor"}, {"frozen": True}, {"reason": "cleared"}),
    "close": ({"supervisor"}, {"empty": True}, {"reason": "customer left"}),
}


def prepared_account(frozen=False, empty=False):
    account = AccountFactory(initial_deposit=0 if empty else 10_000)
    if frozen:
        services.freeze(account_id=account.id, reason="setup")
    return services.get_account(account.id)


def command_post(command, account, data, **extra):
    payload = {f"{command}-{k}": v for k, v in data.items()}
    payload |= {f"{command}-idempotency_key": str(uuid.uuid4()), f"{command}-expected_version": account.version}
    payload |= {f"{command}-{k}": v for k, v in extra.items()}
    return payload


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_runs_for_exactly_the_roles_allowed_to_run_it(role, command):
    allowed, setup, data = COMMANDS[command]
    account = prepared_account(**setup)
    if "to_account" in data:
        data = {**data, "to_account": str(AccountFactory().id)}
    before = event_count(account.id)
    response = client_for(role).post(
        reverse("accounts:command", args=[account.id, command]), command_post(command, account, data)
    )
    if role == "anonymous":
        assert response.status_code == 302 and reverse("login") in response["Location"]
    elif role in allowed:
        assert response.status_code == 302 and response["Location"] == reverse("accounts:detail", args=[account.id])
        assert event_count(account.id) == before + 1
        return
    else:
        assert response.status_code == 403
    assert event_count(account.id) == before


@pytest.mark.parametrize("role", ROLES)
def test_opening_an_account_is_for_tellers_and_supervisors(role):
    data = {"owner": "Grace Hopper", "currency": "EUR", "initial_deposit": "100.00", "idempotency_key": str(uuid.uuid4())}
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
    assert client.get(reverse("accounts:detail", args=[uuid.uuid4()])).status_code == 404


# --- validation and business errors ----------------------------------------------------


@pytest.mark.parametrize(
    "amount, message",
    [
        ("12.505", "EUR has 2 decimal places"),
        ("-5", "cannot be negative"),
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
    account = prepared_account()
    response = client_for("teller").post(
        reverse("accounts:command", args=[account.id, "deposit"]),
        command_post("deposit", account, {"amount": amount, "source": "cash"}),
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert "Nothing was done" in response.content.decode()
    assert event_count(account.id) == 1


def test_a_business_error_shows_on_the_page_and_keeps_the_form():
    account = prepared_account()
    response = client_for("teller").post(
        reverse("accounts:command", args=[account.id, "withdraw"]),
        command_post("withdraw", account, {"amount": "5000.00", "reason": "new car"}),
    )
    page = response.content.decode()
    assert response.status_code == 409
    assert "Withdraw refused: Insufficient funds" in page
    assert 'value="5000.00"' in page and 'value="new car"' in page
    assert event_count(account.id) == 1


def test_same_account_transfer_and_frozen_account_errors_are_shown():
    account = prepared_account()
    client = client_for("supervisor")
    response = client.post(
        reverse("accounts:command", args=[account.id, "transfer"]),
        command_post("transfer", account, {"amount": "1.00", "reference": "self", "to_account": str(account.id)}),
    )
    assert response.status_code == 409 and "cannot transfer money to itself" in response.content.decode()
    services.freeze(account_id=account.id, reason="check")
    frozen = services.get_account(account.id)
    response = client.post(
        reverse("accounts:command", args=[account.id, "deposit"]),
        command_post("deposit", frozen, {"amount": "1.00", "source": "cash"}),
    )
    assert response.status_code == 409 and "is frozen" in response.content.decode()


def test_a_double_submitted_form_stores_one_event():
    account = prepared_account()
    client = client_for("teller")
    payload = command_post("deposit", account, {"amount": "7.00", "source": "cash"})
    url = reverse("accounts:command", args=[account.id, "deposit"])
    first, second = client.post(url, payload), client.post(url, payload)
    assert first.status_code == second.status_code == 302
    assert event_count(account.id) == 2
    assert services.get_account(account.id).balance == 10_700


def test_a_stale_form_still_runs_and_says_what_changed():
    account = prepared_account()
    payload = command_post("withdraw", account, {"amount": "1.00", "reason": "ATM"})
    services.deposit(account_id=account.id, amount=2_500, source="salary")
    response = client_for("teller").post(
        reverse("accounts:command", args=[account.id, "withdraw"]), payload, follow=True
    )
    page = response.content.decode()
    assert "This account had changed since you opened the page (1 event: Deposited 25.00 EUR" in page
    assert "the balance is now 124.00 EUR" in page
    assert services.get_account(account.id).balance == 12_400


def test_owner_names_and_reasons_stay_text():
    client = client_for("supervisor")
    response = client.post(
        reverse("accounts:open"),
        {"owner": "<script>alert(1)</script>", "currency": "EUR", "initial_deposit": "1", "idempotency_key": "x1"},
    )
    account_url = response["Location"]
    account_id = account_url.rstrip("/").split("/")[-1]
    services.withdraw(account_id=account_id, amount=1, reason='<img src=x onerror="alert(2)">')
    for url in (account_url, reverse("accounts:list"), reverse("accounts:dashboard"), reverse("accounts:audit")):
        page = client.get(url).content.decode()
        assert "<script>alert(1)" not in page and "<img src=x" not in page
    page = client.get(account_url).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page


def test_every_form_post_needs_a_csrf_token():
    account = prepared_account()
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
    account = prepared_account()
    client = client_for("supervisor")
    first = client.get(reverse("accounts:detail", args=[account.id])).content.decode()
    second = client.get(reverse("accounts:detail", args=[account.id])).content.decode()
    key = 'name="deposit-idempotency_key" value="'
    assert key in first
    assert first.split(key)[1][:36] != second.split(key)[1][:36]
    assert 'name="deposit-expected_version" value="1"' in first
    assert 'csrfmiddlewaretoken' in first


# --- pages -------------------------------------------------------------------------------


def test_the_past_view_shows_the_state_history_and_label_of_then():
    account = prepared_account()
    services.deposit(account_id=account.id, amount=500, source="cash")
    services.withdraw(account_id=account.id, amount=300, reason="ATM")
    page = client_for("auditor").get(reverse("accounts:detail", args=[account.id]), {"version": 2}).content.decode()
    assert "Past view" in page and "at version 2" in page
    assert "105.00 EUR" in page  # the balance then
    assert "Withdrawn" not in page.split("Audit trail")[1]
    assert 'name="deposit-amount"' not in page  # no commands on the past


def test_the_past_view_by_time_before_the_account_existed():
    account = prepared_account()
    page = client_for("auditor").get(
        reverse("accounts:detail", args=[account.id]), {"as_of": "2000-01-01T00:00"}
    ).content.decode()
    assert "did not exist yet" in page


def test_account_search_by_owner_id_and_status():
    ada = AccountFactory(owner="Ada Lovelace")
    AccountFactory(owner="Charles Babbage")
    services.freeze(account_id=ada.id, reason="check")
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
    account = prepared_account()
    services.deposit(account_id=account.id, amount=100, source="cash")
    client = client_for("auditor")
    page = client.get(reverse("accounts:audit"), {"event_type": "Deposited", "account": str(account.id)})
    assert page.status_code == 200
    assert page.content.decode().count("<td>Deposited</td>") == 1
    response = client.get(reverse("accounts:audit_csv"), {"account": str(account.id)})
    assert response.streaming
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert lines[0].startswith("id,created_at,aggregate_id")
    assert [line.split(",")[4] for line in lines[1:]] == ["Deposited", "Opened"]


def test_the_audit_log_by_correlation_id_finds_both_sides_of_a_transfer():
    payer, payee = prepared_account(), prepared_account()
    services.transfer(from_account_id=payer.id, to_account_id=payee.id, amount=1, reference="r")
    correlation = store.load(payer.id)[-1].metadata["correlation_id"]
    page = client_for("auditor").get(reverse("accounts:audit"), {"correlation_id": correlation}).content.decode()
    assert "<td>TransferSent</td>" in page and "<td>TransferReceived</td>" in page


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
    account = prepared_account()
    from eventstore import projections

    while projections.catch_up(projections.registry["daily_statements"]):
        pass
    response = client_for("auditor").get(reverse("accounts:statement_csv", args=[account.id]))
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert lines[0] == "day,currency,opening_balance,credits,debits,closing_balance,events"
    assert lines[-1].endswith(",EUR,0.00,100.00,0.00,100.00,1")
    bad = client_for("auditor").get(reverse("accounts:statement_csv", args=[account.id]), {"month": "13-2026"})
    assert bad.status_code == 200
