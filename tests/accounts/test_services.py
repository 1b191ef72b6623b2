"""The services: load, decide, append, in one transaction, with the domain's rules."""

import datetime
import uuid

import pytest
from django.db import connection

from accounts import services
from accounts.domain import (
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    AccountNotFrozen,
    BalanceNotZero,
    CurrencyMismatch,
    DomainError,
    InsufficientFunds,
    InvalidAmount,
    InvalidInput,
    SameAccountTransfer,
)
from accounts.models import Account
from eventstore.context import metadata_context
from eventstore.store import EventStore
from tests.factories import AccountFactory, approved

pytestmark = pytest.mark.django_db
store = EventStore()


def history(account_id):
    return store.load(account_id)


def all_events_count():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events")
        return cursor.fetchone()[0]


def test_the_seed_example_ends_at_750_with_four_events_and_800_after_event_two():
    account = services.open_account(owner="Ada Lovelace", initial_deposit=1000)
    services.withdraw(account_id=account.id, amount=200, reason="ATM")
    services.deposit(account_id=account.id, amount=50, source="transfer")
    final = services.withdraw(account_id=account.id, amount=100, reason="purchase")

    assert final.balance == 750
    assert [e.event_type for e in history(account.id)] == ["Opened", "Withdrawn", "Deposited", "Withdrawn"]
    assert services.get_account(account.id).balance == 750
    assert services.get_account(account.id, version=2).balance == 800


def test_every_command_returns_the_state_after_it_and_the_read_model_follows():
    account = AccountFactory(initial_deposit=5_000, currency="GBP")
    account_id = account.id
    assert services.deposit(account_id=account_id, amount=1_000, source="cash").balance == 6_000
    assert services.withdraw(account_id=account_id, amount=6_000, reason="emptied").balance == 0
    assert services.freeze(account_id=account_id, reason="fraud check").status == "frozen"
    assert approved("unfreeze", account_id=account_id, reason="cleared").status == "active"  # four eyes
    closed = approved("close_account", account_id=account_id, reason="customer left")
    assert (closed.status, closed.version, closed.currency) == ("closed", 6, "GBP")
    row = Account.objects.get(account_id=account_id)
    assert (row.balance, row.status, row.version, row.currency) == (0, "closed", 6, "GBP")
    assert row.opened_at <= row.last_activity_at


def test_transfer_moves_money_and_both_events_share_transfer_and_correlation_ids():
    payer, payee = AccountFactory(initial_deposit=10_000), AccountFactory(initial_deposit=0)
    source, target = services.transfer(from_account_id=payer.id, to_account_id=payee.id, amount=2_500, reference="rent")
    assert (source.balance, target.balance) == (7_500, 2_500)
    (sent,) = store.load_after_version(payer.id, 1)
    (received,) = store.load_after_version(payee.id, 1)
    assert (sent.event_type, received.event_type) == ("TransferSent", "TransferReceived")
    assert sent.data["transfer_id"] == received.data["transfer_id"]
    assert sent.data["to_account_id"] == str(payee.id)
    assert received.data["from_account_id"] == str(payer.id)
    assert sent.metadata["correlation_id"] == received.metadata["correlation_id"]
    assert sent.transaction_id == received.transaction_id


