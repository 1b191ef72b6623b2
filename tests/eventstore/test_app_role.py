"""The application's database role cannot rewrite history, even with the triggers out of the way."""

import io
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse

from accounts import services
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db
ROLE = "bank_app_test_role"


def refused(statement):
    with pytest.raises(DatabaseError) as caught:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    return str(caught.value)


def test_the_app_role_works_the_bank_but_cannot_update_delete_truncate_or_disable_guards():
    account = AccountFactory(initial_deposit=1_000)
    out = io.StringIO()
    call_command("grant_app_role", ROLE, "--create", stdout=out)
    assert "SELECT, INSERT on events" in out.getvalue()
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {ROLE}")
    try:
        after = services.deposit(account_id=account.id, amount=5, source="cash")
        assert after.balance == 1_005
        assert services.get_account(account.id).balance == 1_005
        # A teller's page and its form keys, read and written as the application role.
        client = Client()
        client.force_login(UserFactory(role="teller"))
        token = str(uuid.uuid4())
        posted = client.post(
            reverse("accounts:command", args=[account.id, "deposit"]),
            {"deposit-amount": "1.00", "deposit-source": "cash", "deposit-expected_version": 2,
             "deposit-idempotency_key": f"{token}:deposit"},
        )  # fmt: skip
        assert posted.status_code == 302
        page = client.get(reverse("accounts:detail", args=[account.id]), {"form": token}).content.decode()
        assert "Already done: this page's deposit form was submitted" in page
        assert "permission denied" in refused("UPDATE events SET event_data = '{}'")
        assert "permission denied" in refused("DELETE FROM events")
        assert "permission denied" in refused("TRUNCATE events")
        assert "must be owner" in refused("ALTER TABLE events DISABLE TRIGGER ALL")
        assert "permission denied" in refused("SET session_replication_role = replica")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert len(services.store.load(account.id)) == 3


def test_the_command_refuses_a_missing_or_superuser_role():
    with pytest.raises(CommandError, match="create it, or pass --create"):
        call_command("grant_app_role", "no_such_role_here")
    with pytest.raises(CommandError, match="superuser"):
        call_command("grant_app_role", "postgres")
