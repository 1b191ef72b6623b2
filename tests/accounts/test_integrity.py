"""The signed log under attack, each attack made as the role that would make it.

As the application's role (no keys): forged events, forged snapshots, garbage at
the next version. As the owner with the triggers off (no keys either): changed,
deleted, swapped and badly re-signed rows. Each time: what a command does, what
the account page shows, and that quarantine (the owner's procedure) lets an
account go on.
"""

import datetime
import io
import json
import uuid
from contextlib import contextmanager

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.domain import AccountOnHold
from eventstore import snapshots
from eventstore.models import QuarantinedEvent
from tests.factories import AccountFactory, UserFactory
from tests.support import insert_event, resign, without_trigger

pytestmark = pytest.mark.django_db


@contextmanager
def as_application():
    """Act as a role holding exactly the application's grants (made for the test, gone with it)."""
    role = f"bank_app_attack_{uuid.uuid4().hex[:8]}"
    call_command("grant_app_role", role, "--create", stdout=io.StringIO())
    with connection.cursor() as cursor:
        cursor.execute(f'SET ROLE "{role}"')
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")


def held(account_id):
    """The hold a command on the account meets (it must refuse, and store nothing)."""
    with pytest.raises(AccountOnHold) as caught:
        services.deposit(account_id=account_id, amount=1, source="after the attack")
    return caught.value


def page(account_id):
    client = Client()
    client.force_login(UserFactory(role="teller"))
    response = client.get(reverse("accounts:detail", args=[account_id]), follow=True)
    assert response.status_code == 200  # a page, never a server error
    return response.content.decode()


def verifier():
    """What verify_event_store, run by the owner, prints (it must find something)."""
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("verify_event_store", "--show", "50", stdout=out)
    return out.getvalue()


def deposits(account_id, count):
    for _ in range(count):
        services.deposit(account_id=account_id, amount=10, source="salary")


def event_ids(account_id):
    with connection.cursor() as cursor:
        cursor.execute("SELECT version, id FROM events WHERE aggregate_id = %s ORDER BY version", [account_id])
        return dict(cursor.fetchall())


# --- as the application's role --------------------------------------------------------------


def test_a_forged_deposit_at_the_next_version_holds_the_account_and_moves_no_money():
    account = AccountFactory(initial_deposit=100)
    with as_application():
        forged = insert_event(account.id, "Deposited", {"amount": 100_000_000, "source": "forged",
                              "schema_version": 2}, metadata={"actor": "supervisor", "correlation_id": "c"},
                              signed=False)  # fmt: skip
        hold = held(account.id)
    assert f"{account.id} version 2 (event {forged}): it is not signed and no seal covers it" in verifier()
    assert hold.version == 2 and "failed its integrity check: it is not signed" in str(hold)
    shown = page(account.id)
    assert "Version 2 of this account failed its integrity check: it is not signed" in shown
    assert str(hold) == (f"Version 2 of the account of {account.owner} failed its integrity check: it is not signed. "
                         "Nothing was done; an administrator must investigate the account's "
                         "history.")  # fmt: skip
    assert services.get_account(account.id, version=1).balance == 100
    with pytest.raises(AccountOnHold):
        services.withdraw(account_id=account.id, amount=50, reason="pay the forged money out")


def test_a_false_balance_or_another_accounts_state_in_a_snapshot_is_ignored(settings):
    settings.EVENTSTORE_SNAPSHOT_EVERY = 5
    settings.EVENTSTORE_RECENT_STATES = 0  # commands read the snapshot rows, not a state their process holds
    account, other = AccountFactory(initial_deposit=0), AccountFactory(initial_deposit=0)
    deposits(account.id, 6)  # a snapshot at version 5, signed
    deposits(other.id, 6)
    with as_application(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE snapshots SET state = jsonb_set(state, '{balance}', '100000000') WHERE aggregate_id = %s",
            [account.id],
        )
        assert services.get_account(account.id).balance == 60
        cursor.execute(
            "UPDATE snapshots SET (state, chain_hash, key_id, mac) = "
            "(SELECT jsonb_set(o.state, '{id}', to_jsonb(%s::text)), o.chain_hash, o.key_id, o.mac "
            "   FROM snapshots o WHERE o.aggregate_id = %s) WHERE aggregate_id = %s",
            [str(account.id), other.id, account.id],
        )
        assert services.get_account(account.id).balance == 60
        cursor.execute("UPDATE snapshots SET version = 40 WHERE aggregate_id = %s", [account.id])  # ahead of the log
        after = services.withdraw(account_id=account.id, amount=60, reason="all of it, no more")
    assert (after.balance, after.version) == (0, 8)
    report = verifier()  # the withdrawal's own snapshot is not due (version 8): the forged row is still there
    assert f"not signed: {account.id} version 40 (event None): it is not signed by this application" in report
    assert snapshots.ignored["is not signed by this application"] >= 3


