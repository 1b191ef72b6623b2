"""The admin: history read-only, counts bounded, freeze and unfreeze through the services."""

import re

import pytest
from django.contrib.admin.sites import site
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from accounts import services
from accounts.models import Account
from eventstore.admin import CappedPaginator
from eventstore.models import CommandLog, Event, Snapshot
from eventstore.store import EventStore
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    client = Client()
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    return client


@pytest.fixture
def supervisor_client():
    client = Client()
    client.force_login(UserFactory(role="supervisor", is_staff=True))
    return client


@pytest.mark.parametrize("model", [Event, Snapshot, CommandLog, Account])
def test_history_and_read_models_cannot_be_added_changed_or_deleted(admin_client, model):
    model_admin = site._registry[model]
    request = type("Request", (), {"user": UserFactory(is_superuser=True, is_staff=True)})()
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    add_url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
    assert admin_client.get(add_url).status_code == 403


@pytest.mark.parametrize("model", [Event, Account, Snapshot, CommandLog])
def test_admin_lists_never_count_a_whole_table(admin_client, model):
    account = AccountFactory(owner="Linked Owner", with_history=1)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)
    assert response.status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts), counts
    if model is Event:
        assert reverse("accounts:detail", args=[account.id]) in response.content.decode()


def test_the_capped_paginator_counts_at_most_its_cap():
    AccountFactory()
    AccountFactory()
    paginator = CappedPaginator(Event.objects.order_by("-id"), 1)
    CappedPaginator.CAP, old = 2, CappedPaginator.CAP
    try:
        assert CappedPaginator(Event.objects.order_by("-id"), 1).count == 2
    finally:
        CappedPaginator.CAP = old
    assert paginator.count >= 2


def test_a_list_past_the_cap_says_it_counted_no_further(admin_client, monkeypatch):
    for _ in range(3):
        AccountFactory()
    monkeypatch.setattr(CappedPaginator, "CAP", 2)
    html = admin_client.get(reverse("admin:accounts_account_changelist")).content.decode()
    assert "2 or more accounts (counted no further)" in html
    monkeypatch.setattr(CappedPaginator, "CAP", 10_000)
    html = admin_client.get(reverse("admin:accounts_account_changelist")).content.decode()
    assert "counted no further" not in html and re.search(r"\d+ accounts", html)


def test_the_account_admin_searches_as_the_back_office_does_without_a_scan_of_every_owner(admin_client):
    zoe = AccountFactory(owner="Zoë Holmes")
    AccountFactory(owner="Arthur Dent")
    url = reverse("admin:accounts_account_changelist")
    with CaptureQueriesContext(connection) as queries:
        by_name = admin_client.get(url, {"q": "holmes ZOE"}).content.decode()
    assert "Zoë Holmes" in by_name and "Arthur Dent" not in by_name
    assert not any("UPPER(" in q["sql"] for q in queries.captured_queries)  # no icontains over every row
    by_id = admin_client.get(url, {"q": str(zoe.id)[:8]}).content.decode()
    assert "Zoë Holmes" in by_id and "Arthur Dent" not in by_id


def test_the_event_admin_searches_by_aggregate_and_correlation_id(admin_client):
    account = AccountFactory()
    other = AccountFactory()
    url = reverse("admin:eventstore_event_changelist")
    page = admin_client.get(url, {"q": str(account.id)}).content.decode()
    assert str(account.id) in page and str(other.id) not in page
    correlation = EventStore().load(other.id)[0].metadata["correlation_id"]
    page = admin_client.get(url, {"q": correlation}).content.decode()
    assert str(other.id) in page and str(account.id) not in page


def test_an_event_detail_shows_pretty_printed_json(admin_client):
    account = AccountFactory(owner="Pretty <b>Print</b>")
    event = Event.objects.get(aggregate_id=account.id)
    page = admin_client.get(reverse("admin:eventstore_event_change", args=[event.id])).content.decode()
    assert "&quot;owner&quot;: &quot;Pretty &lt;b&gt;Print&lt;/b&gt;&quot;" in page


