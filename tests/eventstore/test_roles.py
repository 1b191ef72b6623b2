"""The three database parties, each as itself: the owner, the application role and the runner role.

Transactional, as rebuilds need (they read only committed transactions), so
the roles are committed too: each test makes its own, and drops them after.
"""

import io
import logging
import signal
import uuid

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts import selectors, services
from accounts.models import Account, DailyStatement
from accounts.projections import accounts as account_projection
from accounts.projections import bank_totals, daily_statements
from eventstore import projections
from tests.factories import PASSWORD, AccountFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
READ_MODELS = ("account_read_model", "account_daily_statement", "bank_totals", "bank_totals_account")


def set_role(role):
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {role}" if role else "RESET ROLE")


def current_user():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        return cursor.fetchone()[0]


def acl(table):
    """The table's grants and each column's, as sorted text."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT NULL, array(SELECT item::text FROM unnest(relacl) item ORDER BY 1) "
            "FROM pg_class WHERE oid = %s::regclass "
            "UNION ALL SELECT attname, array(SELECT item::text FROM unnest(attacl) item ORDER BY 1) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [table, table],
        )
        return dict(cursor.fetchall())


def test_a_rebuilt_read_model_keeps_its_grants(roles):
    app, runner = roles
    account = AccountFactory(initial_deposit=100)
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT SELECT (owner) ON account_read_model TO {runner}")  # a column-level grant too
    before = {table: acl(table) for table in READ_MODELS}
    assert before["account_read_model"]["owner"] == [f"{runner}=r/{current_user()}"]
    assert projections.rebuild(account_projection)
    assert projections.rebuild(daily_statements)
    assert projections.rebuild(bank_totals)
    assert {table: acl(table) for table in READ_MODELS} == before
    set_role(app)
    try:
        assert services.deposit(account_id=account.id, amount=5, source="cash").balance == 105
        assert Account.objects.get(account_id=account.id).balance == 105
        # Which statement rows exist depends on what the rebuild could read (only transactions
        # older than every running one, on the whole server); that the app may read them does not.
        list(DailyStatement.objects.all())
        set_role(runner)
        for projection in (daily_statements, bank_totals):
            while projections.catch_up(projection):
                pass
        list(DailyStatement.objects.all())
        assert current_user() == runner
        set_role(app)
        selectors.bank_figures()  # the dashboard may read what the runner writes
    finally:
        set_role(None)


def test_owner_app_and_runner_each_do_their_part_through_a_rebuild(roles, caplog):
    app, runner = roles
    teller = UserFactory(role="teller", username=f"teller_{uuid.uuid4().hex[:8]}")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # run_projections sets them

    def serve_commands_and_pages(client):
        account = services.open_account(owner="Ada Lovelace", initial_deposit=10_000)
        other = services.open_account(owner="Alan Turing", initial_deposit=0)
        services.deposit(account_id=account.id, amount=250, source="cash", idempotency_key=str(uuid.uuid4()))
        services.transfer(from_account_id=account.id, to_account_id=other.id, amount=1_000, reference="rent")
        detail = client.get(reverse("accounts:detail", args=[account.id]), follow=True)
        assert detail.status_code == 200 and "Ada Lovelace" in detail.content.decode()
        audit = client.get(reverse("accounts:audit"), {"account": str(other.id)})
        assert audit.status_code == 200 and "Transfer" in audit.content.decode()
        assert client.get(reverse("accounts:dashboard")).status_code == 200
        assert current_user() == app  # nothing above slipped back to the owner
        return account

    client = Client()
    set_role(app)
    try:
        login = client.post(reverse("login"), {"username": teller.username, "password": PASSWORD})
        assert login.status_code == 302, login.content.decode()
        first = serve_commands_and_pages(client)
        set_role(None)

        call_command("rebuild_projections", "--all", stdout=io.StringIO(), stderr=io.StringIO())

        set_role(app)
        second = serve_commands_and_pages(client)
        set_role(runner)
        with caplog.at_level(logging.INFO, logger="eventstore.runner"):
            call_command("run_projections", "--once")
        assert "running daily_statements" in caplog.text and "running bank_totals" in caplog.text
        assert current_user() == runner
    finally:
        set_role(None)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    out = io.StringIO()
    call_command("verify_projections", stdout=out)
    assert all(f"{name}: ok" in out.getvalue() for name in ("accounts", "daily_statements", "bank_totals"))
    call_command("verify_event_store", stdout=out)
    assert "event store ok" in out.getvalue()
    assert (
        Account.objects.get(account_id=first.id).balance == Account.objects.get(account_id=second.id).balance == 9_250
    )