def test_events_carry_who_why_and_which_command():
    account = AccountFactory()
    with metadata_context(actor="teller1", actor_id=3, client_address="192.0.2.1", correlation_id="req-1"):
        services.withdraw(account_id=account.id, amount=10, reason="ATM", idempotency_key="k-meta")
    event = history(account.id)[-1]
    assert event.metadata["actor"] == "teller1"
    assert event.metadata["actor_id"] == 3
    assert event.metadata["client_address"] == "192.0.2.1"
    assert event.metadata["correlation_id"] == "req-1"
    assert event.metadata["idempotency_key"] == "k-meta"
    assert event.metadata["reason"] == "ATM"
    assert uuid.UUID(event.metadata["causation_id"])
    assert event.data == {"amount": 10, "reason": "ATM", "schema_version": 2}


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda a: services.deposit(account_id=a, amount=0, source="cash"), InvalidAmount),
        (lambda a: services.deposit(account_id=a, amount=-5, source="cash"), InvalidAmount),
        (lambda a: services.deposit(account_id=a, amount=10**13, source="cash"), InvalidAmount),
        (lambda a: services.deposit(account_id=a, amount=12.5, source="cash"), InvalidAmount),
        (lambda a: services.deposit(account_id=a, amount="100", source="cash"), InvalidAmount),
        (lambda a: services.deposit(account_id=a, amount=True, source="cash"), InvalidAmount),
        (lambda a: services.deposit(account_id=a, amount=100, source="  "), InvalidInput),
        (lambda a: services.withdraw(account_id=a, amount=100, reason=""), InvalidInput),
        (lambda a: services.withdraw(account_id=a, amount=100_001, reason="too much"), InsufficientFunds),
        (lambda a: services.withdraw(account_id=a, amount=100, reason="x" * 501), InvalidInput),
        (lambda a: services.freeze(account_id=a, reason=None), InvalidInput),
        (lambda a: services.unfreeze(account_id=a, reason="not frozen"), AccountNotFrozen),
        (lambda a: services.close_account(account_id=a, reason="still has money"), BalanceNotZero),
        (lambda a: services.deposit(account_id=uuid.uuid4(), amount=100, source="cash"), AccountNotFound),
        (lambda a: services.deposit(account_id="not-an-id", amount=100, source="cash"), AccountNotFound),
        (
            lambda a: services.transfer(from_account_id=a, to_account_id=a, amount=1, reference="self"),
            SameAccountTransfer,
        ),
        (
            lambda a: services.transfer(from_account_id=a, to_account_id=uuid.uuid4(), amount=1, reference="r"),
            AccountNotFound,
        ),
        (lambda a: services.deposit(account_id=a, amount=100, source="cash", idempotency_key=""), InvalidInput),
        (lambda a: services.open_account(owner="", initial_deposit=0), InvalidInput),
        (lambda a: services.open_account(owner="Bob", initial_deposit=-1), InvalidAmount),
        (lambda a: services.open_account(owner="Bob", initial_deposit=0, currency="XYZ"), InvalidInput),
        (lambda a: services.open_account(owner="Bob\x00", initial_deposit=0), InvalidInput),
        (lambda a: services.deposit(account_id=a, amount=1, source="cash", idempotency_key="k" * 101), InvalidInput),
        (lambda a: services.deposit(account_id=a, amount=1, source="cash", idempotency_key="k\x00"), InvalidInput),
        (lambda a: services.deposit(account_id=a, amount=1, source="cash", idempotency_key="k\ud800"), InvalidInput),
        (lambda a: services.deposit(account_id=a, amount=1, source="cash", idempotency_key=7), InvalidInput),
        (lambda a: services.deposit(account_id=a, amount=1, source="cash\ud800"), InvalidInput),
        (lambda a: services.withdraw(account_id=a, amount=1, reason="\udfff ATM"), InvalidInput),
        (lambda a: services.open_account(owner="Bob \udc00", initial_deposit=0), InvalidInput),
        (lambda a: services.get_account(a, version=2**31), InvalidInput),
        (lambda a: services.get_account(a, as_of="yesterday"), InvalidInput),
    ],
)
def test_bad_input_raises_a_clear_domain_error_and_stores_nothing(call, error):
    account_id = AccountFactory().id
    before = all_events_count()
    with pytest.raises(error) as caught:
        call(account_id)
    assert isinstance(caught.value, DomainError)
    assert str(caught.value)
    assert all_events_count() == before
    assert services.get_account(account_id).version == 1


def test_frozen_and_closed_accounts_refuse_money_movements():
    frozen, closed, other = AccountFactory(frozen=True), AccountFactory(closed=True), AccountFactory()
    for account_id, error in ((frozen.id, AccountFrozen), (closed.id, AccountClosed)):
        with pytest.raises(error):
            services.deposit(account_id=account_id, amount=1, source="cash")
        with pytest.raises(error):
            services.withdraw(account_id=account_id, amount=1, reason="cash")
        with pytest.raises(error):
            services.transfer(from_account_id=other.id, to_account_id=account_id, amount=1, reference="r")
    with pytest.raises(AccountFrozen, match="already frozen"):
        services.freeze(account_id=frozen.id, reason="again")
    with pytest.raises(AccountClosed):
        services.freeze(account_id=closed.id, reason="closed")
    with pytest.raises(AccountClosed, match="already closed"):
        services.close_account(account_id=closed.id, reason="again")


def test_transfer_between_currencies_is_refused():
    euros, pounds = AccountFactory(currency="EUR"), AccountFactory(currency="GBP")
    with pytest.raises(CurrencyMismatch):
        services.transfer(from_account_id=euros.id, to_account_id=pounds.id, amount=1, reference="r")


def test_idempotency_key_repeat_returns_the_first_result_and_stores_nothing():
    account = AccountFactory(initial_deposit=0)
    first = services.deposit(account_id=account.id, amount=500, source="cash", idempotency_key="dep-1")
    services.deposit(account_id=account.id, amount=1, source="cash")
    again = services.deposit(account_id=account.id, amount=500, source="cash", idempotency_key="dep-1")
    assert again == first
    assert (again.balance, again.version) == (500, 2)
    assert len(history(account.id)) == 3


