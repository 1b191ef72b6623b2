"""The pure domain: events, replay and the upcasters, without a database."""

import ast
import pathlib
import uuid

import pytest

import accounts.domain as domain
from accounts.domain import WAIVED, BankAccount, Deposited, Opened, TransferSent, event_from_data


def test_domain_imports_nothing_from_django_or_the_database():
    tree = ast.parse(pathlib.Path(domain.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "dataclasses", "decimal", "re", "uuid", "typing"}


@pytest.mark.parametrize(
    "event",
    [
        Opened(str(uuid.uuid4()), "Ada", "EUR", 100),
        Deposited(5, "cash"),
        TransferSent(str(uuid.uuid4()), str(uuid.uuid4()), 7, "rent"),
    ],
)
def test_events_round_trip_through_their_payload_with_a_schema_version(event):
    data = event.to_data()
    assert data["schema_version"] == type(event).schema
    assert event_from_data(event.event_type, data) == event


def test_replay_folds_events_and_commands_do_not_mutate():
    account_id = uuid.uuid4()
    opened = BankAccount.open(account_id, owner="Ada", currency="eur", initial_deposit=10)
    account = BankAccount.from_events(account_id, [(1, e.event_type, e.to_data()) for e in opened])
    events = account.deposit(amount=5, source="cash")
    assert (account.balance, account.version, account.currency) == (10, 1, "EUR")
    after = account.with_events(events)
    assert (after.balance, after.version) == (15, 2)
    assert BankAccount.from_snapshot(after.to_snapshot()) == after


@pytest.mark.parametrize(
    "text, minor", [("12.50", 1250), ("12.5", 1250), ("12", 1200), ("0.01", 1), ("1000000.99", 100000099)]
)
def test_schema_one_decimal_strings_become_exact_minor_units(text, minor):
    assert domain.UPCASTERS[("Deposited", 1)]({"amount": text, "source": "s"}) == {
        "amount": minor,
        "source": "s",
        "schema_version": 2,
    }


@pytest.mark.parametrize("text", ["12.505", "-1.00", "1e3", "", "abc"])
def test_schema_one_amounts_that_are_not_two_decimal_strings_are_refused(text):
    upcast = domain.UPCASTERS[("Withdrawn", 1)]({"amount": text, "reason": "r"})
    assert upcast["amount"] == text  # left as stored, for the fold to refuse
    opened = BankAccount.open(uuid.uuid4(), owner="A", currency="EUR", initial_deposit=10**6)
    with pytest.raises(domain.UnreadableEvent, match=r"Version 2 of the account of A \(Withdrawn\) cannot be read"):
        BankAccount.from_events(
            opened[0].account_id, [(1, e.event_type, e.to_data()) for e in opened] + [(2, "Withdrawn", upcast)]
        )


def test_bank_account_shows_the_seeds_fields_and_is_frozen_exactly_while_frozen():
    account_id = uuid.uuid4()
    opened = BankAccount.open(account_id, owner="Alice", currency="EUR", initial_deposit=1000)
    account = BankAccount(account_id).with_events(opened)
    seed_face = {name: getattr(account, name) for name in ("id", "owner", "balance", "is_frozen", "version")}
    assert seed_face == {"id": account_id, "owner": "Alice", "balance": 1000, "is_frozen": False, "version": 1}
    frozen = account.with_events(account.freeze(reason="check"))
    assert (frozen.status, frozen.is_frozen) == ("frozen", True)
    unfrozen = frozen.with_events(frozen.unfreeze(reason="cleared", four_eyes=WAIVED))
    assert (unfrozen.status, unfrozen.is_frozen) == ("active", False)
    emptied = unfrozen.with_events(unfrozen.withdraw(amount=1000, reason="leaving", four_eyes=WAIVED))
    closed = emptied.with_events(emptied.close(reason="leaving", four_eyes=WAIVED))
    assert (closed.status, closed.is_frozen) == ("closed", False)


@pytest.mark.parametrize(
    "decide, waits",
    [
        (lambda a, eyes: a.withdraw(amount=99_999, reason="r", four_eyes=eyes), False),
        (lambda a, eyes: a.withdraw(amount=100_000, reason="r", four_eyes=eyes), True),
        (lambda a, eyes: domain.transfer(a, BankAccount.from_events(uuid.uuid4(), [(1, "Opened", {
            "account_id": str(uuid.uuid4()), "owner": "B", "currency": "EUR", "initial_balance": 0})]),
            transfer_id=uuid.uuid4(), amount=100_000, reference="r", four_eyes=eyes), True),
        (lambda a, eyes: a.freeze(reason="r"), False),
    ],
)  # fmt: skip
def test_four_eyes_holds_back_what_reaches_its_threshold_unless_waived(decide, waits):
    opened = BankAccount.open(uuid.uuid4(), owner="A", currency="EUR", initial_deposit=100_000)
    account = BankAccount(opened[0].account_id).with_events(opened)
    if waits:
        with pytest.raises(domain.NeedsApproval):
            decide(account, domain.FourEyes(100_000))
    else:
        assert decide(account, domain.FourEyes(100_000))
    assert decide(account, WAIVED)  # approved already, or the owner's bulk load: it never waits


def test_closing_and_unfreezing_always_wait_unless_waived():
    opened = BankAccount.open(uuid.uuid4(), owner="A", currency="EUR", initial_deposit=0)
    account = BankAccount(opened[0].account_id).with_events(opened)
    frozen = account.with_events(account.freeze(reason="check"))
    for decide in (lambda eyes: account.close(reason="r", four_eyes=eyes),
                   lambda eyes: frozen.unfreeze(reason="r", four_eyes=eyes)):  # fmt: skip
        with pytest.raises(domain.NeedsApproval):
            decide(domain.FourEyes(10**12))
        assert decide(WAIVED)
