"""grant_app_role gives the application and the runner exactly their lists, and nothing that rewrites history."""

import io
import uuid

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.approvals import ApprovalPending
from eventstore.context import metadata_context
from eventstore.models import ProjectionCheckpoint
from eventstore.store import EventStore
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db  # roles created here go away with the test's transaction


@pytest.fixture
def app():
    return f"bank_app_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def runner():
    return f"bank_runner_test_{uuid.uuid4().hex[:8]}"


def grant(role, *options):
    call_command("grant_app_role", role, *options, stdout=io.StringIO())


def refused_call(call):
    with pytest.raises(DatabaseError) as caught:
        with transaction.atomic():
            call()
    return str(caught.value)


def refused(statement):
    def run():
        with connection.cursor() as cursor:
            cursor.execute(statement)

    return refused_call(run)


def set_role(role):
    with connection.cursor() as cursor:
        cursor.execute(f'SET ROLE "{role}"' if role else "RESET ROLE")


# Every privilege `role` holds in schema public: (relation, column or None, privilege).
HELD = """
SELECT c.relname, NULL, acl.privilege_type
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) acl
 WHERE n.nspname = 'public' AND acl.grantee = %(role)s::regrole
UNION ALL
SELECT c.relname, a.attname, acl.privilege_type
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
       aclexplode(a.attacl) acl
 WHERE n.nspname = 'public' AND acl.grantee = %(role)s::regrole
"""


def held(role):
    with connection.cursor() as cursor:
        cursor.execute(HELD, {"role": role})
        return set(cursor.fetchall())


def listed(party):
    """config/grants.py's list for `party`, as the rows HELD gives."""
    rows = set()
    for table, privileges in settings.DATABASE_GRANTS[party].items():
        for privilege in privileges:
            name, _, columns = privilege.partition(" (")
            if columns:
                rows |= {(table, column, name) for column in columns.rstrip(")").split(", ")}
            else:
                rows.add((table, None, name))
    return rows


def table_privileges(role):
    """Table-level privileges `role` holds, by relation."""
    tables = {}
    for table, column, privilege in held(role):
        if column is None:
            tables.setdefault(table, set()).add(privilege)
    return tables


def test_each_role_holds_exactly_its_list(app, runner):
    grant(app, "--create")
    grant(runner, "--runner", "--create")
    assert held(app) == listed("application")
    assert held(runner) == listed("runner")
    # The policy itself, spelled out: what stops the roles rewriting history or cheating.
    inserts = {column for table, column, name in held(app) if (table, name) == ("events", "INSERT")}
    assert inserts == {
        "aggregate_id",
        "aggregate_type",
        "event_type",
        "event_data",
        "metadata",
        "version",
        "created_at",
        "chain_hash",
        "key_id",
        "mac",
    }
    tables = table_privileges(app)
    assert tables["events"] == {"SELECT"}  # INSERT only on the columns above
    assert tables["events_id_seq"] == {"USAGE"}
    assert tables["command_log"] == {"SELECT", "INSERT"}
    assert tables["projection_checkpoints"] == tables["account_daily_statement"] == tables["bank_totals"] == {"SELECT"}
    assert "bank_totals_account" not in tables  # the totals projection's own working rows
    assert tables["snapshots"] == tables["account_read_model"] == {"SELECT", "INSERT", "UPDATE"}
    assert tables["auth_permission"] == tables["django_migrations"] == {"SELECT"}
    assert tables["event_seal"] == tables["event_quarantine"] == {"SELECT"}  # the owner's alone to write
    assert tables["integrity_run"] == tables["integrity_finding"] == {"SELECT"}
    # The runner also appends Expired to approval requests past their time: as the application
    # does (the same columns), never UPDATE or DELETE.
    assert {column for table, column, name in held(runner) if (table, name) == ("events", "INSERT")} == inserts
    assert table_privileges(runner) == {
        "events": {"SELECT"},
        "events_id_seq": {"USAGE"},
        "event_seal": {"SELECT"},
        "event_quarantine": {"SELECT"},
        "snapshots": {"SELECT"},
        "approval_read_model": {"SELECT", "UPDATE"},
        "projection_checkpoints": {"SELECT", "INSERT", "UPDATE"},
        "account_daily_statement": {"SELECT", "INSERT", "UPDATE"},
        # A total no account is in any more is deleted, so that the rows never depend on batching.
        "bank_totals": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "bank_totals_account": {"SELECT", "INSERT", "UPDATE"},
    }