def test_freezing_from_the_admin_asks_for_a_reason_then_uses_the_services(supervisor_client):
    active, closed = AccountFactory(), AccountFactory(closed=True)
    url = reverse("admin:accounts_account_changelist")
    selection = {"action": "freeze_accounts", "_selected_action": [str(active.id), str(closed.id)]}

    confirm = supervisor_client.post(url, selection)
    assert confirm.status_code == 200 and "Give the reason" in confirm.content.decode()
    assert services.get_account(active.id).status == "active"

    blank = supervisor_client.post(url, {**selection, "confirm": "yes", "reason": "  "})
    assert "This field is required" in blank.content.decode()
    assert services.get_account(active.id).status == "active"

    done = supervisor_client.post(url, {**selection, "confirm": "yes", "reason": "fraud check"}, follow=True)
    page = done.content.decode()
    assert services.get_account(active.id).status == "frozen"
    assert f"{active.id}): frozen." in page
    assert f"{closed.id}): not frozen — The account of {escape(closed.owner)} is closed: it cannot be frozen." in page
    frozen_event = EventStore().load(active.id)[-1]
    assert frozen_event.event_type == "Frozen" and frozen_event.metadata["reason"] == "fraud check"


def test_a_teller_cannot_freeze_from_the_admin():
    teller = Client()
    teller.force_login(UserFactory(role="teller", is_staff=True))
    account = AccountFactory()
    teller.post(
        reverse("admin:accounts_account_changelist"),
        {"action": "freeze_accounts", "_selected_action": [str(account.id)], "confirm": "yes", "reason": "x"},
    )
    assert services.get_account(account.id).status == "active"


@pytest.mark.parametrize("role", ["anonymous", "staff without a role", "auditor", "teller", "supervisor"])
def test_admin_pages_by_role(role):
    client = Client()
    if role != "anonymous":
        client.force_login(UserFactory(role=None if role == "staff without a role" else role, is_staff=True))
    for url in (reverse("admin:eventstore_event_changelist"), reverse("admin:accounts_account_changelist")):
        response = client.get(url)
        if role == "anonymous":
            assert response.status_code == 302 and "/admin/login/" in response["Location"]
        elif role == "staff without a role":
            assert response.status_code == 403
        else:
            assert response.status_code == 200


def test_the_account_admin_offers_its_actions_only_to_roles_that_may_run_them():
    AccountFactory()
    for role, offered in [("teller", False), ("auditor", False), ("supervisor", True)]:
        client = Client()
        client.force_login(UserFactory(role=role, is_staff=True))
        page = client.get(reverse("admin:accounts_account_changelist")).content.decode()
        assert ('value="freeze_accounts"' in page) is offered and ('value="unfreeze_accounts"' in page) is offered


def test_the_account_admin_shows_money_times_to_the_second_and_links_to_the_back_office(supervisor_client):
    account = AccountFactory(initial_deposit=123_456)
    listed = supervisor_client.get(reverse("admin:accounts_account_changelist")).content.decode()
    assert "1,234.56 EUR" in listed
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", listed), "times to the second"
    detail = supervisor_client.get(reverse("admin:accounts_account_change", args=[account.id])).content.decode()
    on_site = re.search(r'<a href="([^"]+)" class="viewsitelink">View on site</a>', detail)
    assert on_site and on_site.group(1) == reverse("accounts:detail", args=[account.id])


def test_the_command_log_admin_shows_who_ran_each_command_and_what_it_changed(admin_client):
    account = AccountFactory()
    services.deposit(account_id=account.id, amount=5, source="cash", idempotency_key="k-1")
    page = admin_client.get(reverse("admin:eventstore_commandlog_changelist")).content.decode()
    link = f'<a href="{reverse("accounts:detail", args=[account.id])}">{account.id}</a> v2'
    assert link in page and '<td class="field-actor">anonymous</td>' in page  # no one logged in: a test's call