def test_garbage_at_the_next_version_holds_the_account_until_the_owner_quarantines_it():
    account = AccountFactory(initial_deposit=100)
    with as_application():
        garbage = insert_event(account.id, "Deposited", {"amount": "lots"}, signed=False)
        assert held(account.id).version == 2
    assert f"{account.id} version 2 (event {garbage}): it is not signed" in verifier()
    with as_application(), pytest.raises(CommandError, match="Only the database owner may quarantine"):
        call_command("quarantine_event", str(garbage), "--reason", "forged", stdout=io.StringIO())
    out = io.StringIO()
    call_command("quarantine_event", str(garbage), "--reason", "forged by a leaked role, ticket 42", stdout=out)
    assert f"Event {garbage} (Deposited, version 2 of BankAccount {account.id}) is quarantined" in out.getvalue()
    quarantine = QuarantinedEvent.objects.get(event_id=garbage)
    assert (quarantine.version, quarantine.reason) == (2, "forged by a leaked role, ticket 42")
    assert "database role" in quarantine.quarantined_by
    after = services.deposit(account_id=account.id, amount=5, source="cash")
    assert (after.balance, after.version) == (105, 3)
    assert services.get_account(account.id, from_events_only=True) == after
    assert "failed its integrity check" not in page(account.id)
    out = io.StringIO()
    call_command("verify_event_store", stdout=out)  # finds nothing, and lists the quarantine
    assert f"event {garbage}, version 2 of {account.id}: forged by a leaked role, ticket 42" in out.getvalue()


def test_garbage_linked_onto_the_chain_without_the_key_is_named_by_its_signature_not_by_the_fold(settings):
    """The chain hash needs no key, so a forger can link a row; the fold refuses the row's payload
    before the signatures are checked, and the hold must still say that the row is forged."""
    account = AccountFactory(initial_deposit=100)
    keys = settings.EVENTSTORE_SIGNING_KEYS
    settings.EVENTSTORE_SIGNING_KEYS = "forger:" + "f" * 40  # a key the bank does not hold
    with as_application():
        garbage = insert_event(account.id, "Deposited", {"amount": "lots"})
    settings.EVENTSTORE_SIGNING_KEYS = keys
    snapshots.recent.forget(account.id)
    hold = held(account.id)
    assert hold.version == 2 and "its signature is not valid" in str(hold)
    assert f"{account.id} version 2 (event {garbage}): its MAC (key 'forger') is not valid" in verifier()


def test_a_quarantine_reaches_a_process_holding_the_state_from_before_it():
    account = AccountFactory(initial_deposit=100)
    signed_by_mistake = insert_event(account.id, "Deposited", {"amount": 7, "source": "x", "schema_version": 2})
    services.deposit(account_id=account.id, amount=1, source="cash")  # held: balance 108 at version 3
    call_command("quarantine_event", str(signed_by_mistake), "--reason", "r", stdout=io.StringIO())
    # The event after the quarantined one linked onto it: the account is held at version 3.
    assert held(account.id).version == 3


# --- as the owner, with the triggers off, without the keys ------------------------------------


def owner_rewrites(statement, params):
    without_trigger("events_no_update", statement, params)