def test_a_table_with_no_entry_is_refused_by_name_and_nothing_changes(app):
    grant(app, "--create")
    before = held(app)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE grants_test_unlisted (id integer)")
    with pytest.raises(CommandError, match="no entry for grants_test_unlisted in the application role's list"):
        call_command("grant_app_role", app)
    with pytest.raises(CommandError, match="grants_test_unlisted in the runner role's list"):
        call_command("grant_app_role", "bank_runner_test_never", "--runner", "--create")
    assert held(app) == before
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = 'bank_runner_test_never'")
        assert cursor.fetchone() is None


def test_the_app_role_cannot_cheat_history_keys_or_checkpoints(app, runner):
    account = AccountFactory(initial_deposit=1_000)
    grant(app, "--create")
    grant(runner, "--runner", "--create")
    set_role(app)
    try:
        assert services.deposit(account_id=account.id, amount=5, source="cash", idempotency_key="k1").balance == 1_005
        assert "permission denied for table command_log" in refused("DELETE FROM command_log")
        assert "permission denied for table command_log" in refused("UPDATE command_log SET result = '{}'")
        assert "permission denied for table projection_checkpoints" in refused(
            "UPDATE projection_checkpoints SET event_id = 999999999"
        )
        assert "permission denied for table projection_checkpoints" in refused("DELETE FROM projection_checkpoints")
        assert "permission denied for table projection_checkpoints" in refused(
            "INSERT INTO projection_checkpoints (name, transaction_id, event_id, events_applied, updated_at) "
            "VALUES ('daily_statements', 999999999, 999999999, 0, now())"
        )
        assert "permission denied for table account_daily_statement" in refused("DELETE FROM account_daily_statement")
        assert "permission denied for table auth_permission" in refused(
            "INSERT INTO auth_permission (name, content_type_id, codename) VALUES ('x', 1, 'x')"
        )
        assert "permission denied for table auth_permission" in refused("UPDATE auth_permission SET codename = 'x'")
        assert "permission denied for table django_migrations" in refused("DELETE FROM django_migrations")
        assert "permission denied for table events" in refused("UPDATE events SET event_data = '{}'")
        assert "permission denied for table events" in refused("DELETE FROM events")
        assert "permission denied for table events" in refused("TRUNCATE events")
        for column, value in (("id", "1"), ("transaction_id", "'1'::xid8")):
            assert "permission denied for table events" in refused(
                f"INSERT INTO events ({column}, aggregate_id, aggregate_type, event_type, event_data, version, "
                f"created_at) VALUES ({value}, gen_random_uuid(), 'T', 'E', '{{}}', 1, now())"
            )
        assert "permission denied for sequence events_id_seq" in refused("SELECT setval('events_id_seq', 1)")
        assert "must be owner" in refused("ALTER TABLE events DISABLE TRIGGER ALL")
        assert "permission denied" in refused("SET session_replication_role = replica")
        set_role(runner)
        assert "permission denied for table events" in refused("UPDATE events SET event_data = '{}'")
        assert "permission denied for table events" in refused("DELETE FROM events")
        assert "permission denied for table events" in refused(
            "INSERT INTO events (id, aggregate_id, aggregate_type, event_type, event_data, version, created_at)"
            " VALUES (1, gen_random_uuid(), 'T', 'E', '{}', 1, now())"
        )
        assert "permission denied for table approval_read_model" in refused("DELETE FROM approval_read_model")
        assert "permission denied for table account_read_model" in refused("UPDATE account_read_model SET balance = 0")
        assert "permission denied for table command_log" in refused("SELECT * FROM command_log")
        assert "permission denied for table account_daily_statement" in refused("DELETE FROM account_daily_statement")
    finally:
        set_role(None)
    assert len(EventStore().load(account.id)) == 2