def test_idempotency_key_reused_with_other_arguments_is_refused():
    account = AccountFactory()
    services.deposit(account_id=account.id, amount=500, source="cash", idempotency_key="dep-2")
    with pytest.raises(InvalidInput, match="already used for a different"):
        services.deposit(account_id=account.id, amount=501, source="cash", idempotency_key="dep-2")
    with pytest.raises(InvalidInput, match="already used for a different"):
        services.withdraw(account_id=account.id, amount=500, reason="cash", idempotency_key="dep-2")
    assert len(history(account.id)) == 2


def test_idempotent_transfer_returns_both_accounts_as_they_were():
    payer, payee = AccountFactory(), AccountFactory()
    call = dict(from_account_id=payer.id, to_account_id=payee.id, amount=100, reference="r")
    first = services.transfer(**call, idempotency_key="t-1")
    assert services.transfer(**call, idempotency_key="t-1") == first


def test_a_refused_command_does_not_burn_its_idempotency_key():
    account = AccountFactory(initial_deposit=100)
    with pytest.raises(InsufficientFunds):
        services.withdraw(account_id=account.id, amount=200, reason="cash", idempotency_key="w-1")
    services.deposit(account_id=account.id, amount=100, source="cash")
    assert services.withdraw(account_id=account.id, amount=200, reason="cash", idempotency_key="w-1").balance == 0


def test_get_account_of_an_unknown_or_malformed_id_is_none():
    assert services.get_account(uuid.uuid4()) is None
    assert services.get_account("nonsense") is None
    account = AccountFactory()
    assert services.get_account(account.id, version=0) is None


@pytest.mark.django_db(transaction=True)
def test_get_account_as_of_a_time_replays_up_to_then():
    account = AccountFactory(initial_deposit=1000)
    services.deposit(account_id=account.id, amount=1, source="a")
    moment = history(account.id)[-1].created_at
    services.deposit(account_id=account.id, amount=10, source="b")
    then = services.get_account(account.id, as_of=moment)
    assert (then.balance, then.version) == (1001, 2)
    assert services.get_account(account.id, as_of=moment - datetime.timedelta(days=1)) is None
    assert services.get_account(account.id).balance == 1011


SPOOFING = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
            "\u200b", "\u2060", "\ufeff"]  # fmt: skip


@pytest.mark.parametrize("character", SPOOFING)
def test_names_and_reasons_refuse_characters_that_make_text_display_as_something_else(character):
    account = AccountFactory()
    before = all_events_count()
    with pytest.raises(InvalidInput, match=f"U\\+{ord(character):04X}"):
        services.open_account(owner=f"Ann{character}Smith", initial_deposit=0)
    with pytest.raises(InvalidInput, match="invisible or direction-changing"):
        services.withdraw(account_id=account.id, amount=1, reason=f"rent{character}")
    assert all_events_count() == before


def test_zero_width_joiners_stay_allowed_for_persian_and_indic_names():
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # a ZWNJ between two letters
    indic = "\u0915\u094d\u200d\u0937"  # a ZWJ keeps the half form
    for owner in (persian, indic):
        assert services.open_account(owner=owner, initial_deposit=0).owner == owner


def test_a_version_past_what_the_table_holds_is_refused_before_the_database(settings):
    account = AccountFactory()
    assert services.get_account(account.id, version=2**31 - 1) == services.get_account(account.id)
    with pytest.raises(InvalidInput, match="from 0 to 2147483647"):
        services.get_account(account.id, version=2**31)


def test_a_moment_with_any_offset_is_read_in_utc():
    account = AccountFactory()
    far_east = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=16)))
    assert services.get_account(account.id, as_of=far_east + datetime.timedelta(minutes=1)) == services.get_account(
        account.id
    )
    with pytest.raises(InvalidInput, match="outside the calendar"):
        services.get_account(
            account.id, as_of=datetime.datetime(1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=14)))
        )


def test_a_balance_that_would_pass_the_ledgers_largest_is_refused_by_the_rules(settings):
    from accounts.domain import MAX_BALANCE, BalanceLimitExceeded

    settings.ACCOUNT_AMOUNT_CEILING = 2**64
    half = 2**62
    rich = AccountFactory(initial_deposit=half)
    richer = services.deposit(account_id=rich.id, amount=half - 1, source="cash")
    assert richer.balance == MAX_BALANCE
    payer = AccountFactory(initial_deposit=5)
    before = all_events_count()
    with pytest.raises(BalanceLimitExceeded, match="largest balance"):
        services.deposit(account_id=rich.id, amount=1, source="cash")
    with pytest.raises(BalanceLimitExceeded):
        services.transfer(from_account_id=payer.id, to_account_id=rich.id, amount=5, reference="r")
    with pytest.raises(BalanceLimitExceeded):
        services.open_account(owner="Croesus", initial_deposit=MAX_BALANCE + 1)
    assert all_events_count() == before
    assert Account.objects.get(account_id=rich.id).balance == MAX_BALANCE