@pytest.mark.parametrize(
    "attack, first_bad, found",
    [
        ("payload", 3, "it is not the event that was signed at this place"),
        ("delete", 4, "it is not the event that was signed at this place"),
        ("swap", 2, "it is not the event that was signed at this place"),
        ("resign", 4, "its MAC (key 'dev') is not valid"),
    ],
)
def test_a_row_the_owner_changed_without_the_keys_holds_the_account_at_that_version(attack, first_bad, found):
    account = AccountFactory(initial_deposit=100)
    deposits(account.id, 4)  # versions 2 to 5
    ids = event_ids(account.id)
    if attack == "payload":
        owner_rewrites("UPDATE events SET event_data = jsonb_set(event_data, '{amount}', '100000') WHERE id = %s",
                       [ids[3]])  # fmt: skip
    elif attack == "delete":
        without_trigger("events_no_delete", "DELETE FROM events WHERE id = %s", [ids[3]])
    elif attack == "swap":
        owner_rewrites("UPDATE events SET version = -version WHERE id IN (%s, %s)", [ids[2], ids[3]])
        owner_rewrites("UPDATE events SET version = CASE WHEN version = -2 THEN 3 ELSE 2 END WHERE id IN (%s, %s)",
                       [ids[2], ids[3]])  # fmt: skip
    else:  # a new payload, with a chain hash worked out right but a MAC made up
        owner_rewrites(
            "UPDATE events SET event_data = jsonb_set(event_data, '{amount}', '99'), mac = %s WHERE id = %s",
            [bytes(32), ids[4]],
        )
        resign_chain_only(account.id, 4)
    snapshots.recent.forget(account.id)
    assert held(account.id).version == first_bad
    assert f"Version {first_bad} of this account" in page(account.id)
    bad_event = event_ids(account.id)[first_bad]
    assert f"{account.id} version {first_bad} (event {bad_event}): {found}" in verifier()


def resign_chain_only(account_id, version):
    """Recompute the chain hashes from `version` on, as anyone can (SHA-256 needs no key), keeping the MACs."""
    from eventstore import signing, store

    chain = store.chain_head(account_id, version - 1)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, aggregate_type, version, event_type, event_data::text, metadata::text, created_at "
            "FROM events WHERE aggregate_id = %s AND version >= %s ORDER BY version",
            [account_id, version],
        )
        for event_id, kind, at_version, event_type, data, metadata, created_at in cursor.fetchall():
            metadata = None if metadata is None else json.loads(metadata)
            content = signing.event_content(account_id, kind, at_version, event_type, json.loads(data), metadata,
                                            created_at)  # fmt: skip
            chain = signing.link(chain, content)
            owner_rewrites("UPDATE events SET chain_hash = %s WHERE id = %s", [chain, event_id])


def test_a_history_rewritten_with_the_keys_passes_the_load_and_is_caught_by_the_digest(tmp_path):
    """What the keys' holder can do, the load cannot see: the daily digest kept outside is there for it."""
    account, other = AccountFactory(initial_deposit=100), AccountFactory(initial_deposit=5)
    deposits(account.id, 2)
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    kept = tmp_path / "digest.json"
    call_command("log_digest", "--date", today, "--out", str(kept), stdout=io.StringIO(), stderr=io.StringIO())
    assert call_command("verify_event_store", "--digest", str(kept), stdout=io.StringIO()) is None
    owner_rewrites("UPDATE events SET event_data = jsonb_set(event_data, '{amount}', '1000') WHERE id = %s",
                   [event_ids(account.id)[2]])  # fmt: skip
    resign(account.id)
    assert services.get_account(account.id).balance == 1110  # the load cannot tell
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("verify_event_store", "--digest", str(kept), stdout=out)
    report = out.getvalue()
    assert "days that no longer match their digest: 1 FOUND" in report
    assert f"{today}: {account.id} versions 1..3" in report and str(other.id) not in report
    with pytest.raises(CommandError, match="exists: a digest is never overwritten"):
        call_command("log_digest", "--date", today, "--out", str(kept), stdout=io.StringIO())


def test_a_new_first_key_signs_and_the_old_one_still_verifies(settings):
    old = settings.EVENTSTORE_SIGNING_KEYS
    account = AccountFactory(initial_deposit=100)  # signed by the development key, "dev"
    settings.EVENTSTORE_SIGNING_KEYS = "k2026:" + "n" * 40 + "," + old
    snapshots.recent.forget(account.id)
    after = services.deposit(account_id=account.id, amount=5, source="cash")
    assert (after.balance, after.version) == (105, 2)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version, key_id FROM events WHERE aggregate_id = %s ORDER BY version", [account.id])
        assert cursor.fetchall() == [(1, "dev"), (2, "k2026")]
    snapshots.recent.forget(account.id)
    assert services.get_account(account.id).balance == 105
    settings.EVENTSTORE_SIGNING_KEYS = "k2026:" + "n" * 40  # the old key dropped too soon
    snapshots.recent.forget(account.id)
    assert services.get_account(account.id).balance == 105  # the newest MAC vouches for the chain before it
    first = event_ids(account.id)[1]
    assert f"{account.id} version 1 (event {first}): its MAC (key 'dev') is not valid" in verifier()
