"""Hostile input for every service and every form: a clear refusal, never a 500, nothing stored.

Hypothesis draws unicode, huge strings, NULs and control characters, SQL and
HTML payloads, negative and enormous numbers, malformed decimals, wrong ids and
missing fields. The number of cases run is printed at the end of the session.
"""

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts import services
from accounts.approvals import ApprovalPending
from accounts.domain import DomainError
from tests.factories import AccountFactory, UserFactory
from tests.support import FUZZ_CASES

pytestmark = pytest.mark.django_db
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))

payloads = st.sampled_from([
    "'; DROP TABLE events; --", "<script>alert(1)</script>", "\" onmouseover=\"alert(1)", "%s%s%n",
    "{{ 7*7 }}", "../../etc/passwd", "\x00", "\u202e\u0000\ufeff", "🏦" * 300, "A" * 10_000, "", "   ",
    "lone \ud800 surrogate", "Ann\u202eSmith", "zero\u200bwidth",
])  # fmt: skip
texts = st.one_of(payloads, st.text(max_size=600), st.none())
amounts = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=True), st.decimals(),
    st.booleans(), texts, st.integers(min_value=1, max_value=10_000),
)  # fmt: skip
form_amounts = st.one_of(
    st.sampled_from(["12.50", "0", "-1", "1e5", "NaN", "Infinity", "1.999", "12,50", "99999999999999999999", "٣"]),
    st.decimals().map(str), st.integers().map(str), payloads, st.text(max_size=50),
)  # fmt: skip


def as_sent(value) -> str:
    """What a browser can send: text as UTF-8, so a lone surrogate arrives as a replacement character."""
    return "" if value is None else str(value).encode("utf-8", "surrogatepass").decode("utf-8", "replace")


ids = st.one_of(st.uuids(), st.uuids().map(str), texts, st.integers())


def event_count():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events")
        return cursor.fetchone()[0]


def attempt(call, events_if_done):
    before = event_count()
    try:
        call()
    except DomainError as error:
        assert str(error).strip(), "a refusal must say why"
        assert event_count() == before, "a refused command stored something"
        return "refused"
    except ApprovalPending:  # four eyes: the request's one event, and nothing of the accounts'
        assert event_count() == before + 1
        return "asked"
    assert event_count() == before + events_if_done
    return "done"


@pytest.fixture(scope="module")
def account_ids(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        return [AccountFactory(initial_deposit=1_000_000).id, AccountFactory(initial_deposit=0).id]


SERVICES = {
    "open_account": (lambda a, b, t, n: services.open_account(owner=t, initial_deposit=n, currency=t), 1),
    "deposit": (lambda a, b, t, n: services.deposit(account_id=a, amount=n, source=t), 1),
    "withdraw": (lambda a, b, t, n: services.withdraw(account_id=a, amount=n, reason=t), 1),
    "transfer": (lambda a, b, t, n: services.transfer(from_account_id=a, to_account_id=b, amount=n, reference=t), 2),
    "freeze": (lambda a, b, t, n: services.freeze(account_id=a, reason=t), 1),
    "unfreeze": (lambda a, b, t, n: services.unfreeze(account_id=a, reason=t), 1),
    "close_account": (lambda a, b, t, n: services.close_account(account_id=a, reason=t), 1),
}


@pytest.mark.parametrize("name", list(SERVICES))
def test_services_refuse_hostile_input_clearly_and_store_nothing(name, account_ids):
    call, events = SERVICES[name]

    @FUZZ
    @given(first=st.one_of(st.sampled_from(account_ids), ids), second=st.one_of(st.sampled_from(account_ids), ids),
           text=texts, number=amounts)  # fmt: skip
    def run(first, second, text, number):
        FUZZ_CASES[f"service {name}"] += 1
        attempt(lambda: call(first, second, text, number), events)

    run()


FORMS = {
    "deposit": {"amount": form_amounts, "source": texts},
    "withdraw": {"amount": form_amounts, "reason": texts},
    "transfer": {"amount": form_amounts, "reference": texts, "to_account": ids},
    "freeze": {"reason": texts},
    "unfreeze": {"reason": texts},
    "close": {"reason": texts},
}


def post_fields(prefix, fields):
    return st.fixed_dictionaries(
        {},
        optional={
            **{f"{prefix}-{name}": strategy.map(as_sent) for name, strategy in fields.items()},
            f"{prefix}-idempotency_key": st.one_of(st.uuids().map(str), payloads.map(as_sent)),
            f"{prefix}-expected_version": st.one_of(st.integers().map(str), payloads.map(as_sent)),
        },
    )


@pytest.mark.parametrize("command", list(FORMS))
def test_command_forms_never_fail_with_a_500_and_refusals_store_nothing(command, account_ids):
    client = Client()
    client.force_login(UserFactory(role="supervisor"))

    @FUZZ
    @given(data=post_fields(command, FORMS[command]), account=st.sampled_from(account_ids))
    def run(data, account):
        FUZZ_CASES[f"form {command}"] += 1
        before = event_count()
        response = client.post(reverse("accounts:command", args=[account, command]), data)
        assert response.status_code in (302, 400, 409), response.status_code
        if response.status_code != 302:
            assert event_count() == before
            assert "Nothing was done" in response.content.decode()

    run()


def test_open_account_and_login_forms_never_fail_with_a_500():
    client = Client()
    client.force_login(UserFactory(role="teller"))
    fields = {
        "owner": texts,
        "currency": st.one_of(st.sampled_from(["EUR", "JPY", "XXX"]), texts),
        "initial_deposit": form_amounts,
    }

    @FUZZ
    @given(data=st.fixed_dictionaries({}, optional={k: v.map(as_sent) for k, v in fields.items()}),
           key=st.one_of(st.uuids().map(str), payloads.map(as_sent)))  # fmt: skip
    def run(data, key):
        FUZZ_CASES["form open_account"] += 1
        before = event_count()
        response = client.post(reverse("accounts:open"), {**data, "idempotency_key": key})
        assert response.status_code in (302, 400)
        if response.status_code == 400:
            assert event_count() == before

    run()

    @FUZZ
    @given(username=texts.map(as_sent), password=texts.map(as_sent))
    def login(username, password):
        FUZZ_CASES["form login"] += 1
        response = Client(REMOTE_ADDR=f"198.51.100.{FUZZ_CASES['form login'] % 250}").post(
            reverse("login"), {"username": username, "password": password}
        )
        assert response.status_code in (200, 400, 429)  # 400: a NUL byte, refused before any form

    login()


def test_pages_take_hostile_query_strings():
    client = Client()
    client.force_login(UserFactory(role="auditor"))
    account = AccountFactory()

    odd_moments = st.sampled_from([
        "2026-11-27T10:00:00+16:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
        "2026-02-30T10:00:00", "9999-12", "0000-01", "2147483648", "-1",
    ])  # fmt: skip

    @FUZZ
    @given(
        value=st.one_of(texts.map(as_sent), odd_moments),
        field=st.sampled_from([
            "q", "status", "page", "before", "as_of", "version", "month",
            "event_type", "actor", "account", "since", "until", "correlation_id", "form",
        ]),
    )  # fmt: skip
    def run(value, field):
        FUZZ_CASES["query strings"] += 1
        expected = 400 if "\x00" in value else 200  # a NUL byte is refused before any page reads it
        for url in (reverse("accounts:list"), reverse("accounts:audit"), reverse("accounts:detail", args=[account.id])):
            assert client.get(url, {field: value}, follow=True).status_code == expected

    run()