def test_granting_again_gives_the_same_and_takes_back_what_was_added_by_hand(app):
    grant(app, "--create")
    first = held(app)
    grant(app)
    assert held(app) == first
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT DELETE ON command_log TO {app}")
        cursor.execute(f"GRANT UPDATE (event_data) ON events TO {app}")
        cursor.execute(f"GRANT UPDATE ON SEQUENCE events_id_seq TO {app}")
        cursor.execute(f"GRANT SELECT ON SEQUENCE auth_user_id_seq TO {app}")
        cursor.execute(f"GRANT CREATE ON SCHEMA public TO {app}")
    assert held(app) > first
    grant(app)
    assert held(app) == first == listed("application")
    with connection.cursor() as cursor:
        cursor.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", [app])
        assert cursor.fetchone()[0] is False


def test_the_app_role_works_the_bank(app):
    account, payee = AccountFactory(initial_deposit=1_000), AccountFactory(owner="Zoë Payee-Holmes")
    out = io.StringIO()
    call_command("grant_app_role", app, "--create", stdout=out)
    assert "events: SELECT, INSERT (aggregate_id," in out.getvalue()
    set_role(app)
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
        # The search (pg_trgm, unaccent and their wrapper), and a transfer by name through its review.
        listed = client.get(reverse("accounts:list"), {"q": payee.owner.lower()}).content.decode()
        assert str(payee.id) in listed
        review = client.post(reverse("accounts:command", args=[account.id, "transfer"]), {
            "transfer-amount": "0.10", "transfer-reference": "r", "transfer-to_account": payee.owner,
            "transfer-expected_version": 3, "transfer-idempotency_key": f"{token}:transfer"}, follow=True)  # fmt: skip
        assert "Nothing has been done yet" in review.content.decode()
        # take_snapshots and replay_account run as the application role.
        call_command("take_snapshots", str(account.id), stdout=io.StringIO())
        replayed = io.StringIO()
        call_command("replay_account", str(account.id), stdout=replayed)
        assert "version  3" in replayed.getvalue()
        # projection_status only reads, even before any runner made a checkpoint.
        assert not ProjectionCheckpoint.objects.filter(name="daily_statements").exists()
        status = io.StringIO()
        call_command("projection_status", stdout=status)
        assert "daily_statements" in status.getvalue()
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == app
    finally:
        set_role(None)
    assert len(EventStore().load(account.id)) == 3


def test_four_eyes_works_as_the_app_role_and_the_runner_role_writes_expired(app, runner, settings):
    account = AccountFactory(initial_deposit=5_000_000)
    grant(app, "--create")
    grant(runner, "--runner", "--create")
    set_role(app)
    try:
        with metadata_context(actor="tina"), pytest.raises(ApprovalPending) as pending:
            services.withdraw(account_id=account.id, amount=1_000_000, reason="car")
        with metadata_context(actor="sam"):
            assert services.approve(request_id=pending.value.request.id).state == "approved"
        settings.APPROVAL_EXPIRES_AFTER_HOURS = 0
        with metadata_context(actor="tina"), pytest.raises(ApprovalPending) as late:
            services.close_account(account_id=AccountFactory(initial_deposit=0).id, reason="moved")
        set_role(runner)
        assert services.expire_requests() == 1
    finally:
        set_role(None)
    assert services.get_account(account.id).balance == 4_000_000
    assert services.get_request(late.value.request.id).state == "expired"


def test_the_command_refuses_a_missing_superuser_or_owning_role(app):
    with pytest.raises(CommandError, match="create it, or pass --create"):
        call_command("grant_app_role", "no_such_role_here")
    with pytest.raises(CommandError, match="superuser"):
        call_command("grant_app_role", "postgres")
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {app} LOGIN")
        cursor.execute(f"GRANT {connection.get_connection_params()['user']} TO {app}")  # may act as the owner
    with pytest.raises(CommandError, match=f"{app} owns \\(or may act as the owner of\\)"):
        call_command("grant_app_role", app)


def test_the_app_role_manages_staff_but_keeps_the_admin_history(app):
    grant(app, "--create")
    set_role(app)
    try:
        # What /admin/ does when operators add staff and reshape groups.
        user = User.objects.create_user("new_teller_for_roles", password="a long enough password 42")
        group = Group.objects.create(name="roles_test_group")
        user.groups.add(group)
        group.permissions.set(Permission.objects.filter(codename__in=["deposit", "withdraw"]))
        user.is_active = False
        user.save()
        # Django deletes a user's admin history with the user, and that history is insert-only.
        assert "permission denied for table django_admin_log" in refused_call(user.delete)
    finally:
        set_role(None)
